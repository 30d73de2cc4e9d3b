"""From a signed SLSA provenance to a validated :class:`RebuildPlan`.

The provenance is verified first, against the expected signer, whatever it came in: a Sigstore
bundle file (``run --push`` writes ``OUT/bundles/provenance.sigstore.json``) or an image in a
registry (the SLSA provenance statements among its verified referrers and cosign ``.att``, by
:func:`modelseal.publish.verify_image.gather_signed`). Nothing is built from a statement that
is not signed by that signer.

The statement is signed but still bounded input: the build type must be modelseal's
(:data:`modelseal.publish.provenance.BUILD_TYPE`), ``externalParameters`` may hold only the
keys that build type documents, paths must be relative, stay inside the checkout and not
enter its ``.git`` directory, ``internalParameters.contextNormalization`` must be this
modelseal's (:data:`modelseal.imagebuild.context.NORMALIZATION_VERSION`), so must
``internalParameters.layoutFinalizer`` (:data:`modelseal.imagebuild.finalize.FINALIZER_VERSION`), and nothing recorded
may make buildx read the rebuilder's host or change how it builds: a ``url`` build context
must be what :func:`~modelseal.publish.build_environment.public_context_url` records for a
remote one (an https, http, git or ssh URL with a host name, no user info or query — buildx
reads an ``oci-layout://`` or an unknown scheme from its own disk), no ``BUILDKIT_*`` build
arg, platforms as the policy's ``build.platforms`` pattern.

Errors: :class:`NotSignedProvenance` (exit 2) for a target that is not a provenance signed by
the expected signer, or is malformed; :class:`CannotRebuild` (exit 3) for a valid provenance
from which no rebuild is possible here (no commit, a context outside the repository or in
``.git``, another normalization version, a build context on the builder's host or one that
would read this host, a ``BUILDKIT_*`` build arg).
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from modelseal.bounded import MIB, read_input
from modelseal.errors import ConfigError, GateError
from modelseal.oci import DIGEST_RE
from modelseal.policy.gitref import COMMIT_RE
from modelseal.policy.model import PLATFORM_PATTERN
from modelseal.publish.build_environment import public_context_url
from modelseal.publish.provenance import BUILD_TYPE, SLSA_PROVENANCE_V1, check_compression
from modelseal.publish.statements import statement_bytes
from modelseal.untrusted import untrusted

if TYPE_CHECKING:
    from modelseal.publish.publisher import ImageRef
    from modelseal.publish.registry import RegistryClient
    from modelseal.sign.verify import ExpectedSigner

#: Bytes of a provenance bundle file (a provenance is a few KiB; its bundle with a
#: certificate chain and a log entry, tens).
MAX_BUNDLE_BYTES = 4 * MIB
#: Named build contexts, build args, labels, annotations, platforms, models a plan may hold.
MAX_ENTRIES = 1000

#: ``externalParameters`` keys of :data:`BUILD_TYPE` (its docstring documents each).
KNOWN_EXTERNAL = frozenset(
    {
        "source", "workflow", "image", "dockerfile", "buildArgs", "buildContexts", "policy",
        "network", "compression", "platforms", "labels", "annotations", "tags",
    }
)  # fmt: skip
_SOURCE_KEYS = frozenset({"repository", "ref", "context", "dockerfile"})
_CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,255}\Z")


class NotSignedProvenance(ConfigError):
    """The target is not a SLSA provenance signed by the expected signer, or not a valid one
    (exit 2)."""


class CannotRebuild(GateError):
    """The provenance is valid and signed, but no rebuild can run from it here (exit 3)."""


@dataclass(frozen=True)
class BuildContextPin:
    """One named ``--build-context`` of the original build, as the provenance pins it."""

    name: str
    type: str
    """``oci-layout``, ``docker-image``, ``local``, ``host`` or ``url``."""
    digest: str | None = None
    ref: str | None = None
    path: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class ModelPin:
    """A model file the image was built with (a ``resolvedDependencies`` entry with ``size``
    and ``format``): its path in the models lock, SHA-256 (hex) and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RebuildPlan:
    """Everything a rebuild does, from a verified provenance statement."""

    image_name: str
    """The statement's subject name (``REGISTRY/REPOSITORY``)."""
    expected_digest: str
    """``sha256:<hex>``: the subject's digest, what the rebuild must give."""
    provenance_sha256: str
    """Hex SHA-256 of the statement's canonical bytes (:func:`statement_bytes`)."""
    builder_id: str
    commit: str
    context: str
    """The build context, a relative POSIX path inside the repository (``.``: its top)."""
    dockerfile: str
    """The Dockerfile, a relative POSIX path inside the repository."""
    source_date_epoch: int
    network: str
    """``none`` or ``default``."""
    compression: str = "gzip"
    """The layer compression recorded (``externalParameters.compression.type``; a provenance
    without it was built with gzip)."""
    compression_level: int | None = None
    force_compression: bool = False
    repository: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    build_contexts: tuple[BuildContextPin, ...] = ()
    platforms: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    models: tuple[ModelPin, ...] = ()
    recorded_builder: Mapping[str, str] = field(default_factory=dict)
    """The original build's builder and versions, for the report."""
    modelseal_version: str | None = None
    """The modelseal that built it (``runDetails.builder.version.modelseal``)."""

    def __post_init__(self) -> None:
        for name in ("build_args", "labels", "annotations", "recorded_builder"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True)
