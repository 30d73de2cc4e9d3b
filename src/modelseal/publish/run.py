"""From a passing run to a published image: the statements a run attests, and the signer.

Reads the gates' evidence (build facts and layout, the SBOM, the models record, the written
report and OpenVEX document), builds the SLSA provenance, SBOM, scan-report and OpenVEX
statements, and hands them to
:func:`modelseal.publish.publisher.publish`. ``provenance.intoto.json`` and ``publish.json``
are written next to the other reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelseal import fsio
from modelseal.errors import ConfigError, PublishError
from modelseal.findings import GateResult
from modelseal.models.mlbom import read_models_json
from modelseal.oci import OciLayout, platform_manifests
from modelseal.publish.github_attestations import GitHubTarget
from modelseal.publish.provenance import (
    BaseImage,
    Byproduct,
    ModelFile,
    compression_parameter,
    provenance_input_from_env,
    provenance_statement,
    rfc3339,
)
from modelseal.publish.publisher import (
    Attestation,
    ImageRef,
    PublishResult,
    Pusher,
    publish,
    registry_credentials,
)
from modelseal.publish.registry import sha256_digest
from modelseal.publish.statements import (
    openvex_statement,
    runtime_profile_statement,
    sbom_statement,
    scan_report_statement,
)
from modelseal.reports.vex import name_image
from modelseal.sign.interface import Signer

if TYPE_CHECKING:
    from modelseal.models.signing import ModelSignature

SignMode = Literal["keyless", "key", "none"]


@dataclass(frozen=True)
class SignOptions:
    """How to sign: the mode, and what that mode needs (secrets stay in files and env)."""

    mode: SignMode
    key_file: Path | None = None
    trust_config: Path | None = None
    attempts: int = 3
    public_transparency_log: bool = False
    """``sign.public_transparency_log``: keyless signing with the public Sigstore is allowed
    in a private repository's GitHub Actions job."""


def make_signer(options: SignOptions) -> Signer | None:
    """The signer for ``options.mode`` (None for ``none``)."""
    if options.mode == "none":
        return None
    if options.mode == "key":
        if options.key_file is None:
            raise ConfigError(
                "sign mode is key but no key was given: pass --key FILE (an ECDSA P-256 PEM "
                "private key; its password, if any, in MODELSEAL_KEY_PASSWORD)."
            )
        from modelseal.sign.key import KeySigner

        return KeySigner.from_file(options.key_file)
    from modelseal.sign.keyless import KeylessSigner
    from modelseal.sign.trust import load_trust_config

    if options.trust_config is None:
        from modelseal.publish.github_attestations import check_public_log

        check_public_log(public_transparency_log=options.public_transparency_log)
    return KeylessSigner(load_trust_config(options.trust_config), attempts=options.attempts)


def model_signature_byproduct(sig: ModelSignature) -> Byproduct:
    """The provenance byproduct recording a model signature the run made: the signature
    file's digest, and what it covers (the model digest is model-signing's payload subject)."""
    from modelseal.models.signing import PREDICATE_TYPE, SIGNATURE_MEDIA_TYPE

    notes = {
        "predicateType": PREDICATE_TYPE,
        "modelDir": sig.model_dir,
        "modelDigest": f"sha256:{sig.model_digest}",
        "files": str(sig.files),
        "signer": sig.mode,
    }
    if sig.identity is not None:
        notes |= {"identity": sig.identity, "issuer": str(sig.issuer)}
    return Byproduct(
        sig.path.name, sig.sha256, SIGNATURE_MEDIA_TYPE, annotations=tuple(notes.items())
    )


def runtime_profile_of(image: GateResult | None) -> dict[str, Any] | None:
    """The runtime profile the image gate wrote (None when it wrote none: the gate did not
    run). The file is read back bounded and must be what the gate recorded (its SHA-256 fact):
    the attestation states the profile the gate computed, nothing edited since."""
    from modelseal.bounded import read_input
    from modelseal.imagegate.profile import profile_sha256

    path = image.artifacts.get("runtime_profile") if image else None
    if image is None or path is None:
        return None
    text = read_input(Path(path), what="the runtime profile", limit=1 << 20, contained=False)
    try:
        data: object = json.loads(text)
    except (ValueError, RecursionError):  # not JSON (any more), or nested past the parser
        data = None
    if not isinstance(data, dict) or profile_sha256(data) != image.facts.get(
        "runtime_profile.sha256"
    ):
        raise PublishError(
            f"{path} is not the runtime profile the image gate wrote (changed since); nothing "
            "was published."
        )
    return data


def _bases(facts: Mapping[str, str]) -> list[BaseImage]:
    out = []
    for key in sorted(k for k in facts if k.startswith("base.")):
        ref, _, digest = facts[key].rpartition(" ")
        if digest.startswith("sha256:"):
            out.append(BaseImage(ref, digest))
    return out


def _models(models: GateResult | None) -> list[ModelFile]:
    path = models.artifacts.get("models_json") if models else None
    if path is None or not Path(path).is_file():
        return []
    return [ModelFile.from_record(r) for r in read_models_json(Path(path))]


def _builder(facts: Mapping[str, str]) -> dict[str, str]:
    """The build gate's ``builder.*`` facts and the engine's version, for the provenance."""
    out = {k.removeprefix("builder."): v for k, v in facts.items() if k.startswith("builder.")}
    if "engine.version" in facts:
        out["engine"] = facts["engine.version"]
    return out


