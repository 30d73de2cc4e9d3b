"""How each stage's base image is supplied, classified the way BuildKit resolves a ``FROM``: an
earlier stage, ``scratch``, a named build context, a digest-pinned image or an unpinned one (what
the build gate's pinning rule judges)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from modelseal.imagebuild.dockerfile import Dockerfile, FromLine
from modelseal.oci import DIGEST_RE

__all__ = ["BaseKind", "BaseRef", "classify_bases", "final_root"]

BaseKind = Literal["scratch", "stage", "context", "digest", "unpinned"]


@dataclass(frozen=True)
class BaseRef:
    """How one stage's base is supplied.

    ``kind``: ``scratch``; ``stage`` (an earlier stage, ``ref`` its name); ``context`` (a
    named build context replaces it, ``ref`` is that context's key as given); ``digest``
    (pinned ``@sha256:``, ``ref`` the image); ``unpinned`` (a tag or nothing, ``ref`` the
    image).
    """

    from_line: FromLine
    kind: BaseKind
    ref: str


_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?\Z",
    re.ASCII,
)


def _familiar(name: str) -> str | None:
    """The key BuildKit looks a named context up by: ``reference.FamiliarString`` of the
    normalized name, ``:latest`` dropped. ``None`` if ``name`` is not a valid reference."""
    first, sep, remainder = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = "docker.io", name
    else:
        domain = first
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    if _REFERENCE.match(f"{domain}/{remainder}") is None:
        return None
    if domain == "docker.io":
        path_part = remainder.split("@")[0].split(":")[0]
        if path_part.startswith("library/") and "/" not in path_part[len("library/") :]:
            remainder = remainder[len("library/") :]
        familiar = remainder
    else:
        familiar = f"{domain}/{remainder}"
    return familiar.removesuffix(":latest")


def _context_key(name: str) -> str:
    familiar = _familiar(name)
    return familiar if familiar is not None else name


def classify_bases(df: Dockerfile, named_contexts: Mapping[str, str]) -> tuple[BaseRef, ...]:
    """Classify each stage's base the way BuildKit resolves it, in this order: a named
    context called like the stage (``AS name``) replaces the whole stage; an earlier stage;
    ``scratch``; a named context called like the image (names compared after Docker's
    normalization, so ``python:latest``, ``python`` and ``docker.io/library/python`` are one);
    a ``@sha256:`` digest; anything else is unpinned."""
    contexts: dict[str, str] = {}
    for key in named_contexts:
        contexts.setdefault(_context_key(key), key)
    stages: set[str] = set()
    out: list[BaseRef] = []
    for fl in df.froms:
        out.append(_classify(fl, stages, contexts))
        if fl.stage is not None:
            stages.add(fl.stage)
    return tuple(out)


def _classify(fl: FromLine, stages: set[str], contexts: Mapping[str, str]) -> BaseRef:
    reserved = ("scratch", "context")
    if fl.stage is not None and fl.stage not in reserved:
        key = contexts.get(_context_key(fl.stage))
        if key is not None:
            return BaseRef(fl, "context", key)
    if fl.image in stages:
        return BaseRef(fl, "stage", fl.image)
    if fl.image == "scratch":
        return BaseRef(fl, "scratch", "scratch")
    familiar = _familiar(fl.image)
    if familiar is not None and fl.image.lower() not in reserved:
        key = contexts.get(familiar)
        if key is not None:
            return BaseRef(fl, "context", key)
    _, at, digest = fl.image.rpartition("@")
    if at and DIGEST_RE.fullmatch(digest):
        return BaseRef(fl, "digest", fl.image)
    return BaseRef(fl, "unpinned", fl.image)


def final_root(bases: tuple[BaseRef, ...]) -> BaseRef | None:
    """The base image under the last stage (what the built image's first layers are): its
    ``FROM``, followed through earlier stages to an image, ``scratch`` or a build context."""
    if not bases:
        return None
    by_name = {b.from_line.stage: b for b in bases if b.from_line.stage}
    ref = bases[-1]
    for _ in range(len(bases)):
        if ref.kind != "stage":
            return ref
        parent = by_name.get(ref.ref)
        if parent is None or parent is ref:
            return None
        ref = parent
    return None
