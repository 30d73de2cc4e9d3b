"""Trivy and pip-audit on one real image through `modelseal run`: the same advisory from both
scanners is one failing finding with two sources; the policy, SARIF and OpenVEX agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from tests.support import EPOCH
from tests.support.reports import read_report, report_gates
from tests.support.rootfs import debian_rootfs

from modelseal._cli import main

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    with start_osv_server() as (url, _stop):
        yield url


def _policy(tmp_path: Path, osv_url: str, extra: str = "") -> Path:
    cache = tmp_path / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    p = tmp_path / "policy.yml"
    p.write_text(
        "version: 1\nbuild:\n  rebuild_check: false\n"
        f"trivy:\n  db:\n    mode: offline\n    cache_dir: {cache}\n"
        f"pip_audit:\n  osv_url: {osv_url}\n" + extra
    )
    return p


def test_both_scanners_one_verdict(
    engine: object, tmp_path: Path, osv_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    debian_rootfs(ctx / "rootfs")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    out = tmp_path / "out"
    args = ["run", str(ctx), "--gate", "build", "--gate", "trivy", "--gate", "pip-audit",
            "--source-date-epoch", str(EPOCH), "-o", str(out)]  # fmt: skip
    code = main([*args, "--policy", str(_policy(tmp_path, osv_url))])
    capsys.readouterr()
    report = read_report(out / "report.json")
    assert code == 1, report
    gates = report_gates(report)
    assert gates["trivy"]["status"] == "FAILED" and gates["pip-audit"]["status"] == "PASSED"
    failing = sorted(
        (f["gate"], f["id"], ",".join(f["sources"]))
        for g in gates.values()
        for f in g["findings"]
        if f["decision"] == "fail"
    )
    assert failing == [
        ("trivy", "CVE-2018-18074", "trivy,pip-audit"),
        ("trivy", "CVE-2023-45853", ""),
    ]
    (dup,) = gates["pip-audit"]["findings"]
    assert dup["id"] == "PYSEC-2018-28" and dup["decision"] == "ignored"
    assert "reported by trivy" in dup["reason"]

    sarif = json.loads((out / "modelseal.sarif").read_text())
    errors = sorted(r["ruleId"] for r in sarif["runs"][0]["results"] if r["level"] == "error")
    assert errors == ["CVE-2018-18074", "CVE-2023-45853"]

    # The security team accepts both for now: same evidence, re-judged, passes and is recorded.
    accepted = _policy(
        tmp_path,
        osv_url,
        "vulnerabilities:\n  ignore:\n"
        "    - {id: GHSA-x84v-xcm2-53pg, package: requests, reason: no http redirects, expires: 2099-01-01}\n"
        "    - {id: CVE-2023-45853, reason: minizip not shipped, expires: 2099-01-01}\n",
    )
    assert (
        main(
            [
                "judge",
                str(out / "report.json"),
                "--policy",
                str(accepted),
                "-o",
                str(tmp_path / "re"),
            ]
        )
        == 0
    )
    vex = json.loads((tmp_path / "re" / "modelseal.openvex.json").read_text())
    assert sorted(s["vulnerability"]["name"] for s in vex["statements"]) == [
        "CVE-2018-18074",
        "CVE-2023-45853",
    ]


def test_trivy_is_not_given_a_layer_that_holds_only_model_files(
    engine: object, tmp_path: Path, osv_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The COPY of the model directory is left out of what Trivy scans (models-image checks
    it); Trivy reads the rest of the image (hard-linked blobs: it refuses symbolic links) and
    finds what it finds on the whole image (issue 16)."""
    from tests.support.model_files import safetensors_bytes

    ctx = tmp_path / "ctx"
    debian_rootfs(ctx / "rootfs")
    (ctx / "model").mkdir()
    (ctx / "model" / "w.safetensors").write_bytes(safetensors_bytes([1.0, 2.0]))
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\nCOPY model/ /app/model/\n")
    (ctx / ".dockerignore").write_text("models.lock\n")
    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    out = tmp_path / "out"
    policy = _policy(tmp_path, osv_url, "models:\n  image_paths: {model: /app/model}\n")
    args = ["run", str(ctx), "--gate", "build", "--gate", "models", "--gate", "models-image",
            "--gate", "trivy", "--source-date-epoch", str(EPOCH), "-o", str(out),
            "--policy", str(policy)]  # fmt: skip
    code = main(args)
    capsys.readouterr()
    report = read_report(out / "report.json")
    assert code == 1, report
    gates = report_gates(report)
    assert gates["models-image"]["status"] == "PASSED"
    manifest = json.loads(
        (out / "oci/blobs/sha256" / gates["build"]["facts"]["image.digest"][7:]).read_text()
    )
    model_layer = manifest["layers"][-1]["digest"]
    assert gates["build"]["facts"]["image.model_layers.linux/amd64"] == model_layer
    assert gates["trivy"]["facts"]["trivy.skipped_layers.linux/amd64"] == model_layer
    failing = sorted(f["id"] for f in gates["trivy"]["findings"] if f["decision"] == "fail")
    assert failing == ["CVE-2018-18074", "CVE-2023-45853"]
