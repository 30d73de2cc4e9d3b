"""in-toto Statements about a sealed image: SLSA v1 provenance, the scan report, the SBOM.

Every statement has one subject, the image: ``{"name": <image name>, "digest": {"sha256":
<manifest hex>}}``. Statements are plain dicts (key order fixed by this module); the bytes
that get signed come from :func:`statement_bytes` (sorted keys, no whitespace, UTF-8).

Build type ``https://modelseal.dev/buildtypes/oci-image/v1``
-----------------------------------------------------------
A container image built by ``modelseal`` with ``docker buildx build`` (BuildKit, OCI
exporter, ``rewrite-timestamp``) from a source checkout, after verifying its models.

``externalParameters`` (user-controlled; verifiers should reject fields they do not know):

* ``source`` — ``{"repository": URL, "ref": "refs/…"}``: the checkout that was built (either
  key may be absent for a local build without a remote or branch);
* ``workflow`` — GitHub Actions only: ``{"repository", "ref", "path"}`` of the workflow file
  that ran (as in GitHub's own workflow build type);
* ``image`` — the image name the result was published under (no tag, no digest);
* ``dockerfile`` — path of the Dockerfile, relative to the build context;
* ``buildArgs`` — ``{name: value}`` of every ``--build-arg`` (sorted);
* ``policy`` — ``{"path", "sha256"[, "ref"]}`` of the policy file the gates were judged by
  (``ref``: the git ref it was read from, with ``--policy-ref``);
* ``platforms`` — the platforms built (``["linux/amd64", "linux/arm64"]``), when more than
  one or when asked for;
* ``labels``, ``annotations`` — ``{key: value}`` given with ``--label`` / ``--annotation``
  (sorted; only when given);
* ``tags`` — the tags moved to the image (when any).

``internalParameters`` (platform-controlled, informational): ``sourceDateEpoch`` (the
SOURCE_DATE_EPOCH of the build, integer seconds), ``buildx`` and ``buildkit`` (versions, when
known), ``builder`` ``{"name", "driver", "engine"}`` when the engine's own BuildKit built (no
image to pin: its version is the engine's), and for GitHub Actions ``{"github": {"event_name", "repository_id",
"repository_owner_id", "runner_environment"}}`` (those that are set).

``resolvedDependencies``:

* the source: ``uri`` ``git+<repository>@<ref>``, ``digest`` ``{"gitCommit": <sha>}``;
* the policy file: ``name`` ``policy``, ``uri`` ``file:<path>``, ``digest`` ``{"sha256"}``;
* each base image: ``name`` = the reference as given, ``uri`` = a ``pkg:oci/…`` package URL
  for registry references (the reference itself for ``oci-layout://`` and other local
  ones), ``digest`` ``{"sha256"}`` of the manifest that was used;
* the BuildKit image, when the builder runs one (a ``docker-container`` builder): ``name``
  ``buildkit``, ``uri`` its ``pkg:oci`` URL, ``digest`` ``{"sha256"}`` of the pinned index,
  ``annotations`` ``{"builder", "driver", "version"}``;
* each model file: ``name`` = its path in the models lock, ``uri`` = its source URI from
  ``models.lock`` (``file:<path>`` when it has none), ``digest`` ``{"sha256"}``,
  ``annotations`` ``{"size", "format"[, "revision"]}``.

``runDetails.builder.version``: ``{"modelseal", "buildx", "buildkit"}`` versions (those
known). ``runDetails.byproducts``: the SBOM, the report and other files written next to the
image, each with ``name``, ``digest`` ``{"sha256"}`` and ``mediaType``.

Builder ids
-----------
* GitHub Actions: ``https://github.com/actions/runner/<RUNNER_ENVIRONMENT>``
  (``github-hosted`` or ``self-hosted``, the latter when unknown) — the convention of
  GitHub's own build-provenance attestations; the invocation id is
  ``<server>/<owner>/<repo>/actions/runs/<run id>/attempts/<attempt>``.
* Anywhere else: :data:`LOCAL_BUILDER_ID`, ``https://modelseal.dev/builders/local/v1`` — a
  developer machine or an unrecognized CI, trusted no further than whoever ran it; the
  invocation id is a random ``urn:uuid:``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modelseal import __version__
from modelseal._tools import run_tool
from modelseal.errors import ConfigError, ToolError
from modelseal.oci import DIGEST_RE
from modelseal.policy.gitref import COMMIT_RE

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://modelseal.dev/buildtypes/oci-image/v1"
"""This module's build type (parameters documented in the module docstring)."""
LOCAL_BUILDER_ID = "https://modelseal.dev/builders/local/v1"
"""Builder id outside GitHub Actions: whoever ran modelseal, trusted as such."""
GITHUB_BUILDER_ID_PREFIX = "https://github.com/actions/runner/"
SCAN_REPORT_PREDICATE = "https://modelseal.dev/attestations/scan-report/v1"
"""predicateType of modelseal's scan-report statement."""
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
"""predicateType of a CycloneDX SBOM statement (cosign ``--type cyclonedx``)."""

