"""The user a container of the image runs as: the config's ``User``, resolved the way runc does.

runc (libcontainer ``user.GetExecUser``, which Docker and containerd use) reads ``USER`` as
``user[:group]``: each part is a name or a number, looked up in the image's ``/etc/passwd`` and
``/etc/group`` (a number matches an entry with that id, or stands for itself when none does); a
user found in ``/etc/passwd`` brings its primary group unless ``:group`` is given; a number not
found runs with group 0. An empty ``User`` is uid 0 (looked up the same way). A name that is
not in the file stops the container from starting: here it is a :attr:`RuntimeUser.problem`
(uid unknown), never a guess.

The two files are read from the resolved image filesystem, bounded (:data:`MAX_FILE_BYTES`,
:data:`MAX_LINES`), following symlinks inside the image only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelseal import fsio
from modelseal.imagegate.view import ImageView
from modelseal.untrusted import untrusted

#: Bytes of ``/etc/passwd`` or ``/etc/group`` read at most (a larger one is not read).
MAX_FILE_BYTES = 1 << 20
#: Lines of either file considered at most.
MAX_LINES = 100_000
#: The largest uid or gid (Linux ids are 32-bit; 2^32-1 is the "no id" value).
MAX_ID = (1 << 32) - 2


@dataclass(frozen=True)
class RuntimeUser:
    """Who the image's process runs as.

    ``raw``: the config's ``User`` as written; ``uid``/``gid``: the resolved ids (None when they
    cannot be known); ``name``: the user's name in ``/etc/passwd`` (None when not there);
    ``problem``: why the user cannot be resolved ("" when it can); ``groups``: the
    supplementary gids, from the ``/etc/group`` entries listing the user's name (counted even
    when ``User`` names a group, where runc would leave them out: an orchestrator may add them,
    and :meth:`can_write` errs towards "may write")."""

    raw: str
    uid: int | None
    gid: int | None
    name: str | None
    problem: str = ""
    groups: tuple[int, ...] = ()

    @property
    def is_root(self) -> bool:
        """The process runs as uid 0."""
        return self.uid == 0

    def can_write(self, uid: int, gid: int, mode: int) -> bool:
        """Whether this user may write a file or directory with that owner, group and mode
        (uid 0 may write everything; the owner may also chmod, so owning counts as writing).
        An unresolved user writes nothing here: its own finding covers it."""
        if self.uid is None:
            return False
        if self.uid == 0 or self.uid == uid:
            return True
        if mode & 0o002:
            return True
        return bool(mode & 0o020) and (gid == self.gid or gid in self.groups)


def runtime_user(view: ImageView) -> RuntimeUser:
    """The runtime user of ``view``'s image (see the module doc), resolved once per run."""
    return view.ctx.shared.once(f"image-user:{view.digest}", lambda: _resolve(view))


def _resolve(view: ImageView) -> RuntimeUser:
    config = view.config.get("config")
    raw = config.get("User") if isinstance(config, dict) else None
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        return RuntimeUser(repr(raw)[:80], None, None, None, "the config's User is not a string")
    # runc reads an empty User as uid 0, looked up like any other (its gid from /etc/passwd)
    user, sep, group = (raw or "0").partition(":")
    if not user or (sep and not group):
        return RuntimeUser(raw, None, None, None, f"User {_shown(raw)} is not user[:group]")
    passwd = _table(view, "etc/passwd", 4)
    number = _id(user)
    entry = next(
        (e for e in passwd if e[0] == user or (number is not None and _id(e[2]) == number)), None
    )
    name: str | None
    if entry is not None:
        uid, gid, name = _id(entry[2]), _id(entry[3]), entry[0]
        if uid is None or gid is None:
            return RuntimeUser(raw, None, None, entry[0], f"/etc/passwd's entry {_shown(user)} "
                               "has no valid uid or gid")  # fmt: skip
    elif (uid := number) is not None:
        gid, name = 0, None
    else:
        return RuntimeUser(raw, None, None, None,
                           f"user {_shown(user)} is not in the image's /etc/passwd")  # fmt: skip
    groups = _table(view, "etc/group", 3) if sep or name is not None else []
    if sep:
        gnumber = _id(group)
        g = next(
            (e for e in groups if e[0] == group or (gnumber is not None and _id(e[2]) == gnumber)),
            None,
        )
        if g is not None:
            gid = _id(g[2])
            if gid is None:
                return RuntimeUser(raw, uid, None, name, f"/etc/group's entry {_shown(group)} "
                                   "has no valid gid")  # fmt: skip
        elif (gid := gnumber) is None:
            return RuntimeUser(raw, uid, None, name,
                               f"group {_shown(group)} is not in the image's /etc/group")  # fmt: skip
    supplementary: tuple[int, ...] = ()
    if name is not None:
        supplementary = tuple(sorted({
            n for e in groups
            if len(e) >= 4 and name in e[3].split(",") and (n := _id(e[2])) is not None
        }))  # fmt: skip
    return RuntimeUser(raw, uid, gid, name, "", supplementary)


def _id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _shown(text: str) -> str:
    return untrusted(text, markup=False, limit=80)


def _table(view: ImageView, path: str, need: int) -> list[list[str]]:
    """The ``:``-separated lines of an image file with at least ``need`` fields (the name and
    the ids are what matters here); an absent, special or oversized file is empty."""
    found = view.fs.resolve(path)
    entry = found.entry
    if entry is None or entry.kind != "file" or entry.size > MAX_FILE_BYTES:
        return []
    work = fsio.ensure_dir(view.ctx.work_dir)
    with tempfile.TemporaryDirectory(prefix="user-", dir=work) as tmp:
        dest = Path(tmp) / "file"
        view.fs.extract({found.resolved: dest})
        with dest.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    rows = []
    # Lines end at "\n" only, as runc reads them (str.splitlines would also split at \x1c …).
    for line in data.decode("utf-8", "surrogateescape").split("\n")[:MAX_LINES]:
        parts = line.split(":")
        if len(parts) >= need and parts[0] and not line.startswith(("#", "+", "-")):
            rows.append(parts)
    return rows
