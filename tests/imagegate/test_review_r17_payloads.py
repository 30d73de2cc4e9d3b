"""Review r17: bypasses of the image gate's payload check (modelseal.imagegate.payloads) and of
models-image on crafted OCI layouts. Each test documents a defect (xfail strict) until fixed."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.layouts import M, layer, make_layout
from tests.support.model_files import EVIL, tar_bytes, v7_tar, zip_bytes
from tests.support.payloads import payload_view

from modelseal.findings import Finding
from modelseal.imagegate import payloads
from modelseal.imagegate.view import ImageView
from modelseal.models.gate import _check_image
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text


def _unsafe(findings: list[Finding], subject: str) -> bool:
    return any(
        f.id == f"{payloads.PAYLOAD}unsafe-global" and f.subject == subject for f in findings
    )


def test_review_hardlink_out_of_the_model_paths_is_scanned(tmp_path: Path) -> None:
    view = payload_view(
        tmp_path,
        layer(
            M("app/model/evil.pkl", data=EVIL), M("app/evil.pkl", "h", link="app/model/evil.pkl")
        ),
        layer(M("app/model/.wh.evil.pkl")),
    )
    findings = payloads.collect(view)
    # /app/evil.pkl is a regular file at runtime holding os.system; models-image sees nothing
    # under /app/model (the locked directory is empty apart from the lock's files).
    assert view.fs.entry("app/evil.pkl") is not None
    assert _check_image(view.fs, "linux/amd64", {}, [("app/model/", "model")], []) == []
    assert _unsafe(findings, "/app/evil.pkl"), [f.title for f in findings]


def test_review_hidden_pickle_under_the_model_paths_is_checked_by_someone(tmp_path: Path) -> None:
    view = payload_view(
        tmp_path, layer(M("app/model/evil.pkl", data=EVIL)), layer(M("app/model/.wh.evil.pkl"))
    )
    findings = payloads.collect(view)
    findings += _check_image(view.fs, "linux/amd64", {}, [("app/model/", "model")], [])
    # payloads.py's docstring: "The model paths themselves (models.image_paths) are left to
    # models-image, hidden copies included." The other hidden files of the image are scanned.
    assert any("app/model/evil.pkl" in f.subject for f in findings), findings


def test_review_models_ignore_glob_hides_a_pickle_from_both_gates(tmp_path: Path) -> None:
    view = payload_view(
        tmp_path, layer(M("app/model/README.md", data=EVIL)), policy="  ignore: ['*.md']\n"
    )
    findings = payloads.collect(view)
    ignore = view.ctx.policy.policy.models.ignore
    findings += _check_image(view.fs, "linux/amd64", {}, [("app/model/", "model")], ignore)
    assert any("README.md" in f.subject for f in findings), findings


def test_review_tar_holding_a_pickle_is_scanned(tmp_path: Path) -> None:
    view = payload_view(tmp_path, layer(M("srv/bundle.tar", data=tar_bytes([("evil.pkl", EVIL)]))))
    findings = payloads.collect(view)
    assert findings, "a tar of an os.system pickle passes with no finding at all"


def test_review_zip_with_prepended_data_is_scanned(tmp_path: Path) -> None:
    data = b"#!/usr/bin/env python3\n" + zip_bytes([("pkg/evil.pkl", EVIL)])
    import zipfile

    assert zipfile.ZipFile(io.BytesIO(data)).read("pkg/evil.pkl") == EVIL
    view = payload_view(tmp_path, layer(M("usr/lib/python3/site-packages/pkg.pyz", data=data)))
    findings = payloads.collect(view)
    assert any(f.id.startswith(payloads.PAYLOAD) for f in findings), findings


def test_review_nested_zip_is_scanned(tmp_path: Path) -> None:
    inner = zip_bytes([("evil.pkl", EVIL)])
    view = payload_view(tmp_path, layer(M("srv/outer.zip", data=zip_bytes([("inner.zip", inner)]))))
    findings = payloads.collect(view)
    assert any(f.id.startswith(payloads.PAYLOAD) for f in findings), findings


def test_review_v7_torch_legacy_tar_is_scanned(tmp_path: Path) -> None:
    data = v7_tar([("storages", b"\0" * (2 << 20)), ("tensors", b"\0"), ("pickle", EVIL)])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", format=tarfile.PAX_FORMAT) as t:
        pickle_member = t.extractfile("pickle")
        assert pickle_member is not None and pickle_member.read() == EVIL  # what torch loads
    view = payload_view(tmp_path, layer(M("opt/cache/old-model.pt", data=data)))
    findings = payloads.collect(view)
    assert _unsafe(findings, "/opt/cache/old-model.pt"), findings


def test_review_zip_past_the_member_bound_is_not_skipped_silently(tmp_path: Path) -> None:
    import zipfile

    from modelseal.models.formats import MAX_ZIP_MEMBERS

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/evil.pkl", EVIL)
        for i in range(MAX_ZIP_MEMBERS):
            zf.writestr(f"{i:x}", b"")
    data = buf.getvalue()
    assert zipfile.ZipFile(io.BytesIO(data)).read("pkg/evil.pkl") == EVIL
    view = payload_view(tmp_path, layer(M("usr/lib/python3/site-packages/big.whl", data=data)))
    findings = payloads.collect(view)
    assert findings, "an os.system pickle in a big wheel: no finding (not even unscanned)"


@pytest.mark.parametrize("opener", [b"X", b"B"])
def test_review_pickle_behind_a_long_leading_string_is_scanned(
    tmp_path: Path, opener: bytes
) -> None:
    import pickle
    import struct

    n = 2 << 20
    data = opener + struct.pack("<I", n) + b"a" * n + b"0" + b"cos\ngetcwd\n)R."
    assert pickle.loads(data) == os.getcwd()  # an ordinary pickle.load runs the call
    evil = opener + struct.pack("<I", n) + b"a" * n + b"0" + EVIL
    view = payload_view(tmp_path, layer(M("usr/share/app/cache.bin", data=evil)))
    findings = payloads.collect(view)
    assert _unsafe(findings, "/usr/share/app/cache.bin"), findings


def test_review_pickle_safetensors_polyglot_fails(tmp_path: Path) -> None:
    import pickle
    import struct

    from modelseal.imagegate.rules import image_rule
    from modelseal.judge import Outcome

    head = b"\x80\x02B\x02\x00\x00\x00\x00{"  # its first 8 bytes: a 37.9 MB header length
    (n,) = struct.unpack("<Q", head[:8])

    def poly(body: bytes) -> bytes:
        data = head + b"0" + body
        return data + b" " * (n + 8 - len(data) + 16)

    assert pickle.loads(poly(b"cos\ngetcwd\n)R.")) == os.getcwd()
    view = payload_view(tmp_path, layer(M("opt/cache/hub/weights.bin", data=poly(EVIL))))
    findings = payloads.collect(view)
    policy = view.ctx.policy.policy
    outcomes = {(f.id, image_rule(policy, f).outcome) for f in findings}
    assert any(o is Outcome.FAIL for _, o in outcomes), outcomes


def test_review_pickle_gguf_polyglot_fails(tmp_path: Path) -> None:
    import pickle

    from modelseal.imagegate.rules import image_rule
    from modelseal.judge import Outcome

    head = b"GGUF\x03\x00\x00\x00\x00"
    assert pickle.loads(head + b"0cos\ngetcwd\n)R." + b"\0" * 64) == os.getcwd()
    view = payload_view(
        tmp_path, layer(M("opt/models/tiny.gguf", data=head + b"0" + EVIL + b"\0" * 64))
    )
    findings = payloads.collect(view)
    policy = view.ctx.policy.policy
    outcomes = {(f.id, image_rule(policy, f).outcome) for f in findings}
    assert any(o is Outcome.FAIL for _, o in outcomes), outcomes


def test_review_pickle_in_an_hdf5_user_block_fails(tmp_path: Path) -> None:
    import pickle

    from modelseal.imagegate.rules import image_rule
    from modelseal.judge import Outcome

    def poly(body: bytes) -> bytes:
        return body.ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + b"\0" * 600

    assert pickle.loads(poly(b"cos\ngetcwd\n)R.")) == os.getcwd()
    view = payload_view(tmp_path, layer(M("opt/models/model.h5", data=poly(EVIL))))
    findings = payloads.collect(view)
    policy = view.ctx.policy.policy
    outcomes = {(f.id, image_rule(policy, f).outcome) for f in findings}
    assert any(o is Outcome.FAIL for _, o in outcomes), outcomes


def test_review_the_scan_deadline_bounds_zip_member_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle
    import time
    import zipfile

    def copy(n: int) -> bytes:
        # Distinct copies: the scan cache (by content) cannot answer for the others.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("copy", str(n))
            for i in range(3000):
                zf.writestr(f"d/{i}.pkl", pickle.dumps(list(range(200)), protocol=4))
        return buf.getvalue()

    # One copy's scan takes longer than the bound (~0.2-0.7 s); without the deadline inside
    # the zip member scans, every copy was scanned past it.
    monkeypatch.setattr(payloads, "MAX_SCAN_SECONDS", 0.05)
    view = payload_view(tmp_path, layer(*(M(f"srv/copy{i}.zip", data=copy(i)) for i in range(10))))
    view.fs  # noqa: B018 (the layers are read here, outside the timed scan)
    start = time.monotonic()
    findings = payloads.collect(view)
    elapsed = time.monotonic() - start
    scanned = {f.subject for f in findings if f.id == payloads.MODEL_FILE}
    unscanned = {f.subject for f in findings if f.id == payloads.UNSCANNED}
    # The bound cuts off the scan it passes in (zip members included): no copy is scanned
    # past it (before: the first copy's scan ran to its end, and identical copies' zip
    # members were scanned again for each, after the bound); all are image.payload-unscanned.
    assert not scanned, f"{len(scanned)} copies scanned in {elapsed:.1f} s (bound 0.05 s)"
    assert len(unscanned) == 10


def test_review_gzip_pickle_behind_a_long_gzip_file_name_is_scanned(tmp_path: Path) -> None:
    import gzip
    import pickle
    import struct
    import zlib

    from modelseal.models.formats import detect_format

    def gz(data: bytes, name: bytes) -> bytes:
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = co.compress(data) + co.flush()
        tail = struct.pack("<II", zlib.crc32(data), len(data))
        return b"\x1f\x8b\x08\x08\0\0\0\0\0\xff" + name + b"\0" + body + tail

    name = b"a" * (2 << 20)
    assert pickle.loads(gzip.decompress(gz(b"cos\ngetcwd\n)R.", name))) == os.getcwd()
    data = gz(EVIL, name)
    (tmp_path / "whole.gz").write_bytes(data)
    assert detect_format(tmp_path / "whole.gz").detail.get("compressed") == "gzip"
    view = payload_view(tmp_path, layer(M("srv/model.joblib", data=data)))
    findings = payloads.collect(view)
    assert _unsafe(findings, "/srv/model.joblib"), findings


BENIGN = pickle.dumps({"a": 1}, protocol=4)


def test_a_hidden_copy_identical_to_what_shows_is_left_to_models_image(tmp_path: Path) -> None:
    # A later layer's chmod copies the model up whole: the hidden copy is the same bytes.
    view = payload_view(
        tmp_path, layer(M("app/model/m.pkl", data=BENIGN)), layer(M("app/model/m.pkl", data=BENIGN))
    )
    assert payloads.collect(view) == []
    assert dict(view.fs.reads) == {0: 1, 1: 1}  # and nothing was read again


def test_an_unseen_model_path_copy_past_the_bounds_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payloads, "MAX_CANDIDATES", 0)
    view = payload_view(
        tmp_path, layer(M("app/model/evil.pkl", data=EVIL)), layer(M("app/model/.wh.evil.pkl"))
    )
    findings = payloads.collect(view)
    assert [(f.id, f.subject) for f in findings] == [(payloads.UNSCANNED, "/app/model/evil.pkl")]


@pytest.mark.parametrize(
    ("gates", "scanned"),
    [(None, False), (frozenset({"build", "image"}), True),
     (frozenset({"build", "image", "models-image"}), False)],
)  # fmt: skip
def test_the_model_paths_are_left_to_models_image_only_when_it_runs(
    tmp_path: Path, gates: frozenset[str] | None, scanned: bool
) -> None:
    from modelseal.pipeline import RunShared

    loaded = load_policy_text(
        "version: 1\nmodels:\n  image_paths: {model: /app/model}\n", "policy.yml"
    )
    ctx = Context(
        policy=loaded, options=RunOptions(context=tmp_path), epoch=SourceDateEpoch(EPOCH, "x"),
        work_dir=tmp_path / "work", out_dir=tmp_path / "out", shared=RunShared(None, gates),
    )  # fmt: skip
    ctx.work_dir.mkdir()
    layout, digest = make_layout(tmp_path / "oci", [layer(M("app/model/evil.pkl", data=EVIL))])
    findings = payloads.collect(ImageView(ctx, layout, "linux/amd64", digest, {}, {}))
    assert _unsafe(findings, "/app/model/evil.pkl") is scanned


def test_a_models_ignore_glob_over_the_context_path_is_matched_too(tmp_path: Path) -> None:
    # models.ignore globs are build-context paths (model/docs/*), as models-image matches them.
    view = payload_view(
        tmp_path, layer(M("app/model/docs/notes.bin", data=EVIL)),
        policy="  ignore: ['model/docs/*']\n",
    )  # fmt: skip
    findings = payloads.collect(view)
    assert _unsafe(findings, "/app/model/docs/notes.bin"), findings
    assert findings[0].evidence["model_paths"].endswith("left out of models-image by models.ignore")
