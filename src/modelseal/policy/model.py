"""The policy file's data model: one frozen, strict pydantic model per section.

Every field carries a ``description`` (it becomes the policy reference documentation) and a
fail-closed default: a policy file that only says ``version: 1`` turns every check on.

Adding a section (``models``, ``sbom``, ``vulnerabilities``, ``sign``, ``publish``, ...) means
writing one ``<Name>Policy`` model below and adding one field to :class:`Policy`; the loader,
the JSON Schema and the Markdown reference pick it up from the model.

Why this is one module, over the ~600-line rule of thumb: it is the single data model of one
file format, and nothing else. The sections share the patterns, their plain-English messages and
the field types defined at the top (the command line checks its flags with the same ones);
:class:`Policy` ties the sections together; the schema and the reference are generated from the
whole. One file is where a reviewer sees every key a policy can hold and its fail-closed default
side by side; split by section, each piece would be a few dozen lines of declarations that only
make sense next to the others, and the shared patterns a module of their own for no second user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

POLICY_VERSION: Final = 1
"""The only policy file version this modelseal reads."""

MAX_AGE_DAYS: Final = 3650
"""Upper bound of the policy's day counts (ten years): larger ones overflow date arithmetic."""

MAX_REBUILDERS: Final = 16
"""Rebuilders ``verify.require_rebuild_by`` (and ``--require-rebuild-by``) may list."""

PLATFORM_PATTERN: Final = r"^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_]+)?$"
"""An OCI platform, ``os/arch`` or ``os/arch/variant`` (``linux/amd64``, ``linux/arm/v7``)."""

PATTERN_MESSAGES: Final[dict[str, str]] = {
    PLATFORM_PATTERN: (
        'expected a platform "os/arch" or "os/arch/variant" in lower case, '
        'e.g. "linux/amd64" or "linux/arm/v7"'
    ),
}
"""Plain-English error messages for the regular expressions used in the models, by pattern."""


def _refuse_on(
    check: Callable[[], object],
    error: type[Exception],
    code: str,
    template: str,
    context: dict[str, object] | None = None,
) -> None:
    """Run a validator's check; its ``error`` becomes a pydantic error ``code`` whose message,
    ``template``, may name the check's complaint as ``{why}`` (chain cut: the user's error is the
    whole story)."""
    try:
        check()
    except error as e:
        raise PydanticCustomError(code, template, {**(context or {}), "why": str(e)}) from None


GLOBAL_PATTERN: Final = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.([A-Za-z_][A-Za-z0-9_]*|\*\*|\*)$"
)
"""A pickle global allowed by the policy: ``module.name``, ``module.*`` or ``package.**``."""

IMAGE_PATH_PATTERN: Final = r"^/.*$"
"""An absolute path inside the image."""

PATTERN_MESSAGES[GLOBAL_PATTERN] = (
    'expected a pickle global "module.name", "module.*" or "package.**", '
    'e.g. "torch._utils._rebuild_tensor_v2"'
)
PATTERN_MESSAGES[IMAGE_PATH_PATTERN] = (
    'expected an absolute path inside the image, e.g. "/app/model"'
)

BUILDKIT_IMAGE_PATTERN: Final = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}$"
)
"""A BuildKit image pinned by digest: ``[REGISTRY/]REPOSITORY[:TAG]@sha256:<64 hex>``."""

