"""The user the image's process runs as, resolved as the container runtime resolves it.

``USER`` in the image config is ``user``, ``user:group``, ``uid`` or ``uid:gid``; empty means
root. runc (``user.GetExecUser``) looks a name up in the image's ``/etc/passwd`` (first match)
and a group name in ``/etc/group``; a numeric user not listed runs with that uid and gid 0; a
name that is not listed makes the container fail to start. The supplementary groups are the
``/etc/group`` entries listing the user's name. Both files are read from the resolved image
filesystem (spooled in the shared pass, :mod:`modelseal.postbuild`), bounded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelseal import fsio
from modelseal.imagefs import ImageFs
from modelseal.imagegate.view import ImageView
from modelseal.postbuild import MAX_ACCOUNT_FILE

#: The largest uid/gid a runtime accepts (Linux's are 32-bit; -1 is "no change").
MAX_ID = (1 << 31) - 1
#: Lines of /etc/passwd or /etc/group parsed.
MAX_LINES = 100_000


@dataclass(frozen=True)
class RuntimeUser:
    """The runtime user. ``uid``/``gid`` are None when ``problem`` says why they cannot be
    known (the container would not start); ``name`` is the passwd name ("" when not listed);
    ``groups`` the supplementary gids from /etc/group."""

    raw: str  # the image config's User, as written ("" when unset)
    uid: int | None
    gid: int | None
    name: str
    problem: str = ""
    groups: tuple[int, ...] = ()

    @property
    def is_root(self) -> bool:
        """Runs as uid 0."""
        return self.uid == 0

    def can_write(self, uid: int, gid: int, mode: int) -> bool:
        """Whether this user may write a file or directory with that owner, group and mode
        (uid 0 may write everything; the owner may also chmod, so owning counts as writing)."""
        if self.uid is None:
            return False
        if self.uid == 0 or self.uid == uid:
            return True
        if mode & 0o002:
            return True
        return bool(mode & 0o020) and (gid == self.gid or gid in self.groups)


def _read_account_file(view: ImageView, path: str) -> list[list[str]] | str:
    """The colon-separated records of ``/path`` in the image, or a problem ("" = absent)."""
    fs: ImageFs = view.fs
    res = fs.resolve(path)
    if res.entry is None:
        return ""
    if res.entry.kind != "file":
        return f"/{path} is a {res.entry.describe()}, not a file"
    if res.entry.size > MAX_ACCOUNT_FILE:
        return f"/{path} is larger than {MAX_ACCOUNT_FILE} bytes"
    tmp = Path(tempfile.mkdtemp(prefix="accounts-", dir=fsio.ensure_dir(view.ctx.work_dir)))
    dest = tmp / path.replace("/", "_")
    fs.extract({res.resolved: dest})
    data = dest.read_bytes()[:MAX_ACCOUNT_FILE]
    text = data.decode("utf-8", "surrogateescape")
    return [line.split(":") for line in text.splitlines()[:MAX_LINES] if line and line[0] != "#"]


def _number(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    n = int(text)
    return n if n <= MAX_ID else None


def runtime_user(view: ImageView) -> RuntimeUser:
    """Resolve the image config's ``User`` (see the module doc); once per run and image."""
    return view.ctx.shared.once(f"image-user:{view.digest}", lambda: _resolve(view))


def _resolve(view: ImageView) -> RuntimeUser:
    cfg = view.config.get("config")
    raw_value = cfg.get("User") if isinstance(cfg, dict) else None
    raw = raw_value if isinstance(raw_value, str) else ""
    if not raw:
        return RuntimeUser(raw, 0, 0, "root" if _passwd_has(view, 0) else "", "")
    user, _, group = raw.partition(":")
    passwd = _read_account_file(view, "etc/passwd")
    if isinstance(passwd, str) and passwd:
        return RuntimeUser(raw, None, None, "", passwd)
    entries = passwd if isinstance(passwd, list) else []
    uid: int | None = None
    gid: int | None = None
    name = ""
    numeric = _number(user)
    for fields in entries:
        if len(fields) < 4:
            continue
        if (numeric is None and fields[0] == user) or (
            numeric is not None and _number(fields[2]) == numeric
        ):
            uid, gid, name = _number(fields[2]), _number(fields[3]), fields[0]
            break
    if uid is None:
        if numeric is None:
            return RuntimeUser(
                raw, None, None, "", f"user {user!r} is not in the image's /etc/passwd"
            )
        uid, gid = numeric, 0
    groups: tuple[int, ...] = ()
    gr = _read_account_file(view, "etc/group") if (group and _number(group) is None) or name else []
    if isinstance(gr, str) and gr:
        return RuntimeUser(raw, None, None, name, gr)
    group_entries = gr if isinstance(gr, list) else []
    if group:
        g = _number(group)
        if g is None:
            match = next((f for f in group_entries if len(f) >= 3 and f[0] == group), None)
            g = _number(match[2]) if match is not None else None
            if g is None:
                return RuntimeUser(
                    raw, None, None, name, f"group {group!r} is not in the image's /etc/group"
                )
        gid = g
    if name:
        groups = tuple(
            sorted({n for f in group_entries if len(f) >= 4 and name in f[3].split(",")
                    and (n := _number(f[2])) is not None})
        )  # fmt: skip
    if gid is None:
        return RuntimeUser(raw, None, None, name, f"user {user!r} has no valid gid in /etc/passwd")
    return RuntimeUser(raw, uid, gid, name, "", groups)


def _passwd_has(view: ImageView, uid: int) -> bool:
    passwd = _read_account_file(view, "etc/passwd")
    return isinstance(passwd, list) and any(len(f) >= 3 and _number(f[2]) == uid for f in passwd)
