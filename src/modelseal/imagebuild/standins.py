"""Model stand-ins: BuildKit copies a 128-byte stand-in for each big locked model file, and the
layout finalizer writes the real bytes into the layer.

A plain build moves a 2 GiB model through BuildKit five times — read and sent as context,
written into the context snapshot, copied by ``COPY`` into a new snapshot, tarred into the
content store, written out again by the OCI exporter — and that, not the compression, is most of
what is left of a model image's build time once the layers are compressed once
(:mod:`modelseal.imagebuild.finalize`). None of it needs the bytes: ``COPY`` copies a file
verbatim, whatever it holds.

So, when nothing in the build can *look* at a model file (:func:`blocker`), the normalized
context holds, in place of each model file that ``models.lock`` pins (at least
:data:`MIN_SIZE`, below :data:`MAX_SIZE`), a stand-in: :data:`SIZE` bytes naming this run (a
random nonce) and the file. BuildKit builds with the stand-ins; the finalizer, which streams
every layer the build added anyway, meets each stand-in as a regular file of :data:`SIZE` bytes,
and writes the tar header again with the real size and then the real file's bytes, read from the
build context once, hashed on the way and compared with the SHA-256 the lock pins (a file that
changed since it was locked, or while it was read, stops the build). A stand-in of another run
(a build cache brought from elsewhere) stops the build too; a stand-in never reaches the image.

Why the result is the image a build of the real files gives, byte for byte: ``COPY`` (also
``--from`` another stage, ``--chmod``, ``--chown``, ``--link``, ``--parents``, ``--exclude``)
moves a file's bytes without reading them, so a layer holding a stand-in holds the real file at
the same path with the same metadata; the tar header differs only in its size field (below
:data:`MAX_SIZE` an octal number in the ustar header, as Go's tar writer puts it, its checksum
recomputed) and the sub-second part of the mtime that the finalizer clamps either way. What
*would* see the difference is ruled out beforehand (:func:`blocker`): a ``RUN`` that runs where
a stand-in could be (after a ``COPY`` whose sources could hold one, in that stage or a stage
built on it, or with the context or such a stage mounted), ``ADD`` (it unpacks archives),
``ONBUILD``, and another Dockerfile frontend (``# syntax=``, ``BUILDKIT_SYNTAX``). The tests
build the same context with and without stand-ins and compare the digests.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final

from modelseal.errors import GateError
from modelseal.imagebuild.bases import BaseRef
from modelseal.imagebuild.dockerfile import Dockerfile, _split_flags

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
    """One file of the build context that BuildKit gets as a stand-in."""

    #: Its path in the build context (``/``-separated, relative).
    rel: str
    #: The file in the build context (read by the finalizer).
    source: Path


@dataclass
class StandIns:
    """The stand-ins of one run (:meth:`add` while the context is normalized), and what the
    finalizer put in their place."""

    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    files: list[StandIn] = field(default_factory=list)
    #: Every file the finalizer wrote in place of a stand-in: (context path, size).
    replaced: list[tuple[str, int]] = field(default_factory=list)

    def add(self, rel: str, source: Path) -> bytes | None:
        """The stand-in to write for the context file ``rel`` (at ``source``), or None to copy it
        (not a regular file of :data:`MIN_SIZE`..:data:`MAX_SIZE` bytes, or the root
        ``.dockerignore``, which buildx reads itself)."""
        if rel == ".dockerignore":
            return None
        try:
            st = os.lstat(source)
        except OSError:
            return None  # the copy says why
        if not stat.S_ISREG(st.st_mode) or not MIN_SIZE <= st.st_size <= MAX_SIZE:
            return None
        index = len(self.files)
        self.files.append(StandIn(rel, source))
        text = b"%s%s:%08x\n" % (_MAGIC, self.nonce.encode(), index)
        return text.ljust(SIZE, b"#")

    def lookup(self, data: bytes, where: str) -> StandIn | None:
        """The file whose stand-in ``data`` (a regular file's whole content) is; None when it is
        no stand-in. One that names another run, or no file of this run, is a GateError."""
        if len(data) != SIZE or not data.startswith(_MAGIC):
            return None
        m = re.fullmatch(rb"([0-9a-f]{32}):([0-9a-f]{8})\n#*", data[len(_MAGIC) :])
        if m is None or m.group(1).decode() != self.nonce:
            raise GateError(
                f"{where}: a file holds a modelseal stand-in that this run did not make (a build "
                "cache or an image from another run?); what it stands for cannot be known, so "
                "the image is refused.",
                hint="Build without that cache (--no-cache, or another cache-from).",
            )
        index = int(m.group(2), 16)
        if index >= len(self.files):
            raise GateError(
                f"{where}: a modelseal stand-in names file {index}, which this run has not."
            )
        return self.files[index]

    @contextlib.contextmanager
    def open(self, item: StandIn, where: str) -> Iterator[tuple[int, Iterator[bytes]]]:
        """The real file's size and bytes (as chunks; noted in :attr:`replaced` at their end),
        read as the file is now — what BuildKit would have read. A file that is gone, is no
        longer a regular file, has grown past :data:`MAX_SIZE` or shrinks while it is read is
        a GateError naming it."""
        try:
            fd = os.open(
                item.source,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            )
        except OSError as e:
            raise GateError(
                f"{where}: cannot read {item.rel} of the build context: {e.strerror or e}."
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIZE:
                raise GateError(
                    f"{where}: {item.rel} of the build context is no longer a regular file of at "
                    f"most {MAX_SIZE} bytes."
                )
            yield st.st_size, self._chunks(fd, item, st.st_size, where)
        finally:
            os.close(fd)

    def _chunks(self, fd: int, item: StandIn, size: int, where: str) -> Iterator[bytes]:
        left = size
        while left:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                raise GateError(
                    f"{where}: {item.rel} of the build context shrank while it was read."
                )
            left -= len(chunk)
            yield chunk
        self.replaced.append((item.rel, size))


# --- which builds may use them -----------------------------------------------------------------


def blocker(df: Dockerfile, context: Path, build_args: Mapping[str, str]) -> str | None:
    """Why this build cannot use stand-ins (something in it could read a file that would get
    one), or None. ``context`` is the build context as the user gave it: what a ``COPY`` or a
    bind mount could bring is worked out from it (a superset of what is sent)."""
    if df.syntax is not None:
        return f"{df.name} names another Dockerfile frontend (# syntax={df.syntax})"
    if "BUILDKIT_SYNTAX" in build_args:
        return "the build argument BUILDKIT_SYNTAX names another Dockerfile frontend"
    tainted: set[str] = set()  # stages (by index and by name) that may hold a stand-in
    stage = -1
    holds = False
    for ins in df.instructions:
        kw = ins.keyword
        where = f"{df.name}:{ins.start_line}"
        if kw == "FROM":
            if stage >= 0 and holds:
                tainted.add(str(stage))
                if df.froms[stage].stage:
                    tainted.add(str(df.froms[stage].stage))
            stage += 1
            holds = df.froms[stage].image.lower() in tainted if stage < len(df.froms) else True
            continue
        if stage < 0:
            continue  # global ARGs
        if kw == "ONBUILD":
            return f"{where}: ONBUILD"
        if kw == "ADD":
            return f"{where}: ADD (it unpacks archives)"
        flags, rest = _split_flags(ins.args)
        if kw == "COPY":
            source = _flag(flags, "from")
            if source is None:
                holds = holds or _copies_a_stand_in(rest, context)
            elif "$" in source or source.lower() in tainted:
                holds = True
        elif kw == "RUN":
            if holds:
                return f"{where}: RUN where a COPY before it may have brought a file that gets a stand-in"
            for mount in (v for f in flags if (v := _value(f, "mount")) is not None):
                why = _mount_blocker(mount, tainted, context)
                if why:
                    return f"{where}: RUN --mount={mount} {why}"
    return None


def _flag(flags: list[str], name: str) -> str | None:
    values = [v for f in flags if (v := _value(f, name)) is not None]
    return values[-1] if values else None


def _value(flag: str, name: str) -> str | None:
    key, eq, value = flag.removeprefix("--").partition("=")
    return value if key.lower() == name and eq else None


def _mount_blocker(mount: str, tainted: set[str], context: Path) -> str | None:
    opts: dict[str, str] = {}
    for part in mount.split(","):
        key, _, value = part.partition("=")
        opts[key.strip().lower()] = value.strip()
    if "$" in mount:
        return "(a variable in it)"
    kind = opts.get("type", "bind")
    if kind not in ("bind", "cache"):
        return None  # tmpfs, secret, ssh: nothing of the context or a stage
    source = opts.get("from")
    if source is not None:
        return "(a stage that may hold a stand-in)" if source.lower() in tainted else None
    if kind == "cache":
        return None  # an empty cache directory, not the context
    src = opts.get("source", opts.get("src", "/"))
    return "(the build context)" if _may_hold(src, context) else None


def _copies_a_stand_in(rest: str, context: Path) -> bool:
    """Whether the sources of a ``COPY`` (everything after its flags) could include a file that
    has a stand-in; yes whenever it cannot be told (variables, wildcards, odd quoting)."""
    text = rest.strip()
    if text.startswith("<<"):
        return False  # a heredoc only
    if text.startswith("["):
        import json

        try:
            words = json.loads(text)
        except ValueError:
            return True
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            return True
    else:
        words = text.split()
    sources = [w for w in words[:-1] if not w.startswith("<<")]
    return any(_may_hold(s, context) for s in sources)


#: Entries :func:`_may_hold` looks at below one source before it answers yes.
_MAX_WALK: Final = 100_000


def _may_hold(source: str, context: Path) -> bool:
    """Whether the context path ``source`` could be, or hold, a file that gets a stand-in (a
    regular file of at least :data:`MIN_SIZE` bytes); yes when it cannot be told."""
    if "$" in source or _GLOB.search(source) or "'" in source or '"' in source:
        return True
    parts = [p for p in PurePosixPath("/" + source.replace("/./", "/")).parts[1:] if p != "."]
    if ".." in parts:
        return True
    here = context
    st = os.lstat(context)
    for part in parts:
        here = here / part
        try:
            st = os.lstat(here)
        except OSError:
            return False  # nothing there to copy (BuildKit says so)
        if stat.S_ISLNK(st.st_mode):
            return True  # COPY follows it: another path, not worked out
    if not stat.S_ISDIR(st.st_mode):
        return stat.S_ISREG(st.st_mode) and st.st_size >= MIN_SIZE
    seen = 0
    for top, _dirs, names in os.walk(here):
        for name in names:
            seen += 1
            if seen > _MAX_WALK:
                return True
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size >= MIN_SIZE:
                return True
    return False


# --- the base images' ONBUILD triggers ---------------------------------------------------------


def base_blocker(
    bases: Sequence[BaseRef],
    contexts: Mapping[str, str],
    inspect: Callable[[str], list[str] | None],
) -> str | None:
    """Why a base image could run a trigger that sees a stand-in, or None: a base whose config
    has ``OnBuild`` triggers (they run right after its ``FROM``, in our build, with our context),
    or one whose config cannot be read before the build. ``inspect(ref)`` reads an image's
    triggers from the engine's image store (None: not there)."""
    for b in bases:
        where = f"the base {b.from_line.image!r} (line {b.from_line.line})"
        if b.kind in ("scratch", "stage"):
            continue
        if b.kind == "context":
            value = contexts.get(b.ref, "")
            if value.startswith("oci-layout://") and "@" in value:
                triggers = _layout_triggers(value)
            elif "://" not in value:
                continue  # a local directory as the root filesystem: no config, no triggers
            else:
                triggers = None
        else:
            triggers = inspect(b.from_line.image)
        if triggers is None:
            return (
                f"{where}: its ONBUILD triggers cannot be read before the build (pull it into "
                "the engine first, or supply it as an OCI layout with --build-context)"
            )
        if triggers:
            return f"{where} has ONBUILD triggers"
    return None


def _layout_triggers(value: str) -> list[str] | None:
    from modelseal.oci import OciLayout

    path, _, digest = value.removeprefix("oci-layout://").rpartition("@")
    try:
        layout = OciLayout(Path(path))
        found: list[str] = []
        for desc in layout.platform_manifests(digest):
            manifest = layout.manifest(desc.digest)
            config = layout.read_json(str((manifest.get("config") or {}).get("digest")))
            inner = config.get("config") if isinstance(config, dict) else None
            onbuild = inner.get("OnBuild") if isinstance(inner, dict) else None
            if onbuild:
                found += [str(t) for t in onbuild] if isinstance(onbuild, list) else ["?"]
        return found
    except (GateError, OSError, ValueError, AttributeError):
        return None