class SignedProvenance:
    """A provenance statement whose signature verified, and who signed it."""

    statement: Mapping[str, Any]
    signer: str
    source: str
    """``bundle FILE`` or ``image REF``."""


# --- the signed statement -----------------------------------------------------------------


def provenance_from_bundle(path: Path, expected: ExpectedSigner) -> SignedProvenance:
    """The SLSA provenance in the Sigstore bundle file ``path``, verified as ``expected``'s
    (a :class:`~modelseal.sign.verify.ExpectedSigner`)."""
    from modelseal.sign.interface import VerificationError
    from modelseal.sign.verify import verify_bundle

    name = untrusted(path, markup=False, limit=200)
    raw = read_input(path, what="provenance bundle", limit=MAX_BUNDLE_BYTES)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise NotSignedProvenance(f"{name} is not JSON, so not a signed provenance.") from None
    if isinstance(doc, dict) and str(doc.get("_type", "")).startswith("https://in-toto.io/"):
        raise NotSignedProvenance(
            f"{name} is an unsigned in-toto statement: nothing says who wrote it, so nothing "
            "is rebuilt from it.",
            hint="Give the signed bundle `modelseal run --push` wrote "
            "(OUT/bundles/provenance.sigstore.json), or the image reference.",
        )
    if not isinstance(doc, dict) or "verificationMaterial" not in doc:
        raise NotSignedProvenance(f"{name} is not a Sigstore bundle.")
    try:
        verified = verify_bundle(doc, payload=None, expected=expected)
    except VerificationError as e:
        raise NotSignedProvenance(
            f"{name} is not a provenance signed by the expected signer "
            f"({expected.describe()}): {untrusted(e.message, markup=False)}"
        ) from None
    statement = verified.statement
    if statement is None or statement.get("predicateType") != SLSA_PROVENANCE_V1:
        raise NotSignedProvenance(
            f"{name} is signed by the expected signer but holds no SLSA v1 provenance statement."
        )
    who = verified.identity or (f"key {verified.key_hint}" if verified.key_hint else "key")
    return SignedProvenance(statement, who, f"bundle {path}")


def provenance_from_image(
    client: RegistryClient, ref: ImageRef, expected: ExpectedSigner
) -> tuple[SignedProvenance, str, bytes, str]:
    """The SLSA provenance of the image ``text`` names, among its signed statements;
    returns it, the manifest digest, the manifest bytes and media type. Several provenances
    by the signer whose build definitions differ are refused."""
    from modelseal.publish.registry import sha256_digest
    from modelseal.publish.verify_image import gather_signed

    text = ref.name + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    ref_digest = ref.digest
    media, body, digest = client.get_manifest(ref_digest or ref.tag or "latest")
    if sha256_digest(body) != digest or (ref_digest and digest != ref_digest):
        raise NotSignedProvenance(
            f"{text}: the registry's manifest does not match {ref_digest or digest}."
        )
    found = gather_signed(client, digest, body, expected)
    provenances = found.statements.get(SLSA_PROVENANCE_V1, [])
    shown = untrusted(text, markup=False, limit=300)
    if not provenances:
        why = f" ({'; '.join(found.problems[:3])})" if found.problems else ""
        raise NotSignedProvenance(
            f"{shown}@{digest} has no SLSA provenance signed by the expected signer "
            f"({expected.describe()}){why}."
        )
    definitions = {
        statement_bytes(_mapping(p.get("predicate"), "predicate").get("buildDefinition") or {})
        for p in provenances
    }
    if len(definitions) > 1:
        raise NotSignedProvenance(
            f"{shown}@{digest} has {len(definitions)} SLSA provenances by the expected signer "
            "that describe different builds; not rebuilding from either."
        )
    # Who signed this statement (the image signature may be someone else's the signer flags
    # also match, e.g. another identity under --certificate-identity-regexp).
    signer = found.signer_of(provenances[0]) or expected.describe()
    return SignedProvenance(provenances[0], signer, f"image {text}"), digest, body, media