BUILDER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A buildx builder name."""

PATTERN_MESSAGES[BUILDKIT_IMAGE_PATTERN] = (
    "expected a BuildKit image pinned by digest, [REGISTRY/]REPOSITORY[:TAG]@sha256:<64 hex>, "
    'e.g. "mirror.example/moby/buildkit:vX.Y.Z@sha256:…" (a tag alone is refused)'
)
OCI_REPOSITORY_PATTERN: Final = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
"""An OCI repository reference: ``REGISTRY/REPOSITORY[:TAG][@sha256:…]``."""
MAX_DB_REPOSITORIES: Final = 8
"""Trivy DB mirrors tried at most, in order."""
PATTERN_MESSAGES[OCI_REPOSITORY_PATTERN] = (
    'expected an OCI repository REGISTRY/REPOSITORY[:TAG], e.g. "mirror.example/aquasec/trivy-db:2"'
)
PATTERN_MESSAGES[BUILDER_PATTERN] = 'expected a buildx builder name, e.g. "ci-builder"'
REBUILD_ON_PATTERN: Final = r"^(same|fresh|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$"
"""Where the rebuild check builds: ``same``, ``fresh`` or a buildx builder name."""
PATTERN_MESSAGES[REBUILD_ON_PATTERN] = (
    'expected same, fresh or a buildx builder name, e.g. "ci-builder"'
)

CACHE_TYPES: Final = ("gha", "registry", "local")
"""Cache backends passed through to buildx (``--cache-from`` / ``--cache-to``)."""
_CACHE_REQUIRED: Final = {
    ("registry", "from"): "ref", ("registry", "to"): "ref",
    ("local", "from"): "src", ("local", "to"): "dest",
}  # fmt: skip
#: The attributes modelseal passes to buildx, per cache type and direction (buildx's cache
#: backend documentation); anything else is refused. Left out on purpose: gha's url, url_v2
#: and repository (buildx fills ``token`` from ACTIONS_RUNTIME_TOKEN whenever the spec has
#: none, even when the spec names its own server: a url= would send the runner's token to any
#: host) and every credential key (token, ghtoken: argv is visible in process listings;
#: buildx reads them from the environment).
_CACHE_COMMON_TO: Final = (
    "mode", "ignore-error", "oci-mediatypes", "image-manifest", "compression",
    "compression-level", "force-compression",
)  # fmt: skip
CACHE_KEYS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("gha", "from"): frozenset({"type", "scope", "timeout", "version"}),
    ("gha", "to"): frozenset({"type", "scope", "timeout", "version", "mode", "ignore-error"}),
    ("registry", "from"): frozenset({"type", "ref"}),
    ("registry", "to"): frozenset({"type", "ref", *_CACHE_COMMON_TO}),
    ("local", "from"): frozenset({"type", "src", "digest", "tag"}),
    ("local", "to"): frozenset({"type", "dest", "tag", *_CACHE_COMMON_TO}),
}
"""Cache attributes modelseal passes to buildx, by (type, direction)."""
_CACHE_REFUSED_WHY: Final = {
    "token": "would put a credential on the command line; buildx reads it from the environment",
    "ghtoken": "would put a credential on the command line; buildx reads it from the environment",
    "url": "would send the runner's ACTIONS_RUNTIME_TOKEN to that server; buildx finds the "
    "cache service in the environment",
    "url_v2": "would send the runner's ACTIONS_RUNTIME_TOKEN to that server; buildx finds the "
    "cache service in the environment",
}


def cache_spec_problem(spec: str, direction: Literal["from", "to"]) -> str | None:
    """Why ``spec`` is not a cache source (``from``) or destination (``to``) modelseal passes to
    buildx, or None when it is one: comma-separated ``key=value`` attributes, ``type=`` one of
    :data:`CACHE_TYPES`, the type's location key present, only the attributes of
    :data:`CACHE_KEYS` (no credentials, no server URL), no quoting."""
    if not spec or any(c in spec for c in "\"'\n\r\t ") or not spec.isprintable():
        return "expected type=gha|registry|local,KEY=VALUE,… without spaces or quotes"
    attrs: dict[str, str] = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        if not eq or not re.fullmatch(r"[a-z][a-z0-9_-]*", key) or not value:
            return f"{part!r} is not KEY=VALUE"
        if key in attrs:
            return f"{key} is given twice"
        if key in _CACHE_REFUSED_WHY:
            return f"{key}= {_CACHE_REFUSED_WHY[key]}"
        attrs[key] = value
    kind = attrs.get("type")
    if kind not in CACHE_TYPES:
        return f"type must be one of {', '.join(CACHE_TYPES)} (got {kind!r})"
    need = _CACHE_REQUIRED.get((kind, direction))
    if need and need not in attrs:
        return f"type={kind} needs {need}="
    allowed = CACHE_KEYS[(kind, direction)]
    unknown = sorted(set(attrs) - allowed)
    if unknown:
        return (
            f"{unknown[0]}= is not an attribute modelseal passes for type={kind} in "
            f"cache-{direction} (allowed: {', '.join(sorted(allowed - {'type'}))})"
        )
    return None


Platform = Annotated[str, StringConstraints(pattern=PLATFORM_PATTERN)]
PickleGlobal = Annotated[str, StringConstraints(pattern=GLOBAL_PATTERN)]
ImagePath = Annotated[str, StringConstraints(pattern=IMAGE_PATH_PATTERN)]
ModelFormat = Literal[
    "safetensors", "gguf", "onnx", "keras", "keras-h5", "tf-savedmodel", "numpy", "numpy-zip",
    "pickle", "pytorch-zip", "torch-legacy", "torchscript", "joblib",
]  # fmt: skip


class BuildPolicy(BaseModel):
    """The build gate: builds the image with BuildKit, reproducibly and with pinned inputs."""

    # Written out in every model (not shared through a variable) so that the pydantic mypy
    # plugin sees frozen=True.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(
        default=True,
        description="Run the build gate. When false the gate is reported as SKIPPED.",
    )
    rebuild_check: Annotated[
        Literal["always", "publish", "never"],
        # true and false, from policies written before the modes, are read too (see below).
        WithJsonSchema({"anyOf": [{"enum": ["always", "publish", "never"]}, {"type": "boolean"}]}),
    ] = Field(
        default="always",
        description=(
            "When to build the image a second time from a cold cache (no cache, no cache-from); "
            "the two image manifest digests must be identical, otherwise the build is not "
            "reproducible and the gate fails. always: every run; publish: only runs that "
            "publish (--push), so pull-request runs build once; never. Default always: a "
            "change that breaks reproducibility fails on the pull request that makes it, not "
            "at the release that cannot publish. true and false (older policies) mean always "
            "and never."
        ),
    )
    rebuild_on: Annotated[str, StringConstraints(pattern=REBUILD_ON_PATTERN)] = Field(
        default="same",
        description=(
            "Where the rebuild check builds the second time. same: the first build's engine or "
            "builder (with no cache). fresh: a second private dockerd that modelseal starts "
            "with an empty data root (what a third party would have), removed afterwards; it "
            "needs root and dockerd (the demo, tests, self-hosted runners). A builder name: an "
            "existing buildx builder elsewhere (a remote BuildKit, a kubernetes builder, "
            "another engine's docker context), which must export OCI layouts and must not be "
            "the first build's builder. A second engine or builder that cannot start or be "
            "probed makes the build gate ERRORED. The --rebuild-on flag and the Action's "
            "rebuild-on input override it; without a rebuild (rebuild_check) it is not used."
        ),
    )
    require_pinned_base: bool = Field(
        default=True,
        description=(
            "Every FROM must be pinned by an @sha256 digest or come from a local OCI-layout "
            "build context; a base image referenced by tag only fails the gate."
        ),
    )
    allow_network: bool = Field(
        default=False,
        description=(
            "Let RUN steps reach the network. When false every RUN step is built with "
            "--network none."
        ),
    )
    platforms: list[Platform] = Field(
        default=[],
        description=(
            'Platforms to build, each "os/arch" or "os/arch/variant" (e.g. "linux/amd64", '
            '"linux/arm64", "linux/arm/v7"). Empty means the container engine\'s native platform.'
        ),
    )
    builder: Annotated[str, StringConstraints(pattern=BUILDER_PATTERN)] | None = Field(
        default=None,
        description=(
            "An existing buildx builder to build with (docker buildx create …), instead of the "
            "engine's own BuildKit or the builder modelseal creates; its driver and BuildKit "
            "version are recorded. The --builder flag and the Action's builder input override it."
        ),
    )
    buildkit_image: Annotated[str, StringConstraints(pattern=BUILDKIT_IMAGE_PATTERN)] | None = (
        Field(
            default=None,
            description=(
                "The BuildKit image of the docker-container builder modelseal creates on engines "
                "with the classic image store (GitHub's ubuntu-24.04 runners), pinned by digest: "
                "e.g. a mirror of moby/buildkit when Docker Hub is rate-limited or unreachable. "
                "Default: the moby/buildkit release modelseal pins. Nothing unpinned is ever "
                "pulled: a pull that fails makes the build gate ERRORED."
            ),
        )
    )
    compression: Literal["gzip", "zstd", "uncompressed"] = Field(
        default="zstd",
        description=(
            "How the layers the build adds are compressed: once, by modelseal's layout "
            "finalizer, after BuildKit exported them uncompressed (zstd through the zstd tool, "
            "gzip through zlib). zstd (default, chosen for model images): several times faster "
            "to build and to pull for model-sized layers; pulled by Docker >= 23.0, "
            "containerd >= 1.5 (Kubernetes nodes), podman and CRI-O of the last years; stored by "
            "every OCI registry; Docker 20.10 (Ubuntu 20.04, older ECS hosts) cannot pull it. "
            "gzip: pulled by every engine, but compressed on one core (about 10x slower than "
            "zstd on weights). uncompressed: no compression (fast builds, large pushes). "
            "Recorded in the provenance and used again by modelseal rebuild."
        ),
    )
    compression_level: int | None = Field(
        default=None,
        description=(
            "The compression level: gzip 0-9 (zlib's), zstd 0-22 (the zstd tool's; 20-22 "
            "with --ultra); not allowed with uncompressed. Default: gzip 6, zstd 3."
        ),
    )
    force_compression: bool = Field(
        default=False,
        description=(
            "Recompress the base image's layers too, so that every layer uses "
            "build.compression (their contents and timestamps are left as they are); false "
            "keeps the base's layers as the base ships them (only the layers this build adds "
            "use build.compression)."
        ),
    )
    stand_ins: bool = Field(
        default=True,
        description=(
            "Send BuildKit a 128-byte stand-in for each model file models.lock pins (1 MiB up "
            "to 8 GiB - 1) and write the locked bytes into the layer when the layout is "
            "finalized (checked against the lock's SHA-256 as they are read), so that "
            "gigabytes are not moved through BuildKit five times. The image is the one a build "
            "without them gives. Used only when nothing in the build could read such a file "
            "(no RUN after a COPY that may bring one, no ADD, no ONBUILD, no other frontend, "
            "no base with ONBUILD triggers or one whose config cannot be read before the build "
            "— a registry's base must be pinned by digest; the build facts say why not "
            "otherwise). false: send every file as it is."
        ),
    )
    cache_from: list[str] = Field(
        default=[],
        description=(
            "BuildKit cache sources for the first build (--cache-from), each "
            '"type=gha[,scope=…]", "type=registry,ref=IMAGE" or "type=local,src=DIR". '
            "The rebuild check never reads a cache. The --cache-from flag and the Action's "
            "cache-from input replace this list. Only buildx's documented attributes are "
            "passed (gha: scope, timeout, version; local: src, digest, tag); url=, url_v2=, "
            "repository= and credentials are refused (buildx would hand the runner's "
            "ACTIONS_RUNTIME_TOKEN to that server), and a local src must lie outside the "
            "working directory and the build context, reached without a symbolic link."
        ),
    )
    cache_to: list[str] = Field(
        default=[],
        description=(
            'Cache destinations of the first build (--cache-to): "type=gha[,mode=max]", '
            '"type=registry,ref=IMAGE[,mode=max]" or "type=local,dest=DIR[,mode=max]". Needs '
            "a builder that exports caches (the containerd image store or a docker-container "
            "builder). Attributes as for cache_from (plus mode, ignore-error, compression…, "
            "image-manifest, oci-mediatypes); a local dest must lie outside the working "
            "directory and the build context and is made without following a symbolic link."
        ),
    )

    @field_validator("rebuild_check", mode="before")
    @classmethod
    def _rebuild_check_bool(cls, value: object) -> object:
        # Policies written before the three modes said true/false.
        if value is True:
            return "always"
        if value is False:
            return "never"
        if value not in ("always", "publish", "never"):
            raise PydanticCustomError(
                "rebuild_check",
                "expected always, publish or never (true and false still mean always and never)",
            )
        return value

    @model_validator(mode="after")
    def _compression_level_in_range(self) -> BuildPolicy:
        level = self.compression_level
        if level is None:
            return self
        top = {"gzip": 9, "zstd": 22}.get(self.compression)
        if top is None:
            raise PydanticCustomError(
                "compression_level",
                "compression_level is not allowed with compression: uncompressed",
            )
        if not 0 <= level <= top:
            raise PydanticCustomError(
                "compression_level",
                "compression_level {level} is out of range for {compression} (0-{top})",
                {"level": level, "compression": self.compression, "top": top},
            )
        return self

    @field_validator("cache_from", "cache_to")
    @classmethod
    def _cache_specs(cls, value: list[str], info: ValidationInfo) -> list[str]:
        direction: Literal["from", "to"] = "from" if info.field_name == "cache_from" else "to"
        for spec in value:
            problem = cache_spec_problem(spec, direction)
            if problem:
                raise PydanticCustomError("cache_spec", "{spec}: {problem}",
                                          {"spec": spec, "problem": problem})  # fmt: skip
        return value


class ModelSignaturePolicy(BaseModel):
    """Verification of an OpenSSF model-signing signature over the model files."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    path: str = Field(
        description="The signature file (a Sigstore bundle written by model-signing), relative "
        "to the build context.",
    )
    model_dir: str = Field(
        description="The signed model directory, relative to the build context.",
    )
    public_key: str | None = Field(
        default=None,
        description="PEM public key (relative to the build context) for signatures made with a "
        "private key. Exactly one of public_key and identity.",
    )
    identity: str | None = Field(
        default=None,
        description="The signer identity (e.g. a workflow URI or an email) of a keyless "
        "Sigstore signature.",
    )
    issuer: str | None = Field(
        default=None,
        description="The OIDC issuer of the keyless signer; required with identity.",
    )
    trust_config: str | None = Field(
        default=None,
        description="The Sigstore deployment a keyless signature is checked against: a "
        "ClientTrustConfig or trusted_root.json file, relative to the build context. Default: "
        "sign.trust_config (the run's own signer), else the public instance's root shipped "
        "with sigstore-python (no network).",
    )


