"""What publishing writes (``provenance.intoto.json``, ``publish.json``, ``bundles/``) in an
output directory where links were planted: replaced or refused, never written through, and a
refusal comes before anything is pushed (issue 11; tests/test_fsio.py has the other writers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.support.tools import require

from modelseal.findings import GateResult, Status
from modelseal.fsio import UnsafePathError
from modelseal.oci import OciLayout
from modelseal.publish.publisher import ImageRef
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_limits import RegistryError
from modelseal.publish.run import publish_run
from modelseal.sign.key import KeySigner

PRECIOUS = "precious: must stay as it is\n"


def _publish(
    registry: str, repo: str, layout: OciLayout, digest: str, key: Path, out: Path
) -> dict[str, Path]:
    report = out.parent / "report.json"
    report.write_text(json.dumps({"schema_version": 1, "verdict": "PASSED", "gates": []}))
    build = GateResult(
        "build", Status.PASSED, artifacts={"oci_layout": layout.path},
        facts={"image.digest": digest, "source_date_epoch": "1700000000"},
    )  # fmt: skip
    result = publish_run(
        {"build": build}, report, ref=ImageRef.parse(f"{registry}/{repo}:1.0"),
        signer=KeySigner.from_file(key), out_dir=out, started_at=1700000000.0,
        finished_at=1700000060.0, build_args={}, policy_path="<defaults>", policy_sha256="",
        attestations=("provenance",),
    )  # fmt: skip
    return dict(result.bundles)


def test_publish_replaces_planted_links(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    require(shutil.which("skopeo") is not None, "skopeo")
    layout, digest = busybox_layout
    out = tmp_path / "out"
    out.mkdir()
    victims = {}
    for name in ("provenance.intoto.json", "publish.json"):
        victims[name] = tmp_path / f"victim-{name}"
        victims[name].write_text(PRECIOUS)
        (out / name).symlink_to(victims[name])
    bundles = _publish(registry, "seal/links", layout, digest, keys[0], out)
    for name, victim in victims.items():
        assert victim.read_text() == PRECIOUS, f"written through the link at {name}"
        assert not (out / name).is_symlink()
    record = json.loads((out / "publish.json").read_text())
    assert record["digest"] == digest
    assert json.loads((out / "provenance.intoto.json").read_text())["subject"][0]["name"]
    assert sorted(bundles) == ["image", "image-cosign", "provenance"]
    assert all(p.parent == out / "bundles" and p.is_file() for p in bundles.values())


def test_a_linked_bundles_directory_stops_the_publish_before_any_push(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    require(shutil.which("skopeo") is not None, "skopeo")
    layout, digest = busybox_layout
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "bundles").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="bundles is a symbolic link"):
        _publish(registry, "seal/linked-bundles", layout, digest, keys[0], out)
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(RegistryError) as e:
        RegistryClient(registry, "seal/linked-bundles").get_manifest(digest)
    assert e.value.status == 404  # nothing went up