# \Z, not $: "$" also matches before a trailing newline.
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\Z")
_GIT_TIMEOUT = 30.0


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
        for name in ("build_args", "labels", "annotations"):
            value = dict(sorted(getattr(self, name).items()))
            object.__setattr__(self, name, MappingProxyType(value))
        object.__setattr__(
            self, "internal_parameters", MappingProxyType(dict(self.internal_parameters))
        )
        object.__setattr__(self, "builder", MappingProxyType(dict(self.builder)))
        for name in ("base_images", "models", "byproducts", "platforms", "tags"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


def image_subject(image_name: str, manifest_digest: str) -> list[dict[str, Any]]:
    """The ``subject`` of every statement about the image."""
    if not DIGEST_RE.match(manifest_digest):
        raise ConfigError(f"manifest digest {manifest_digest!r} is not sha256:<hex>.")
    return [{"name": image_name, "digest": {"sha256": manifest_digest.removeprefix("sha256:")}}]


def _statement(
    image_name: str, manifest_digest: str, predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": image_subject(image_name, manifest_digest),
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a statement: sorted keys, no whitespace, UTF-8 — the bytes that
    are signed (and the same for the same statement on every run)."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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


def _file_uri(path: str) -> str:
    # a relative path as a URI reference: percent-encoded so spaces etc. stay a valid URI
    return "file:" + urllib.parse.quote(path, safe="/")


def _external_parameters(p: ProvenanceInput) -> dict[str, Any]:
    params: dict[str, Any] = {}
    source = {k: v for k, v in (("repository", p.repository), ("ref", p.ref)) if v}
    if source:
        params["source"] = source
    if p.workflow_ref:
        params["workflow"] = {
            k: v
            for k, v in (
                ("repository", p.repository),
                ("ref", p.ref),
                ("path", p.workflow_path),
            )
            if v
        }
    params["image"] = p.image_name
    params["dockerfile"] = p.dockerfile
    params["buildArgs"] = dict(p.build_args)
    if p.policy_path or p.policy_sha256:
        params["policy"] = {
            k: v
            for k, v in (
                ("path", p.policy_path),
                ("sha256", p.policy_sha256),
                ("ref", p.policy_ref),
            )
            if v
        }
    # Only when set, so the provenance of a run that used none of them reads as before.
    for key, value in (
        ("platforms", list(p.platforms)),
        ("labels", dict(p.labels)),
        ("annotations", dict(p.annotations)),
        ("tags", list(p.tags)),
    ):
        if value:
            params[key] = value
    return params


def _internal_parameters(p: ProvenanceInput) -> dict[str, Any]:
    # What the builder fixed rather than the user chose: the timestamp every file and the image
    # carry, and the BuildKit front end that produced the bytes.
    params: dict[str, Any] = {"sourceDateEpoch": p.source_date_epoch}
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
        deps.append(
            {
                "name": base.ref,
                "uri": oci_purl(base.ref, base.digest) or base.ref,
                "digest": {"sha256": _sha256_hex(base.digest, base.ref)},
            }
        )
    image = _builder_image(p)
    if image:
        builder: dict[str, Any] = {
            "name": "buildkit",
            "uri": oci_purl(image, image.rpartition("@")[2]) or image,
            "digest": {"sha256": _sha256_hex(image.rpartition("@")[2], image)},
            "annotations": {
                k: v
                for k, v in (
                    ("builder", p.builder.get("name")),
                    ("driver", p.builder.get("driver")),
                    ("version", p.buildkit_version),
                )
                if v
            },
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
    versions = {
        k: v
        for k, v in (
            ("modelseal", p.modelseal_version),
            ("buildx", p.buildx_version),
            ("buildkit", p.buildkit_version),
        )
        if v
    }
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
            }
            for b in p.byproducts
        ]
    predicate = {"buildDefinition": definition, "runDetails": run}
    return _statement(p.image_name, p.manifest_digest, SLSA_PROVENANCE_V1, predicate)


def scan_report_statement(
    image_name: str, manifest_digest: str, report: Mapping[str, Any]
) -> dict[str, Any]:
    """A statement of modelseal's verdict on the image: ``verdict``, ``exit_code``,
    ``finished_at``, ``policy`` {sha256}, a per-gate summary, and the whole ``report.json``
    object under ``report``."""
    try:
        gates = [_gate_summary(g) for g in report.get("gates") or ()]
        predicate = {
            "verdict": report["verdict"],
            "exit_code": report["exit_code"],
            "finished_at": report["finished_at"],
            "policy": {"sha256": (report.get("policy") or {}).get("sha256")},
            "gates": gates,
            "report": dict(report),
        }
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"not a modelseal report.json object ({type(e).__name__}: {e})."
        ) from None
    return _statement(image_name, manifest_digest, SCAN_REPORT_PREDICATE, predicate)