class ModelScanLimitsPolicy(BaseModel):
    """Per-file limits on scanning model files (decompression bombs, slow inputs). A file that
    hits one fails with a models.scan-limit finding naming the member and the limit."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    max_inflated_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        le=64 << 30,
        description="Bytes the scanner may decompress or extract from one file's compressed "
        "streams and archive members, all members and nested streams together (default 1 GiB).",
    )
    max_ratio: int = Field(
        default=200,
        ge=10,
        le=100_000,
        description="Largest compression ratio (inflated bytes per compressed byte) of one "
        "member or stream, judged once it has inflated 16 MiB (smaller ones may compress "
        "better).",
    )
    max_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Wall-clock seconds the scanner may spend on one file.",
    )


class ModelFetchPolicy(BaseModel):
    """`modelseal models fetch`: what a download from the Hugging Face Hub may be."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    allow_refs: bool = Field(
        default=False,
        description="Accept a branch or tag (hf://ORG/NAME@main) and resolve it to the commit it "
        "points at, with a warning (same as --allow-ref). Off: only a full 40-hex commit is "
        "fetched.",
    )
    max_files: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Most files (and, apart, directories) the Hub may list for the repository "
        "at the commit, and so one fetch select; a longer listing is refused.",
    )
    max_bytes: int = Field(
        default=256 << 30,
        ge=1,
        le=64 << 40,
        description="Most bytes the selected files may hold together, as the Hub lists them "
        "(default 256 GiB); the download itself is held to that sum.",
    )
    max_seconds: int = Field(
        default=6 * 3600,
        ge=1,
        le=7 * 24 * 3600,
        description="Wall-clock seconds one fetch may take, listing and downloads together.",
    )