# --- the plan ------------------------------------------------------------------------------


def plan_from_statement(statement: Mapping[str, Any]) -> RebuildPlan:
    """Validate a verified provenance statement into a :class:`RebuildPlan`; see the module
    docstring for what is refused."""
    from modelseal.imagebuild.context import NORMALIZATION_VERSION
    from modelseal.imagebuild.finalize import FINALIZER_VERSION

    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise NotSignedProvenance("the provenance must have exactly one subject, the image.")
    subject = _mapping(subjects[0], "subject")
    image = _string(subject.get("name"), "subject.name")
    hex_digest = _string(
        _mapping(subject.get("digest"), "subject.digest").get("sha256"), "subject.digest.sha256"
    )
    expected_digest = "sha256:" + hex_digest
    if not DIGEST_RE.match(expected_digest):
        raise NotSignedProvenance(f"subject digest {hex_digest[:80]!r} is not SHA-256 hex.")
    predicate = _mapping(statement.get("predicate"), "predicate")
    definition = _mapping(predicate.get("buildDefinition"), "buildDefinition")
    build_type = definition.get("buildType")
    if build_type != BUILD_TYPE:
        raise NotSignedProvenance(
            f"buildType {untrusted(build_type, markup=False, limit=120)} is not modelseal's "
            f"({BUILD_TYPE}); modelseal rebuilds only what it built."
        )
    run = _mapping(predicate.get("runDetails") or {}, "runDetails")
    builder = _mapping(run.get("builder") or {}, "runDetails.builder")
    versions = _mapping(builder.get("version") or {}, "runDetails.builder.version")
    version = versions.get("modelseal")
    use = f"modelseal {version}" if isinstance(version, str) else "the modelseal that built it"
    external = _mapping(definition.get("externalParameters"), "externalParameters")
    unknown = sorted(str(k) for k in external if k not in KNOWN_EXTERNAL)
    if unknown:
        raise CannotRebuild(
            "the provenance has externalParameters this modelseal does not know: "
            + untrusted(", ".join(unknown), markup=False, limit=300)
            + f"; a rebuild that ignored them could not be faithful. Use {use}."
        )
    internal = _mapping(definition.get("internalParameters") or {}, "internalParameters")
    normalization = internal.get("contextNormalization")
    if normalization is None:
        raise CannotRebuild(
            "the provenance records no internalParameters.contextNormalization (written by a "
            f"modelseal before it was recorded), so this modelseal's normalization (version "
            f"{NORMALIZATION_VERSION}) may give other bytes. Use {use}."
        )
    if normalization != NORMALIZATION_VERSION:
        raise CannotRebuild(
            f"the image was built with context normalization "
            f"{untrusted(normalization, markup=False, limit=40)}, this modelseal normalizes with "
            f"version {NORMALIZATION_VERSION}: the context's bytes would differ. Use {use}."
        )
    finalizer = internal.get("layoutFinalizer")
    if finalizer != FINALIZER_VERSION:
        made = (
            "BuildKit's rewrite-timestamp (no internalParameters.layoutFinalizer: a modelseal "
            "before the layout finalizer)"
            if finalizer is None
            else f"layout finalizer {untrusted(finalizer, markup=False, limit=40)}"
        )
        raise CannotRebuild(
            f"the image's layers were finalized by {made}; this modelseal finalizes with version "
            f"{FINALIZER_VERSION}: the layers' bytes would differ. Use {use}."
        )
    epoch = internal.get("sourceDateEpoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise NotSignedProvenance("internalParameters.sourceDateEpoch is not a whole number.")
    source = _mapping(external.get("source") or {}, "externalParameters.source")
    extra = sorted(str(k) for k in source if k not in _SOURCE_KEYS)
    if extra:
        raise CannotRebuild(
            "externalParameters.source has keys this modelseal does not know: "
            + untrusted(", ".join(extra), markup=False, limit=200)
            + f". Use {use}."
        )
    commit = _commit(definition.get("resolvedDependencies"))
    if commit is None:
        raise CannotRebuild(
            "the provenance records no source commit (a build outside a git work tree): "
            "there is nothing to check out, so no rebuild is possible."
        )
    if "context" not in source:
        raise CannotRebuild(
            "the provenance records no source.context (the build context was outside the git "
            "repository): a rebuild cannot know which directory was built."
        )
    context = _inside_path(source["context"], "source.context")
    if "dockerfile" not in source:
        raise CannotRebuild(
            "the provenance records no source.dockerfile (the Dockerfile was outside the git "
            "repository): a rebuild cannot know which Dockerfile was used."
        )
    dockerfile = _inside_path(source["dockerfile"], "source.dockerfile")
    network = external.get("network", "none")
    if network not in ("none", "default"):
        raise NotSignedProvenance(
            f"externalParameters.network {untrusted(network, markup=False, limit=40)} is not "
            "none or default."
        )
    try:
        # Older provenance records none: those images were built with gzip.
        compression = check_compression(external.get("compression") or {"type": "gzip"})
    except ConfigError as e:
        raise NotSignedProvenance(
            "externalParameters.compression: " + untrusted(e.message, markup=False, limit=300)
        ) from None
    platforms = _strings(external.get("platforms") or [], "externalParameters.platforms")
    for platform in platforms:
        # The build section's own check (a model_copy with the plan's platforms skips it).
        if not re.match(PLATFORM_PATTERN, platform):
            raise NotSignedProvenance(
                f"externalParameters.platforms: {untrusted(platform, markup=False, limit=80)} "
                "is not a platform (os/arch[/variant])."
            )
    build_args = _string_map(external.get("buildArgs") or {}, "externalParameters.buildArgs")
    buildkit = sorted(k for k in build_args if k.upper().startswith("BUILDKIT_"))
    if buildkit:
        raise CannotRebuild(
            "externalParameters.buildArgs "
            + untrusted(", ".join(buildkit), markup=False, limit=200)
            + ": BUILDKIT_* build args are BuildKit's own switches, not the Dockerfile's (they "
            "can swap the frontend, BUILDKIT_SYNTAX, or change how the context is read, "
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR); a rebuild does not pass them on."
        )
    recorded = {
        k: str(v)
        for k, v in _mapping(internal.get("builder") or {}, "internalParameters.builder").items()
        if isinstance(v, str)
    } | {f"version.{k}": str(v) for k, v in versions.items() if isinstance(v, str)}
    return RebuildPlan(
        image_name=image,
        expected_digest=expected_digest,
        provenance_sha256=hashlib.sha256(statement_bytes(statement)).hexdigest(),
        builder_id=str(_mapping(builder, "runDetails.builder").get("id") or ""),
        commit=commit,
        context=context,
        dockerfile=dockerfile,
        source_date_epoch=epoch,
        network=str(network),
        compression=compression["type"],
        compression_level=compression.get("level"),
        force_compression=compression["force"],
        repository=source.get("repository") if isinstance(source.get("repository"), str) else None,
        build_args=build_args,
        build_contexts=_contexts(external.get("buildContexts") or {}),
        platforms=tuple(platforms),
        labels=_string_map(external.get("labels") or {}, "externalParameters.labels"),
        annotations=_string_map(
            external.get("annotations") or {}, "externalParameters.annotations"
        ),
        models=_models(definition.get("resolvedDependencies")),
        recorded_builder=recorded,
        modelseal_version=version if isinstance(version, str) else None,
    )


