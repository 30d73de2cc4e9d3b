"""An :class:`ImageView` over layers made in the test, for the image gate's payload check."""

from __future__ import annotations

from pathlib import Path

from tests.support import EPOCH
from tests.support.layouts import make_layout

from modelseal.imagegate.view import ImageView
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text


def payload_view(tmp_path: Path, *layers: bytes, policy: str = "") -> ImageView:
    """The linux/amd64 image of ``layers`` under a policy mapping ``model`` to /app/model
    (``policy`` appended to it)."""
    loaded = load_policy_text(
        "version: 1\nmodels:\n  image_paths: {model: /app/model}\n" + policy, "policy.yml"
    )
    ctx = Context(
        policy=loaded, options=RunOptions(context=tmp_path), epoch=SourceDateEpoch(EPOCH, "x"),
        work_dir=tmp_path / "work", out_dir=tmp_path / "out",
    )  # fmt: skip
    ctx.work_dir.mkdir()
    layout, digest = make_layout(tmp_path / "oci", list(layers))
    return ImageView(ctx, layout, "linux/amd64", digest, {}, {})