class ModelsPolicy(BaseModel):
    """The model-artifact gate: hash pins, allowed formats, pickle scanning, structure checks."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Run the models gate.")
    lock: str = Field(
        default="models.lock",
        description="The lock file (written by `modelseal models lock`), relative to the build "
        "context. Every model file must match it: missing, extra and changed files fail.",
    )
    require_lock: bool = Field(
        default=True,
        description="Fail when the lock file does not exist. When false and there is no lock, "
        "the files under paths are still scanned but not pinned.",
    )
    paths: list[str] = Field(
        default=[],
        description="Model files and directories, relative to the build context. Empty means "
        "the roots recorded in the lock.",
    )
    ignore: list[str] = Field(
        default=[],
        description="Glob patterns of files under the model paths that are not model files "
        '(e.g. "*.md", "*.txt"): neither pinned nor scanned.',
    )
    formats: list[ModelFormat] = Field(
        default=["safetensors", "gguf", "onnx"],
        description="Model formats allowed, as detected from the bytes (never the file name). "
        "A file in another format, or in no known format, fails.",
    )
    pickle: Literal["deny", "scan", "allow"] = Field(
        default="deny",
        description="Formats that carry pickles (PyTorch, joblib, numpy object arrays …): deny "
        "fails them outright; scan admits them only if every global they import is on the "
        "allowlist; allow admits them unscanned (not recommended).",
    )
    allowed_globals: list[PickleGlobal] = Field(
        default=[],
        description='Extra pickle globals to allow beyond the built-in safe list: "module.name"; '
        '"module.*" (names of that one module, not its submodules); "package.**" (class-like '
        "names, capitalized, in the package and all its submodules; a class admitted by a "
        "pattern or profile is never called with arguments). Entries that can run code (os, subprocess, builtins.*, eval, "
        "operator, importlib, dunder names …) are refused, and no pattern ever covers them or "
        "the known gadgets inside ML packages (file loaders, test helpers, process pools …). "
        "`**` is refused on the standard library and on torch (use the torch-modules profile).",
    )
    allow: list[Literal["numpy", "sklearn", "xgboost", "lightgbm", "torch-modules"]] = Field(
        default=[],
        description="Curated allowlist profiles: reviewed lists of the classes each library "
        "writes when it pickles its own objects (numpy scalars and random generators; "
        "scikit-learn estimators and pipelines; xgboost and lightgbm models; torch.nn modules "
        "and torch.optim optimizers saved whole). Added to allowed_globals.",
    )

    @field_validator("allowed_globals")
    @classmethod
    def _globals_cannot_run_code(cls, value: list[str]) -> list[str]:
        # The scanner's rules, so the policy cannot admit what the scanner would refuse
        # (os.system, builtins.*, dunders …).
        from modelseal.models.allowlist import Allowlist

        for entry in value:
            try:
                Allowlist().extended([entry])
            except ValueError as e:
                raise PydanticCustomError("unsafe_global", str(e)) from None
        return value

    image_paths: dict[str, ImagePath] = Field(
        default={},
        description="Where locked model directories live inside the image: local directory "
        "(relative to the build context, as in the lock) → absolute image path. After the build "
        "the files found there in the image's layers must match the lock.",
    )
    signature: ModelSignaturePolicy | None = Field(
        default=None,
        description="Optionally verify an OpenSSF model-signing signature over the model.",
    )
    limits: ModelScanLimitsPolicy = Field(
        default=ModelScanLimitsPolicy(),
        description="Per-file scan limits against decompression bombs and slow inputs.",
    )
    fetch: ModelFetchPolicy = Field(
        default=ModelFetchPolicy(),
        description="`modelseal models fetch`: refs, and limits on what one download may be.",
    )


SeverityName = Literal["unknown", "low", "medium", "high", "critical"]

BASELINE_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]{1,1024}$"
"""A baseline: a report.json path or an image reference (:mod:`modelseal.vuln.baseline`)."""

PATTERN_MESSAGES[BASELINE_PATTERN] = (
    "expected a report.json path or an image reference: one line, no control characters, "
    "at most 1024 characters"
)


class IgnoreEntry(BaseModel):
    """An accepted vulnerability: why, and until when. Every matcher the entry gives (package,
    purl, versions, paths, fix_state, scanner) must hold, besides the id. An entry that matches
    no finding is reported: expired, it fails; live, it is a `vulnerabilities.stale-ignore`
    warning (made only when the scanners it covers ran)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str = Field(description="Vulnerability id or alias (CVE-…, GHSA-…, PYSEC-…).")
    package: str | None = Field(
        default=None,
        description="Only for this package name (default: any package): PEP 503 normalised "
        "for PyPI packages (Foo_Bar is foo-bar), compared exactly in other ecosystems.",
    )
    reason: str = Field(description="Why it is accepted (shown in reports and the VEX document).")
    expires: date = Field(
        description="Date (YYYY-MM-DD) after which the entry no longer applies; an expired entry "
        "fails the gate and says so.",
        strict=False,
    )
    purl: str | None = Field(
        default=None,
        description="Only for this package URL, with or without @version, e.g. "
        '"pkg:pypi/requests@2.19.0" or "pkg:deb/debian/zlib1g". Type, namespace and name '
        "must be equal (PyPI names PEP 503 normalised), the version too when given (PEP 440 "
        "equality for PyPI, dpkg equality for deb, the epoch qualifier counted as the "
        "version's epoch, or compared with the package's epoch when no version is given); a "
        "qualifier (?arch=amd64) is only compared when given, and then exactly (Trivy writes "
        "distro=debian-12.5). No subpath; an '@' without a version is refused.",
    )
    versions: str | None = Field(
        default=None,
        description="Only for installed versions in this range, in the package ecosystem's own "
        'syntax: a PEP 440 specifier set for PyPI (">=2.0,<2.20") or dpkg relations for '
        'Debian packages, all of which must hold (">= 1:1.2.13, << 1:1.2.13.dfsg-1+deb12u1"; '
        "<< <= = >= >>, compared as dpkg --compare-versions does). With a purl it is read in "
        "the purl type's syntax; without, in whichever fits. It never matches a package of "
        "another ecosystem (apk, rpm, npm, …).",
    )
    paths: list[str] = Field(
        default=[],
        max_length=64,
        description="Only for packages carried by a file matching one of these globs "
        "(leading / optional): Trivy's PkgPath (e.g. usr/lib/python3/dist-packages/"
        "requests-2.19.0.dist-info/METADATA), pip-audit's .dist-info or .egg-info path. `*` "
        "and `?` stay within one path segment, `[abc]`/`[!abc]` is a class, `**` as a whole "
        'segment is zero or more segments: "/usr/lib/python3/dist-packages/requests-*/**" '
        "covers both scanners. OS packages carry no file (Trivy names none): an entry with "
        "paths never matches them.",
    )
    fix_state: Literal["fixed", "not-fixed", "wont-fix", "unknown"] | None = Field(
        default=None,
        description="Only while the fix state is this. Trivy's Status: fixed → fixed; "
        "affected, fix_deferred → not-fixed; will_not_fix, end_of_life → wont-fix; anything "
        "else → unknown (fixed when a fixed version is given). pip-audit: fixed when the "
        "advisory lists a fixed version, else not-fixed.",
    )
    scanner: Literal["trivy", "pip-audit"] | None = Field(
        default=None,
        description="Only for this scanner's reports of the vulnerability (an advisory both "
        "report for the same installed copy of the package is accepted when either report "
        "matches the entry; a copy in another directory is another finding).",
    )
    justification: (
        Literal[
            "component_not_present",
            "vulnerable_code_not_present",
            "vulnerable_code_not_in_execute_path",
            "vulnerable_code_cannot_be_controlled_by_adversary",
            "inline_mitigations_already_exist",
        ]
        | None
    ) = Field(
        default=None,
        description="An OpenVEX justification: the image is not affected, for this reason. "
        "The VEX statement then says not_affected (which consumers such as Trivy's --vex oci "
        "suppress) instead of affected with the reason as its action statement. The verdict "
        "is the same either way. OpenVEX has no expiry: the statement's status_notes give the "
        "entry's expires date and say consumers must re-check after it, but a published "
        "not_affected attestation stays in the registry, and consumers such as Trivy keep "
        "suppressing the vulnerability after that date.",
    )

    @field_validator("purl")
    @classmethod
    def _purl_is_a_package_url(cls, value: str | None) -> str | None:
        from modelseal.vuln.match import check_ignore_purl

        if value is not None:
            _refuse_on(
                lambda: check_ignore_purl(value), ValueError, "bad_purl", "not a package URL: {why}"
            )
        return value

    @field_validator("paths")
    @classmethod
    def _paths_are_globs(cls, value: list[str]) -> list[str]:
        from modelseal.vuln.match import compile_glob

        for i, glob in enumerate(value):
            _refuse_on(
                partial(compile_glob, glob),
                ValueError,
                "bad_glob",
                "glob {i}: {why}",
                {"i": i},
            )
        return value

    @field_validator("versions")
    @classmethod
    def _versions_fit_the_ecosystem(cls, value: str | None, info: ValidationInfo) -> str | None:
        from modelseal.vuln.match import parse_purl, purl_ecosystem
        from modelseal.vuln.versions import VersionRange

        if value is None:
            return value
        ecosystem = None
        purl = info.data.get("purl")
        if isinstance(purl, str):  # validated already (declared before versions)
            p = parse_purl(purl)
            ecosystem = purl_ecosystem(p)
            if ecosystem is None:
                raise PydanticCustomError(
                    "bad_versions",
                    "ranges are read for pypi and deb packages only, not for the purl's "
                    'type "{kind}"',
                    {"kind": p.type},
                )
        _refuse_on(
            lambda: VersionRange.parse(value, ecosystem), ValueError, "bad_versions", "{why}"
        )
        return value


