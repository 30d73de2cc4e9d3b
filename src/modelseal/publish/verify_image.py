"""``modelseal verify IMAGE``: what a deployer checks before running an image.

One command instead of cosign + slsa-verifier + scripts. For the image's manifest digest:

* **signature** — at least one image signature by the expected signer: a Sigstore bundle
  referrer signing the manifest itself, or a cosign v2 ``.sig`` whose simple-signing payload
  names the digest;
* **provenance** — a SLSA v1 provenance attestation by the expected signer whose subject is
  the digest, with the expected builder id and source repository (when asked for);
* **sbom** — a CycloneDX SBOM attestation by the expected signer;
* **scan-report** — modelseal's scan-report attestation: verdict PASSED, not older than
  ``max_scan_age_days``, and (when a policy is given) still PASSED when its evidence is judged
  again under that policy;
* **policy** (with ``policy_sha256``) — the provenance and the scan report both name the
  policy with that SHA-256 as the one the run was judged by;
* **rebuild** (with ``rebuilders``) — at least ``min_rebuilds`` of the listed rebuilders
  attest that they rebuilt the image and got its digest (:func:`_rebuild_check`);
* **runtime-profile** — the least-privilege runtime profile
  (:data:`~modelseal.publish.statements.RUNTIME_PROFILE_PREDICATE`) by the expected signer,
  shown (:attr:`VerifyResult.runtime_profile`). Required when a verified scan report's image
  gate records one (``runtime_profile.sha256``): then the attested profile must be that very
  one, so a profile signed for another run does not stand in for it. Required anyway with
  ``require_runtime_profile`` (``verify.require_runtime_profile``); otherwise an image without
  one (published before runtime profiles, or with the image gate off) has no such check.

A rebuilder is an :class:`ExpectedSigner` of its own. It is tried only on the attestations
whose annotations say :data:`~modelseal.publish.statements.REBUILD_PREDICATE` (a hint anyone
who may push can write: it only saves work, the verified statement decides). A rebuilder
agrees when one of its attestations verifies and says ``reproduced`` with the image digest
as both subject and ``rebuiltDigest``; one that also signed ``differs`` for the digest does
not agree (conflicting: fail closed).

Attestations are read from both Sigstore bundle referrers and cosign ``.att``; a statement only
counts when its signature verifies. Signatures by anyone else are ignored, not trusted.

The registry is hostile until bounded: the whole verification runs under one deadline
(``--timeout`` / ``verify.timeout_seconds``), every answer under the client's size limits, and
the referrers and ``.sig``/``.att`` layers it fetches under a count. Breaking a limit, or a
registry that cannot answer, stops the verification (exit 3): it is never a pass, and never
read as "no signature" either.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelseal.errors import ConfigError, Error
from modelseal.oci import DIGEST_RE
from modelseal.policy.model import MAX_REBUILDERS
from modelseal.publish.cosign import (
    BUNDLE_CONTENT_ANNOTATION,
    BUNDLE_PREDICATE_TYPE_ANNOTATION,
    PREDICATE_TYPE_ANNOTATION,
    CosignFormatError,
    cosign_tag,
    parse_att_manifest,
    parse_sig_manifest,
    parse_simple_signing_payload,
)
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.publisher import ImageRef, registry_credentials, registry_token_hosts
from modelseal.publish.registry import RegistryClient, sha256_digest
from modelseal.publish.registry_limits import RegistryError, RegistryLimitError, RegistryUnavailable
from modelseal.publish.statements import (
    CYCLONEDX_PREDICATE,
    REBUILD_PREDICATE,
    RUNTIME_PROFILE_PREDICATE,
    SCAN_REPORT_PREDICATE,
)
from modelseal.sign.interface import BUNDLE_MEDIA_TYPE, VerificationError
from modelseal.sign.verify import (
    ExpectedSigner,
    VerifiedSignature,
    verify_bundle,
    verify_cosign_attestation,
    verify_cosign_signature,
)
from modelseal.untrusted import untrusted


@dataclass(frozen=True)
class Rebuilder:
    """A rebuilder whose rebuild attestations count: its name as the user gave it
    (``key:FILE`` or the identity) and the signer it must be."""

    name: str
    expected: ExpectedSigner


@dataclass(frozen=True)
class RebuildVote:
    """What one required rebuilder attested about the image."""

    rebuilder: str
    agrees: bool
    why: str
    """How it agreed, or why it does not count."""


@dataclass(frozen=True)
class VerifyOptions:
    """What the image must satisfy."""

    expected: ExpectedSigner
    builder_id: str | None = None
    source_repository: str | None = None
    max_scan_age_days: int = 30
    rejudge: Callable[[Any], tuple[bool, str]] | None = None
    """Judges a scan report's evidence again: ``(passed, verdict text)``."""
    now: float | None = None
    policy_sha256: str | None = None
    """Hex SHA-256 of the policy the attested run must have been judged by."""
    timeout_s: float = 300.0
    """The whole verification's deadline (every registry request and check)."""
    rebuilders: tuple[Rebuilder, ...] = ()
    """Rebuilders whose rebuild attestations count (empty: no rebuild check)."""
    min_rebuilds: int | None = None
    """How many of ``rebuilders`` must agree (None: all of them)."""
    require_runtime_profile: bool = False
    """Require a runtime-profile attestation even when no scan report records one."""

    def __post_init__(self) -> None:
        if len(self.rebuilders) > MAX_REBUILDERS:
            raise ConfigError(f"at most {MAX_REBUILDERS} rebuilders can be required.")
        if self.min_rebuilds is not None and not 1 <= self.min_rebuilds <= len(self.rebuilders):
            raise ConfigError(
                f"min_rebuilds is {self.min_rebuilds}; it must be from 1 to the number of "
                f"rebuilders listed ({len(self.rebuilders)})."
            )


