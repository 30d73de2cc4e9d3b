"""The secret scan reads a slim copy of each layer that holds only model files (issue 16): the
layout finalizer leaves out the contents Trivy's secret scanner skips as binary (files of 1 MiB
or more whose start has a control byte, not ``.pyc``), so the weights are not decompressed
again — and every secret Trivy finds in the whole layer is still found, attributed to the
image's own layer."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import EPOCH, REPO
from tests.support.layers import tar_files, ustar

from modelseal.imagebuild.finalize import SLIM_MIN, LayerStats, SlimLayer, clamp_tar, trivy_binary

MIB = 1 << 20
GITHUB = "ghp_" + "Zq8" * 12  # 36 characters after the prefix: Trivy's github-pat rule


BINARY = b"\x00\x01weights" + bytes(range(256)) * (SLIM_MIN // 256)
TEXT_BIG = (b"token = " + GITHUB.encode() + b"\n") + b"a" * SLIM_MIN
PYC = b"\x00\x0d\r\n" + b"x" * SLIM_MIN


def test_a_slim_layer_leaves_out_only_what_the_secret_scan_skips(tmp_path: Path) -> None:
    layer = ustar(("app/model/config.json", b'{"k": 1}\n'), ("app/model/w.bin", BINARY),
                 ("app/model/vocab.txt", TEXT_BIG), ("app/model/x.pyc", PYC),
                 ("app/model/small.bin", b"\x00" * 100))  # fmt: skip
    slim = SlimLayer(tmp_path / "slim.tar")
    stats = LayerStats(model_paths=("app/model",))
    out = b"".join(clamp_tar(io.BytesIO(layer), EPOCH, "L", stats, slim=slim))
    slim.close()
    # The layer itself is untouched by it.
    assert out == layer
    kept = tar_files((tmp_path / "slim.tar").read_bytes())
    assert kept["app/model/w.bin"] == b""  # binary, 1 MiB or more: header only
    for name, data in [("app/model/config.json", b'{"k": 1}\n'), ("app/model/vocab.txt", TEXT_BIG),
                       ("app/model/x.pyc", PYC), ("app/model/small.bin", b"\x00" * 100)]:  # fmt: skip
        assert kept[name] == data, name
    assert slim.digest() == "sha256:" + __import__("hashlib").sha256(
        (tmp_path / "slim.tar").read_bytes()).hexdigest()  # fmt: skip


def test_a_layer_that_holds_more_than_model_files_gets_no_slim_layer(tmp_path: Path) -> None:
    layer = ustar(("app/model/w.bin", BINARY), ("etc/passwd", b"root:x:0:0::/:/bin/sh\n"))
    slim = SlimLayer(tmp_path / "slim.tar")
    out = b"".join(clamp_tar(io.BytesIO(layer), EPOCH, "L",
                             LayerStats(model_paths=("app/model",)), slim=slim))  # fmt: skip
    assert out == layer
    assert not slim.active and not (tmp_path / "slim.tar").exists()


def test_trivys_binary_rule() -> None:
    assert not trivy_binary(b"plain text\twith tabs\r\nand \x1b escapes")
    for b in (0, 6, 11, 14, 26, 28, 31, 0x7F):
        assert trivy_binary(b"text" + bytes([b])), b
    assert not trivy_binary(b"a" * 300 + b"\x00")  # only the first 300 bytes count


@pytest.mark.engine
def test_the_secret_scan_finds_what_it_did_in_a_slim_model_layer(
    busybox_base: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "config.json").write_text(json.dumps({"hub_token": GITHUB}) + "\n")
    (ctx / "model" / "vocab.txt").write_bytes(TEXT_BIG)
    # Binary weights: Trivy skips them whether they are in the layer or not.
    (ctx / "model" / "w.bin").write_bytes(BINARY + b"\ntoken = " + GITHUB.encode() + b"\n")
    (ctx / "Dockerfile").write_text("FROM base\nCOPY model/ /app/model/\nUSER 65534:65534\n")
    (ctx / "modelseal.yml").write_text(
        "version: 1\nbuild:\n  rebuild_check: never\n"
        "models:\n  image_paths: {model: /app/model}\n"
        f"trivy:\n  db:\n    mode: offline\n    cache_dir: {tmp_path / 'trivy-cache'}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "modelseal", "run", ".", "--gate", "build", "--gate", "image",
         "-o", str(out), "--build-context", f"base={busybox_base}",
         "--source-date-epoch", str(EPOCH)],
        capture_output=True, text=True, cwd=ctx, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    gates = {g["gate"]: g for g in report["gates"]}
    assert gates["image"]["evidence"]["status"] == "PASSED", gates["image"]["evidence"]["error"]
    # The slim layer was what Trivy read for the model layer.
    assert "1 model layer(s) without their weights" in proc.stderr, proc.stderr[-2000:]
    found = {(f["subject"], f["evidence"].get("diff_id")) for f in
             gates["image"]["evidence"]["findings"] if f["id"] == "image.secret"}  # fmt: skip
    layout = out / "oci"
    manifest = json.loads((layout / "blobs/sha256" /
                           gates["build"]["evidence"]["facts"]["image.digest"][7:]).read_text())  # fmt: skip
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    model_layer = config["rootfs"]["diff_ids"][-1]
    # Both text files, attributed to the image's own model layer; nothing in the binary.
    assert found == {("/app/model/config.json", model_layer), ("/app/model/vocab.txt", model_layer)}