class ThresholdOverride(BaseModel):
    """Thresholds for one scanner, one package type, or both: each key given here replaces the
    global one for the findings the selectors pick; a key left out (or null) is not set here
    (an override cannot remove a global max_cvss, only set a value of its own)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    scanner: Literal["trivy", "pip-audit"] | None = Field(
        default=None, description="Findings of this scanner (selector)."
    )
    package_type: Literal["os", "language"] | None = Field(
        default=None,
        description="Findings in packages of this type (selector): os = the distribution's "
        "packages (Trivy's os-pkgs), language = Python and other language packages.",
    )
    fail_on: SeverityName | None = Field(default=None, description="As vulnerabilities.fail_on.")
    fixable_only: bool | None = Field(default=None, description="As vulnerabilities.fixable_only.")
    max_cvss: float | None = Field(
        default=None, ge=0.0, le=10.0, description="As vulnerabilities.max_cvss."
    )
    unknown_severity: SeverityName | None = Field(
        default=None, description="As vulnerabilities.unknown_severity."
    )

    @model_validator(mode="after")
    def _selects_and_sets(self) -> ThresholdOverride:
        if self.scanner is None and self.package_type is None:
            raise PydanticCustomError(
                "override_selects_nothing",
                "an override needs scanner, package_type or both (global thresholds go "
                "directly under vulnerabilities)",
            )
        if all(getattr(self, k) is None for k in THRESHOLD_KEYS):
            raise PydanticCustomError(
                "override_sets_nothing",
                "an override sets at least one of " + ", ".join(THRESHOLD_KEYS),
            )
        return self


THRESHOLD_KEYS: Final = ("fail_on", "fixable_only", "max_cvss", "unknown_severity")
"""The thresholds ``vulnerabilities.overrides`` can set."""


class VulnerabilitiesPolicy(BaseModel):
    """One vulnerability policy for every scanner (Trivy, pip-audit)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    fail_on: SeverityName = Field(
        default="high", description="Fail on vulnerabilities of this severity or higher."
    )
    fixable_only: bool = Field(
        default=False,
        description="Only fail on vulnerabilities that have a fixed version.",
    )
    max_cvss: float | None = Field(
        default=None,
        description="Also fail on any vulnerability whose CVSS base score exceeds this, whatever "
        "its severity label.",
        ge=0.0,
        le=10.0,
    )
    unknown_severity: SeverityName = Field(
        default="high",
        description="The severity to assume when no source gives one (fail closed by default).",
    )
    overrides: list[ThresholdOverride] = Field(
        default=[],
        max_length=8,
        description="Thresholds per scanner and per package type, e.g. "
        "[{package_type: language, fail_on: medium}, {scanner: trivy, package_type: os, "
        "fixable_only: true}]. For each threshold the most specific override that sets it "
        "and selects the finding wins: scanner and package_type together, then one of them, "
        "then the global value; when a scanner override and a package_type override both "
        "set it, the stricter value wins (lower fail_on and max_cvss, fixable_only false, "
        "higher unknown_severity). Two overrides with the same selectors are an error. An "
        "advisory both scanners report fails when it fails under either scanner's thresholds, "
        "each report judged on its own severity, CVSS and fixed version. "
        "Reports name the threshold that judged each finding (e.g. "
        '"HIGH ≥ vulnerabilities.overrides[0].fail_on MEDIUM").',
    )
    ignore: list[IgnoreEntry] = Field(default=[], description="Accepted vulnerabilities.")
    vex: list[str] = Field(
        default=[],
        description="OpenVEX documents (relative to the build context); statements with status "
        "not_affected suppress the matching findings. A product given as a purl is matched as "
        "an ignore entry's purl is (type, namespace, name, and version and qualifiers when "
        "given); a product with subcomponents covers only those; an image "
        "(pkg:oci/NAME@DIGEST) covers everything in it (or its subcomponents) only when "
        "DIGEST is the built image's (its index or a platform manifest): an image of another "
        "digest, or without one, covers nothing (the image's name is not known when judging, "
        "so only its digest identifies it; fail closed); a product that is no purl is read "
        "as a package name.",
    )

    baseline: Annotated[str, StringConstraints(pattern=BASELINE_PATTERN)] | None = Field(
        default=None,
        description="Fail only on what a change adds: a previous run's report.json (a path "
        "relative to the build context) or an image reference REGISTRY/REPOSITORY[:TAG]"
        "[@sha256:…] whose scan-report attestation, signed by the signer the verify section "
        "names, holds that report. A finding with the same advisory id or alias, package name "
        "and package type as one in the baseline is existing (the version may differ) and is "
        "judged by baseline_policy; every other finding is new and judged as without a "
        "baseline. A baseline that cannot be read, parsed or verified makes the vulnerability "
        "gates ERRORED. `--baseline` (action input baseline) sets it for one run.",
    )
    baseline_policy: Literal["warn", "fail-if-worse", "fail"] = Field(
        default="fail-if-worse",
        description="How existing findings are judged. warn: never fail (shown as warnings). "
        "fail-if-worse: fail only when the finding would fail and is worse than in the "
        "baseline: a higher severity, or a higher CVSS score (both known). fail: judged as "
        "new ones. An expired ignore entry fails in every mode.",
    )

    @field_validator("overrides")
    @classmethod
    def _one_override_per_selector(cls, value: list[ThresholdOverride]) -> list[ThresholdOverride]:
        seen: dict[tuple[str | None, str | None], int] = {}
        for i, o in enumerate(value):
            key = (o.scanner, o.package_type)
            if key in seen:
                raise PydanticCustomError(
                    "duplicate_override",
                    "overrides[{i}] and overrides[{j}] have the same selectors ({what}): merge them",
                    {
                        "i": seen[key],
                        "j": i,
                        "what": ", ".join(
                            f"{k}: {v}"
                            for k, v in zip(("scanner", "package_type"), key, strict=True)
                            if v
                        ),
                    },
                )
            seen[key] = i
        return value


