"""The image gate's payload check (modelseal.imagegate.payloads) on crafted OCI layouts: what
the one pass over the layers copies for the scan, what a later layer hides, the bounds, and how
the policy judges each finding. Real built images: test_image_payloads_built.py."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.layouts import M, layer, make_layout
from tests.support.model_files import EVIL, npy_bytes, safetensors_bytes, torch_zip, zip_bytes

from modelseal import imagefs
from modelseal.errors import GateError
from modelseal.findings import Finding, Severity
from modelseal.imagegate import payloads
from modelseal.imagegate.rules import image_rule
from modelseal.imagegate.view import ImageView
from modelseal.judge import Outcome
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text

BENIGN = pickle.dumps({"weights": [1.0, 2.0], "name": "tiny"}, protocol=4)


def _ctx(tmp_path: Path, policy: str = "") -> Context:
    loaded = load_policy_text(
        "version: 1\nmodels:\n  image_paths: {model: /app/model}\n" + policy, "policy.yml"
    )
    ctx = Context(
        policy=loaded,
        options=RunOptions(context=tmp_path),
        epoch=SourceDateEpoch(EPOCH, "x"),
        work_dir=tmp_path / "work",
        out_dir=tmp_path / "out",
    )
    ctx.work_dir.mkdir()
    return ctx


def _collect(tmp_path: Path, *layers: bytes, policy: str = "") -> tuple[list[Finding], Context]:
    layout, digest = make_layout(tmp_path / "oci", list(layers))
    ctx = _ctx(tmp_path, policy)
    view = ImageView(ctx, layout, "linux/amd64", digest, {}, {})
    return payloads.collect(view), ctx


def _ids(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return sorted((f.id, f.subject, f.evidence["hidden"]) for f in findings)


def test_pickle_bearing_files_anywhere_are_scanned_and_the_model_paths_are_left_out(
    tmp_path: Path,
) -> None:
    findings, ctx = _collect(
        tmp_path,
        layer(
            M("usr/lib/python3/site-packages/pkg/data/evil.pkl", data=EVIL),
            M("opt/cache/hub/model.bin", data=torch_zip()),
            M("opt/cache/hub/w.safetensors", data=safetensors_bytes([1.0])),
            M("srv/arrays.npy", data=npy_bytes("<f4", (2,), b"\0" * 8)),
            M("srv/objects.npy", data=npy_bytes("|O", (1,), BENIGN)),
            M("app/model/model.pkl", data=EVIL),  # models-image's
            M("usr/share/notes.txt", data=b"Copyright (c) nobody\n"),
            M("usr/lib/pip.whl", data=zip_bytes([("pip/__init__.py", b"x = 1\n")])),
        ),
    )
    ids = _ids(findings)
    pkl = "/usr/lib/python3/site-packages/pkg/data/evil.pkl"
    assert (payloads.MODEL_FILE, pkl, "no") in ids
    assert (f"{payloads.PAYLOAD}unsafe-global", pkl, "no") in ids
    assert not any(s.startswith("/app/model") for _, s, _ in ids)
    assert not any(s in ("/usr/share/notes.txt", "/usr/lib/pip.whl") for _, s, _ in ids)
    formats = {f.subject: f.evidence["format"] for f in findings if f.id == payloads.MODEL_FILE}
    assert formats == {
        pkl: "pickle",
        "/opt/cache/hub/model.bin": "pytorch-zip",
        "/opt/cache/hub/w.safetensors": "safetensors",
        "/srv/arrays.npy": "numpy",
        "/srv/objects.npy": "numpy",
    }
    evil = next(f for f in findings if f.id == f"{payloads.PAYLOAD}unsafe-global")
    assert evil.evidence["global"] == "os.system"
    assert evil.evidence["layer"] == "1" and evil.evidence["layer_digest"].startswith("sha256:")
    assert "layer 1 (sha256:" in evil.title
    # The judge: the unsafe pickle fails whatever model_files_outside_lock says; the benign
    # model files warn by default.
    policy = ctx.policy.policy
    assert image_rule(policy, evil).outcome is Outcome.FAIL
    benign = [f for f in findings if f.id == payloads.MODEL_FILE]
    assert {image_rule(policy, f).outcome for f in benign} == {Outcome.WARN}
    assert [f.id for f in findings if f.subject == "/opt/cache/hub/model.bin"] == [
        payloads.MODEL_FILE
    ]


def test_what_a_later_layer_hides_is_scanned_and_named_hidden(tmp_path: Path) -> None:
    findings, _ = _collect(
        tmp_path,
        layer(M("opt/a.pkl", data=EVIL), M("opt/b.pkl", data=EVIL), M("opt/c.pkl", data=BENIGN)),
        # a whiteout, an overwrite with other bytes, an identical copy-up (a chmod)
        layer(
            M("opt/.wh.a.pkl"), M("opt/b.pkl", data=b"plain text\n"), M("opt/c.pkl", data=BENIGN)
        ),
    )
    ids = _ids(findings)
    assert (f"{payloads.PAYLOAD}unsafe-global", "/opt/a.pkl", "yes") in ids
    assert (f"{payloads.PAYLOAD}unsafe-global", "/opt/b.pkl", "yes") in ids
    # the identical hidden copy of c.pkl is not reported again
    assert [x for x in ids if x[1] == "/opt/c.pkl"] == [(payloads.MODEL_FILE, "/opt/c.pkl", "no")]
    hidden = next(f for f in findings if f.subject == "/opt/a.pkl" and f.id != payloads.MODEL_FILE)
    assert "not visible at runtime" in hidden.title and hidden.evidence["layer"] == "1"


def test_model_files_outside_lock_and_the_ignore_globs(tmp_path: Path) -> None:
    findings, _ = _collect(
        tmp_path, layer(M("opt/cache/hub/m.pkl", data=BENIGN), M("opt/x/evil.pkl", data=EVIL))
    )
    (benign,) = [f for f in findings if f.subject == "/opt/cache/hub/m.pkl"]
    evil = [f for f in findings if f.subject == "/opt/x/evil.pkl"]

    def judged(text: str, f: Finding) -> Outcome:
        pol = load_policy_text(f"version: 1\nimage:\n{text}", "p.yml").policy
        return image_rule(pol, f).outcome

    assert judged("  model_files_outside_lock: fail\n", benign) is Outcome.FAIL
    assert judged("  model_files_outside_lock: allow\n", benign) is Outcome.IGNORED
    glob = "  model_files_outside_lock: fail\n  model_files_ignore: ['opt/cache/hub/*']\n"
    assert judged(glob, benign) is Outcome.IGNORED
    by_name = "  model_files_outside_lock: fail\n  model_files_ignore: ['*.pkl']\n"
    assert judged(by_name, benign) is Outcome.IGNORED
    assert judged("  model_files_ignore: ['opt/other/*']\n", benign) is Outcome.WARN
    # The globs accept the model file, never what the scanner found in it.
    unsafe = next(f for f in evil if f.id != payloads.MODEL_FILE)
    assert judged("  model_files_outside_lock: allow\n  model_files_ignore: ['*']\n", unsafe) is (
        Outcome.FAIL
    )


def test_the_models_allowlist_policy_applies_as_in_the_models_gate(tmp_path: Path) -> None:
    custom = b"\x80\x04cmypkg.layers\nDense\n)\x81."  # mypkg.layers.Dense.__new__
    findings, ctx = _collect(tmp_path, layer(M("opt/custom.pkl", data=custom)))
    (unsafe,) = [f for f in findings if f.id.startswith(payloads.PAYLOAD)]
    assert unsafe.evidence["global"] == "mypkg.layers.Dense"
    assert image_rule(ctx.policy.policy, unsafe).outcome is Outcome.FAIL
    pol = load_policy_text(
        "version: 1\nmodels:\n  allowed_globals: [mypkg.layers.Dense]\n", "p.yml"
    ).policy
    assert image_rule(pol, unsafe).outcome is Outcome.IGNORED


@pytest.mark.parametrize(
    ("cap", "value", "reason"),
    [
        ("MAX_CANDIDATES", 1, "candidate files"),
        ("MAX_CANDIDATE_BYTES", 100, "bytes of candidate files"),
        ("MAX_SCAN_SECONDS", -1.0, "payload scan took more than"),
    ],
)
def test_past_a_bound_a_candidate_is_a_failing_finding_never_a_silent_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: str, value: float, reason: str
) -> None:
    monkeypatch.setattr(payloads, cap, value)
    findings, ctx = _collect(
        tmp_path, layer(M("a/one.pkl", data=BENIGN), M("b/two.pkl", data=EVIL * 5))
    )
    unscanned = [f for f in findings if f.id == payloads.UNSCANNED]
    assert unscanned and all(reason in f.title for f in unscanned)
    assert {image_rule(ctx.policy.policy, f).outcome for f in unscanned} == {Outcome.FAIL}


def test_a_file_over_the_per_file_bound_is_not_copied(tmp_path: Path) -> None:
    findings, _ = _collect(
        tmp_path,
        layer(M("opt/big.pkl", data=BENIGN + b"\0" * (1 << 20))),
        policy="  limits:\n    max_inflated_bytes: 1048576\n",
    )
    (f,) = findings
    assert f.id == payloads.UNSCANNED
    assert "models.limits.max_inflated_bytes (1048576)" in f.title
    assert not list((tmp_path / "work").rglob("payload-*"))


def test_only_candidates_are_copied_and_each_layer_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = imagefs.open_layer

    def counting(path: Path, media: str) -> object:
        opened.append(Path(path).name)
        return real(path, media)

    monkeypatch.setattr(imagefs, "open_layer", counting)
    big = safetensors_bytes([0.5] * 1000) + os.urandom(3 << 20)
    findings, _ = _collect(
        tmp_path,
        layer(
            M("app/model/w.safetensors", data=big),
            M("opt/w.safetensors", data=big),
            M("opt/p.pkl", data=BENIGN),
        ),
        layer(M("etc/x.pkl", data=BENIGN)),
    )
    assert len(opened) == 2 == len(set(opened))
    copied = sorted(p.name for p in (tmp_path / "work").rglob("payload-*"))
    assert copied == ["payload-0-2", "payload-1-0"]
    assert {f.subject for f in findings} == {"/opt/w.safetensors", "/opt/p.pkl", "/etc/x.pkl"}


def test_layers_read_without_the_tap_are_a_gate_error(tmp_path: Path) -> None:
    layout, digest = make_layout(tmp_path / "oci", [layer(M("a.pkl", data=EVIL))])
    ctx = _ctx(tmp_path, policy="image:\n  enabled: false\n")
    view = ImageView(ctx, layout, "linux/amd64", digest, {}, {})
    with pytest.raises(GateError, match="without the payload scan"):
        payloads.collect(view)


def test_detecting_from_a_cut_head_agrees_with_the_whole_file_and_never_misses_a_pickle(
    tmp_path: Path,
) -> None:
    import gzip
    import lzma
    import random

    from tests.support.model_files import keras_h5, lz4_frame, lz4_literals, valid_gguf, valid_onnx

    from modelseal.models.formats import detect_format, detect_prefix, may_carry_pickle
    from modelseal.models.issues import Format

    rng = random.Random(17)
    whole = [
        EVIL, BENIGN, torch_zip(), safetensors_bytes([1.0] * 64), valid_gguf(), valid_onnx(),
        keras_h5(None), npy_bytes("|O", (1,), BENIGN), gzip.compress(BENIGN * 50),
        lzma.compress(BENIGN * 50), lz4_frame([lz4_literals(BENIGN)]), b"\x80\x05\x95",
    ]  # fmt: skip
    for k, data in enumerate(whole):
        path = tmp_path / f"f{k}"
        path.write_bytes(data)
        full = detect_format(path)
        # The whole file as the head: the same answer as the full detector (an archive is
        # left to it: its members decide).
        got = detect_prefix(data, len(data))
        assert may_carry_pickle(got) == may_carry_pickle(full), k
        assert got.format is (Format.UNKNOWN if "container" in got.detail else full.format), k
        for cut in {0, 1, 2, 8, 9, 64, len(data) // 2, len(data)}:
            head = data[:cut]
            for size in (len(head), len(data), len(data) + (1 << 30)):
                detect_prefix(head, size)  # a cut head never raises
            if cut >= 64 and may_carry_pickle(full):
                # A head of a pickle-bearing file (the tap's heads are at least this long) is
                # never answered "not a candidate": the whole file is scanned.
                assert may_carry_pickle(detect_prefix(head, len(data))), (k, cut)
            noisy = bytearray(head)
            for _ in range(4):
                if noisy:
                    noisy[rng.randrange(len(noisy))] = rng.randrange(256)
            detect_prefix(bytes(noisy), len(data))


def test_every_payload_id_reaches_the_payload_rule() -> None:
    # image_rule hands payload findings to payload_rule by id prefix (importing the scanner only
    # then): an id outside the prefixes would fail as unknown, whatever the policy accepts.
    policy = load_policy_text("version: 1\nimage:\n  model_files_outside_lock: allow\n", "p.yml")
    for fid, outcome in (
        (payloads.MODEL_FILE, Outcome.IGNORED),
        (f"{payloads.PAYLOAD}trailing-data", Outcome.IGNORED),
        (payloads.UNSCANNED, Outcome.FAIL),
    ):
        f = Finding(gate="image", id=fid, severity=Severity.LOW, title="t", subject="/x.pkl")
        d = image_rule(policy.policy, f)
        assert d.outcome is outcome and "no image policy rule" not in d.reason, (fid, d)