@dataclass(frozen=True)
class Check:
    """One requirement and whether the image met it."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyResult:
    """Every check, in order; the image is verified only when all are ok."""

    image: str
    digest: str
    checks: tuple[Check, ...]
    signer: str | None = None
    statements: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """predicateType → the first verified statement of that type."""
    all_statements: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    """predicateType → every verified statement of that type (an image may carry several)."""
    rebuilds: tuple[RebuildVote, ...] = ()
    """Each required rebuilder's vote (empty: no rebuilders were required)."""
    runtime_profile: Mapping[str, Any] | None = None
    """The verified runtime profile (the attestation's predicate; the one the scan report
    records when it records one), None when there is none."""

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """A JSON summary (``--format json``)."""
        out: dict[str, Any] = {
            "image": self.image,
            "digest": self.digest,
            "verified": self.ok,
            "signer": self.signer,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }
        if self.runtime_profile is not None:
            out["runtime_profile"] = dict(self.runtime_profile)
        if self.rebuilds:
            out["rebuilds"] = [
                {"rebuilder": v.rebuilder, "agrees": v.agrees, "why": v.why} for v in self.rebuilds
            ]
        return out


def verify_image(
    text: str,
    options: VerifyOptions,
    client_factory: Callable[[str, str], RegistryClient] | None = None,
) -> VerifyResult:
    """Run every check on the image ``text`` names; registry failures raise :class:`RegistryError`."""
    ref = ImageRef.parse(text, what="image", allow_digest=True)
    pinned = ref.digest
    client = (client_factory or _client)(ref.host, ref.repository)
    client.set_deadline(options.timeout_s, "verify timeout (--timeout, verify.timeout_seconds)")
    try:
        _, body, digest = client.get_manifest(pinned or ref.tag or "latest")
    except RegistryError as e:
        raise RegistryError(
            f"cannot read {text}: {e.diagnostics()}", method=e.method, path=e.path, status=e.status
        ) from None
    if sha256_digest(body) != digest or (pinned and digest != pinned):
        raise VerificationError(
            f"{text}: the registry's manifest does not match {pinned or digest} (tampered or "
            "wrong registry answer)."
        )
    rebuilds = _RebuildTally(options.rebuilders, digest, client.check_deadline)
    found = gather_signed(client, digest, body, options.expected, rebuilds)
    signers, problems, image_signed = found.signers, found.problems, found.image_signed
    statements = found.statements

    why = f" ({'; '.join(problems[:3])})" if problems else ""
    checks = [
        Check(
            "signature",
            image_signed,
            _plain(f"signed by {signers[0]}")
            if image_signed and signers
            else f"no valid signature{why}",
        ),
        _provenance_check(statements.get(SLSA_PROVENANCE_V1, []), options, why),
        Check(
            "sbom",
            bool(statements.get(CYCLONEDX_PREDICATE)),
            "CycloneDX SBOM attested"
            if statements.get(CYCLONEDX_PREDICATE)
            else f"no SBOM attestation by the expected signer{why}",
        ),
        _scan_check(statements.get(SCAN_REPORT_PREDICATE, []), options, why),
    ]
    if options.policy_sha256 is not None:
        checks.append(_policy_check(statements, options.policy_sha256))
    profile_check, profile = _runtime_profile_check(statements, options, why)
    if profile_check is not None:
        checks.append(profile_check)
    votes = rebuilds.votes()
    if options.rebuilders:
        checks.append(_rebuild_check(votes, options, rebuilds.ignored))
    return VerifyResult(
        image=ref.name,
        digest=digest,
        checks=tuple(checks),
        signer=signers[0] if signers else None,
        statements={k: v[0] for k, v in statements.items() if v},
        all_statements={k: tuple(v) for k, v in statements.items() if v},
        rebuilds=votes,
        runtime_profile=profile,
    )


