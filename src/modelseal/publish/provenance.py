"""The SLSA v1 provenance Statement about a sealed image, and what it is built from.

Its subject, envelope and canonical bytes are those of every statement
(:mod:`~modelseal.publish.statements`); the builder id and invocation come from where the
build ran (:mod:`~modelseal.publish.build_environment`, which documents the builder ids).

Build type ``https://modelseal.dev/buildtypes/oci-image/v1``
-----------------------------------------------------------
A container image built by ``modelseal`` with ``docker buildx build`` (BuildKit, OCI
exporter, new layers exported uncompressed) from a source checkout, after verifying its models;
then modelseal's layout finalizer (:mod:`modelseal.imagebuild.finalize`, version
``internalParameters.layoutFinalizer``) clamps every tar header time of the layers the build
added to ``SOURCE_DATE_EPOCH`` (what BuildKit's ``rewrite-timestamp`` does) and compresses each
of them once with the layer compression recorded.

``externalParameters`` (user-controlled; verifiers should reject fields they do not know):

* ``source`` — ``{"repository": URL, "ref": "refs/…", "context": PATH, "dockerfile": PATH}``:
  the checkout that was built (any key may be absent: a local build without a remote or
  branch, or outside a git work tree); ``context`` and ``dockerfile`` are the build context
  directory and the Dockerfile as paths inside the repository, relative to the git top-level
  (POSIX, ``.`` for the top) — never host paths;
* ``workflow`` — GitHub Actions only: ``{"repository", "ref", "path"}`` of the workflow file
  that ran (as in GitHub's own workflow build type);
* ``image`` — the image name the result was published under (no tag, no digest);
* ``dockerfile`` — the Dockerfile as shown in the report (relative to the working directory,
  or absolute outside it); ``source.dockerfile`` is the one to rebuild from;
* ``buildArgs`` — ``{name: value}`` of every ``--build-arg`` (sorted; ``SOURCE_DATE_EPOCH``,
  which modelseal passes itself, is in ``internalParameters``);
* ``buildContexts`` — ``{name: {...}}`` of every ``--build-context`` (only when given), each
  pinned the way it was used: ``{"type": "oci-layout", "digest": "sha256:…"}`` (the manifest
  digest used from the layout; its directory was the builder's), ``{"type": "docker-image",
  "ref", "digest"?}``, ``{"type": "local", "path"}`` (a directory inside the repository,
  relative to its top), ``{"type": "host", "path"}`` (a directory outside it: not
  resolvable elsewhere), ``{"type": "url", "uri"}`` (a git or HTTP context);
* ``policy`` — ``{"path", "sha256"[, "ref"]}`` of the policy file the gates were judged by
  (``ref``: the git ref it was read from, with ``--policy-ref``);
* ``network`` — ``"none"`` or ``"default"``: the ``--network`` of the build's ``RUN`` steps
  (``build.allow_network``); absent in older provenance, which means ``"none"``;
* ``compression`` — ``{"type": "gzip"|"zstd"|"uncompressed", "level"?: int, "force": bool}``:
  how the OCI exporter compressed the layers (``build.compression``,
  ``build.compression_level``, ``build.force_compression``; ``level`` absent means
  BuildKit's default); part of the image's bytes, so a rebuild must use the same. Absent in
  older provenance, which means ``{"type": "gzip", "force": false}``;
* ``platforms`` — the platforms built (``["linux/amd64", "linux/arm64"]``), when more than
  one or when asked for;
* ``labels``, ``annotations`` — ``{key: value}`` given with ``--label`` / ``--annotation``
  (sorted; only when given);
* ``tags`` — the tags moved to the image (when any).

``internalParameters`` (platform-controlled): ``sourceDateEpoch`` (the SOURCE_DATE_EPOCH of
the build, integer seconds), ``contextNormalization`` (the version of the context
normalization rules, :data:`modelseal.imagebuild.context.NORMALIZATION_VERSION`: an integer
that changes whenever the normalization could give different bytes — internal because the
user does not choose it, modelseal's code does; a rebuild must still match it),
``layoutFinalizer`` (likewise the version of the layout finalizer; absent in provenance written
before it existed, whose layers BuildKit's ``rewrite-timestamp`` made), ``buildx``
and ``buildkit`` (versions, when
known), ``builder`` ``{"name", "driver", "engine"}`` when the engine's own BuildKit built (no
image to pin: its version is the engine's), and for GitHub Actions ``{"github": {"event_name", "repository_id",
"repository_owner_id", "runner_environment"}}`` (those that are set).

``resolvedDependencies``:

* the source: ``uri`` ``git+<repository>@<ref>``, ``digest`` ``{"gitCommit": <sha>}``;
* the policy file: ``name`` ``policy``, ``uri`` ``file:<path>``, ``digest`` ``{"sha256"}``;
* each base image: ``name`` = the reference as given, ``uri`` = a ``pkg:oci/…`` package URL
  for registry references (the reference itself for ``oci-layout://`` and other local
  ones), ``digest`` ``{"sha256"}`` of the manifest that was used; a ``FROM`` served by a
  named build context has ``annotations`` ``{"buildContext": TYPE}``, the ``pkg:oci`` URL of
  a ``docker-image`` context's image, and no ``uri`` for an ``oci-layout`` one;
* the BuildKit image, when the builder runs one (a ``docker-container`` builder): ``name``
  ``buildkit``, ``uri`` its ``pkg:oci`` URL, ``digest`` ``{"sha256"}`` of the pinned index,
  ``annotations`` ``{"builder", "driver", "version"}``;
* each model file: ``name`` = its path in the models lock, ``uri`` = its source URI from
  ``models.lock`` (``file:<path>`` when it has none), ``digest`` ``{"sha256"}``,
  ``annotations`` ``{"size", "format"[, "revision"]}``.

``runDetails.builder.version``: ``{"modelseal", "buildx", "buildkit"}`` versions (those
known). ``runDetails.byproducts``: the SBOM, the report and other files written next to the
image, each with ``name``, ``digest`` ``{"sha256"}`` and ``mediaType``; with
``publish.sign_models`` also ``model.sig``, the OpenSSF model-signing signature over the locked
model files (mediaType the Sigstore bundle's, ``annotations`` ``{"predicateType", "modelDir",
"modelDigest", "files", "signer"[, "identity", "issuer"]}``).

Rebuilding by hand
------------------
1. Clone ``source.repository`` and check out the ``gitCommit`` of the source dependency.
2. Make each ``buildContexts`` entry available: an ``oci-layout`` one as an OCI layout holding
   the manifest of that digest (``--build-context NAME=oci-layout://DIR@sha256:…``), a
   ``docker-image`` one by its ``ref``, a ``local`` one from the checkout.
3. Use the same modelseal (``runDetails.builder.version.modelseal``) — its context
   normalization must be ``internalParameters.contextNormalization`` — and a builder with the
   same BuildKit (the ``buildkit`` dependency's digest, or ``internalParameters.builder``).
4. Run ``modelseal build <source.context> --file <source.dockerfile> --policy <policy.path>
   --source-date-epoch <sourceDateEpoch>`` from the checkout's top, with a ``--build-arg`` per
   ``buildArgs``, a ``--build-context`` per ``buildContexts``, ``--platform`` from
   ``platforms``, and ``--label`` / ``--annotation`` per ``labels`` / ``annotations``. The
   models (``resolvedDependencies`` with ``size`` / ``format``) must be in the checkout with
   those digests. The built image's digest must be the statement's subject.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modelseal import __version__
from modelseal.errors import ConfigError
from modelseal.oci import DIGEST_RE
from modelseal.policy.gitref import COMMIT_RE
from modelseal.publish.build_environment import detect_build_environment
from modelseal.publish.statements import image_statement

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://modelseal.dev/buildtypes/oci-image/v1"
"""This module's build type (parameters documented in the module docstring)."""

