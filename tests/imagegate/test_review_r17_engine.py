"""Review r17: the image gate on real BuildKit images, selected without models-image
(``modelseal run --gate build --gate image``). It was a strict xfail until fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.model_files import EVIL

from modelseal.findings import Status
from modelseal.imagebuild.gate import BuildGate
from modelseal.imagegate import payloads
from modelseal.imagegate.gate import ImageGate
from modelseal.pipeline import RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import load_policy_text

pytestmark = pytest.mark.engine



def test_review_model_paths_scanned_when_models_image_does_not_run(
    busybox_base: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "evil.pkl").write_bytes(EVIL)
    (ctx / "Dockerfile").write_text("FROM base\nCOPY evil.pkl /app/model/evil.pkl\nUSER 1000\n")
    policy = load_policy_text(
        "version: 1\nbuild:\n  rebuild_check: false\nmodels:\n  image_paths: {model: /app/model}\n",
        "policy.yml",
    )
    options = RunOptions(
        context=ctx, build_contexts={"base": busybox_base}, source_date_epoch=EPOCH,
        out_dir=tmp_path / "out",
    )  # fmt: skip
    res = run_pipeline([BuildGate(), ImageGate()], policy, options, SourceDateEpoch(EPOCH, "x"))
    results = {r.gate: r for r in res.results}
    assert set(results) == {"build", "image"}
    image = results["image"]
    assert image.status is Status.PASSED, image.error
    assert any(
        f.id == f"{payloads.PAYLOAD}unsafe-global" and f.subject == "/app/model/evil.pkl"
        for f in image.findings
    ), [f.title for f in image.findings]
