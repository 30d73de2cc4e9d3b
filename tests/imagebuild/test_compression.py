"""build.compression: the OCI exporter's layer compression, chosen in the policy, kept
reproducible, recorded in the build facts (and from there the provenance), and read back by
modelseal's own layer reader (issue 16)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.reports import read_report, report_gates

from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.imagebuild.engine import PrivateEngine
from modelseal.imagebuild.gate import compression_facts, oci_output
from modelseal.oci import OciLayout, layer_entries
from modelseal.policy.loader import load_policy_text
from modelseal.publish.provenance import check_compression, compression_parameter

WEIGHTS = bytes(range(256)) * 64

MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "uncompressed": "application/vnd.oci.image.layer.v1.tar",
}


@pytest.mark.engine
@pytest.mark.parametrize(
    ("compression", "extra"),
    [("gzip", "  compression_level: 9\n"), ("zstd", "  force_compression: true\n"),
     ("uncompressed", "")],
)  # fmt: skip
def test_each_compression_builds_reproducibly_and_is_recorded(
    engine: PrivateEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    compression: str, extra: str,
) -> None:  # fmt: skip
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY model/ /app/model/\n")
    (ctx / "model" / "weights.bin").write_bytes(WEIGHTS)
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f"version: 1\nbuild:\n  rebuild_check: always\n  compression: {compression}\n{extra}"
    )
    out = tmp_path / "out"
    code = main(["build", str(ctx), "--policy", str(policy), "-o", str(out),
                 "--source-date-epoch", str(EPOCH)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    (gate,) = report_gates(read_report(out / "report.json")).values()
    facts = gate["facts"]
    # Built twice from a cold cache, same digest.
    assert facts["rebuild.reproducible"] == "yes"
    assert facts["rebuild.digest"] == facts["image.digest"]
    assert facts["compression"] == compression
    # Compressed once, by the layout finalizer (recorded for the provenance and rebuilds).
    assert facts["layout.finalizer"] == "1"
    assert float(facts["seconds.finalize"]) >= 0 and float(facts["seconds.buildx"]) > 0
    assert facts["compression.force"] == ("true" if "force" in extra else "false")
    assert facts.get("compression.level") == ("9" if "level" in extra else None)
    # What the provenance states, from those facts.
    recorded = compression_parameter(facts)
    assert recorded is not None and recorded["type"] == compression
    # The layer really is compressed so, and modelseal reads it back (zstd through the tool).
    OciLayout(out / "oci")  # a valid layout
    digest = facts["image.digest"].removeprefix("sha256:")
    manifest = json.loads((out / "oci" / "blobs" / "sha256" / digest).read_text())
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == MEDIA_TYPES[compression]
    blob = out / "oci" / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
    entries = dict(layer_entries(blob, layer["mediaType"]))
    assert entries["app/model/weights.bin"].sha256 == hashlib.sha256(WEIGHTS).hexdigest()


def test_the_exporter_is_asked_for_the_compression() -> None:
    dest = Path("/tmp/x")
    # BuildKit leaves the new layers uncompressed and their timestamps alone: the finalizer
    # clamps and compresses them in one pass (no layer compressed twice).
    assert oci_output(dest) == "type=oci,dest=/tmp/x,tar=false,compression=uncompressed"
    assert compression_facts("zstd", 3, force=False) == {
        "compression": "zstd", "compression.force": "false", "compression.level": "3",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("section", "text"),
    [
        ("  compression: zstd\n  compression_level: 23\n", "out of range for zstd"),
        ("  compression: gzip\n  compression_level: 10\n", "out of range for gzip"),
        ("  compression_level: -1\n", "out of range for zstd"),  # the default: zstd
        ("  compression: uncompressed\n  compression_level: 1\n", "not allowed"),
        ("  compression: brotli\n", "compression"),
        ('  compression_level: "3"\n', "compression_level"),
        ("  force_compression: yes\n", "force_compression"),
    ],
)
def test_a_bad_compression_is_refused(section: str, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        load_policy_text(f"version: 1\nbuild:\n{section}", "policy.yml")


def test_a_bad_compression_level_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nbuild:\n  compression: zstd\n  compression_level: 99\n")
    code = main(["build", str(tmp_path), "--policy", str(policy), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "compression_level" in err and "Traceback" not in err


def test_a_recorded_compression_is_checked() -> None:
    assert check_compression({"type": "zstd", "level": 3, "force": True}) == {
        "type": "zstd", "level": 3, "force": True,
    }  # fmt: skip
    assert check_compression({"type": "gzip"}) == {"type": "gzip", "force": False}
    for bad in ({"type": "lz4"}, {"type": "gzip", "level": 10}, {"type": "uncompressed",
                "level": 0}, {"type": "zstd", "level": True}, {"type": "zstd", "force": "yes"},
                {"type": "zstd", "extra": 1}, ["zstd"]):  # fmt: skip
        with pytest.raises(ConfigError):
            check_compression(bad)
    assert compression_parameter({}) is None


@pytest.mark.engine
def test_a_missing_zstd_stops_the_build_gate_before_it_builds(
    engine: PrivateEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import shutil

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # A build that would fail: had it run, its error would be the one reported.
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY no-such-file /\n")
    docker = shutil.which("docker")
    assert docker is not None
    monkeypatch.setenv("MODELSEAL_DOCKER", docker)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no zstd (nor anything else)
    out = tmp_path / "out"
    code = main(["build", str(ctx), "-o", str(out), "--source-date-epoch", str(EPOCH)])
    capsys.readouterr()
    assert code == 3
    (gate,) = report_gates(read_report(out / "report.json")).values()
    assert gate["status"] == "ERRORED" and "zstd" in gate["error"]
    assert "buildx build failed" not in gate["error"]  # stopped before it ran