CAPABILITY_PATTERN: Final = r"^[A-Z][A-Z0-9_]{1,31}$"
"""A Linux capability as Kubernetes and Docker name it, without ``CAP_``."""
PATTERN_MESSAGES[CAPABILITY_PATTERN] = (
    'expected a Linux capability name without "CAP_", e.g. "NET_BIND_SERVICE"'
)


class ImageRuntimePolicy(BaseModel):
    """The least-privilege runtime profile written for the image (runtime-profile.json, the
    runtime-profile attestation, `policy export --runtime-profile`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    writable_paths: list[ImagePath] = Field(
        default=["/tmp"],  # noqa: S108 (a path inside the image, not on this host)
        max_length=64,
        description="Paths the process may write under a read-only root filesystem: each an "
        "emptyDir volume (Kubernetes) and a --tmpfs mount (docker run). The image's own VOLUMEs "
        "are added.",
    )
    add_capabilities: list[Annotated[str, StringConstraints(pattern=CAPABILITY_PATTERN)]] = Field(
        default=[],
        max_length=16,
        description="Capabilities added back after dropping ALL (capabilities.add, "
        "--cap-add); admission rules allow no others. None is added for a port below 1024 "
        "(a non-root process would not get it): the profile lowers "
        "net.ipv4.ip_unprivileged_port_start instead.",
    )

    @field_validator("writable_paths")
    @classmethod
    def _mountable(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.isprintable() or any(c in path for c in ":, "):
                raise PydanticCustomError(
                    "mount_path",
                    "{path} cannot be a mount path (no ':', ',', space or control character)",
                    {"path": path},
                )
        return value

    @field_validator("add_capabilities")
    @classmethod
    def _not_all(cls, value: list[str]) -> list[str]:
        if "ALL" in value:
            raise PydanticCustomError("capability", "ALL cannot be added back")
        return value


class ImagePolicy(BaseModel):
    """The image gate: least privilege and unsafe payloads across the whole built image."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(
        default=True,
        description="Run the image gate (the runtime user, file permissions, exposed ports, "
        "secrets in any layer, model files anywhere in the image).",
    )
    model_files_outside_lock: Literal["fail", "warn", "allow"] = Field(
        default="warn",
        description="A model or serialized-object file found outside the locked model paths "
        "(in a base layer, a package's data files, a cached download) that the scanner finds "
        "benign: fail, warn or allow. A file the scanner finds unsafe fails whatever this says.",
    )
    model_files_ignore: list[str] = Field(
        default=[],
        description="Globs (fnmatch, as models.ignore) over image paths without the leading /, "
        "matched against the whole path or the file name (* also matches /), of model files "
        "outside the lock that are accepted as they are (still scanned: an unsafe one fails).",
    )
    runtime: ImageRuntimePolicy = Field(
        default=ImageRuntimePolicy(),
        description="The least-privilege runtime profile the gate writes for the image.",
    )
    require_non_root: bool = Field(
        default=True,
        description="The image must name a non-root USER (uid other than 0) that resolves in "
        "its /etc/passwd (a name) or is numeric. False: a root or unresolvable user warns.",
    )
    allowed_ports: list[str] | None = Field(
        default=None,
        description='The ports the image may EXPOSE, as "PORT/PROTO" ("8080/tcp"; a bare '
        "number means tcp). Unset: EXPOSE is not checked; [] : no port may be exposed.",
    )
    require_healthcheck: bool = Field(
        default=False,
        description="The image must define a HEALTHCHECK (not NONE). False: a missing one is "
        "reported as a warning.",
    )
    allow_setuid: list[str] = Field(
        default=[],
        description="Globs (fnmatch, over the whole image path without the leading /; * also "
        "matches /) of setuid/setgid files that are accepted (e.g. usr/bin/passwd); every "
        "other one fails.",
    )
    allow_world_writable: list[str] = Field(
        default=[],
        description="Globs (fnmatch, over the whole image path without the leading /; * also "
        "matches /) of world-writable files and directories that are accepted. Sticky directories (mode 1777, /tmp) are never "
        "reported.",
    )
    secrets: Literal["fail", "warn"] = Field(
        default="fail",
        description="A secret found in a layer (Trivy's secret scanner), an environment "
        "variable or a label: fail or warn.",
    )
    secrets_ignore: list[str] = Field(
        default=[],
        description="Globs (fnmatch; * also matches /) over the whole of what a secret finding "
        "names: an image path (without the leading /), env:NAME, label:NAME, or 'image config' (what Trivy finds in the config: "
        "environment, labels, history); accepted as known (e.g. a package's test keys).",
    )

    @field_validator("allowed_ports")
    @classmethod
    def _ports(cls, value: list[str] | None) -> list[str] | None:
        """``8080`` → ``8080/tcp``; a port outside 1–65535 or another protocol is refused."""
        if value is None:
            return None
        out = []
        for item in value:
            port, _, proto = item.strip().lower().partition("/")
            proto = proto or "tcp"
            if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{item!r} is not a port (1-65535, optionally /tcp, /udp, /sctp)")
            if proto not in ("tcp", "udp", "sctp"):
                raise ValueError(f"{item!r}: the protocol must be tcp, udp or sctp")
            out.append(f"{int(port)}/{proto}")
        return out


