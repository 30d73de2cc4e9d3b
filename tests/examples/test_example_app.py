"""The example model server (examples/app) and its base-image builder (examples/base).

No engine needed: the model generator, the safetensors reader and the HTTP server run in-process;
build_base.py is exercised up to the point where it would call mmdebstrap or docker.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "app"
MODEL = APP / "model" / "model.safetensors"
BUILD_BASE = ROOT / "examples" / "base" / "build_base.py"

# Fixed inputs (sepal length/width, petal length/width in cm) and what the committed model says.
SAMPLES = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.4], [6.7, 3.1, 5.8, 2.2]]
EXPECTED = [
    ("setosa", [0.988657, 0.005204, 0.00614]),
    ("versicolor", [0.011154, 0.965836, 0.02301]),
    ("virginica", [0.003813, 0.001494, 0.994693]),
]


def load_by_path(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server_mod() -> ModuleType:
    # Importing must not start serving (the module guards main() with __name__ == "__main__").
    return load_by_path("example_server", APP / "server.py")


@pytest.fixture(scope="module")
def make_model_mod() -> ModuleType:
    return load_by_path("example_make_model", APP / "make_model.py")


@pytest.fixture(scope="module")
def build_base_mod() -> ModuleType:
    return load_by_path("example_build_base", BUILD_BASE)


# --------------------------------------------------------------------------------------------
# The model file


def test_committed_model_is_what_make_model_generates(make_model_mod, tmp_path):
    first = make_model_mod.write_model(tmp_path / "a" / "model.safetensors").read_bytes()
    second = make_model_mod.write_model(tmp_path / "b" / "model.safetensors").read_bytes()
    assert first == second
    assert first == MODEL.read_bytes(), "run `python3 examples/app/make_model.py` and commit"


def test_model_file_layout(make_model_mod):
    blob = MODEL.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(blob[8 : 8 + n])
    assert blob[8 : 8 + n].decode().endswith(("}", " "))
    meta = header.pop("__metadata__")
    assert meta["format"] == "pt" and meta["model"] == "modelseal-example-mlp"
    assert all(isinstance(v, str) for v in meta.values())
    position = 0
    for name in sorted(header):  # contiguous, in name order, no gaps
        begin, end = header[name]["data_offsets"]
        assert header[name]["dtype"] == "F32"
        assert begin == position
        position = end
    assert position == len(blob) - 8 - n
    assert {k: v["shape"] for k, v in header.items()} == {
        "fc1.weight": [8, 4],
        "fc1.bias": [8],
        "fc2.weight": [3, 8],
        "fc2.bias": [3],
    }


def test_make_model_cli_writes_the_file(tmp_path):
    out = tmp_path / "m.safetensors"
    proc = subprocess.run(
        [sys.executable, str(APP / "make_model.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == MODEL.read_bytes()


def test_loader_reads_the_committed_model(server_mod):
    model = server_mod.load_model(MODEL)
    assert model.name == "modelseal-example-mlp"
    assert model.labels == ("setosa", "versicolor", "virginica")
    assert model.sha256 == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert model.n_features == 4
    assert [p["label"] for p in model.predict(SAMPLES)] == [label for label, _ in EXPECTED]


# --------------------------------------------------------------------------------------------
# The safetensors reader rejects malformed files


def _file(header: dict, data: bytes, *, pad: bool = True) -> bytes:
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def _corruptions() -> dict[str, bytes]:
    good = MODEL.read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    one = {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    return {
        "empty": b"",
        "shorter than the length field": b"\x10\x00\x00",
        "truncated in the header": good[: 8 + n // 2],
        "truncated in the data": good[:-5],
        "header length past the end": struct.pack("<Q", len(good)) + good[8:],
        "huge header length": struct.pack("<Q", 2**63) + good[8:],
        "header not JSON": struct.pack("<Q", 8) + b"{garbage",
        "header not an object": _file([1, 2], b""),  # type: ignore[arg-type]
        "header not UTF-8": struct.pack("<Q", 8) + b'{"\xff":1}',
        "corrupt header byte": good[:9] + b"\x00" + good[10:],
        "dtype F16": _file({"t": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, bytes(8)),
        "shape does not match span": _file(
            {"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)
        ),
        "offsets outside the file": _file(
            {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)
        ),
        "negative shape": _file(
            {"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)
        ),
        "gap between tensors": _file(
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            bytes(12),
        ),
        "overlapping tensors": _file(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            bytes(8),
        ),
        "trailing bytes": _file(one, bytes(12)),
        "non-string metadata": _file({"__metadata__": {"epochs": 3}, **one}, bytes(8)),
        "NaN weight": _file(one, _f32(1.0, float("nan"))),
        "missing tensors": _file(one, _f32(1.0, 2.0)),
        "inconsistent shapes": _file(
            {
                "fc1.weight": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]},
                "fc1.bias": {"dtype": "F32", "shape": [3], "data_offsets": [32, 44]},
                "fc2.weight": {"dtype": "F32", "shape": [3, 2], "data_offsets": [44, 68]},
                "fc2.bias": {"dtype": "F32", "shape": [3], "data_offsets": [68, 80]},
            },
            bytes(80),
        ),
    }


@pytest.mark.parametrize("case", sorted(_corruptions()))
def test_loader_rejects_malformed_files(server_mod, tmp_path, case):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_corruptions()[case])
    with pytest.raises(server_mod.ModelError) as info:
        server_mod.load_model(path)
    assert str(path) in str(info.value)


def test_loader_reports_a_missing_file(server_mod, tmp_path):
    with pytest.raises(server_mod.ModelError, match="cannot read model"):
        server_mod.load_model(tmp_path / "absent.safetensors")


def test_loader_accepts_a_minimal_valid_file(server_mod):
    header = {
        "__metadata__": {"labels": "no,yes"},
        "fc1.weight": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
        "fc1.bias": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
        "fc2.weight": {"dtype": "F32", "shape": [2, 1], "data_offsets": [12, 20]},
        "fc2.bias": {"dtype": "F32", "shape": [2], "data_offsets": [20, 28]},
    }
    model = server_mod.Model.from_bytes(_file(header, _f32(1, 1, 0, -1, 1, 0, 0), pad=False))
    assert model.name == "unnamed" and model.labels == ("no", "yes")
    assert model.predict_one([2.0, 3.0])["label"] == "yes"  # h = 5; logits -5, 5
    assert model.predict_one([-2.0, -3.0])["label"] == "no"  # h = 0; logits 0, 0: first wins


# --------------------------------------------------------------------------------------------
# The HTTP server, in a thread on an ephemeral loopback port


@pytest.fixture(scope="module")
def served(server_mod) -> Iterator[tuple[str, int]]:
    httpd = server_mod.make_server(server_mod.load_model(MODEL), "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield httpd.server_address[0], httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def request(
    addr: tuple[str, int],
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, json.loads(data)
    finally:
        conn.close()


def predict(addr: tuple[str, int], doc: object) -> tuple[int, dict]:
    return request(addr, "POST", "/predict", json.dumps(doc).encode())


def test_healthz(served):
    status, doc = request(served, "GET", "/healthz")
    assert status == 200
    assert doc == {
        "status": "ok",
        "model": "modelseal-example-mlp",
        "sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest(),
    }


def test_predict_is_deterministic(served):
    status, doc = predict(served, {"inputs": SAMPLES})
    assert status == 200
    got = doc["predictions"]
    assert [p["label"] for p in got] == [label for label, _ in EXPECTED]
    for p, (_, scores) in zip(got, EXPECTED, strict=True):
        assert p["scores"] == pytest.approx(scores, abs=2e-6)
        assert sum(p["scores"]) == pytest.approx(1.0, abs=1e-5)
    assert predict(served, {"inputs": SAMPLES}) == (200, doc)


def test_predict_accepts_integers(served):
    status, doc = predict(served, {"inputs": [[5, 3, 1, 0]]})
    assert status == 200 and doc["predictions"][0]["label"] == "setosa"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", '"inputs"'),
        (b'{"rows": []}', '"inputs"'),
        (b'{"inputs": []}', "non-empty"),
        (b'{"inputs": [[1, 2, 3]]}', "4 numbers"),
        (b'{"inputs": [1, 2, 3, 4]}', "4 numbers"),
        (b'{"inputs": [[1, 2, 3, "4"]]}', "numbers only"),
        (b'{"inputs": [[1, 2, 3, true]]}', "numbers only"),
        (b'{"inputs": [[1, 2, 3, NaN]]}', "non-finite"),
        (b'{"inputs": [[1, 2, 3, 1e999]]}', "non-finite"),
    ],
)
def test_predict_rejects_bad_input(served, body, message):
    status, doc = request(served, "POST", "/predict", body)
    assert status == 400
    assert message in doc["error"]


def test_predict_bounds_rows_and_body(served, server_mod):
    status, doc = predict(served, {"inputs": [[1, 2, 3, 4]] * (server_mod.MAX_ROWS + 1)})
    assert status == 400 and "at most" in doc["error"]
    big = b'{"inputs": [[' + b" " * server_mod.MAX_BODY_BYTES + b"1,2,3,4]]}"
    status, doc = request(served, "POST", "/predict", big)
    assert status == 413


def test_unknown_paths_and_methods(served):
    assert request(served, "GET", "/nope")[0] == 404
    assert request(served, "POST", "/healthz", b"{}")[0] == 404
    assert request(served, "GET", "/predict")[0] == 405


def test_server_script_serves_and_stops_on_sigterm(tmp_path):
    """`python3 server.py` as the image runs it: configured by env, logs, SIGTERM -> exit 0."""
    env = dict(os.environ, MODEL_PATH=str(MODEL), HOST="127.0.0.1", PORT="0")
    proc = subprocess.Popen(
        [sys.executable, str(APP / "server.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the server has bound its port
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1])
        status, doc = request(("127.0.0.1", port), "GET", "/healthz")
        assert status == 200 and doc["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_server_script_fails_cleanly_on_a_bad_model(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 4)
    proc = subprocess.run(
        [sys.executable, str(APP / "server.py")],
        env=dict(os.environ, MODEL_PATH=str(bad), PORT="0"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("server: error:") and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------
# examples/base/build_base.py, short of running mmdebstrap or docker


def test_find_sources_file_picks_the_bookworm_entry(build_base_mod, tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a-trixie.sources").write_text("Types: deb\nSuites: trixie\n")
    (d / "b-src.sources").write_text("Types: deb-src\nSuites: bookworm\n")
    (d / "c-debian.sources").write_text(
        "Types: deb\nSuites: trixie\n\nTypes: deb\nSuites: bookworm bookworm-updates\n"
    )
    (d / "d-later.sources").write_text("Types: deb\nSuites: bookworm\n")
    fallback = tmp_path / "sources.list"
    assert build_base_mod.find_sources_file(str(d), str(fallback)) == d / "c-debian.sources"

    (d / "c-debian.sources").unlink()
    (d / "d-later.sources").unlink()
    with pytest.raises(build_base_mod.BuildError, match="no Debian sources"):
        build_base_mod.find_sources_file(str(d), str(fallback))
    fallback.write_text("deb file:/srv/debian bookworm main\n")
    assert build_base_mod.find_sources_file(str(d), str(fallback)) == fallback


def _fake_layout(path: Path, digest_hex: str) -> None:
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "blobs" / "sha256" / digest_hex).write_text("{}")
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 2}
    manifest["digest"] = f"sha256:{digest_hex}"
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))


def test_build_base_is_a_no_op_when_the_stamp_matches(
    build_base_mod, tmp_path, monkeypatch, capsys
):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nSuites: bookworm\n")
    monkeypatch.setattr(build_base_mod, "find_sources_file", lambda: sources)

    def no_tools() -> str:
        raise AssertionError("an up-to-date layout must not run any tool")

    monkeypatch.setattr(build_base_mod, "find_docker", no_tools)
    monkeypatch.setattr(build_base_mod, "find_mmdebstrap", no_tools)
    out = tmp_path / "layout"
    digest_hex = "ab" * 32
    _fake_layout(out, digest_hex)
    stamp = {
        "inputs": build_base_mod.inputs_key(sources),
        "rootfs_sha256": "cd" * 32,
        "digest": f"sha256:{digest_hex}",
    }
    (out / build_base_mod.STAMP_NAME).write_text(json.dumps(stamp))

    assert build_base_mod.main(["--out", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"oci-layout://{out.resolve()}@sha256:{digest_hex}"

    # Another Debian sources file is another input: a rebuild is needed (and would run docker).
    sources.write_text("Types: deb\nSuites: bookworm bookworm-updates\n")
    with pytest.raises(AssertionError, match="must not run any tool"):
        build_base_mod.build(out, None)


def test_build_base_refuses_to_replace_a_foreign_directory(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = subprocess.run(
        [sys.executable, str(BUILD_BASE), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"build_base: error: {out} is neither empty nor an OCI layout; refusing to replace it"
    ]
    assert (out / "notes.txt").read_text() == "keep me"


def test_build_base_reports_a_missing_tool_in_one_line(
    build_base_mod, tmp_path, monkeypatch, capsys
):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nSuites: bookworm\n")
    monkeypatch.setattr(build_base_mod, "find_sources_file", lambda: sources)
    monkeypatch.setattr(build_base_mod, "find_docker", lambda: "/usr/bin/docker")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert build_base_mod.main(["--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert errors == [
        "build_base: error: mmdebstrap was not found on PATH (Debian: apt-get install mmdebstrap)"
    ]
    assert "Traceback" not in captured.err