# \Z, not $: "$" also matches before a trailing newline.
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\Z")


def rfc3339(moment: float | datetime) -> str:
    """A UTC RFC 3339 timestamp with ``Z`` and whole seconds, from epoch seconds or a
    datetime (naive datetimes are taken as UTC)."""
    if isinstance(moment, datetime):
        when = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        when = datetime.fromtimestamp(moment, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256_hex(value: str, what: str) -> str:
    """Accept ``sha256:<hex>`` or bare hex; return the hex."""
    hex_part = value.removeprefix("sha256:")
    if not DIGEST_RE.match("sha256:" + hex_part):
        raise ConfigError(f"{what}: {value!r} is not a SHA-256 digest (64 lower-case hex).")
    return hex_part


@dataclass(frozen=True)
class BaseImage:
    """A base image the build used: the reference as given and the manifest digest used."""

    ref: str
    digest: str

    def __post_init__(self) -> None:
        _sha256_hex(self.digest, f"base image {self.ref}")


@dataclass(frozen=True)
class ModelFile:
    """A model file baked into the image, as pinned in ``models.lock``."""

    path: str
    sha256: str
    size: int
    format: str = "unknown"
    source_uri: str | None = None
    source_revision: str | None = None

    def __post_init__(self) -> None:
        _sha256_hex(self.sha256, f"model {self.path}")
        if self.size < 0:
            raise ConfigError(f"model {self.path}: negative size.")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelFile:
        """A ``models.json`` record (what the models gate wrote: path, size, SHA-256, format
        and the source from ``models.lock``)."""
        source = record.get("source") or {}
        return cls(
            path=str(record["path"]),
            sha256=str(record["sha256"]),
            size=int(record["size"]),
            format=str(record.get("format") or "unknown"),
            source_uri=source.get("uri"),
            source_revision=source.get("revision"),
        )


@dataclass(frozen=True)
class Byproduct:
    """A file the run wrote besides the image (SBOM, report …)."""

    name: str
    digest: str
    media_type: str
    uri: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    """Extra facts, e.g. what a model signature covers (``publish.sign_models``)."""

    def __post_init__(self) -> None:
        _sha256_hex(self.digest, f"byproduct {self.name}")


@dataclass(frozen=True)
class ProvenanceInput:
    """Everything the provenance of one built image states (see the module docstring)."""

    image_name: str
    """Repository the image is published under, without tag or digest."""
    manifest_digest: str
    """``sha256:<hex>`` of the image manifest (the statement's subject)."""
    builder_id: str
    invocation_id: str
    started_on: str
    """UTC RFC 3339 with ``Z`` (:func:`rfc3339`)."""
    finished_on: str
    source_date_epoch: int
    dockerfile: str
    repository: str | None = None
    """Source repository URL (``https://github.com/OWNER/REPO``)."""
    ref: str | None = None
    """Git ref built (``refs/heads/main``)."""
    commit: str | None = None
    """Git commit SHA (40 or 64 hex)."""
    workflow_ref: str | None = None
    """GitHub: ``OWNER/REPO/.github/workflows/F.yml@refs/…`` (GITHUB_WORKFLOW_REF)."""
    workflow_path: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    policy_path: str | None = None
    policy_sha256: str | None = None
    policy_ref: str | None = None
    platforms: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    buildx_version: str | None = None
    buildkit_version: str | None = None
    builder: Mapping[str, str] = field(default_factory=dict)
    """The buildx builder: ``name``, ``driver``, ``image`` (its BuildKit image pinned by
    digest, when it runs one), ``engine`` (the engine's version)."""
    modelseal_version: str = __version__
    base_images: tuple[BaseImage, ...] = ()
    models: tuple[ModelFile, ...] = ()
    byproducts: tuple[Byproduct, ...] = ()
    internal_parameters: Mapping[str, Any] = field(default_factory=dict)
    context_path: str | None = None
    """The build context's path inside the repository (relative to the git top-level, ``.``
    for the top)."""
    dockerfile_path: str | None = None
    """The Dockerfile's path inside the repository (relative to the git top-level)."""
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    """``--build-context`` name → how it is pinned, as the build gate records it
    (``build_context.NAME`` facts: ``oci-layout sha256:…``, ``local PATH``, ``host PATH`` or
    the URL given)."""
    normalization_version: int | None = None
    """:data:`modelseal.imagebuild.context.NORMALIZATION_VERSION` of the build."""
    finalizer_version: int | None = None
    """:data:`modelseal.imagebuild.finalize.FINALIZER_VERSION` of the build: how modelseal
    clamped the new layers' timestamps and compressed them after BuildKit exported them."""
    network: str | None = None
    """The build's ``--network`` (``none`` or ``default``, the build gate's ``network``
    fact); None: not stated."""
    compression: Mapping[str, Any] | None = None
    """The layer compression: ``{"type", "level"?, "force"}`` (:func:`compression_parameter`
    of the build gate's ``compression*`` facts); None: not stated (older runs: gzip)."""

    def __post_init__(self) -> None:
        if not self.image_name or "@" in self.image_name:
            raise ConfigError(f"image name {self.image_name!r} must be a repository, no digest.")
        if not DIGEST_RE.match(self.manifest_digest):
            raise ConfigError(f"manifest digest {self.manifest_digest!r} is not sha256:<hex>.")
        for name in ("started_on", "finished_on"):
            if not _TIMESTAMP.match(getattr(self, name)):
                raise ConfigError(f"{name} {getattr(self, name)!r} is not UTC RFC 3339 (…Z).")
        if self.source_date_epoch < 0:
            raise ConfigError("SOURCE_DATE_EPOCH must not be negative.")
        if self.commit is not None and not COMMIT_RE.fullmatch(self.commit):
            raise ConfigError(f"commit {self.commit!r} is not a git SHA (40 or 64 hex).")
        if self.policy_sha256 is not None:
            _sha256_hex(self.policy_sha256, "policy")
        if not self.builder_id or not self.invocation_id:
            raise ConfigError("builder id and invocation id are required.")
        for path in (self.context_path, self.dockerfile_path):
            if path is not None and (
                not path or path.startswith("/") or path == ".." or path.startswith("../")
            ):
                raise ConfigError(f"{path!r} is not a path inside the repository.")
        if self.network not in (None, "none", "default"):
            raise ConfigError(f"network {self.network!r} is not none or default.")
        if self.compression is not None:
            object.__setattr__(self, "compression", check_compression(self.compression))
        for context, recorded in self.build_contexts.items():
            _build_context(context, recorded)  # refuses what it cannot state
        for name in ("build_args", "labels", "annotations", "build_contexts"):
            value = dict(sorted(getattr(self, name).items()))
            object.__setattr__(self, name, MappingProxyType(value))
        object.__setattr__(
            self, "internal_parameters", MappingProxyType(dict(self.internal_parameters))
        )
        object.__setattr__(self, "builder", MappingProxyType(dict(self.builder)))
        for name in ("base_images", "models", "byproducts", "platforms", "tags"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


#: Layer compressions a build may record (``build.compression``) and their highest level.
COMPRESSION_LEVELS: Mapping[str, int | None] = MappingProxyType(
    {"gzip": 9, "zstd": 22, "uncompressed": None}
)


def compression_parameter(facts: Mapping[str, str]) -> dict[str, Any] | None:
    """``externalParameters.compression`` from the build gate's ``compression``,
    ``compression.level`` and ``compression.force`` facts; None when the gate recorded none."""
    kind = facts.get("compression")
    if kind is None:
        return None
    out: dict[str, Any] = {"type": kind}
    level = facts.get("compression.level")
    if level is not None:
        if not level.isdigit():
            raise ConfigError(f"compression level {level!r} is not a whole number.")
        out["level"] = int(level)
    out["force"] = facts.get("compression.force") == "true"
    return check_compression(out)


def check_compression(value: Any) -> dict[str, Any]:
    """A recorded compression as it must be: a known ``type``, an integer ``level`` in its
    range (none for uncompressed), a boolean ``force``, nothing else. :class:`ConfigError`
    otherwise; returns a plain copy."""
    if not isinstance(value, Mapping):
        raise ConfigError("compression is not an object.")
    extra = sorted(str(k) for k in value if k not in ("type", "level", "force"))
    kind, level, force = value.get("type"), value.get("level"), value.get("force", False)
    if extra:
        raise ConfigError(f"compression has unknown keys: {', '.join(extra)[:200]}.")
    if not isinstance(kind, str) or kind not in COMPRESSION_LEVELS:
        raise ConfigError(f"compression type {str(kind)[:40]!r} is not gzip, zstd or uncompressed.")
    top = COMPRESSION_LEVELS[kind]
    if level is not None and (
        not isinstance(level, int)
        or isinstance(level, bool)
        or top is None
        or not 0 <= level <= top
    ):
        raise ConfigError(f"compression level {str(level)[:40]!r} is not valid for {kind}.")
    if not isinstance(force, bool):
        raise ConfigError("compression force is not true or false.")
    out: dict[str, Any] = {"type": kind}
    if level is not None:
        out["level"] = level
    out["force"] = force
    return out


def oci_purl(ref: str, digest: str) -> str | None:
    """A ``pkg:oci`` package URL for a registry image reference, or None for a local one
    (``oci-layout://``, ``docker-archive:`` …). Docker Hub short names are expanded
    (``python`` → ``docker.io/library/python``)."""
    ref = ref.removeprefix("docker-image://")
    if "://" in ref or ref.startswith(("oci-layout:", "docker-archive:", "oci:", "/", ".")):
        return None
    name = ref.split("@", 1)[0]
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) == 1 or not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = ["docker.io", *parts]
    if parts[0] == "docker.io" and len(parts) == 2:
        parts.insert(1, "library")
    repository_url = "/".join(parts)
    qualifiers = {"repository_url": repository_url}
    if tag:
        qualifiers["tag"] = tag
    version = urllib.parse.quote(f"sha256:{_sha256_hex(digest, ref)}", safe="")
    query = "&".join(
        f"{k}={urllib.parse.quote(v, safe='/:')}" for k, v in sorted(qualifiers.items())
    )
    return f"pkg:oci/{urllib.parse.quote(parts[-1].lower())}@{version}?{query}"


def _build_context(name: str, recorded: str) -> dict[str, str]:
    """A named build context as ``externalParameters.buildContexts`` states it."""
    kind, _, rest = recorded.partition(" ")
    if kind == "oci-layout":
        return {
            "type": "oci-layout",
            "digest": "sha256:" + _sha256_hex(rest, f"build context {name}"),
        }
    if kind == "local" and rest:
        return {"type": "local", "path": rest}
    if kind == "host" and rest:
        return {"type": "host", "path": rest}
    if recorded.startswith("docker-image://"):
        ref = recorded.removeprefix("docker-image://")
        out = {"type": "docker-image", "ref": ref}
        digest = ref.rpartition("@")[2]
        if DIGEST_RE.match(digest):
            out["digest"] = digest
        return out
    if "://" in recorded and " " not in recorded:
        return {"type": "url", "uri": recorded}
    raise ConfigError(f"build context {name}: cannot state {recorded!r} in the provenance.")


def _file_uri(path: str) -> str:
    # a relative path as a URI reference: percent-encoded so spaces etc. stay a valid URI
    return "file:" + urllib.parse.quote(path, safe="/")


def _given(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """The pairs whose value is set (a field left out reads as before it existed)."""
    return {k: v for k, v in pairs if v}


def _external_parameters(p: ProvenanceInput) -> dict[str, Any]:
    params: dict[str, Any] = {}
    source = _given(
        ("repository", p.repository),
        ("ref", p.ref),
        ("context", p.context_path),
        ("dockerfile", p.dockerfile_path),
    )
    if source:
        params["source"] = source
    if p.workflow_ref:
        params["workflow"] = _given(
            ("repository", p.repository), ("ref", p.ref), ("path", p.workflow_path)
        )
    params["image"] = p.image_name
    params["dockerfile"] = p.dockerfile
    params["buildArgs"] = dict(p.build_args)
    if p.build_contexts:
        params["buildContexts"] = {k: _build_context(k, v) for k, v in p.build_contexts.items()}
    if p.policy_path or p.policy_sha256:
        params["policy"] = _given(
            ("path", p.policy_path), ("sha256", p.policy_sha256), ("ref", p.policy_ref)
        )
    if p.network:
        params["network"] = p.network
    if p.compression is not None:
        params["compression"] = dict(p.compression)
    # Only when set, so the provenance of a run that used none of them reads as before.
    params |= _given(
        ("platforms", list(p.platforms)),
        ("labels", dict(p.labels)),
        ("annotations", dict(p.annotations)),
        ("tags", list(p.tags)),
    )
    return params


def _internal_parameters(p: ProvenanceInput) -> dict[str, Any]:
    # What the builder fixed rather than the user chose: the timestamp every file and the image
    # carry, and the BuildKit front end that produced the bytes.
    params: dict[str, Any] = {"sourceDateEpoch": p.source_date_epoch}
    if p.normalization_version is not None:
        # Fixed by modelseal's code, not chosen by the user, yet part of what a rebuild must do.
        params["contextNormalization"] = p.normalization_version
    if p.finalizer_version is not None:
        # Likewise: the layer bytes after BuildKit's export are this code's.
        params["layoutFinalizer"] = p.finalizer_version
    if p.buildx_version:
        params["buildx"] = p.buildx_version
    if p.buildkit_version:
        params["buildkit"] = p.buildkit_version
    if p.builder and not _builder_image(p):
        # The engine's own BuildKit: nothing to pin, its version is the engine's.
        params["builder"] = dict(sorted(p.builder.items()))
    params.update(p.internal_parameters)
    return params


def _dependencies(p: ProvenanceInput) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    if p.repository or p.commit:
        source: dict[str, Any] = {}
        if p.repository:
            uri = f"git+{p.repository}"
            source["uri"] = f"{uri}@{p.ref}" if p.ref else uri
        if p.commit:
            source["digest"] = {"gitCommit": p.commit}
        deps.append(source)
    if p.policy_sha256:
        policy: dict[str, Any] = {"name": "policy"}
        if p.policy_path:
            policy["uri"] = _file_uri(p.policy_path)
        policy["digest"] = {"sha256": _sha256_hex(p.policy_sha256, "policy")}
        deps.append(policy)
    for base in p.base_images:
        dep: dict[str, Any] = {"name": base.ref}
        named = p.build_contexts.get(base.ref)
        if named is None:
            dep["uri"] = oci_purl(base.ref, base.digest) or base.ref
        elif named.startswith("docker-image://"):
            served = named.removeprefix("docker-image://")
            dep["uri"] = oci_purl(served, base.digest) or served
        # A FROM served by an OCI layout context: the name is the context's, not a registry
        # image's; the digest says what it was (no host path as its URI).
        dep["digest"] = {"sha256": _sha256_hex(base.digest, base.ref)}
        if named is not None:
            dep["annotations"] = {"buildContext": _build_context(base.ref, named)["type"]}
        deps.append(dep)
    image = _builder_image(p)
    if image:
        builder: dict[str, Any] = {
            "name": "buildkit",
            "uri": oci_purl(image, image.rpartition("@")[2]) or image,
            "digest": {"sha256": _sha256_hex(image.rpartition("@")[2], image)},
            "annotations": _given(
                ("builder", p.builder.get("name")),
                ("driver", p.builder.get("driver")),
                ("version", p.buildkit_version),
            ),
        }
        deps.append(builder)
    for model in sorted(p.models, key=lambda m: m.path):
        annotations: dict[str, Any] = {"size": model.size, "format": model.format}
        if model.source_revision:
            annotations["revision"] = model.source_revision
        deps.append(
            {
                "name": model.path,
                "uri": model.source_uri or _file_uri(model.path),
                "digest": {"sha256": _sha256_hex(model.sha256, model.path)},
                "annotations": annotations,
            }
        )
    return deps


def _builder_image(p: ProvenanceInput) -> str | None:
    image = p.builder.get("image")
    return image if image and DIGEST_RE.match(image.rpartition("@")[2]) else None


def provenance_statement(p: ProvenanceInput) -> dict[str, Any]:
    """The SLSA v1 provenance Statement for the image described by ``p``."""
    definition: dict[str, Any] = {
        "buildType": BUILD_TYPE,
        "externalParameters": _external_parameters(p),
    }
    definition["internalParameters"] = _internal_parameters(p)
    definition["resolvedDependencies"] = _dependencies(p)
    versions = _given(
        ("modelseal", p.modelseal_version),
        ("buildx", p.buildx_version),
        ("buildkit", p.buildkit_version),
    )
    run: dict[str, Any] = {
        "builder": {"id": p.builder_id, "version": versions},
        "metadata": {
            "invocationId": p.invocation_id,
            "startedOn": p.started_on,
            "finishedOn": p.finished_on,
        },
    }
    if p.byproducts:
        run["byproducts"] = [
            {
                "name": b.name,
                **({"uri": b.uri} if b.uri else {}),
                "digest": {"sha256": _sha256_hex(b.digest, b.name)},
                "mediaType": b.media_type,
                **({"annotations": dict(b.annotations)} if b.annotations else {}),
            }
            for b in p.byproducts
        ]
    predicate = {"buildDefinition": definition, "runDetails": run}
    return image_statement(p.image_name, p.manifest_digest, SLSA_PROVENANCE_V1, predicate)


def provenance_input_from_env(
    image_name: str,
    manifest_digest: str,
    *,
    dockerfile: str,
    source_date_epoch: int,
    started_on: str,
    finished_on: str,
    build_args: Mapping[str, str] | None = None,
    policy_path: str | None = None,
    policy_sha256: str | None = None,
    policy_ref: str | None = None,
    platforms: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    tags: Sequence[str] = (),
    buildx_version: str | None = None,
    buildkit_version: str | None = None,
    builder: Mapping[str, str] | None = None,
    base_images: Sequence[BaseImage] = (),
    models: Sequence[ModelFile] = (),
    byproducts: Sequence[Byproduct] = (),
    env: Mapping[str, str] | None = None,
    repo_dir: Path | None = None,
    invocation_id: str | None = None,
    context_path: str | None = None,
    dockerfile_path: str | None = None,
    build_contexts: Mapping[str, str] | None = None,
    normalization_version: int | None = None,
    network: str | None = None,
    compression: Mapping[str, Any] | None = None,
    finalizer_version: int | None = None,
) -> ProvenanceInput:
    """A :class:`ProvenanceInput` whose source, workflow, builder and invocation come from
    :func:`detect_build_environment`; ``invocation_id`` overrides the detected one."""
    where = detect_build_environment(env, repo_dir)
    return ProvenanceInput(
        image_name=image_name,
        manifest_digest=manifest_digest,
        builder_id=where.builder_id,
        invocation_id=invocation_id or where.invocation_id,
        started_on=started_on,
        finished_on=finished_on,
        source_date_epoch=source_date_epoch,
        dockerfile=dockerfile,
        repository=where.repository,
        ref=where.ref,
        commit=where.commit,
        workflow_ref=where.workflow_ref,
        workflow_path=where.workflow_path,
        build_args=dict(build_args or {}),
        policy_path=policy_path,
        policy_sha256=policy_sha256,
        policy_ref=policy_ref,
        platforms=tuple(platforms),
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
        tags=tuple(tags),
        buildx_version=buildx_version,
        buildkit_version=buildkit_version,
        builder=dict(builder or {}),
        base_images=tuple(base_images),
        models=tuple(models),
        byproducts=tuple(byproducts),
        internal_parameters=where.internal_parameters,
        context_path=context_path,
        dockerfile_path=dockerfile_path,
        build_contexts=dict(build_contexts or {}),
        normalization_version=normalization_version,
        network=network,
        compression=compression,
        finalizer_version=finalizer_version,
    )