def _gate_summary(g: Mapping[str, Any]) -> dict[str, Any]:
    """``{gate, status, findings}`` of one gate of a report: schema_version 2 keeps the judged
    status and one outcome per finding under ``decision``; version 1 had them on the gate."""
    if "decision" in g:
        decision = g["decision"]
        return {
            "gate": str(g["gate"]),
            "status": str(decision["status"]),
            "findings": len(decision.get("outcomes") or ()),
        }
    return {
        "gate": str(g["gate"]),
        "status": str(g["status"]),
        "findings": len(g.get("findings") or ()),
    }


def sbom_statement(
    image_name: str, manifest_digest: str, sbom: Mapping[str, Any]
) -> dict[str, Any]:
    """A statement carrying the image's CycloneDX JSON SBOM as its predicate."""
    if sbom.get("bomFormat") != "CycloneDX":
        raise ConfigError("the SBOM is not CycloneDX JSON (bomFormat).")
    return _statement(image_name, manifest_digest, CYCLONEDX_PREDICATE, sbom)


# -- where the build ran ------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildEnvironment:
    """Who built, from what source: detected from GitHub Actions or a local git checkout."""

    builder_id: str
    invocation_id: str
    repository: str | None = None
    ref: str | None = None
    commit: str | None = None
    workflow_ref: str | None = None
    workflow_path: str | None = None
    internal_parameters: Mapping[str, Any] = field(default_factory=dict)


def detect_build_environment(
    env: Mapping[str, str] | None = None, repo_dir: Path | None = None
) -> BuildEnvironment:
    """GitHub Actions (``GITHUB_ACTIONS=true`` with ``GITHUB_REPOSITORY``) from its
    environment; otherwise the local builder with the git checkout at ``repo_dir`` (the
    current directory by default), as far as git can tell."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_REPOSITORY"):
        return _github(env)
    return _local(repo_dir or Path.cwd())


def _github(env: Mapping[str, str]) -> BuildEnvironment:
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repo = env["GITHUB_REPOSITORY"]
    runner = env.get("RUNNER_ENVIRONMENT") or "self-hosted"
    run_id = env.get("GITHUB_RUN_ID") or "unknown"
    attempt = env.get("GITHUB_RUN_ATTEMPT") or "1"
    workflow_ref = env.get("GITHUB_WORKFLOW_REF") or None
    workflow_path = None
    if workflow_ref:
        # "OWNER/REPO/.github/workflows/seal.yml@refs/heads/main" → ".github/workflows/seal.yml"
        workflow_path = workflow_ref.split("@", 1)[0].removeprefix(f"{repo}/")
    github = {
        key.lower(): env[name]
        for key, name in (
            ("event_name", "GITHUB_EVENT_NAME"),
            ("repository_id", "GITHUB_REPOSITORY_ID"),
            ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"),
            ("runner_environment", "RUNNER_ENVIRONMENT"),
        )
        if env.get(name)
    }
    commit = env.get("GITHUB_SHA") or None
    return BuildEnvironment(
        builder_id=GITHUB_BUILDER_ID_PREFIX + runner,
        invocation_id=f"{server}/{repo}/actions/runs/{run_id}/attempts/{attempt}",
        repository=f"{server}/{repo}",
        ref=env.get("GITHUB_REF") or None,
        commit=commit if commit and COMMIT_RE.fullmatch(commit) else None,
        workflow_ref=workflow_ref,
        workflow_path=workflow_path,
        internal_parameters={"github": github} if github else {},
    )


def _git(repo_dir: Path, *args: str) -> str | None:
    try:
        result = run_tool(["git", "-C", str(repo_dir), *args], timeout=_GIT_TIMEOUT, check=False)
    except ToolError:
        return None  # no git: a local build without source identity
    out = result.stdout.strip()
    return out if result.returncode == 0 and out else None


def public_repository_url(remote: str) -> str | None:
    """A remote URL fit for provenance: credentials and ``.git`` stripped; scp-style
    ``git@host:owner/repo`` becomes ``https://host/owner/repo``; local paths give None."""
    remote = remote.strip()
    scp = re.match(r"^[\w.-]+@([\w.-]+):(?!//)(.+)$", remote)
    if scp:
        host, path = scp.groups()
        return f"https://{host}/{path.removesuffix('.git').strip('/')}"
    parts = urllib.parse.urlsplit(remote)
    if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    path = parts.path.removesuffix(".git").rstrip("/")
    scheme = "https" if parts.scheme in ("ssh", "git") else parts.scheme
    return f"{scheme}://{host}{path}"


def _local(repo_dir: Path) -> BuildEnvironment:
    commit = _git(repo_dir, "rev-parse", "HEAD")
    remote = _git(repo_dir, "config", "--get", "remote.origin.url")
    return BuildEnvironment(
        builder_id=LOCAL_BUILDER_ID,
        invocation_id=f"urn:uuid:{uuid.uuid4()}",
        repository=public_repository_url(remote) if remote else None,
        ref=_git(repo_dir, "symbolic-ref", "-q", "HEAD"),
        commit=commit if commit and COMMIT_RE.fullmatch(commit) else None,
    )


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
    )
