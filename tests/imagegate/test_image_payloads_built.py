"""The image gate's payload check on real BuildKit images: a malicious pickle in a package's data
files under dist-packages (installed from a wheel by a RUN step), in a base layer (a FROM image
built first), hidden by a later layer's deletion; a benign cached model outside the lock (warn by
default, fail under ``fail``, accepted by a glob); the locked model not reported again; the
Debian python3 base itself clean; the bounds never silent. One pass over the layers, shared with
models-image."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.model_files import safetensors_bytes, torch_zip

from modelseal import imagefs
from modelseal.findings import Finding, GateResult, Status
from modelseal.imagebuild.gate import BuildGate
from modelseal.imagegate import payloads
from modelseal.imagegate.gate import ImageGate
from modelseal.imagegate.rules import image_rule
from modelseal.imagegate.view import ImageView
from modelseal.judge import Outcome
from modelseal.models.gate import ModelsImageGate
from modelseal.oci import OciLayout, platform_manifests
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import LoadedPolicy, load_policy_text

pytestmark = pytest.mark.engine

DIST = "usr/lib/python3/dist-packages"
WHEEL = "evilpkg-1.0-py3-none-any.whl"
POLICY = "version: 1\nbuild:\n  rebuild_check: false\nmodels:\n  image_paths: {model: /app/model}\n"


class _Run:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.cmd,))


def evil(protocol: int = 4) -> bytes:
    """``os.system("…")`` on load, as pickle.dumps writes it."""
    return pickle.dumps(_Run("echo pwned > /tmp/pwned"), protocol=protocol)


BENIGN = pickle.dumps({"vocab": ["a", "b"], "sizes": (1, 2)}, protocol=4)


def wheel() -> bytes:
    """A pure-Python wheel whose package data holds a malicious pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in (
            ("evilpkg/__init__.py", b"import pickle, importlib.resources as r\n"),
            ("evilpkg/data/tokenizer.pkl", evil(2)),
            ("evilpkg-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n"),
            ("evilpkg-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
            ("evilpkg-1.0.dist-info/RECORD", b""),
        ):  # fmt: skip
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


@dataclass
class Built:
    policy: LoadedPolicy
    options: RunOptions
    results: dict[str, GateResult]
    opened: dict[str, int]
    layout: OciLayout
    manifest: str
    base_layers: int


def _pipeline(
    policy: LoadedPolicy, options: RunOptions, gates: list[object]
) -> dict[str, GateResult]:
    res = run_pipeline(gates, policy, options, SourceDateEpoch(EPOCH, "option"))  # type: ignore[arg-type]
    assert not res.internal_error
    results = {r.gate: r for r in res.results}
    assert results["build"].status is Status.PASSED, results["build"].error
    return results


@pytest.fixture(scope="module")
def built(example_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("payloads")
    policy = load_policy_text(POLICY, "policy.yml")
    # The base: Debian python3 plus a cached download with a malicious pickle, and one more that
    # the app's RUN step deletes (a whiteout: hidden at runtime, still in the base's blob).
    base_ctx = root / "base"
    (base_ctx / "hub").mkdir(parents=True)
    (base_ctx / "hub" / "evil.pth").write_bytes(evil())
    (base_ctx / "stale.pkl").write_bytes(evil(0))
    (base_ctx / "Dockerfile").write_text(
        "FROM base\nCOPY hub/ /root/.cache/torch/hub/checkpoints/\nCOPY stale.pkl /opt/stale/\n"
    )
    base = _pipeline(policy, RunOptions(context=base_ctx, build_contexts={"base": example_base},
                     source_date_epoch=EPOCH, out_dir=root / "base-out"), [BuildGate()])["build"]  # fmt: skip
    ((_, base_digest),) = platform_manifests(base.facts).items()
    base_layout = OciLayout(Path(base.artifacts["oci_layout"]))
    base_ref = f"oci-layout://{base_layout.path}@{base_digest}"
    # The app: the wheel installed by a RUN step (the wheel file itself deleted: hidden), a
    # benign cached model outside the lock, the locked model (a pickle-bearing torch zip).
    ctx = root / "app"
    (ctx / "model").mkdir(parents=True)
    (ctx / "hub").mkdir()
    (ctx / WHEEL).write_bytes(wheel())
    (ctx / "model" / "model.pt").write_bytes(torch_zip())
    (ctx / "hub" / "pytorch_model.bin").write_bytes(torch_zip(root="tiny"))
    (ctx / "hub" / "vocab.pkl").write_bytes(BENIGN)
    (ctx / "hub" / "model.safetensors").write_bytes(safetensors_bytes([1.0, 2.0]))
    (ctx / "Dockerfile").write_text(
        "FROM base\n"
        f"COPY {WHEEL} /tmp/\n"
        f"RUN python3 -m zipfile -e /tmp/{WHEEL} /{DIST}/ && rm /tmp/{WHEEL} && rm -r /opt/stale\n"
        "COPY hub/ /opt/hub/models--org--tiny/snapshots/1/\n"
        "COPY model/ /app/model/\n"
    )
    from modelseal._cli import main

    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    options = RunOptions(context=ctx, build_contexts={"base": base_ref}, source_date_epoch=EPOCH,
                         out_dir=root / "out")  # fmt: skip
    opened: dict[str, int] = {}
    real = imagefs.open_layer

    def counting(path: Path, media: str) -> object:
        opened[Path(path).name] = opened.get(Path(path).name, 0) + 1
        return real(path, media)

    mp = pytest.MonkeyPatch()
    mp.setattr(imagefs, "open_layer", counting)
    try:
        results = _pipeline(policy, options, [BuildGate(), ModelsImageGate(), ImageGate()])
    finally:
        mp.undo()
    (manifest,) = platform_manifests(results["build"].facts).values()
    yield Built(policy, options, results, opened, OciLayout(Path(results["build"].artifacts[
        "oci_layout"])), manifest, len(base_layout.manifest(base_digest)["layers"]))  # fmt: skip


def _by_subject(findings: tuple[Finding, ...] | list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.subject, []).append(f)
    return out


def _unsafe(fs: list[Finding]) -> Finding:
    (f,) = [f for f in fs if f.id == f"{payloads.PAYLOAD}unsafe-global"]
    return f


def test_malicious_pickles_anywhere_fail_and_name_layer_and_path(built: Built) -> None:
    image = built.results["image"]
    assert image.status is Status.PASSED, image.error
    found = _by_subject(image.findings)
    pol = built.policy.policy
    # In a package's data files, installed by a RUN step.
    pkg = _unsafe(found[f"/{DIST}/evilpkg/data/tokenizer.pkl"])
    assert pkg.evidence["global"] == "posix.system" or pkg.evidence["global"] == "os.system"
    assert pkg.evidence["hidden"] == "no"
    # In the base image's layer.
    hub = _unsafe(found["/root/.cache/torch/hub/checkpoints/evil.pth"])
    assert int(hub.evidence["layer"]) <= built.base_layers
    # Deleted by the app's RUN step: not visible at runtime, still in the base's blob.
    stale = _unsafe(found["/opt/stale/stale.pkl"])
    assert stale.evidence["hidden"] == "yes" and "not visible at runtime" in stale.title
    assert int(stale.evidence["layer"]) <= built.base_layers
    layers = built.layout.manifest(built.manifest)["layers"]
    for f in (pkg, hub, stale):
        n = int(f.evidence["layer"])
        assert f.evidence["layer_digest"] == layers[n - 1]["digest"]
        assert f"layer {n} ({layers[n - 1]['digest'][:19]}…)" in f.title
        assert image_rule(pol, f).outcome is Outcome.FAIL
    # The wheel file the RUN step deleted: a zip holding that pickle, in its COPY layer.
    whl = found[f"/tmp/{WHEEL}"]
    assert {f.evidence["hidden"] for f in whl} == {"yes"}
    assert any(f.evidence.get("member") == "evilpkg/data/tokenizer.pkl" for f in whl
               if f.id == f"{payloads.PAYLOAD}unsafe-global")  # fmt: skip


def test_a_benign_unlisted_model_warns_fails_under_fail_and_a_glob_accepts_it(built: Built) -> None:
    found = _by_subject(built.results["image"].findings)
    hub = "/opt/hub/models--org--tiny/snapshots/1"
    benign = [f for p, fs in found.items() if p.startswith(hub) for f in fs]
    assert sorted((f.subject, f.id, f.evidence["format"]) for f in benign) == [
        (f"{hub}/model.safetensors", payloads.MODEL_FILE, "safetensors"),
        (f"{hub}/pytorch_model.bin", payloads.MODEL_FILE, "pytorch-zip"),
        (f"{hub}/vocab.pkl", payloads.MODEL_FILE, "pickle"),
    ]

    def outcomes(extra: str) -> set[Outcome]:
        pol = load_policy_text(POLICY + extra, "p.yml").policy
        return {image_rule(pol, f).outcome for f in benign}

    assert outcomes("") == {Outcome.WARN}
    assert outcomes("image:\n  model_files_outside_lock: fail\n") == {Outcome.FAIL}
    glob = "image:\n  model_files_outside_lock: fail\n  model_files_ignore: ['opt/hub/*']\n"
    assert outcomes(glob) == {Outcome.IGNORED}


def test_the_locked_model_and_the_base_system_are_not_reported(built: Built) -> None:
    subjects = set(_by_subject(built.results["image"].findings))
    assert not any(s.startswith("/app/model") for s in subjects)
    ours = ("/usr/lib/python3/dist-packages/evilpkg/", "/root/.cache/torch/hub/", "/opt/stale/",
            "/opt/hub/", f"/tmp/{WHEEL}")  # fmt: skip
    # Debian's python3, dash and coreutils: nothing that fails. (A changelog.gz whose text
    # starts "C" + a length byte + "." is a complete pickle to the detector: a joblib file with
    # trailing data, judged as a file outside the lock: a warning.)
    pol = built.policy.policy
    # (The least-privilege findings of this root image are test_image_gate's business.)
    others = [
        f for f in built.results["image"].findings
        if not f.subject.startswith(ours)
        and (f.id == payloads.MODEL_FILE or f.id.startswith(payloads.PAYLOAD))
    ]  # fmt: skip
    assert {image_rule(pol, f).outcome for f in others} <= {Outcome.WARN}
    assert {f.id for f in others} <= {payloads.MODEL_FILE, f"{payloads.PAYLOAD}trailing-data"}
    assert built.results["models-image"].findings == ()


def test_one_pass_over_the_layers_shared_with_models_image(built: Built) -> None:
    layers = [d["digest"].removeprefix("sha256:")
              for d in built.layout.manifest(built.manifest)["layers"]]  # fmt: skip
    assert built.opened == dict.fromkeys(layers, 1)


def test_past_a_bound_the_real_image_fails_never_silently(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payloads, "MAX_CANDIDATES", 2)
    ctx = Context(policy=built.policy, options=built.options, epoch=SourceDateEpoch(EPOCH, "x"),
                  work_dir=tmp_path / "work", out_dir=tmp_path / "out")  # fmt: skip
    ctx.work_dir.mkdir()
    view = ImageView.read(ctx, built.layout, "linux/amd64", built.manifest)
    findings = payloads.collect(view)
    unscanned = [f for f in findings if f.id == payloads.UNSCANNED]
    scanned = {f.subject for f in findings if f.id != payloads.UNSCANNED}
    # Two files copied and scanned; every other candidate is named, and fails.
    assert len({f.subject for f in findings if f.id == payloads.MODEL_FILE
                and f.evidence["pickle"] == "yes"}) == 2  # fmt: skip
    assert len(unscanned) >= 4 and not scanned & {f.subject for f in unscanned}
    assert {image_rule(ctx.policy.policy, f).outcome for f in unscanned} == {Outcome.FAIL}
    assert all("more than 2 candidate files" in f.title for f in unscanned)