def _recorded_profiles(scan_reports: list[Mapping[str, Any]]) -> set[str]:
    """The runtime profiles (hex SHA-256) the image gate of each verified scan report recorded."""
    out = set()
    for st in scan_reports:
        gates = _dig(st["predicate"], "report", "gates")
        for g in gates if isinstance(gates, list) else ():
            # schema_version 2 keeps a gate's facts under evidence; version 1 on the gate
            sha = _dig(g, "evidence", "facts", "runtime_profile.sha256") or _dig(
                g, "facts", "runtime_profile.sha256"
            )
            if isinstance(g, Mapping) and g.get("gate") == "image" and isinstance(sha, str):
                out.add(sha)
    return out


def _runtime_profile_check(
    statements: Mapping[str, list[Mapping[str, Any]]], options: VerifyOptions, why: str
) -> tuple[Check | None, Mapping[str, Any] | None]:
    """The runtime-profile check (None when nothing asks for one and none is attested) and
    the profile to show."""
    from modelseal.imagegate.profile import profile_sha256

    found = [st["predicate"] for st in statements.get(RUNTIME_PROFILE_PREDICATE, [])]
    recorded = _recorded_profiles(statements.get(SCAN_REPORT_PREDICATE, []))
    if recorded:
        match = next((p for p in found if profile_sha256(p) in recorded), None)
        if match is None:
            shown = ", ".join(f"sha256:{_clip(d)}" for d in sorted(recorded)[:3])
            return Check(
                "runtime-profile", False,
                f"the scan report records the runtime profile {shown}, but no runtime-profile "
                "attestation by the expected signer is that profile "
                f"({len({profile_sha256(p) for p in found})} other profile(s) found){why}",
            ), None  # fmt: skip
        return Check("runtime-profile", True, _profile_text(match) + ", as scanned"), match
    if found:
        return Check("runtime-profile", True, _profile_text(found[0])), found[0]
    if options.require_runtime_profile:
        return Check(
            "runtime-profile", False, f"no runtime-profile attestation by the expected signer{why}"
        ), None
    return None, None


def _profile_text(profile: Mapping[str, Any]) -> str:
    """One line about a runtime profile (it came from a verified statement: still escaped)."""
    sc = _dig(profile, "kubernetes", "securityContext")
    sc = sc if isinstance(sc, Mapping) else {}
    if profile.get("nonRoot") is True:
        who = f"runs as uid {_clip(sc.get('runAsUser'))}" + (
            f" gid {_clip(sc['runAsGroup'])}" if "runAsGroup" in sc else ""
        )
    else:
        problem = _dig(profile, "user", "problem")
        who = "NOT non-root (" + (_clip(problem) if problem else "runs as root") + ")"
    added = _dig(sc, "capabilities", "add")
    caps = "drops ALL capabilities" + (
        f", adds {_clip(', '.join(map(str, added)))}" if isinstance(added, list) and added else ""
    )
    return _plain(f"{who}; read-only root filesystem; {caps}")