class SbomPolicy(BaseModel):
    """The SBOM gate: syft's CycloneDX document, enriched with the image and the models."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Generate and validate the SBOM.")


class TrivyDbPolicy(BaseModel):
    """Where Trivy's vulnerability database comes from."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: Literal["online", "offline"] = Field(
        default="online",
        description="online: download or refresh into cache_dir (from repository if set); "
        "offline: use cache_dir as it is, never download.",
    )
    cache_dir: str | None = Field(
        default=None,
        description="Trivy's cache directory (holding db/trivy.db and db/metadata.json), "
        "relative to the build context. Default: modelseal's cache directory. A path with a "
        "symbolic link on the way (to it, or its db, fanal or java-db directory) makes the "
        "gate ERRORED: Trivy writes there by path.",
    )
    repository: (
        Annotated[str, StringConstraints(pattern=OCI_REPOSITORY_PATTERN, max_length=255)]
        | Annotated[
            list[Annotated[str, StringConstraints(pattern=OCI_REPOSITORY_PATTERN, max_length=255)]],
            Field(min_length=1, max_length=MAX_DB_REPOSITORIES),
        ]
        | None
    ) = Field(
        default=None,
        description="An OCI repository mirroring the Trivy DB (--db-repository), e.g. "
        '"mirror.example/aquasec/trivy-db:2", or a list of at most '
        f"{MAX_DB_REPOSITORIES} of them tried in order until one download succeeds (online "
        "mode). Leave it out for Trivy's default repository (an empty list is refused).",
    )
    max_age_days: int = Field(
        default=3,
        ge=0,
        le=MAX_AGE_DAYS,
        description="A DB older than this (by its UpdatedAt) makes the gate ERRORED.",
    )


class TrivyPolicy(BaseModel):
    """The Trivy gate: an image scan of the OCI layout."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Run Trivy.")
    db: TrivyDbPolicy = Field(default=TrivyDbPolicy(), description="The vulnerability DB.")


class PipAuditPolicy(BaseModel):
    """The pip-audit gate: the image's Python packages against OSV."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Run pip-audit.")
    osv_url: str | None = Field(
        default=None,
        description="OSV API endpoint (default: the public OSV API), e.g. a mirror.",
    )


TAG_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
"""An OCI tag (the distribution spec's grammar)."""

PATTERN_MESSAGES[TAG_PATTERN] = (
    'expected an image tag: letters, digits, "_", "." and "-", at most 128, e.g. "1.4.2"'
)

Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]

TAG_GLOB_PATTERN: Final = r"^[A-Za-z0-9_.*?\[\]!-]{1,128}$"
"""A shell-style glob over tags (``*``, ``?``, ``[...]``)."""

PATTERN_MESSAGES[TAG_GLOB_PATTERN] = (
    'expected a tag glob: tag characters and "*", "?", "[...]", e.g. "v*" or "[0-9]*.[0-9]*"'
)

TagGlob = Annotated[str, StringConstraints(pattern=TAG_GLOB_PATTERN)]


class SignPolicy(BaseModel):
    """How a published image and its attestations are signed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: Literal["keyless", "key", "none"] = Field(
        default="keyless",
        description="keyless: Sigstore (an OIDC identity, e.g. GitHub Actions' id-token, gets "
        "a Fulcio certificate; every signature is logged in Rekor). key: an ECDSA P-256 PEM key "
        "given with --key (air-gapped; no transparency log). none: publish unsigned (verify "
        "will refuse such an image).",
    )
    trust_config: str | None = Field(
        default=None,
        description="A Sigstore ClientTrustConfig JSON file (trusted root + signing config) "
        "for a private Sigstore deployment, relative to the policy file. Default: the public "
        "Sigstore instance.",
    )
    attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Tries per Fulcio/Rekor request before the publish fails (with backoff).",
    )
    public_transparency_log: bool = Field(
        default=False,
        description="Allow keyless signing with the public Sigstore (its Rekor log is public and "
        "names the repository and workflow) in a private or internal GitHub repository's "
        "Actions job, or one whose visibility the event does not say (e.g. schedule). Off: such "
        "a run is a usage error before the build; use GitHub's private Sigstore instance "
        "through trust_config, or a key (a public repository's job without a visibility in its "
        "event can set GITHUB_REPOSITORY_VISIBILITY: public).",
    )


class PublishPolicy(BaseModel):
    """What a passing verdict publishes, and where."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    tags: list[Tag] = Field(
        default=[],
        description="Tags moved to the new digest, in addition to the tag of --push IMAGE:TAG, "
        "only after the signature and every attestation are stored.",
    )
    allowed_tags: list[TagGlob] = Field(
        default=["*"],
        description="Globs the tags given on the command line or as action inputs (--push "
        'IMAGE:TAG, --tag) must match, e.g. ["v*", "latest"]; a tag outside them is a usage '
        "error before anything is built. Empty: no such tag may be given. The tags above are "
        "the policy's own and always allowed.",
    )
    attestations: list[
        Literal["provenance", "sbom", "scan-report", "openvex", "runtime-profile"]
    ] = Field(
        default=["provenance", "sbom", "scan-report", "runtime-profile"],
        description="Attestations attached to the image (as Sigstore bundle referrers and "
        "cosign .att). openvex: the run's OpenVEX document of accepted risks (predicateType "
        "https://openvex.dev/ns, as cosign attest --type openvex), left out with a notice "
        "when the verdict accepted none. runtime-profile: the image gate's least-privilege "
        "runtime profile (predicateType https://modelseal.dev/attestations/runtime-profile/v1), "
        "left out with a notice when the image gate did not run.",
    )
    pusher: Literal["skopeo", "builtin"] = Field(
        default="skopeo",
        description="What pushes the image: skopeo (the documented path; without skopeo on PATH "
        "the publish is ERRORED, exit 3, before anything is signed) or builtin (modelseal's own "
        "OCI registry client, for runners without skopeo; single-platform images only).",
    )
    github_attestations: bool = Field(
        default=False,
        description="Also submit the signed attestations (those listed above) to the GitHub "
        "repository's attestation store, for `gh attestation verify oci://IMAGE --owner ORG`: "
        "after the image and its referrers are pushed, before the tags move. Needs keyless "
        "signing and a GitHub Actions job with `attestations: write` and its token "
        "(GITHUB_TOKEN, or the Action's github-token); otherwise a usage error before the "
        "build.",
    )
    sign_models: bool = Field(
        default=False,
        description="After a passing verdict, sign the locked model directory (models."
        "signature.model_dir, else the lock's only root directory; every file in it must be "
        "pinned and unchanged, or matched by models.ignore) with the run's signer "
        "(OpenSSF model-signing, as `modelseal models sign`), verify that signature, write it "
        "to the output directory as model.sig and record it in the provenance (a "
        "runDetails.byproducts entry with its sha256 and the model digest). Needs a sign mode "
        "other than none.",
    )