def _commit(deps: Any) -> str | None:
    for dep in deps if isinstance(deps, list) else []:
        digest = dep.get("digest") if isinstance(dep, Mapping) else None
        commit = digest.get("gitCommit") if isinstance(digest, Mapping) else None
        if commit is not None:
            if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit):
                raise NotSignedProvenance(
                    f"the source dependency's gitCommit {untrusted(commit, markup=False, limit=80)}"
                    " is not a git SHA."
                )
            return commit
    return None


def _models(deps: Any) -> tuple[ModelPin, ...]:
    out: list[ModelPin] = []
    for dep in deps if isinstance(deps, list) else []:
        if not isinstance(dep, Mapping):
            continue
        notes = dep.get("annotations")
        if not isinstance(notes, Mapping) or "size" not in notes or "format" not in notes:
            continue
        name, size = dep.get("name"), notes.get("size")
        sha = (
            dep.get("digest", {}).get("sha256") if isinstance(dep.get("digest"), Mapping) else None
        )
        if (
            not isinstance(name, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or not isinstance(sha, str)
            or not DIGEST_RE.match("sha256:" + sha)
        ):
            raise NotSignedProvenance(
                f"model dependency {untrusted(name, markup=False, limit=120)}: needs a name, a "
                "SHA-256 and a size."
            )
        out.append(ModelPin(_inside_path(name, f"model {name}"), sha, size))
        if len(out) > MAX_ENTRIES:
            raise NotSignedProvenance(f"the provenance names more than {MAX_ENTRIES} models.")
    return tuple(out)


def _contexts(raw: Any) -> tuple[BuildContextPin, ...]:
    contexts = _mapping(raw, "externalParameters.buildContexts")
    if len(contexts) > MAX_ENTRIES:
        raise NotSignedProvenance(f"more than {MAX_ENTRIES} build contexts.")
    out: list[BuildContextPin] = []
    for name, value in sorted(contexts.items()):
        where = f"buildContexts.{untrusted(name, markup=False, limit=80)}"
        if not isinstance(name, str) or not _CONTEXT_NAME.match(name):
            raise NotSignedProvenance(f"{where}: not a build context name.")
        entry = _mapping(value, where)
        kind = entry.get("type")
        if kind == "oci-layout":
            digest = entry.get("digest")
            if not isinstance(digest, str) or not DIGEST_RE.match(digest):
                raise NotSignedProvenance(f"{where}: an oci-layout context needs a sha256 digest.")
            out.append(BuildContextPin(name, kind, digest=digest))
        elif kind == "docker-image":
            ref = _string(entry.get("ref"), f"{where}.ref")
            digest = entry.get("digest")
            if digest is not None and (not isinstance(digest, str) or not DIGEST_RE.match(digest)):
                raise NotSignedProvenance(f"{where}: digest is not sha256:<hex>.")
            out.append(BuildContextPin(name, kind, ref=ref, digest=digest))
        elif kind in ("local", "host"):
            path = _string(entry.get("path"), f"{where}.path")
            if kind == "local":
                path = _inside_path(path, f"{where}.path")
            out.append(BuildContextPin(name, kind, path=path))
        elif kind == "url":
            uri = _string(entry.get("uri"), f"{where}.uri")
            out.append(BuildContextPin(name, kind, uri=_public_url(uri, where)))
        else:
            raise CannotRebuild(
                f"{where}: type {untrusted(kind, markup=False, limit=40)} is not one this "
                "modelseal knows."
            )
    return tuple(out)


#: Schemes of a ``url`` build context that :func:`public_context_url` records as URLs (what
#: else buildx takes, an ``oci-layout://`` or an unknown scheme — read as a local directory
#: relative to its working directory —, reads this host).
URL_SCHEMES = frozenset({"https", "http", "git", "ssh"})


def _public_url(uri: str, where: str) -> str:
    """``uri`` when it is what :func:`public_context_url` records for a remote context: an
    http(s), git or ssh URL with a host name, no user info and no query; refused otherwise
    (exit 3), since buildx would read anything else from the rebuilder's own disk."""
    shown = untrusted(uri, markup=False, limit=120)
    try:
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        parts, host = None, None
    if (
        parts is None
        or parts.scheme not in URL_SCHEMES
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in uri)
        or public_context_url(uri) != uri
    ):
        raise CannotRebuild(
            f"{where}: {shown} is not a remote build context modelseal records (an https, "
            "http, git or ssh URL with a host name, no user info or query); buildx would read "
            "it from this host (an oci-layout:// directory, or an unknown scheme as a local "
            "path), so it is not passed on."
        )
    return uri