@dataclass
class Gathered:
    """What :func:`gather_signed` found signed by the expected signer for one image digest."""

    image_signed: bool = False
    """A signature of the image itself (bundle referrer or cosign ``.sig``)."""
    signers: list[str] = field(default_factory=list)
    """Who signed each verified signature or attestation, in the order found."""
    problems: list[str] = field(default_factory=list)
    """Why a signature or attestation did not count (printable text)."""
    statements: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    """predicateType → the verified in-toto statements whose subject is the digest."""
    statement_signers: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)
    """Each statement of :attr:`statements` with who signed it."""

    def signer_of(self, statement: Mapping[str, Any]) -> str | None:
        """Who signed ``statement`` (one of :attr:`statements`, by identity)."""
        return next((who for st, who in self.statement_signers if st is statement), None)


def gather_signed(
    client: RegistryClient,
    digest: str,
    image_manifest: bytes,
    expected: ExpectedSigner,
    rebuilds: _RebuildTally | None = None,
) -> Gathered:
    """Every signature and attestation of ``digest`` (whose manifest bytes are ``image_manifest``)
    that verifies as ``expected``'s: Sigstore bundle referrers, cosign v2 ``.sig`` and
    ``.att``. Anything else is a problem noted, never trusted; a registry that cannot answer,
    or breaks a limit, raises (:class:`RegistryUnavailable`, :class:`RegistryLimitError`).
    ``rebuilds``: the required rebuilders, tried on the attestations annotated as rebuilds
    (one a rebuilder signed is theirs, not the image signer's)."""
    found = Gathered()
    rebuilds = rebuilds or _RebuildTally((), digest, client.check_deadline)

    def note(where: str, e: Error) -> None:
        found.problems.append(_plain(f"{where}: {e.diagnostics()}"))

    # Sigstore bundle referrers: the image signature and attestations
    for desc in _referrers(client, digest, found.problems):
        ref_digest = desc.get("digest")
        if not isinstance(ref_digest, str) or not DIGEST_RE.match(ref_digest):
            found.problems.append("a referrer descriptor without a valid digest (ignored)")
            continue
        where = f"referrer {ref_digest}"
        client.check_deadline(f"verifying {where}")
        try:
            _, rbody, _ = client.get_manifest(ref_digest)
            manifest = json.loads(rbody)
            layer_digest = manifest["layers"][0]["digest"]
            if not isinstance(layer_digest, str) or not DIGEST_RE.match(layer_digest):
                raise CosignFormatError("the bundle layer has no valid digest")
            bundle = client.get_blob(layer_digest)
            annotations = manifest.get("annotations")
            if not isinstance(annotations, dict):
                annotations = {}
            content = annotations.get(BUNDLE_CONTENT_ANNOTATION)
            if content == "message-signature":
                verified = verify_bundle(bundle, payload=image_manifest, expected=expected)
                found.image_signed = True
            else:
                if annotations.get(BUNDLE_PREDICATE_TYPE_ANNOTATION) == REBUILD_PREDICATE and (
                    rebuilds.consider(_bundle_verifier(bundle), where)
                ):
                    continue
                verified = verify_bundle(bundle, payload=None, expected=expected)
                statement = _collect(verified.statement, digest, found.statements)
                found.statement_signers.append((statement, _who(verified)))
            found.signers.append(_who(verified))
        except _CANNOT_RUN:
            raise
        except _MALFORMED as e:
            note(where, e if isinstance(e, Error) else CosignFormatError(f"malformed ({e})"))

    # cosign v2 .sig / .att
    for kind in ("sig", "att"):
        try:
            _, sbody, _ = client.get_manifest(cosign_tag(digest, kind))
        except _CANNOT_RUN:
            raise
        except RegistryError as e:
            if e.status != 404:
                note(f"cosign .{kind}", e)
            continue
        try:
            if kind == "sig":
                sig_layers = parse_sig_manifest(
                    sbody,
                    lambda d: client.get_blob(d, "signature"),
                    client.limits.max_signature_layers,
                )
                for layer in sig_layers:
                    client.check_deadline("verifying cosign .sig layers")
                    try:
                        _, named = parse_simple_signing_payload(layer.content)
                        if named != digest:
                            raise VerificationError(f"the payload names {named}, not {digest}")
                        verified = verify_cosign_signature(
                            layer.content, layer.annotations, expected
                        )
                        found.image_signed = True
                        found.signers.append(_who(verified))
                    except _CANNOT_RUN:
                        raise
                    except _MALFORMED as e:
                        note("cosign .sig layer", _as_error(e))
            else:
                att_layers = parse_att_manifest(
                    sbody, client.get_blob, client.limits.max_signature_layers
                )
                for layer in att_layers:
                    client.check_deadline("verifying cosign .att layers")
                    hint = layer.annotations.get(PREDICATE_TYPE_ANNOTATION)
                    if hint == REBUILD_PREDICATE and rebuilds.consider(
                        _att_verifier(layer.content, layer.annotations), "cosign .att layer"
                    ):
                        continue
                    try:
                        verified = verify_cosign_attestation(
                            layer.content, layer.annotations, expected
                        )
                        statement = _collect(verified.statement, digest, found.statements)
                        found.statement_signers.append((statement, _who(verified)))
                        found.signers.append(_who(verified))
                    except _CANNOT_RUN:
                        raise
                    except _MALFORMED as e:
                        note("cosign .att layer", _as_error(e))
        except _CANNOT_RUN:
            raise
        except _MALFORMED as e:
            note(f"cosign .{kind}", _as_error(e))
    client.check_deadline("verifying")
    return found


