"""The runtime-profile attestation: `modelseal run --push` attaches the image gate's profile,
signed, next to the others (a referrer and cosign .att) and writes runtime-profile.json;
`modelseal verify` shows it (text and JSON) and requires the very profile the attested scan
report records — a missing one, or one signed for another profile, fails; an image whose report
records none needs one only with verify.require_runtime_profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.statements import statements

from modelseal._cli import main
from modelseal.imagegate.profile import profile_sha256
from modelseal.oci import OciLayout
from modelseal.publish.publisher import Attestation, ImageRef, publish
from modelseal.publish.statements import RUNTIME_PROFILE_PREDICATE, runtime_profile_statement
from modelseal.publish.verify_image import VerifyOptions, verify_image
from modelseal.sign.expected import ExpectedSigner
from modelseal.sign.key import KeySigner

FINISHED = "2026-11-23T10:00:00Z"
POLICY = """\
version: 1
build:
  rebuild_check: false
image:
  runtime:
    writable_paths: [/tmp, /var/cache/hf]
publish:
  attestations: [provenance, sbom, scan-report, runtime-profile]
"""


def test_run_push_attaches_the_profile_and_verify_shows_it(
    registry: str,
    busybox_base: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nEXPOSE 8080\nUSER 1000:1000\n")
    policy = tmp_path / "modelseal.yml"
    policy.write_text(POLICY)
    out = tmp_path / "out"
    image = f"{registry}/seal/profiled"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(out), "--gate", "build", "--gate", "image", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(keys[0]),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    profile = json.loads((out / "runtime-profile.json").read_text())
    assert profile["nonRoot"] is True
    assert profile["kubernetes"]["securityContext"]["runAsUser"] == 1000
    record = json.loads((out / "publish.json").read_text())
    assert "runtime-profile" in record["bundles"]
    bundle = json.loads(Path(record["bundles"]["runtime-profile"]).read_text())
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    digest = record["digest"]

    assert main(["verify", f"{image}@{digest}", "--key", str(keys[1]), "--format", "json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    check = next(c for c in verified["checks"] if c["name"] == "runtime-profile")
    assert check["ok"] is True
    assert check["detail"] == (
        "runs as uid 1000 gid 1000; read-only root filesystem; drops ALL capabilities, as scanned"
    )
    assert verified["runtime_profile"] == profile  # the signed statement is the written file

    assert main(["verify", f"{image}:1.0", "--key", str(keys[1])]) == 0
    text = capsys.readouterr().out
    assert "runtime profile (signed):" in text
    assert '"runAsNonRoot": true' in text
    assert (
        "docker run --user 1000:1000 --read-only --cap-drop ALL --security-opt no-new-privileges"
        " --tmpfs /tmp:mode=1777 --tmpfs /var/cache/hf:mode=1777 IMAGE"
    ) in text


PROFILE: dict[str, Any] = {
    "version": 1, "nonRoot": True,
    "user": {"configured": "1000", "uid": 1000, "gid": 0, "name": None},
    "exposedPorts": [], "writablePaths": ["/tmp"],
    "kubernetes": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000}},
    "docker": {"run": ["--user", "1000:0"]},
}  # fmt: skip


def _publish(
    registry: str, repo: str, layout: tuple[OciLayout, str], keys: tuple[Path, Path],
    tmp: Path, *, recorded: dict[str, Any] | None, attested: dict[str, Any] | None,
) -> str:  # fmt: skip
    """busybox published under ``repo`` with a scan report whose image gate records
    ``recorded``'s digest (None: no image gate) and a runtime-profile attestation of
    ``attested`` (None: none); returns ``name@digest``."""
    oci, digest = layout
    ref = ImageRef.parse(f"{registry}/{repo}:1.0")
    gates = []
    if recorded is not None:
        facts = {"runtime_profile.sha256": profile_sha256(recorded)}
        gates.append({"gate": "image", "evidence": {"status": "PASSED", "facts": facts},
                      "decision": {"status": "PASSED", "outcomes": []}})  # fmt: skip
    report = {"schema_version": 2, "verdict": "PASSED", "exit_code": 0, "finished_at": FINISHED,
              "policy": {"sha256": "ef" * 32}, "gates": gates}  # fmt: skip
    atts = statements(ref.name, digest, FINISHED, report)
    if attested is not None:
        atts.append(
            Attestation("runtime-profile", runtime_profile_statement(ref.name, digest, attested))
        )
    publish(ref, oci, digest, signer=KeySigner.from_file(keys[0]), attestations=atts,
            out_dir=tmp, pusher="builtin")  # fmt: skip
    return f"{ref.name}@{digest}"


def _checks(ref: str, keys: tuple[Path, Path], **kw: Any) -> dict[str, tuple[bool, str]]:
    import calendar
    import time

    now = calendar.timegm(time.strptime(FINISHED, "%Y-%m-%dT%H:%M:%SZ")) + 60
    expected = ExpectedSigner(public_key_pem=keys[1].read_bytes())
    result = verify_image(ref, VerifyOptions(expected, now=now, **kw))
    return {c.name: (c.ok, c.detail) for c in result.checks}


def test_a_recorded_profile_must_be_attested_as_recorded(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    other = PROFILE | {"nonRoot": False}
    missing = _publish(registry, "rp/missing", busybox_layout, keys, tmp_path / "a",
                       recorded=PROFILE, attested=None)  # fmt: skip
    ok, detail = _checks(missing, keys)["runtime-profile"]
    assert not ok
    assert detail.startswith(f"the scan report records the runtime profile sha256:"
                             f"{profile_sha256(PROFILE)}, but no runtime-profile attestation")  # fmt: skip
    swapped = _publish(registry, "rp/swapped", busybox_layout, keys, tmp_path / "b",
                       recorded=PROFILE, attested=other)  # fmt: skip
    ok, detail = _checks(swapped, keys)["runtime-profile"]
    assert not ok and "(1 other profile(s) found)" in detail
    good = _publish(registry, "rp/good", busybox_layout, keys, tmp_path / "c",
                    recorded=PROFILE, attested=PROFILE)  # fmt: skip
    assert _checks(good, keys)["runtime-profile"] == (
        True, "runs as uid 1000; read-only root filesystem; drops ALL capabilities, "
        "as scanned",
    )  # fmt: skip


def test_without_a_recorded_profile_only_the_policy_knob_requires_one(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    old = _publish(registry, "rp/old", busybox_layout, keys, tmp_path / "a",
                   recorded=None, attested=None)  # fmt: skip
    checks = _checks(old, keys)
    assert "runtime-profile" not in checks and all(ok for ok, _ in checks.values()), checks
    ok, detail = _checks(old, keys, require_runtime_profile=True)["runtime-profile"]
    assert not ok and detail.startswith("no runtime-profile attestation by the expected signer")
    # an attested root profile is shown, and says it is not non-root
    root = PROFILE | {"nonRoot": False, "user": {"configured": "", "uid": 0, "gid": 0}}
    shown = _publish(registry, "rp/root", busybox_layout, keys, tmp_path / "b",
                     recorded=None, attested=root)  # fmt: skip
    assert _checks(shown, keys)["runtime-profile"] == (
        True,
        "NOT non-root (runs as root); read-only root filesystem; drops ALL capabilities",
    )
    assert RUNTIME_PROFILE_PREDICATE == "https://modelseal.dev/attestations/runtime-profile/v1"