class RebuilderPolicy(BaseModel):
    """A rebuilder whose rebuild attestations count: a public key, or a keyless identity."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    key: str | None = Field(
        default=None,
        description="The rebuilder's PEM public key file (relative to the policy file).",
    )
    identity: str | None = Field(
        default=None,
        description="The rebuilder's keyless signer identity, exactly (a workflow ref URI, an "
        "e-mail).",
        min_length=1,
    )
    issuer: str | None = Field(
        default=None,
        description="OIDC issuer of the rebuilder's certificate (only with identity; default: "
        "verify.issuer).",
    )

    @model_validator(mode="after")
    def _one_signer(self) -> RebuilderPolicy:
        if (self.key is None) == (self.identity is None):
            raise PydanticCustomError(
                "rebuilder", "a rebuilder is either a key or an identity (with its issuer)"
            )
        if self.key is not None and self.issuer is not None:
            raise PydanticCustomError("rebuilder", "issuer goes with identity, not with key")
        return self


class VerifyPolicy(BaseModel):
    """What `modelseal verify IMAGE` demands of a published image (the deployer's side)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    issuer: str | None = Field(
        default=None,
        description="Expected OIDC issuer of the signing certificate, e.g. "
        '"https://token.actions.githubusercontent.com".',
    )
    identity: str | None = Field(
        default=None,
        description="Expected signer identity, exactly (e.g. the workflow ref URI "
        '"https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.0").',
    )
    identity_regexp: str | None = Field(
        default=None,
        description="Expected signer identity as a regular expression, matched against the "
        "whole identity; must start with ^ and end with $, with no top-level | (write "
        "^(?:a|b)$), no repetition inside a repetition ((a+)+) and at most 3 open-ended "
        "repetitions (*, +, {n,}).",
    )
    public_key: str | None = Field(
        default=None,
        description="Verify key signatures with this PEM public key file instead (relative to "
        "the policy file).",
    )
    builder_id: str | None = Field(
        default=None, description="Expected provenance runDetails.builder.id."
    )
    source_repository: str | None = Field(
        default=None,
        description='Expected source repository in the provenance, e.g. "https://github.com/org/repo".',
    )
    max_scan_age_days: int = Field(
        default=30,
        ge=0,
        le=MAX_AGE_DAYS,
        description="The scan-report attestation must be at most this old.",
    )
    timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="`modelseal verify` must finish within this many seconds (every registry "
        "request and check), else it stops with exit 3; `--timeout` overrides it.",
    )
    require_runtime_profile: bool = Field(
        default=False,
        description="Require a runtime-profile attestation by the expected signer even when the "
        "scan report does not record one (an image published before runtime profiles, or "
        "with the image gate off). Whatever this says, an image whose attested scan report "
        "records a runtime profile must carry that very profile, signed.",
    )
    require_rebuild_by: list[RebuilderPolicy] = Field(
        default=[],
        max_length=MAX_REBUILDERS,
        description="Independent rebuilders that must have rebuilt the image from its provenance "
        "and got its digest: each a signed rebuild attestation (`modelseal rebuild --attest`) "
        "saying reproduced, whose subject and rebuiltDigest are the image digest. "
        "`--require-rebuild-by` replaces the list (and min_rebuilds).",
    )
    min_rebuilds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REBUILDERS,
        description="How many of require_rebuild_by must agree (default: all of them).",
    )

    @field_validator("min_rebuilds")
    @classmethod
    def _at_most_listed(cls, value: int | None, info: ValidationInfo) -> int | None:
        listed = info.data.get("require_rebuild_by")
        if value is not None and listed is not None and value > len(listed):
            raise PydanticCustomError(
                "min_rebuilds",
                "min_rebuilds is {value}, more than the {n} rebuilders require_rebuild_by lists",
                {"value": value, "n": len(listed)},
            )
        return value

    @field_validator("identity_regexp")
    @classmethod
    def _anchored(cls, value: str | None) -> str | None:
        from modelseal.sign.identity import IdentityRegexpError, compile_identity_regexp

        if value is not None:
            # The message names the pattern's fault only: an unanchored pattern matches
            # identities it was not meant for, a catastrophic one stalls verification.
            _refuse_on(
                lambda: compile_identity_regexp(value),
                IdentityRegexpError,
                "unsafe_regexp",
                "the identity regexp is {why}",
            )
        return value


class Policy(BaseModel):
    """A modelseal policy file (modelseal.yml): the thresholds of every gate."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[1] = Field(
        description=(
            'Policy file format version. Required; must be 1. Write "version: 1" at the top '
            "of the file."
        ),
    )
    build: BuildPolicy = Field(
        default=BuildPolicy(),
        description="Settings of the build gate.",
    )
    models: ModelsPolicy = Field(
        default=ModelsPolicy(),
        description="Settings of the model-artifact gate.",
    )
    image: ImagePolicy = Field(default=ImagePolicy(), description="Settings of the image gate.")
    sbom: SbomPolicy = Field(default=SbomPolicy(), description="Settings of the SBOM gate.")
    vulnerabilities: VulnerabilitiesPolicy = Field(
        default=VulnerabilitiesPolicy(),
        description="Thresholds for every vulnerability scanner.",
    )
    trivy: TrivyPolicy = Field(default=TrivyPolicy(), description="Settings of the Trivy gate.")
    pip_audit: PipAuditPolicy = Field(
        default=PipAuditPolicy(), description="Settings of the pip-audit gate."
    )
    sign: SignPolicy = Field(default=SignPolicy(), description="How published images are signed.")
    publish: PublishPolicy = Field(
        default=PublishPolicy(), description="What a passing verdict publishes."
    )
    verify: VerifyPolicy = Field(
        default=VerifyPolicy(), description="What `modelseal verify` demands before deploy."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        # ``True == 1 == 1.0`` in Python, and even a strict ``Literal[1]`` accepts
        # ``version: true`` and ``version: 1.0``.
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticCustomError("literal_error", "Input should be 1", {"expected": "1"})
        return value