#: What a hostile or broken registry answer can raise while it is taken apart: each is a
#: reason to ignore that one signature or attestation, never to stop (or pass) the verify.
#: RecursionError: JSON nested deeper than the parser goes.
_MALFORMED = (
    Error, KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError,
)  # fmt: skip
#: A broken limit or a registry that cannot answer: the verification cannot run (exit 3).
_CANNOT_RUN = (RegistryLimitError, RegistryUnavailable)
#: A scan report may be this far in the future (clock skew) before it counts as forged.
_SKEW_S = 600


def _as_error(e: BaseException) -> Error:
    return e if isinstance(e, Error) else CosignFormatError(f"malformed ({type(e).__name__})")


def _plain(text: str) -> str:
    """Text that came from a registry, safe to print (:func:`modelseal.untrusted.untrusted`):
    no control characters, no workflow command at its start (markup is the printer's job)."""
    return untrusted(text, markup=False)


def _client(host: str, repo: str) -> RegistryClient:
    return RegistryClient(
        host, repo, auth=registry_credentials(host), token_hosts=registry_token_hosts()
    )


def _referrers(client: RegistryClient, digest: str, problems: list[str]) -> list[dict[str, Any]]:
    try:
        return client.referrers(digest, BUNDLE_MEDIA_TYPE)
    except _CANNOT_RUN:
        raise
    except RegistryError as e:
        problems.append(f"referrers: {e.diagnostics()}")
        return []


def _who(verified: Any) -> str:
    identity = getattr(verified, "identity", None)
    issuer = getattr(verified, "issuer", None)
    if identity:
        return f"{identity} (issuer {issuer})" if issuer else str(identity)
    return "the expected key"


def _collect(
    statement: Mapping[str, Any] | None, digest: str, out: dict[str, list[Mapping[str, Any]]]
) -> Mapping[str, Any]:
    if not isinstance(statement, Mapping):
        raise VerificationError("the envelope carries no in-toto statement.")
    subjects = statement.get("subject")
    want = digest.removeprefix("sha256:")
    if not isinstance(subjects, list) or not any(
        isinstance(s, Mapping)
        and isinstance(s.get("digest"), Mapping)
        and s["digest"].get("sha256") == want
        for s in subjects
    ):
        raise VerificationError(f"the statement's subject is not {digest}.")
    if not isinstance(statement.get("predicate"), Mapping):
        raise VerificationError("the statement has no predicate object.")
    out.setdefault(str(statement.get("predicateType")), []).append(statement)
    return statement