def rebuild_inputs(facts: Mapping[str, str]) -> dict[str, Any]:
    """The build gate's facts a rebuild needs beyond the usual ones, as keyword arguments of
    :func:`~modelseal.publish.provenance.provenance_input_from_env`: the context and Dockerfile
    paths inside the repository, the named build contexts, the normalization version, the
    network of the ``RUN`` steps, the layer compression."""
    version = facts.get("context.normalization")
    finalizer = facts.get("layout.finalizer")
    return {
        "context_path": facts.get("source.context"),
        "dockerfile_path": facts.get("source.dockerfile"),
        "build_contexts": {
            k.removeprefix("build_context."): v
            for k, v in sorted(facts.items())
            if k.startswith("build_context.")
        },
        "normalization_version": int(version) if version and version.isdigit() else None,
        "network": facts.get("network"),
        "compression": compression_parameter(facts),
        "finalizer_version": int(finalizer) if finalizer and finalizer.isdigit() else None,
    }


def publish_run(
    results: Mapping[str, GateResult],
    report_path: Path,
    *,
    ref: ImageRef,
    signer: Signer | None,
    out_dir: Path,
    started_at: float,
    finished_at: float,
    build_args: Mapping[str, str],
    policy_path: str,
    policy_sha256: str,
    policy_ref: str | None = None,
    extra_tags: tuple[str, ...] = (),
    attestations: tuple[str, ...] = ("provenance", "sbom", "scan-report"),
    pusher: Pusher = "skopeo",
    repo_dir: Path | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    github: GitHubTarget | None = None,
    openvex_path: Path | None = None,
    model_signature: ModelSignature | None = None,
) -> PublishResult:
    """Attest, sign and publish the image a passing run built (and, with ``github``, submit
    the signed attestations to that GitHub repository's attestation store).

    ``openvex`` in ``attestations`` publishes the run's OpenVEX document (``openvex_path``,
    written only when the verdict accepted a risk) with the image named in its product; with
    no document there is nothing to attest (OpenVEX needs at least one statement) and the
    attestation is left out — the caller says so. ``model_signature`` (``publish.sign_models``)
    is recorded as a provenance byproduct and in ``publish.json``."""
    build = results.get("build")
    if build is None or "oci_layout" not in build.artifacts or "image.digest" not in build.facts:
        raise PublishError("nothing to publish: the build gate did not produce an image.")
    layout = OciLayout(Path(build.artifacts["oci_layout"]))
    digest = build.facts["image.digest"]
    facts = build.facts
    epoch = int(facts["source_date_epoch"]) if "source_date_epoch" in facts else None
    platforms = platform_manifests(facts)
    sbom_result = results.get("sbom")
    sbom_path = sbom_result.artifacts.get("sbom") if sbom_result else None
    # Each byproduct is read once: hashed for the provenance, parsed for its attestation.
    report_bytes = report_path.read_bytes()
    byproducts = [Byproduct("report.json", sha256_digest(report_bytes), "application/json")]
    sbom_bytes = None
    if sbom_path is not None:
        sbom_bytes = Path(sbom_path).read_bytes()
        byproducts.append(
            Byproduct(
                Path(sbom_path).name, sha256_digest(sbom_bytes), "application/vnd.cyclonedx+json"
            )
        )
    if model_signature is not None:
        byproducts.append(model_signature_byproduct(model_signature))
    provenance = provenance_statement(
        provenance_input_from_env(
            ref.name,
            digest,
            dockerfile=facts.get("dockerfile", "Dockerfile"),
            source_date_epoch=epoch or 0,
            started_on=rfc3339(started_at),
            finished_on=rfc3339(finished_at),
            build_args=dict(build_args),
            policy_path=policy_path,
            policy_sha256=policy_sha256 if len(policy_sha256) == 64 else None,
            policy_ref=policy_ref,
            platforms=tuple(platforms) if "platforms" in facts or len(platforms) > 1 else (),
            labels=labels,
            annotations=annotations,
            tags=tuple(dict.fromkeys([*([ref.tag] if ref.tag else []), *extra_tags])),
            buildx_version=facts.get("buildx.version"),
            buildkit_version=facts.get("buildkit.version"),
            builder=_builder(facts),
            base_images=_bases(facts),
            models=_models(results.get("models")),
            byproducts=byproducts,
            repo_dir=repo_dir,
            **rebuild_inputs(facts),
        )
    )
    fsio.write_text_atomic(
        out_dir / "provenance.intoto.json", json.dumps(provenance, indent=2) + "\n"
    )
    statements: dict[str, Mapping[str, Any]] = {"provenance": provenance}
    if "sbom" in attestations:
        if sbom_bytes is None:
            raise PublishError("the SBOM attestation is asked for but the sbom gate wrote none.")
        statements["sbom"] = sbom_statement(ref.name, digest, json.loads(sbom_bytes))
    if "scan-report" in attestations:
        statements["scan-report"] = scan_report_statement(
            ref.name, digest, json.loads(report_bytes)
        )
    if "runtime-profile" in attestations:
        profile = runtime_profile_of(results.get("image"))
        if profile is not None:
            statements["runtime-profile"] = runtime_profile_statement(ref.name, digest, profile)
    if "openvex" in attestations and openvex_path is not None:
        vex = name_image(json.loads(openvex_path.read_bytes()), digest, ref.name)
        statements["openvex"] = openvex_statement(ref.name, digest, vex)
    chosen = [Attestation(n, s) for n, s in statements.items() if n in attestations]
    result = publish(
        ref,
        layout,
        digest,
        signer=signer,
        attestations=chosen,
        out_dir=out_dir,
        extra_tags=extra_tags,
        created=epoch,
        credentials=registry_credentials(ref.host),
        pusher=pusher,
        github=github,
    )
    data = result.to_json()
    data["provenance"] = str(out_dir / "provenance.intoto.json")
    if model_signature is not None:
        data["model_signature"] = model_signature.to_json()
    fsio.write_text_atomic(out_dir / "publish.json", json.dumps(data, indent=2) + "\n")
    return result
