"""`publish.attestations: [openvex]`: a real `modelseal run --push` whose policy accepts risks
attaches its OpenVEX document, signed, as a bundle referrer and a cosign `.att`; modelseal's
gathering, cosign 2.5 (`verify-attestation --type openvex`) and Trivy's `--vex oci` read it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from tests.support import EPOCH
from tests.support.rootfs import debian_rootfs
from tests.support.tools import CosignRunner

from modelseal._cli import main
from modelseal._tools import find_tool
from modelseal.oci import image_purl
from modelseal.publish.registry import RegistryClient
from modelseal.publish.statements import OPENVEX_PREDICATE, SCAN_REPORT_PREDICATE
from modelseal.publish.verify_image import gather_signed
from modelseal.sign.expected import ExpectedSigner

pytestmark = pytest.mark.engine

ACCEPTED = (
    "vulnerabilities:\n  ignore:\n"
    "    - {id: CVE-2018-18074, package: requests, reason: no http redirects, expires: 2099-01-01}\n"
    "    - {id: CVE-2023-45853, reason: minizip not shipped, expires: 2099-01-01,\n"
    "       justification: vulnerable_code_not_present}\n"
)
VERIFY = ("--insecure-ignore-tlog=true", "--allow-http-registry")


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    with start_osv_server() as (url, _stop):
        yield url


def _run_push(
    tmp_path: Path,
    image: str,
    key: Path,
    osv_url: str,
    ignore: str,
    gates: tuple[str, ...] = ("build", "trivy", "pip-audit"),
) -> tuple[int, Path, Path]:
    """`modelseal run --push` of a Debian-like image with requests 2.19 and zlib (both
    vulnerable in the offline Trivy DB); returns the exit code, the output dir, the cache."""
    ctx = tmp_path / "ctx"
    debian_rootfs(ctx / "rootfs")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    cache = tmp_path / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    policy = tmp_path / "modelseal.yml"
    policy.write_text(
        "version: 1\nbuild:\n  rebuild_check: false\n"
        f"trivy:\n  db:\n    mode: offline\n    cache_dir: {cache}\n"
        f"pip_audit:\n  osv_url: {osv_url}\n"
        "publish:\n  attestations: [provenance, scan-report, openvex]\n" + ignore
    )
    out = tmp_path / "out"
    code = main([
        "run", str(ctx), "--policy", str(policy), "-o", str(out),
        *(a for g in gates for a in ("--gate", g)),
        "--source-date-epoch", str(EPOCH),
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(key),
    ])  # fmt: skip
    return code, out, cache


def _payloads(stdout: str) -> list[dict[str, Any]]:
    return [
        json.loads(base64.b64decode(json.loads(line)["payload"]))
        for line in stdout.splitlines()
        if line.strip()
    ]


def test_accepted_risks_are_published_as_a_signed_openvex_attestation(
    engine: object,
    registry: str,
    keys: tuple[Path, Path],
    cosign: CosignRunner,
    osv_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = f"{registry}/seal/vex"
    code, out, cache = _run_push(tmp_path, image, keys[0], osv_url, ACCEPTED)
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    record = json.loads((out / "publish.json").read_text())
    digest = record["digest"]
    assert set(record["bundles"]) == {"image", "image-cosign", "provenance", "scan-report", "openvex"}  # fmt: skip
    named = image_purl(digest, image, None)
    assert "repository_url=" + image in named

    # modelseal's own gathering: verified as the key's, subject the image digest, the run's
    # statements with the image product named where it was published
    client = RegistryClient(registry, "seal/vex")
    _, manifest, _ = client.get_manifest(digest)
    found = gather_signed(
        client, digest, manifest, ExpectedSigner(public_key_pem=keys[1].read_bytes())
    )
    assert found.problems == []
    # one from the bundle referrer, one from the cosign .att: the same signed statement
    statement, again = found.statements[OPENVEX_PREDICATE]
    assert statement == again
    assert statement["subject"] == [
        {"name": image, "digest": {"sha256": digest.removeprefix("sha256:")}}
    ]
    written = json.loads((out / "modelseal.openvex.json").read_text())
    vex = statement["predicate"]
    assert [s["vulnerability"]["name"] for s in vex["statements"]] == [
        s["vulnerability"]["name"] for s in written["statements"]
    ]
    assert sorted(s["vulnerability"]["name"] for s in vex["statements"]) == [
        "CVE-2018-18074",
        "CVE-2023-45853",
    ]
    by_id = {s["vulnerability"]["name"]: s for s in vex["statements"]}
    for st in by_id.values():
        (product,) = st["products"]
        assert product["@id"] == named
    # accepted: affected, the reason as the action; accepted with a justification: not_affected
    accepted, justified = by_id["CVE-2018-18074"], by_id["CVE-2023-45853"]
    assert accepted["status"] == "affected" and "no http redirects" in accepted["action_statement"]
    assert justified["status"] == "not_affected"
    # the Debian package's epoch is a qualifier, as Trivy writes it (in the version, it never
    # matches)
    assert justified["products"][0]["subcomponents"] == [
        {"@id": "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1"}
    ]
    assert justified["justification"] == "vulnerable_code_not_present"
    assert "minizip not shipped" in justified["status_notes"] and "action_statement" not in justified  # fmt: skip

    # cosign 2.5: the .att (its default) and the bundle referrer (--new-bundle-format)
    ref = f"{image}@{digest}"
    proc = cosign("verify-attestation", "--key", str(keys[1]), *VERIFY, "--type", "openvex", ref)
    assert proc.returncode == 0, proc.stderr
    assert _payloads(proc.stdout) == [statement]
    proc = cosign(
        "verify-attestation", "--new-bundle-format", "--trusted-root", str(cosign.trusted_root),
        "--key", str(keys[1]), *VERIFY, "--type", "openvex", ref,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the image signature (.sig) and the other attestations of the run, as the README says
    assert cosign("verify", "--key", str(keys[1]), *VERIFY, ref).returncode == 0
    for kind in ("slsaprovenance1", SCAN_REPORT_PREDICATE):
        proc = cosign("verify-attestation", "--key", str(keys[1]), *VERIFY, "--type", kind, ref)
        assert proc.returncode == 0, (kind, proc.stderr)

    # Trivy --vex oci finds the attestation in the registry and reads its statements
    trivy = _trivy_vex_oci(ref, cache, tmp_path)
    assert "VEX attestation found" in trivy.stderr, trivy.stderr
    results = json.loads(trivy.stdout).get("Results") or ()
    reported = {v["VulnerabilityID"] for r in results for v in r.get("Vulnerabilities") or ()}
    suppressed = {
        (m["Finding"]["VulnerabilityID"], m["Status"], m["Source"])
        for r in results
        for m in r.get("ExperimentalModifiedFindings") or ()
    }
    # Trivy suppresses not_affected (and fixed) statements only: the accepted risk stays
    # reported, the justified one is suppressed, citing the attestation
    assert "CVE-2018-18074" in reported and "CVE-2023-45853" not in reported
    trivy_purl = f"pkg:oci/vex@{digest}?arch=amd64&repository_url={registry}%2Fseal%2Fvex"
    assert suppressed == {
        ("CVE-2023-45853", "not_affected", f"VEX attestation in OCI registry ({trivy_purl})")
    }


def _trivy_vex_oci(ref: str, cache: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    trivy = find_tool("trivy", env_var="MODELSEAL_TRIVY")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "trivy-home"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    argv = [
        trivy, "image", "--debug", "--image-src", "remote", "--insecure",
        "--cache-dir", str(cache), "--cache-backend", "memory",
        "--skip-db-update", "--skip-java-db-update", "--skip-check-update",
        "--skip-version-check", "--offline-scan", "--scanners", "vuln",
        "--vex", "oci", "--show-suppressed", "--format", "json", ref,
    ]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_openvex_without_accepted_risks_is_left_out_with_a_notice(
    engine: object,
    registry: str,
    keys: tuple[Path, Path],
    osv_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # no scanner ran: nothing was accepted, so no OpenVEX document was written
    code, out, _ = _run_push(
        tmp_path, f"{registry}/seal/novex", keys[0], osv_url, "", gates=("build",)
    )
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    assert not (out / "modelseal.openvex.json").exists()
    assert "no OpenVEX attestation is published" in printed.err
    record = json.loads((out / "publish.json").read_text())
    assert set(record["bundles"]) == {"image", "image-cosign", "provenance", "scan-report"}