def _provenance_check(found: list[Mapping[str, Any]], options: VerifyOptions, why: str) -> Check:
    if not found:
        return Check("provenance", False, f"no SLSA v1 provenance by the expected signer{why}")
    problems = []
    for st in found:
        pred = st["predicate"]
        builder = _dig(pred, "runDetails", "builder", "id")
        source = _dig(pred, "buildDefinition", "externalParameters", "source", "repository")
        if options.builder_id is not None and builder != options.builder_id:
            problems.append(_plain(f"builder {builder!r} is not {options.builder_id!r}"))
            continue
        if options.source_repository is not None and (
            str(source or "").rstrip("/") != options.source_repository.rstrip("/")
        ):
            problems.append(
                _plain(f"source repository {source!r} is not {options.source_repository!r}")
            )
            continue
        where = source or "not stated (a build without a git remote)"
        return Check("provenance", True, _plain(f"SLSA v1, builder {builder}, source {where}"))
    return Check("provenance", False, "; ".join(problems))


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _scan_check(found: list[Mapping[str, Any]], options: VerifyOptions, why: str) -> Check:
    if not found:
        return Check(
            "scan-report", False, f"no scan-report attestation by the expected signer{why}"
        )
    now = options.now if options.now is not None else time.time()
    problems = []
    for st in found:
        pred = st["predicate"]
        if pred.get("verdict") != "PASSED":
            problems.append(_plain(f"verdict {pred.get('verdict')}"))
            continue
        try:
            finished = calendar.timegm(
                time.strptime(str(pred["finished_at"]), "%Y-%m-%dT%H:%M:%SZ")
            )
        except (KeyError, ValueError):
            problems.append("no readable finished_at")
            continue
        age_days = (now - finished) / 86400
        if finished > now + _SKEW_S:
            problems.append("finished_at lies in the future")
            continue
        if age_days > options.max_scan_age_days:
            problems.append(
                f"scanned {age_days:.1f} days ago, more than {options.max_scan_age_days}"
            )
            continue
        if options.rejudge is not None:
            passed, text = options.rejudge(pred.get("report"))
            if not passed:
                problems.append(f"judged again under the given policy: {text}")
                continue
            return Check("scan-report", True, f"PASSED, {age_days:.1f} days old; {text}")
        return Check("scan-report", True, f"PASSED, {age_days:.1f} days old")
    return Check("scan-report", False, "; ".join(problems))


def _policy_check(statements: Mapping[str, list[Mapping[str, Any]]], want: str) -> Check:
    """Both the provenance and the scan report must name the policy ``want`` (hex SHA-256):
    the run was judged by that policy, not one a pull request wrote."""
    seen: dict[str, set[str]] = {}
    for kind, predicate, path in (
        ("provenance", SLSA_PROVENANCE_V1, ("buildDefinition", "externalParameters", "policy")),
        ("scan-report", SCAN_REPORT_PREDICATE, ("policy",)),
    ):
        for st in statements.get(predicate, []):
            digest = _dig(st["predicate"], *path, "sha256")
            seen.setdefault(kind, set()).add(str(digest) if digest else "none")
    missing = [k for k in ("provenance", "scan-report") if k not in seen]
    if missing:
        return Check("policy", False, f"no {' or '.join(missing)} attestation names a policy")
    wrong = sorted({d for ds in seen.values() for d in ds if d != want})
    if wrong:
        shown = ", ".join(f"sha256:{d}" if d != "none" else "none" for d in wrong)
        return Check("policy", False, _plain(f"judged by another policy ({shown})"))
    return Check("policy", True, f"judged by policy sha256:{want}")


class _RebuildTally:
    """What each required rebuilder attested, from the attestations that verify as theirs."""

    def __init__(
        self, rebuilders: tuple[Rebuilder, ...], digest: str, check_deadline: Callable[[str], None]
    ) -> None:
        self.rebuilders = rebuilders
        self.digest = digest
        self.check_deadline = check_deadline
        self.reproduced: dict[str, int] = {r.name: 0 for r in rebuilders}
        self.differs: dict[str, list[str]] = {r.name: [] for r in rebuilders}
        """Per rebuilder: the digests its ``differs`` attestations say it rebuilt."""
        self.other: dict[str, list[str]] = {r.name: [] for r in rebuilders}
        self.ignored = 0
        """Rebuild-annotated attestations that no required rebuilder signed."""

    def consider(self, verify: Callable[[ExpectedSigner], VerifiedSignature], where: str) -> bool:
        """Try each rebuilder on one attestation; True when one signed it and it is a rebuild
        statement (nothing left for the image's signer to read in it)."""
        if not self.rebuilders:
            return False
        for rebuilder in self.rebuilders:
            self.check_deadline(f"verifying {where}")
            try:
                verified = verify(rebuilder.expected)
            except _CANNOT_RUN:
                raise
            except _MALFORMED:
                continue  # not this rebuilder's (or not a signature at all)
            # One signature has one signer: keys are distinct and a Fulcio certificate names
            # one identity, so no other listed rebuilder can have signed it too.
            kind, text = _rebuild_claim(verified.statement, self.digest)
            if kind == "reproduced":
                self.reproduced[rebuilder.name] += 1
            elif kind == "differs":
                self.differs[rebuilder.name].append(text)
            else:
                self.other[rebuilder.name].append(text)
            return kind != "not-a-rebuild"
        self.ignored += 1
        return False

    def votes(self) -> tuple[RebuildVote, ...]:
        """Each rebuilder's vote, in the order they were listed."""
        out = []
        for r in self.rebuilders:
            differs, reproduced, other = (
                self.differs[r.name],
                self.reproduced[r.name],
                self.other[r.name],
            )
            if differs and reproduced:
                vote = RebuildVote(
                    r.name, False,
                    f"conflicting: it attested both reproduced and differs (rebuilt {differs[0]}) "
                    "for this digest",
                )  # fmt: skip
            elif differs:
                vote = RebuildVote(r.name, False, f"its rebuild differs (rebuilt {differs[0]})")
            elif reproduced:
                vote = RebuildVote(r.name, True, "reproduced the digest")
            elif other:
                vote = RebuildVote(r.name, False, "; ".join(dict.fromkeys(other[:3])))
            else:
                vote = RebuildVote(r.name, False, "no rebuild attestation by it verifies")
            out.append(vote)
        return tuple(out)


