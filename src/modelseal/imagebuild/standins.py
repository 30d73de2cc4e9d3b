"""Model stand-ins: BuildKit copies a 128-byte stand-in for each big locked model file, and the
layout finalizer writes the real bytes into the layer.

A plain build moves a 2 GiB model through BuildKit five times — read and sent as context,
written into the context snapshot, copied by ``COPY`` into a new snapshot, tarred into the
content store, written out again by the OCI exporter — and that, not the compression, is most of
what is left of a model image's build time once the layers are compressed once
(:mod:`modelseal.imagebuild.finalize`). None of it needs the bytes: ``COPY`` copies a file
verbatim, whatever it holds.

So, when nothing in the build can *look* at a model file (:func:`blocker`, :func:`base_blocker`),
the normalized context holds, in place of each model file that ``models.lock`` pins (at least
:data:`MIN_SIZE`, at most :data:`MAX_SIZE` bytes, the size the lock says), a stand-in:
:data:`SIZE` bytes naming this run (a random nonce) and the file. BuildKit builds with the
stand-ins; the finalizer, which streams every layer the build added anyway, meets each stand-in
as a regular file of :data:`SIZE` bytes, and writes the tar header again with the real size and
then the real file's bytes, read from the build context once, hashed on the way and compared
with the SHA-256 the lock pins: a file that changed since it was locked, or while it was read,
or a path that now leads elsewhere (a directory swapped for a link) stops the build — whatever
reaches the image is the locked bytes. A 128-byte file that looks like a stand-in of another
run is an ordinary file (the nonce is part of the content BuildKit checksums, so no cache holds
one of ours); a stand-in never reaches the image.

Why the result is the image a build of the real files gives, byte for byte: ``COPY`` (also
``--from`` another stage, ``--chmod``, ``--chown`` by number, ``--link``) moves a file's bytes
without reading them, so a layer holding a stand-in holds the real file at
the same path with the same metadata; the tar header differs only in its size field (below
:data:`MAX_SIZE` an octal number in the ustar header, as Go's tar writer puts it, its checksum
recomputed) and the sub-second part of the mtime that the finalizer clamps either way. What
*would* see the difference is ruled out beforehand (:func:`blocker`): a ``RUN`` that runs where
a stand-in could be (after a ``COPY`` whose sources could hold one, in that stage or a stage
built on it, or with the context or such a stage mounted), a ``COPY --chown`` by *name* there
(BuildKit reads the stage's ``/etc/passwd``), ``ADD`` (it unpacks archives), ``ONBUILD`` in the
Dockerfile or in a base image's config, and another Dockerfile frontend (``# syntax=``,
``// syntax=``, ``BUILDKIT_SYNTAX``). Whatever is not parsed exactly counts as a reader. The
tests build the same contexts with and without stand-ins and compare the digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from modelseal.errors import Error, GateError
from modelseal.imagebuild.bases import BaseRef
from modelseal.imagebuild.dockerfile import Dockerfile, _split_flags
from modelseal.oci import DIGEST_RE

#: Bytes of one stand-in.
SIZE: Final = 128
#: Files smaller than this are copied as they are (a stand-in saves nothing worth the bookkeeping).
MIN_SIZE: Final = 1 << 20
#: The largest size a ustar header holds as an octal number (11 digits): above it Go's tar
#: writer adds a PAX record, which a stand-in's header would not have.
MAX_SIZE: Final = 8**11 - 1
_MAGIC: Final = b"modelseal-stand-in:"
_CHUNK: Final = 1 << 20
_GLOB = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class StandIn:
    """One model file of the build context that BuildKit gets as a stand-in."""

    #: Its path in the build context (``/``-separated, relative).
    rel: str
    #: The file in the build context (read by the finalizer).
    source: Path
    #: What ``models.lock`` pins: its size and SHA-256.
    size: int
    sha256: str
    #: The file as the context was normalized: (device, inode, size, mtime, ctime in ns).
    seen: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


@dataclass
class StandIns:
    """The stand-ins of one run (:meth:`add` while the context is normalized), and what the
    finalizer put in their place. ``pins``: the files ``models.lock`` pins, by context path:
    (size, SHA-256) (:func:`pins`)."""

    pins: Mapping[str, tuple[int, str]]
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    files: list[StandIn] = field(default_factory=list)
    #: Every file the finalizer wrote in place of a stand-in: (context path, size).
    replaced: list[tuple[str, int]] = field(default_factory=list)

    def add(self, rel: str, source: Path) -> bytes | None:
        """The stand-in to write for the context file ``rel`` (at ``source``), or None to copy it:
        a file the lock does not pin, one of another size than pinned, or of fewer than
        :data:`MIN_SIZE` or more than :data:`MAX_SIZE` bytes."""
        pin = self.pins.get(rel)
        if pin is None or not MIN_SIZE <= pin[0] <= MAX_SIZE:
            return None
        try:
            st = os.lstat(source)
        except OSError:
            return None  # the copy says why
        if not stat.S_ISREG(st.st_mode) or st.st_size != pin[0]:
            return None  # changed since it was locked: sent as it is (the models gate says so)
        index = len(self.files)
        self.files.append(StandIn(rel, source, pin[0], pin[1], _identity(st)))
        text = b"%s%s:%08x\n" % (_MAGIC, self.nonce.encode(), index)
        return text.ljust(SIZE, b"#")

    def lookup(self, data: bytes, where: str) -> StandIn | None:
        """The file whose stand-in ``data`` (a regular file's whole content) is; None when it is
        none of this run's (any other content, also a look-alike naming another run)."""
        if len(data) != SIZE or not data.startswith(_MAGIC):
            return None
        m = re.fullmatch(rb"([0-9a-f]{32}):([0-9a-f]{8})\n#*", data[len(_MAGIC) :])
        if m is None or m.group(1).decode() != self.nonce:
            return None
        index = int(m.group(2), 16)
        if index >= len(self.files):
            raise GateError(
                f"{where}: a modelseal stand-in names file {index}, which this run has not."
            )
        return self.files[index]

    @contextlib.contextmanager
    def open(self, item: StandIn, where: str) -> Iterator[Iterator[bytes]]:
        """The model file's bytes, as chunks, read from the build context now and hashed on the
        way. They are what a build without stand-ins would have sent when they are the bytes
        the lock pins, or else when the file is still the one the context was normalized from
        (same device, inode, size, mtime and ctime: a model that never matched its lock, which
        the models gate reports); otherwise — a file gone, no longer a regular file of the
        pinned size, changed since, or a path that now leads elsewhere — a GateError naming
        it."""
        try:
            fd = os.open(
                item.source,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            )
        except OSError as e:
            raise GateError(
                f"{where}: cannot read the model file {item.rel} of the build context: "
                f"{e.strerror or e}."
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != item.size:
                raise self._changed(item, where)
            yield self._chunks(fd, item, where)
        finally:
            os.close(fd)

    @staticmethod
    def _changed(item: StandIn, where: str) -> GateError:
        return GateError(
            f"{where}: the model file {item.rel} of the build context changed (or its path now "
            "leads elsewhere) while the image was built: its bytes are neither the ones "
            f"models.lock pins ({item.size} bytes, SHA-256 {item.sha256}) nor those of the "
            "file the build started from.",
            hint="Build again once nothing writes to the build context.",
        )

    def _chunks(self, fd: int, item: StandIn, where: str) -> Iterator[bytes]:
        h = hashlib.sha256()
        left = item.size
        while left:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                raise self._changed(item, where)
            h.update(chunk)
            left -= len(chunk)
            yield chunk
        if h.hexdigest() != item.sha256 and _identity(os.fstat(fd)) != item.seen:
            raise self._changed(item, where)
        self.replaced.append((item.rel, item.size))


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def pins(context: Path, lock_path: Path) -> dict[str, tuple[int, str]]:
    """The files ``models.lock`` (at ``lock_path``) pins, by path in the build context
    ``context``: (size, SHA-256). Empty when the lock cannot be read (the models gate says why)
    or pins nothing inside the context."""
    from modelseal.errors import Error
    from modelseal.models.lock import load_lock

    try:
        lock = load_lock(lock_path)
    except (Error, OSError):
        return {}
    root = context.resolve()
    out: dict[str, tuple[int, str]] = {}
    for entry in lock.entries:
        try:
            rel = (lock.base / entry.path).relative_to(root).as_posix()
        except ValueError:
            continue  # outside the context: never sent
        out[rel] = (entry.size, entry.sha256)
    return out


# --- which builds may use them -----------------------------------------------------------------

#: Characters of a Dockerfile excerpt kept in a reason.
_MAX_REASON = 200


def blocker(
    df: Dockerfile, context: Path, build_args: Mapping[str, str],
    base_users: Mapping[int, str | None] | None = None,
) -> str | None:  # fmt: skip
    """Why this build cannot use stand-ins (something in it could read a file that would get
    one), or None. ``context`` is the build context as the user gave it: what a ``COPY`` or a
    bind mount could bring is worked out from it (a superset of what is sent). ``base_users``:
    per stage (index) built on an image, that image's configured user (None: not known)."""
    why = _blocker(df, context, build_args, base_users or {})
    return why if why is None or len(why) <= _MAX_REASON else why[:_MAX_REASON] + "…"


def _blocker(
    df: Dockerfile, context: Path, build_args: Mapping[str, str],
    base_users: Mapping[int, str | None],
) -> str | None:  # fmt: skip
    if df.syntax is not None:
        return f"{df.name} names another Dockerfile frontend (syntax={df.syntax})"
    if "BUILDKIT_SYNTAX" in build_args:
        return "the build argument BUILDKIT_SYNTAX names another Dockerfile frontend"
    tainted: set[str] = set()  # stages (by index and by name) that may hold a stand-in
    users: dict[str, str | None] = {}  # stage → the USER in force at its end (None: the base's)
    stage = -1
    holds = False
    user: str | None = None
    for ins in df.instructions:
        kw = ins.keyword
        where = f"{df.name}:{ins.start_line}"
        if kw == "FROM":
            if stage >= 0:
                users[str(stage)] = user
                if df.froms[stage].stage:
                    users[str(df.froms[stage].stage)] = user
                if holds:
                    tainted.add(str(stage))
                    if df.froms[stage].stage:
                        tainted.add(str(df.froms[stage].stage))
            stage += 1
            parent = df.froms[stage].image.lower() if stage < len(df.froms) else ""
            holds = parent in tainted if stage < len(df.froms) else True
            user = users[parent] if parent in users else base_users.get(stage)
            continue
        if kw == "USER":
            user = ins.args.strip()
            continue
        if kw == "WORKDIR" and holds and not _numeric_user(user):
            # BuildKit makes the directory the user's: a name is looked up in /etc/passwd.
            return f"{where}: WORKDIR under a user by name (or the base image's) where a stand-in may be"
        if stage < 0:
            continue  # global ARGs
        if kw == "ONBUILD":
            return f"{where}: ONBUILD"
        if kw == "ADD":
            return f"{where}: ADD (it unpacks archives)"
        flags, rest = _split_flags(ins.args)
        if kw == "COPY":
            source = _flag(flags, "from")
            if source is None or source == "":
                brings = _copies_a_stand_in(rest, df.escape, context)
            else:
                brings = "$" in source or source.lower() in tainted
            chown = _flag(flags, "chown")
            if (
                (holds or brings)
                and chown is not None
                and not re.fullmatch(r"[0-9]+(:[0-9]+)?", chown)
            ):
                return f"{where}: COPY --chown by name (BuildKit reads /etc/passwd) where a stand-in may be"
            holds = holds or brings
        elif kw == "RUN":
            if holds:
                return f"{where}: RUN where a COPY before it may have brought a file that gets a stand-in"
            for mount in (v for f in flags if (v := _value(f, "mount")) is not None):
                why = _mount_blocker(mount, tainted, df.escape, context)
                if why:
                    return f"{where}: RUN --mount={mount} {why}"
    return None


def _numeric_user(user: str | None) -> bool:
    """Whether ``user`` (a USER value; None: not set in the Dockerfile, the base's) names no
    account: empty (root) or ``UID[:GID]`` in digits."""
    return user is not None and re.fullmatch(r"[0-9]*(:[0-9]+)?", user) is not None


def _flag(flags: list[str], name: str) -> str | None:
    values = [v for f in flags if (v := _value(f, name)) is not None]
    return values[-1] if values else None


def _value(flag: str, name: str) -> str | None:
    key, eq, value = flag.removeprefix("--").partition("=")
    return value if key.lower() == name and eq else None


def _mount_blocker(mount: str, tainted: set[str], escape: str, context: Path) -> str | None:
    # BuildKit reads the value as CSV (quotes), each field once, in order, the last one winning,
    # names and the type case-insensitively: anything but a plain list of key=value is a reader.
    if any(c in mount for c in "\"'$`") or escape in mount:
        return "(not read exactly: quotes, escapes or variables)"
    opts: dict[str, str] = {}
    for part in mount.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        key = {"src": "source", "dst": "target", "destination": "target"}.get(key, key)
        if key in opts:
            return f"(its {key} given twice)"
        opts[key] = value.strip()
    kind = opts.get("type", "bind").lower()
    if kind in ("tmpfs", "secret", "ssh"):
        return None  # nothing of the context or a stage
    if kind not in ("bind", "cache"):
        return f"(a mount of type {kind!r})"
    source = opts.get("from")
    if source:
        return "(a stage that may hold a stand-in)" if source.lower() in tainted else None
    if kind == "cache" and "from" not in opts:
        return None  # an empty cache directory, not the context
    src = opts.get("source", "/")
    return "(the build context)" if _may_hold(src, escape, context) else None


def _copies_a_stand_in(rest: str, escape: str, context: Path) -> bool:
    """Whether the sources of a ``COPY`` from the context (everything after its flags) could
    include a file that has a stand-in; yes whenever it cannot be told (variables, wildcards,
    quoting, escapes)."""
    text = rest.strip()
    if text.startswith("["):
        import json

        try:
            words = json.loads(text)
        except (ValueError, RecursionError):
            return True
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            return True
    else:
        words = text.split()
    # A heredoc word is a file made from the Dockerfile; every other word is a path.
    sources = [w for w in words[:-1] if not w.startswith("<<")]
    return any(_may_hold(s, escape, context) for s in sources)


#: Entries :func:`_may_hold` looks at below one source before it answers yes.
_MAX_WALK: Final = 100_000


def _may_hold(source: str, escape: str, context: Path) -> bool:
    """Whether the context path ``source`` could be, or hold, a file that gets a stand-in (a
    regular file of at least :data:`MIN_SIZE` bytes); yes when it cannot be told."""
    if any(c in source for c in "$'\"\\`\0") or escape in source or _GLOB.search(source):
        return True
    try:
        parts = [p for p in PurePosixPath("/" + source.replace("/./", "/")).parts[1:] if p != "."]
        if ".." in parts:
            return True
        here = context
        st = os.lstat(context)
        for part in parts:
            here = here / part
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                return False  # nothing there to copy (BuildKit says so)
            if stat.S_ISLNK(st.st_mode):
                return True  # COPY follows it: another path, not worked out
        if not stat.S_ISDIR(st.st_mode):
            return stat.S_ISREG(st.st_mode) and st.st_size >= MIN_SIZE
        seen = 0
        for top, dirs, names in os.walk(here):
            seen += len(dirs) + len(names)
            if seen > _MAX_WALK:
                return True
            for name in names:
                try:
                    st = os.lstat(os.path.join(top, name))
                except OSError:
                    return True
                if stat.S_ISREG(st.st_mode) and st.st_size >= MIN_SIZE:
                    return True
        return False
    except (OSError, ValueError, UnicodeError):
        return True


# --- the base images' ONBUILD triggers ---------------------------------------------------------


#: Seconds all registry requests for the bases' configs may take together (before the build;
#: past it the build runs without stand-ins, as it would without this check).
REGISTRY_TIMEOUT: Final = 30.0
#: At most this many manifests in one base's index (one with more is not read).
MAX_BASE_PLATFORMS: Final = 64
#: Bytes of indexes, manifests and configs all the bases of one build may have together (each
#: one is capped too: a registry's manifest at 4 MiB, a config at 1 MiB).
MAX_BASE_BYTES: Final = 16 << 20
#: Seconds past the deadline that a registry read is waited for (its own deadline error).
_GRACE: Final = 0.5
#: Docker Hub's registry API, the key of its entry in a docker config.json, and its token
#: service (where BuildKit sends those credentials).
_DOCKER_HUB: Final = "registry-1.docker.io"
_DOCKER_HUB_AUTH: Final = "https://index.docker.io/v1/"
_DOCKER_HUB_REALM: Final = "auth.docker.io"
#: What reading a base's configs may raise: the registry client's errors (refusals, limits,
#: the deadline), broken, ambiguous or deeply nested JSON, a shape not expected.
_UNREADABLE: Final = (
    Error, OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError,
)  # fmt: skip


class BaseConfigs:
    """What stand-ins need of each base's config — every platform's ``OnBuild`` triggers and
    ``User`` —, read once per build where it can be read before the build: from an OCI-layout
    build context, or from the registry of an image pinned by ``@sha256:`` (in the ``FROM``
    line or a ``docker-image://`` build context) with modelseal's registry client. The digest
    ties what BuildKit resolves to what is read here, so each document is read only as the
    sha256 digest naming it (an index entry named otherwise is not read) and as BuildKit's Go
    decoder reads it (:func:`_go_json`); every entry of an index is read whatever its
    annotations say (``unknown/unknown`` ones, BuildKit's attestations, count for triggers;
    ``FROM --platform=unknown/unknown`` builds on them). Bounded: :data:`MAX_BASE_PLATFORMS`
    entries per index, :data:`MAX_BASE_BYTES` of documents and :data:`REGISTRY_TIMEOUT` for all
    the bases together (name resolution and connecting included), plain HTTP only to a loopback
    registry, and only the credentials BuildKit itself sends that registry (the docker
    config's entry for it). A base named by a tag is not read (what BuildKit resolves later
    may be another image). None: cannot be read (no stand-ins), :meth:`why` says why."""

    def __init__(self, contexts: Mapping[str, str], *, timeout: float = REGISTRY_TIMEOUT) -> None:
        self._contexts = contexts
        self._timeout = timeout
        self._deadline: float | None = None
        self._budget = [MAX_BASE_BYTES]
        self._known: dict[tuple[str, str], tuple[list[dict[str, Any]] | None, str]] = {}

    def __call__(self, base: BaseRef) -> list[dict[str, Any]] | None:
        """Per platform image of ``base``: ``{"onbuild": bool, "user": str | None, "unknown":
        bool}`` (:func:`_image_configs`); None: they cannot be read before the build
        (:meth:`why`)."""
        return self._read(base)[0]

    def why(self, base: BaseRef) -> str:
        """Why the configs of ``base`` cannot be read ("" when they can)."""
        return self._read(base)[1]

    def _read(self, base: BaseRef) -> tuple[list[dict[str, Any]] | None, str]:
        key = (base.kind, base.ref)
        if key not in self._known:
            self._known[key] = self._fetch(base)
        return self._known[key]

    def _fetch(self, base: BaseRef) -> tuple[list[dict[str, Any]] | None, str]:
        as_layout = "supply it as an OCI layout with --build-context NAME=oci-layout://DIR@sha256:…"
        if base.kind == "context":
            value = self._contexts.get(base.ref, "")
            if value.startswith("oci-layout://") and "@" in value:
                try:
                    return _layout_configs(value, self._budget), ""
                except _UNREADABLE as e:
                    return None, f"is an OCI layout whose configs cannot be read ({_first(e)})"
            image = value.removeprefix("docker-image://")
            if image != value and registry_ref(image) is not None:
                return self._registry(image)
            return None, (
                "comes from a build context that is neither an OCI layout nor a registry image "
                f"pinned by digest ({as_layout})"
            )
        if base.kind == "digest":
            return self._registry(base.from_line.image)
        return None, (
            "comes from a registry and is not pinned by digest: what BuildKit resolves later "
            f"may be another image (pin it with @sha256:…, or {as_layout})"
        )

    def _registry(self, image: str) -> tuple[list[dict[str, Any]] | None, str]:
        if self._deadline is None:
            self._deadline = time.monotonic() + self._timeout
        left = self._deadline - time.monotonic()
        out_of_time = (
            f"comes from a registry, and the {self._timeout:g} s for reading the bases' configs "
            "ran out"
        )
        if left <= 0:
            return None, out_of_time
        # In a thread joined with the time left (and a moment for the client's own deadline
        # error to arrive first): the registry client's watchdog starts with the connection, so
        # a slow DNS answer or many addresses that drop packets would hold the build longer. A
        # read still running then is left to end on its own (a daemon thread; what it finds is
        # not used).
        box: list[Any] = []

        def read() -> None:
            try:
                box.append(registry_configs(image, left, self._budget))
            except BaseException as e:  # handed to the caller's thread below
                box.append(e)

        reader = threading.Thread(target=read, name="base-configs", daemon=True)
        reader.start()
        reader.join(max(0.0, left) + _GRACE)
        if not box:
            self._deadline = time.monotonic()  # every later base: out of time too
            return None, out_of_time
        if isinstance(box[0], _UNREADABLE):
            return None, f"comes from a registry that did not give its configs ({_first(box[0])})"
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0], ""


def _first(e: BaseException) -> str:
    """The first line of ``e``'s message (200 characters at most), or its type, escaped: it may
    quote a registry."""
    from modelseal.untrusted import untrusted

    return untrusted((str(e).splitlines() or [type(e).__name__])[0][:200], markup=False)


def registry_ref(image: str) -> tuple[str, str, str] | None:
    """``(registry host, repository, digest)`` of an image reference pinned by digest, as
    Docker resolves it (no registry host: Docker Hub, whose API is ``registry-1.docker.io``, a
    single name under ``library/``); None if it is not one."""
    from modelseal.imagebuild.bases import _REFERENCE, _familiar

    familiar = _familiar(image)
    if familiar is None or "@" not in image:
        return None
    first, sep, rest = familiar.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost"):
        host, remainder = first, rest
    else:
        host, remainder = "docker.io", familiar
    m = _REFERENCE.match(f"{host}/{remainder}")
    if m is None or not m["digest"] or not DIGEST_RE.fullmatch(m["digest"]):
        return None
    path = m["path"]
    if host == "docker.io":
        host = _DOCKER_HUB
        path = path if "/" in path else f"library/{path}"
    return host, path, m["digest"]


def registry_configs(
    image: str, timeout: float = REGISTRY_TIMEOUT, budget: list[int] | None = None
) -> list[dict[str, Any]]:
    """What :class:`BaseConfigs` reads of ``image`` (pinned by digest), from its registry; an
    error when it cannot be read or is not what it should be. ``budget``: bytes of documents
    left to read (lowered by what is read)."""
    from modelseal.publish.publisher import registry_token_hosts
    from modelseal.publish.registry import RegistryClient
    from modelseal.publish.registry_auth import Credentials

    ref = registry_ref(image)
    if ref is None:
        raise ValueError(f"{image!r} is not an image reference pinned by digest")
    host, repository, digest = ref
    # Only what BuildKit itself sends this registry to pull the base (the docker config's entry
    # for it), never modelseal's publish credentials or GitHub's token: the FROM line may come
    # from a pull request and name any host.
    hub = host == _DOCKER_HUB
    auth = Credentials.from_docker_config(_DOCKER_HUB_AUTH if hub else host)
    token_hosts = (*registry_token_hosts(), *((_DOCKER_HUB_REALM,) if hub else ()))
    client = RegistryClient(host, repository, auth=auth, token_hosts=token_hosts)
    client.set_deadline(timeout, "reading the base image's configs")
    return _image_configs(
        digest,
        lambda d: client.get_manifest(d)[1],
        lambda d: client.get_blob(d, kind="config"),
        [MAX_BASE_BYTES] if budget is None else budget,
    )


def _image_configs(
    top: str, manifest: Callable[[str], bytes], blob: Callable[[str], bytes], budget: list[int]
) -> list[dict[str, Any]]:
    """Per platform image of the index or manifest ``top``: of its config whether it has
    ``OnBuild`` triggers and its ``User`` (None: not a string of at most 256 characters), and
    whether its platform is ``unknown/unknown``. ``manifest`` and ``blob`` fetch a document by digest (bounded); each one is checked
    against that digest here too, and read as Go reads it."""

    def read(fetch: Callable[[str], bytes], digest: Any, what: str) -> dict[str, Any]:
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise ValueError(f"{what} {str(digest)[:80]!r} is not named by a sha256 digest")
        data = fetch(digest)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{what} {digest} is not what its digest names")
        budget[0] -= len(data)
        if budget[0] < 0:
            raise ValueError(
                f"the bases' indexes, manifests and configs are over {MAX_BASE_BYTES >> 20} MiB"
            )
        doc = _go_json(data, f"{what} {digest}")
        if "manifests" in doc and "config" in doc:
            raise ValueError(f"{what} {digest} is both an index and a manifest")
        return doc

    top_doc = read(manifest, top, "the manifest")
    images: list[tuple[dict[str, Any], bool]] = []
    if "manifests" in top_doc:
        children = top_doc["manifests"]
        if not isinstance(children, list) or not 0 < len(children) <= MAX_BASE_PLATFORMS:
            raise ValueError(f"the index {top} lists no manifest or too many")
        seen: set[tuple[str, bool]] = set()
        for child in children:
            if not isinstance(child, dict):
                raise ValueError(f"the index {top} has an entry that is not an object")
            platform = child.get("platform") or {}
            if not isinstance(platform, dict):
                raise ValueError(f"the index {top} has a platform that is not an object")
            # BuildKit's attestations are unknown/unknown: no default platform matches them,
            # but ``FROM --platform=unknown/unknown`` does, so their triggers count too.
            unknown = platform.get("os") == "unknown" and platform.get("architecture") == "unknown"
            digest = child.get("digest")
            if (digest, unknown) in seen:
                continue
            seen.add((str(digest), unknown))
            doc = read(manifest, digest, "the manifest")
            if "manifests" in doc:
                raise ValueError(f"the index {top} names another index")
            images.append((doc, unknown))
    else:
        images.append((top_doc, False))
    found: list[dict[str, Any]] = []
    for doc, unknown in images:
        desc = doc.get("config")
        if not isinstance(desc, dict):
            raise ValueError("a manifest of the base names no config")
        config = read(blob, desc.get("digest"), "the config")
        inner = config.get("config") or {}
        if not isinstance(inner, dict):
            raise ValueError(f"the config {desc.get('digest')} is not an image config")
        # What stand-ins need of it, no more (an index may name up to 64 configs).
        user = inner.get("user")
        user = "" if user is None else user if isinstance(user, str) and len(user) <= 256 else None
        found.append({"onbuild": bool(inner.get("onbuild")), "user": user, "unknown": unknown})
    if not found:
        raise ValueError(f"the index {top} names no image a build could use")
    return found


def _go_json(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as Go's ``encoding/json`` fills BuildKit's structs: object keys matched without
    regard to case (here folded: ``"OnBuild"``, ``"onbuild"`` and ``"ONBUILD"`` are ``onbuild``).
    Go lets the last of two such keys win; two keys one fold apart (or the same key twice) make
    the document ambiguous here — an error, so what is read cannot differ from what BuildKit
    reads. Not a JSON object at the top: an error too."""

    def folded(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            fold = key.casefold()
            if fold in out:
                raise ValueError(f"{what} has the key {key[:40]!r} twice (as Go reads keys)")
            out[fold] = value
        return out

    doc = json.loads(data, object_pairs_hook=folded)
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not a JSON object")
    return doc


def base_blocker(
    bases: Sequence[BaseRef], contexts: Mapping[str, str], configs: BaseConfigs | None = None
) -> str | None:
    """Why a base image could run a trigger that sees a stand-in, or None: a base whose config
    (for any platform) has ``OnBuild`` triggers — they run right after its ``FROM``, in our
    build, with our context — or one whose configs cannot be read before the build
    (:class:`BaseConfigs`)."""
    configs = configs or BaseConfigs(contexts)
    for b in bases:
        image = (
            b.from_line.image if len(b.from_line.image) <= 160 else b.from_line.image[:160] + "…"
        )
        where = f"the base {image!r} (line {b.from_line.line})"
        if b.kind in ("scratch", "stage"):
            continue
        if b.kind == "context" and "://" not in contexts.get(b.ref, ""):
            continue  # a local directory as the root filesystem: no config, no triggers
        found = configs(b)
        if found is None:
            return f"{where} {configs.why(b)}: its ONBUILD triggers cannot be read before the build"
        if any(c["onbuild"] for c in found):  # unknown/unknown images too (see _image_configs)
            return f"{where} has ONBUILD triggers"
    return None


def base_users(
    bases: Sequence[BaseRef], contexts: Mapping[str, str], configs: BaseConfigs | None = None
) -> dict[int, str | None]:
    """Per stage (index), the user its base image's config names: ``""`` for ``scratch`` and a
    local directory; the configs' ``User`` for an OCI-layout build context or a registry image
    pinned by digest (None when its platforms differ or they cannot be read); None for anything
    else (a stage: :func:`blocker` follows it)."""
    configs = configs or BaseConfigs(contexts)
    out: dict[int, str | None] = {}
    for i, b in enumerate(bases):
        if b.kind == "scratch" or (b.kind == "context" and "://" not in contexts.get(b.ref, "")):
            out[i] = ""
        elif b.kind in ("context", "digest"):
            found = configs(b)
            # An unknown/unknown image (BuildKit's attestation) is built on only when the FROM
            # line names a platform (``--platform=unknown/unknown``).
            if found and b.from_line.platform is None:
                found = [c for c in found if not c["unknown"]] or found
            users = {c["user"] for c in found or []}
            out[i] = users.pop() if found and len(users) == 1 and None not in users else None
        else:
            out[i] = None
    return out


def _layout_configs(value: str, budget: list[int]) -> list[dict[str, Any]]:
    """What :class:`BaseConfigs` reads of the OCI-layout context ``value``
    (``oci-layout://DIR@sha256:…``); an error when it cannot be read."""
    from modelseal.oci import OciLayout

    path, _, digest = value.removeprefix("oci-layout://").rpartition("@")
    layout = OciLayout(Path(path))
    return _image_configs(digest, layout.read_small, layout.read_small, budget)
