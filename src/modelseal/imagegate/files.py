"""Collector: file permissions of the resolved image filesystem that give away privilege.

- setuid / setgid regular files (a way from the runtime user to their owner, usually root);
- world-writable files and directories (anyone in the container can change them). Sticky
  world-writable directories (``/tmp``-style, mode 1777) are not reported: everyone may create
  files there but only the owner may remove or rename them, which is what such a directory
  is for;
- anything under the model paths (``models.image_paths``), and the directories above them,
  that the runtime user owns or may write: the serving process must not be able to change or
  replace the model it serves. Symlinks are followed (a model file linked to a file the user
  owns is served from that file), and the directories holding each link on the way count too
  (the user could re-point the link). A sticky directory above a model path counts only when the
  user owns it. Skipped when the runtime user is root or cannot be resolved (that is a finding
  of its own, :mod:`modelseal.imagegate.config`).

Each finding names the layer that last wrote the entry, and the Dockerfile line that made that
layer where the build metadata allows (:mod:`modelseal.imagegate.history`).
"""

from __future__ import annotations

from modelseal.findings import Finding, Severity
from modelseal.imagefs import FsEntry, printable
from modelseal.imagegate.history import Attribution, attribution
from modelseal.imagegate.user import RuntimeUser, runtime_user
from modelseal.imagegate.view import ImageView

GATE = "image"
#: Findings of one kind reported per image; past it, one ``image.findings-truncated`` (fails).
MAX_PER_KIND = 1000

_S_ISUID, _S_ISGID, _S_ISVTX = 0o4000, 0o2000, 0o1000


def collect(view: ImageView) -> list[Finding]:
    """The file-permission findings of one platform image."""
    at = attribution(view)
    found: dict[str, list[Finding]] = {}
    dropped: dict[str, int] = {}

    def add(id: str, severity: Severity, title: str, e: FsEntry, **evidence: str) -> None:
        bucket = found.setdefault(id, [])
        if len(bucket) >= MAX_PER_KIND:
            dropped[id] = dropped.get(id, 0) + 1
            return
        bucket.append(_finding(view, at, id, severity, title, e, **evidence))

    for e in view.fs.walk():
        path = printable("/" + e.path)
        if e.kind == "file" and e.mode & (_S_ISUID | _S_ISGID):
            bits = "setuid" if e.mode & _S_ISUID else "setgid"
            if e.mode & _S_ISUID and e.mode & _S_ISGID:
                bits = "setuid and setgid"
            add("image.setuid", Severity.MEDIUM,
                f"{path} is {bits} (uid {e.uid}, gid {e.gid}): running it gives its owner's "
                "privileges", e, bits=bits)  # fmt: skip
        if e.kind in ("file", "dir") and e.mode & 0o002:
            if e.kind == "dir" and e.mode & _S_ISVTX:
                continue
            add("image.world-writable", Severity.MEDIUM,
                f"{path} is a world-writable {e.describe()}: any process in the container can "
                "change it", e)  # fmt: skip
    user = runtime_user(view)
    if user.uid not in (None, 0):
        for e, why in _model_writable(view, user):
            add("image.model-writable", Severity.HIGH,
                f"{printable('/' + e.path)} ({e.describe()}, {why}) can be changed by the "
                f"runtime user {_who(user)}: the model must be read-only for the process "
                "that serves it", e, user=_who(user))  # fmt: skip
    out = [f for bucket in found.values() for f in bucket]
    for id, n in sorted(dropped.items()):
        out.append(Finding(GATE, "image.findings-truncated", Severity.HIGH,
                           f"{n} more {id} findings were not listed (at most {MAX_PER_KIND})",
                           id, evidence={"platform": view.platform, "kind": id,
                                         "dropped": str(n)}))  # fmt: skip
    return out


def _who(user: RuntimeUser) -> str:
    name = f" ({printable(user.name)})" if user.name else ""
    return f"uid {user.uid}{name}"


def _finding(view: ImageView, at: Attribution, id: str, severity: Severity, title: str,
             e: FsEntry, **evidence: str) -> Finding:  # fmt: skip
    origin = at.origin(e.layer) if e.layer >= 0 else None
    ev = {"platform": view.platform, "mode": f"{e.mode & 0o7777:04o}", "uid": str(e.uid),
          "gid": str(e.gid), **(origin.evidence() if origin else {}), **evidence}  # fmt: skip
    return Finding(GATE, id, severity, title, printable("/" + e.path),
                   location=origin.location if origin else None, evidence=ev)  # fmt: skip


def _model_writable(view: ImageView, user: RuntimeUser) -> list[tuple[FsEntry, str]]:
    """Entries under (and directories above) the model paths the user may change. Symlinks
    are followed, the model path itself and every one below it: the file or directory a link
    leads to is what the process serves, and the directories holding the link (who may write
    one may re-point the link) and those on the way to its target count as directories above
    the model."""
    fs = view.fs
    image_paths = view.ctx.policy.policy.models.image_paths
    seen: set[str] = set()
    out: list[tuple[FsEntry, str]] = []

    def check(e: FsEntry, ancestor: bool) -> None:
        if e.path in seen or e.kind not in ("file", "dir"):
            return
        seen.add(e.path)
        if ancestor and e.mode & _S_ISVTX and e.uid != user.uid:
            return  # a sticky directory: others' entries cannot be renamed or removed
        if user.can_write(e.uid, e.gid, e.mode):
            why = "owned by it" if e.uid == user.uid else f"mode {e.mode & 0o7777:04o}"
            out.append((e, f"{'a directory above the model, ' if ancestor else ''}{why}"))

    def above(path: str) -> None:
        """The directories holding the physical path ``path`` (no symlink in it)."""
        parts = path.split("/") if path else []
        for k in range(len(parts)):
            e = fs.entry("/".join(parts[:k]))
            if e is not None:
                check(e, ancestor=True)

    def follow(path: str) -> str | None:
        """Check what ``path`` leads to and the way there; the directory to walk, if any."""
        res = fs.resolve(path)
        for link, _ in res.symlinks:
            above(link)  # the physical path of each link crossed
        if res.entry is None:
            return None  # models-image reports a missing model path; a dangling link serves nothing
        above(res.resolved)
        check(res.entry, ancestor=False)
        return res.resolved if res.entry.kind == "dir" else None

    todo = [d for name in sorted(image_paths) if (d := follow(image_paths[name])) is not None]
    walked: set[str] = set()
    while todo:
        top = todo.pop()
        # A directory inside one already walked was seen whole (its links followed too).
        parts = top.split("/") if top else []
        if any("/".join(parts[:k]) in walked for k in range(len(parts) + 1)):
            continue
        walked.add(top)
        for e in fs.walk(top):
            if e.kind == "symlink":
                if (d := follow(e.path)) is not None:
                    todo.append(d)
            else:
                check(e, ancestor=False)
    return out