def _bundle_verifier(bundle: bytes) -> Callable[[ExpectedSigner], VerifiedSignature]:
    return lambda expected: verify_bundle(bundle, payload=None, expected=expected)


def _att_verifier(
    envelope: bytes, annotations: Mapping[str, str]
) -> Callable[[ExpectedSigner], VerifiedSignature]:
    return lambda expected: verify_cosign_attestation(envelope, annotations, expected)


def _rebuild_claim(statement: Any, digest: str) -> tuple[str, str]:
    """What a verified statement says about rebuilding ``digest``: ``reproduced``, ``differs``
    (with the digest it rebuilt), ``wrong`` (a rebuild attestation that does not count) or
    ``not-a-rebuild``, and why."""
    if not isinstance(statement, Mapping):
        return "not-a-rebuild", "its signed envelope carries no in-toto statement"
    predicate_type = statement.get("predicateType")
    if predicate_type != REBUILD_PREDICATE:
        return "not-a-rebuild", f"not a rebuild attestation (predicateType {_clip(predicate_type)})"
    subjects = statement.get("subject")
    named = [
        s["digest"].get("sha256")
        for s in (subjects if isinstance(subjects, list) else [])
        if isinstance(s, Mapping) and isinstance(s.get("digest"), Mapping)
    ]
    if digest.removeprefix("sha256:") not in named:
        shown = f"sha256:{_clip(named[0])}" if named else "none"
        return "wrong", f"its rebuild attestation is about another image (subject {shown})"
    predicate = statement.get("predicate")
    if not isinstance(predicate, Mapping):
        return "wrong", "its rebuild attestation has no predicate object"
    verdict, rebuilt = predicate.get("verdict"), predicate.get("rebuiltDigest")
    if verdict == "differs":
        return "differs", _clip(rebuilt)
    if verdict != "reproduced":
        return "wrong", f"its rebuild attestation's verdict is {_clip(verdict)}"
    if rebuilt != digest:
        return "wrong", f"it says reproduced but rebuilt {_clip(rebuilt)}, not the image digest"
    return "reproduced", "reproduced the digest"


def _clip(value: Any) -> str:
    """A value from a statement, short and safe to print."""
    return untrusted(value if isinstance(value, str) else repr(value), markup=False, limit=80)


def _rebuild_check(votes: tuple[RebuildVote, ...], options: VerifyOptions, ignored: int) -> Check:
    """ok when at least ``min_rebuilds`` (default: every) required rebuilder agrees."""
    need = options.min_rebuilds if options.min_rebuilds is not None else len(votes)
    agreed = [v.rebuilder for v in votes if v.agrees]
    missing = [f"{v.rebuilder} ({v.why})" for v in votes if not v.agrees]
    ok = len(agreed) >= need
    text = (
        f"{'' if ok else 'only '}{len(agreed)} of {len(votes)} rebuilders reproduced the digest "
        f"(need {need})"
    )
    if agreed:
        text += f"; agreed: {', '.join(agreed)}"
    if missing:
        text += f"; not: {', '.join(missing)}"
    if ignored:
        text += f"; {ignored} rebuild attestation(s) signed by none of them ignored"
    return Check("rebuild", ok, _plain(text))