def _inside_path(value: Any, what: str) -> str:
    """A relative POSIX path that stays inside the repository (no ``..``, not absolute) and
    not into git's own directory (no ``.git`` component: the checkout's objects and config are
    not build input)."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        raise NotSignedProvenance(
            f"{what}: {untrusted(value, markup=False, limit=120)} is not a path."
        )
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise CannotRebuild(
            f"{what} {untrusted(value, markup=False, limit=200)} is not a path inside the "
            "repository (absolute, or with ..)."
        )
    if any(part.lower() == ".git" for part in path.parts):
        raise CannotRebuild(
            f"{what} {untrusted(value, markup=False, limit=200)} is in the repository's .git "
            "directory, which is never build input."
        )
    return str(path)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise NotSignedProvenance(f"the provenance's {what} is not an object.")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise NotSignedProvenance(f"the provenance's {what} is not a non-empty string.")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_ENTRIES
        or not all(isinstance(v, str) for v in value)
    ):
        raise NotSignedProvenance(f"the provenance's {what} is not a list of strings.")
    return list(value)


def _string_map(value: Any, what: str) -> dict[str, str]:
    data = _mapping(value, what)
    if len(data) > MAX_ENTRIES or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise NotSignedProvenance(f"the provenance's {what} is not a map of strings.")
    return dict(data)
