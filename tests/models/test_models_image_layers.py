"""models-image on crafted OCI layouts: layer names and digests BuildKit never writes, but a
hostile layout (or a base image built elsewhere) can hold."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.gates import StubBuild
from tests.support.layouts import M, layer, make_layout
from tests.support.model_files import safetensors_bytes

from modelseal._cli import main
from modelseal.findings import GateResult, Status
from modelseal.models.gate import ModelsImageGate
from modelseal.pipeline import RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import load_policy_text

PINNED = safetensors_bytes([1.0, 2.0])
ALTERED = safetensors_bytes([6.0, 6.0])


def _gate(tmp_path: Path, layers: list[bytes], digests: list[str] | None = None) -> GateResult:
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "a.safetensors").write_bytes(PINNED)
    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    layout, manifest = make_layout(tmp_path / "oci", layers, digests)
    policy = load_policy_text("version: 1\nmodels:\n  image_paths: {model: /app/model}\n", "t.yml")
    result = run_pipeline(
        [StubBuild(layout.path, manifest), ModelsImageGate()], policy,
        RunOptions(context=ctx, out_dir=tmp_path / "out"), SourceDateEpoch(EPOCH, "option"),
    )  # fmt: skip
    assert not result.internal_error, result.results
    return result.results[-1]


def test_the_pinned_layer_alone_passes(tmp_path: Path) -> None:
    gate = _gate(tmp_path, [layer(M("app/model/a.safetensors", data=PINNED))])
    assert gate.status is Status.PASSED and gate.findings == ()


@pytest.mark.parametrize(
    "name",
    ["/app/model/a.safetensors", "app//model/a.safetensors", "./app/./model/a.safetensors",
     "app/x/../model/a.safetensors"],
)  # fmt: skip
def test_non_normalized_names_are_compared_as_runtimes_apply_them(
    tmp_path: Path, name: str
) -> None:
    gate = _gate(
        tmp_path,
        [layer(M("app/model/a.safetensors", data=PINNED)), layer(M(name, data=ALTERED))],
    )
    assert [(f.id, f.subject) for f in gate.findings] == [
        ("models.image-changed", "/app/model/a.safetensors")
    ]
    assert gate.findings[0].evidence["image_sha256"] == hashlib.sha256(ALTERED).hexdigest()


def test_a_name_climbing_out_of_the_root_errors_the_gate(tmp_path: Path) -> None:
    gate = _gate(
        tmp_path,
        [layer(M("app/model/a.safetensors", data=PINNED), M("app/model/../../../etc/x"))],
    )
    assert gate.status is Status.ERRORED
    assert "climbs out of the image root" in (gate.error or "")


def test_a_symlinked_parent_from_a_crafted_layer_is_found(tmp_path: Path) -> None:
    gate = _gate(
        tmp_path,
        [
            layer(M("app/model/a.safetensors", data=PINNED)),
            layer(M("srv/model/a.safetensors", data=PINNED), M("app", "l", link="../srv")),
        ],
    )
    assert [(f.id, f.subject) for f in gate.findings] == [("models.image-symlink", "/app")]


@pytest.mark.parametrize("digest", ["sha256:/etc/passwd", "sha256:../../../../../etc/passwd"])
def test_a_layer_digest_naming_a_host_file_errors_the_gate(tmp_path: Path, digest: str) -> None:
    gate = _gate(tmp_path, [layer(M("app/model/a.safetensors", data=PINNED))], [digest])
    assert gate.status is Status.ERRORED
    assert "no valid sha256 digest" in (gate.error or "")


def test_a_name_that_is_not_utf8_is_reported_printably(tmp_path: Path) -> None:
    gate = _gate(
        tmp_path,
        [layer(M("app/model/a.safetensors", data=PINNED), M("app/model/\udcffx", data=b"x"))],
    )
    (extra,) = gate.findings
    assert (extra.id, extra.subject) == ("models.image-extra", "/app/model/\\xffx")
    # Reports are written as UTF-8: a lone surrogate would make writing them fail.
    assert extra.title.encode("utf-8") and (extra.location or "").encode("utf-8")
