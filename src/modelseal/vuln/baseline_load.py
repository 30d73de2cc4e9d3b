"""Loading a vulnerability baseline (:mod:`modelseal.vuln.baseline`): a ``report.json`` file
read bounded, or the newest scan-report attestation of an image that verifies as the expected
signer's (:func:`modelseal.publish.verify_image.gather_signed`, as ``modelseal verify``). Every
failure is carried in the returned :class:`~modelseal.vuln.baseline.Baseline`'s ``error``:
the vulnerability gates are then ERRORED.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelseal.bounded import parse_json, read_input, shown_path
from modelseal.errors import ConfigError, Error
from modelseal.findings import Finding
from modelseal.untrusted import untrusted
from modelseal.vuln.baseline import (
    MAX_BASELINE_BYTES,
    MAX_BASELINE_FINDINGS,
    Baseline,
    BaselineFinding,
    BaselineSpec,
)
from modelseal.vuln.findings import VULN_TYPE

if TYPE_CHECKING:
    from modelseal.sign.verify import ExpectedSigner


def load_baseline(
    spec: BaselineSpec, *, expected: ExpectedSigner | None = None, timeout_s: float = 300.0
) -> Baseline:
    """Read and check the baseline ``spec`` names: a file, or the newest scan-report
    attestation of the image signed as ``expected`` (required for an image). Never raises
    for a bad baseline: the returned one carries the ``error`` (the gates are ERRORED)."""
    try:
        if spec.path is not None:
            data, digest = _read_file(spec.path)
            return _from_report(spec, data, digest, None, str(spec.path))
        if expected is None:
            raise ConfigError("an image baseline needs an expected signer (the verify section).")
        return _from_image(spec, expected, timeout_s)
    except Error as e:
        return Baseline(spec, error=untrusted(e.diagnostics(), markup=False, multiline=True))


def _read_file(path: Path) -> tuple[Any, str]:
    raw = read_input(path, what="baseline report", limit=MAX_BASELINE_BYTES, contained=False)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"baseline report {shown_path(path)} is not UTF-8 (offset {e.start})."
        ) from None
    return parse_json(text, f"baseline report {shown_path(path)}"), digest


def _from_image(spec: BaselineSpec, expected: ExpectedSigner, timeout_s: float) -> Baseline:
    from modelseal.publish.publisher import ImageRef, registry_credentials, registry_token_hosts
    from modelseal.publish.registry import RegistryClient, sha256_digest
    from modelseal.publish.statements import SCAN_REPORT_PREDICATE
    from modelseal.publish.verify_image import gather_signed
    from modelseal.sign.interface import VerificationError

    assert spec.image is not None
    ref = ImageRef.parse(spec.image, what="baseline", allow_digest=True)
    client = RegistryClient(
        ref.host,
        ref.repository,
        auth=registry_credentials(ref.host),
        token_hosts=registry_token_hosts(),
    )
    client.set_deadline(timeout_s, "baseline timeout (verify.timeout_seconds)")
    _, body, digest = client.get_manifest(ref.digest or ref.tag or "latest")
    if sha256_digest(body) != digest or (ref.digest and digest != ref.digest):
        raise VerificationError(
            f"{spec.image}: the registry's manifest does not match {ref.digest or digest}."
        )
    found = gather_signed(client, digest, body, expected)
    reports = found.statements.get(SCAN_REPORT_PREDICATE, [])
    if not reports:
        why = f" ({'; '.join(found.problems[:3])})" if found.problems else ""
        raise VerificationError(
            f"{spec.image}@{digest} has no scan-report attestation signed by the expected "
            f"signer ({expected.describe()}){why}."
        )
    # The newest report counts (an image may be attested again, e.g. rescanned).
    statement = max(reports, key=lambda st: _finished(st.get("predicate")))
    # Its size is bounded by the registry client (RegistryLimits.attestation_bytes).
    report = statement["predicate"].get("report")
    return _from_report(
        spec, report, digest, found.signer_of(statement), f"the scan report of {spec.image}"
    )


def _finished(predicate: Any) -> float:
    try:
        return float(
            calendar.timegm(time.strptime(str(predicate["finished_at"]), "%Y-%m-%dT%H:%M:%SZ"))
        )
    except (KeyError, TypeError, ValueError):
        return 0.0


def _from_report(
    spec: BaselineSpec, data: Any, digest: str, signer: str | None, source: str
) -> Baseline:
    """The vulnerability findings of a report object, checked as ``modelseal judge`` checks a
    report (:func:`~modelseal.reports.json_report.results_from_data`)."""
    from modelseal.reports.json_report import decided_findings, results_from_data

    results_from_data(data, source)  # the schema: a ConfigError naming what is wrong
    out: list[BaselineFinding] = []
    try:
        for g in data["gates"]:
            for row in decided_findings(g):
                if row.get("made") or (row.get("evidence") or {}).get("type") != VULN_TYPE:
                    continue
                out.append(BaselineFinding(Finding.from_json(row)))
                if len(out) > MAX_BASELINE_FINDINGS:
                    raise ConfigError(
                        f"{source} holds more than {MAX_BASELINE_FINDINGS} vulnerability "
                        "findings; refusing it as a baseline."
                    )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{source}: malformed report ({type(e).__name__}: {e}).") from None
    verdict = data.get("verdict")
    finished = data.get("finished_at")
    return Baseline(
        spec,
        digest=digest,
        signer=signer,
        verdict=str(verdict) if verdict is not None else None,
        finished_at=str(finished) if finished is not None else None,
        findings=tuple(out),
    )
