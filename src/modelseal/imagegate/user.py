"""The user a container of the image runs as: the config's ``User``, resolved the way runc does.

runc (libcontainer ``user.GetExecUser``, now ``github.com/moby/sys/user``, which Docker uses)
reads ``USER`` as ``user[:group]``, cut at the first ``:``. A part that Go's ``strconv.Atoi``
reads as a number (ASCII digits with an optional sign: ``01000``, ``+0``) is only ever an id:
it matches the ``/etc/passwd`` entries whose uid (the ``/etc/group`` entries whose gid) has that
value, never a name, and stands for itself when none does; one out of 0..2^31-1 (``-1``) is an
error. Any other part is only a name. An empty user part is uid 0, looked up by uid. The first
matching entry wins. A user found in ``/etc/passwd`` brings its primary group unless
``:group`` is given; a number not found runs with group 0. A name not in the file stops the
container from starting: here it is a :attr:`RuntimeUser.problem` (uid unknown), never a guess.

The files are parsed as runc parses them: lines cut at ``\n`` and trimmed of white space
(``bytes.TrimSpace``), blank ones skipped (and in ``/etc/group`` lines starting with ``#``;
in ``/etc/passwd`` such a line is an entry like any other), fields split at ``:``, a missing
field empty and an id that is not a number 0. They are read from the resolved image
filesystem, bounded (:data:`MAX_FILE_BYTES`, :data:`MAX_LINES`), following symlinks inside the
image only; a file runc could not read (too long a line, not a regular file) and one past the
bounds are a problem.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelseal import fsio
from modelseal.imagegate.view import ImageView
from modelseal.untrusted import untrusted

#: Bytes of ``/etc/passwd`` or ``/etc/group`` read at most (a larger one is a problem).
MAX_FILE_BYTES = 1 << 20
#: Lines of either file read at most (more are a problem).
MAX_LINES = 100_000
#: The largest uid or gid of a file entry (Linux ids are 32-bit; 2^32-1 is the "no id" value).
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
    # GetExecUser: "user[:group]", cut at the first ":"; an empty part is left unset.
    user, _, group = raw.partition(":")
    try:
        uid_arg = _numeric(user, "uid")
        gid_arg = _numeric(group, "gid")
    except ValueError as e:
        return RuntimeUser(raw, None, None, None, str(e))
    passwd = _table(view, "etc/passwd", _PASSWD)
    if isinstance(passwd, str):
        return RuntimeUser(raw, None, None, None, passwd)

    def matches(e: _Entry) -> bool:
        if not user:
            return e.id == 0  # runc's default user: uid 0, looked up by uid
        return e.id == uid_arg if uid_arg is not None else e.name == user

    entry = next((e for e in passwd if matches(e)), None)  # the first match wins
    name: str | None = None
    uid: int | None
    gid: int | None
    if entry is not None:
        uid, gid, name = entry.id, entry.gid, entry.name or None
        for what, value in (("uid", uid), ("gid", gid)):
            if not 0 <= value <= MAX_ID:
                return RuntimeUser(raw, None, None, name, f"/etc/passwd's entry {_shown(user)} "
                                   f"has {what} {value}, out of range (a runtime may wrap it to "
                                   "another id, 0 included)")  # fmt: skip
    elif not user:
        uid, gid = 0, 0
    elif uid_arg is not None:
        uid, gid = uid_arg, 0  # numeric and not listed: that uid, gid 0
    else:
        return RuntimeUser(raw, None, None, None,
                           f"user {_shown(user)} is not in the image's /etc/passwd")  # fmt: skip
    groups: list[_Entry] = []
    if group or name is not None:
        found = _table(view, "etc/group", _GROUP)
        if isinstance(found, str):
            return RuntimeUser(raw, uid, None, name, found)
        groups = found
    if group:
        g = next(
            (e for e in groups if (e.id == gid_arg if gid_arg is not None else e.name == group)),
            None,
        )
        if g is not None:
            gid = g.id
            if not 0 <= gid <= MAX_ID:
                return RuntimeUser(raw, uid, None, name, f"/etc/group's entry {_shown(group)} "
                                   f"has gid {gid}, out of range")  # fmt: skip
        elif (gid := gid_arg) is None:
            return RuntimeUser(raw, uid, None, name,
                               f"group {_shown(group)} is not in the image's /etc/group")  # fmt: skip
    supplementary: tuple[int, ...] = ()
    if name is not None:
        supplementary = tuple(sorted({
            e.id for e in groups if name in e.members and 0 <= e.id <= MAX_ID
        }))  # fmt: skip
    return RuntimeUser(raw, uid, gid, name, "", supplementary)


#: Go's ``strconv.Atoi`` grammar (base 10): an optional sign, then ASCII digits only.
_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64 = 1 << 63
#: The largest id runc accepts in ``USER`` (``maxID``: 2^31-1, for 32-bit systems).
MAX_ARG_ID = (1 << 31) - 1


def _atoi(text: str) -> tuple[int | None, bool]:
    """Go's ``strconv.Atoi``: ``(value, in range)``; value None on a syntax error, clamped to
    the int64 range when out of it."""
    if not _ATOI.fullmatch(text):
        return None, False
    value = int(text)
    if -_INT64 <= value < _INT64:
        return value, True
    return (_INT64 - 1 if value > 0 else -_INT64), False


def _numeric(text: str, what: str) -> int | None:
    """runc's ``parseNumeric`` of one ``USER`` part: the id when it is a number (which is only
    ever an id, never a name), None when it is a name (or empty); a number out of
    0..:data:`MAX_ARG_ID` is an error (the container does not start)."""
    if not text:
        return None
    value, in_range = _atoi(text)
    if value is None:
        return None
    if not in_range or not 0 <= value <= MAX_ARG_ID:
        raise ValueError(f"{what} {_shown(text)} is out of range (0 to {MAX_ARG_ID})")
    return value


def _shown(text: str) -> str:
    return untrusted(text, markup=False, limit=80)


@dataclass(frozen=True)
class _Entry:
    """One line of ``/etc/passwd`` (``id``: the uid) or ``/etc/group`` (``id``: the gid;
    ``members``: its user list), parsed as runc parses it: missing fields are empty or 0, a
    number that does not parse is 0 (Go's ``Atoi`` errors ignored), one out of the int64 range
    is clamped."""

    name: str
    id: int
    gid: int = 0
    members: tuple[str, ...] = ()


_PASSWD, _GROUP = "passwd", "group"
#: The longest line runc's ``bufio.Scanner`` reads in ``/etc/passwd`` (its default token
#: size); a longer one is an error, and the container does not start.
MAX_PASSWD_LINE = (1 << 16) - 1
#: Characters Go's ``bytes.TrimSpace`` trims (``unicode.IsSpace``), on the UTF-8 text.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _id(text: str) -> int:
    value, _ = _atoi(text)
    return value or 0


def _table(view: ImageView, path: str, kind: str) -> list[_Entry] | str:
    """The entries of ``/etc/passwd`` or ``/etc/group`` as runc reads them (every line
    trimmed as ``bytes.TrimSpace`` does; blank lines skipped, and in ``/etc/group`` lines
    starting with ``#``; ``:``-separated fields), or why the file cannot be read as runc
    would. An absent file has no entries (runc runs on without it)."""
    found = view.fs.resolve(path)
    entry = found.entry
    if entry is None:
        return []
    if entry.kind != "file":
        return f"/{path} is a {entry.describe()}, not a file runc can read"
    if entry.size > MAX_FILE_BYTES:
        return f"/{path} is {entry.size} bytes; at most {MAX_FILE_BYTES} are read"
    work = fsio.ensure_dir(view.ctx.work_dir)
    with tempfile.TemporaryDirectory(prefix="user-", dir=work) as tmp:
        dest = Path(tmp) / "file"
        view.fs.extract({found.resolved: dest})
        with dest.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    rows: list[_Entry] = []
    # Lines end at "\n" only, as Go's ScanLines cuts them (str.splitlines would also cut at
    # \x1c …); undecodable bytes are kept (surrogates), never trimmed, as in Go.
    lines = data.split(b"\n")
    if len(lines) > MAX_LINES:
        return f"/{path} has more than {MAX_LINES} lines; they are not read"
    for raw in lines:
        if kind == _PASSWD and len(raw) > MAX_PASSWD_LINE:
            return (f"/{path} has a line longer than {MAX_PASSWD_LINE} bytes, which runc "
                    "cannot read")  # fmt: skip
        line = raw.decode("utf-8", "surrogateescape").strip(_GO_SPACE)
        if not line or (kind == _GROUP and line.startswith("#")):
            continue
        parts = line.split(":")
        field = parts[2] if len(parts) > 2 else ""
        if kind == _PASSWD:
            gid = _id(parts[3]) if len(parts) > 3 else 0
            rows.append(_Entry(parts[0], _id(field), gid))
        else:
            members = tuple(parts[3].split(",")) if len(parts) > 3 and parts[3] else ()
            rows.append(_Entry(parts[0], _id(field), members=members))
    return rows
