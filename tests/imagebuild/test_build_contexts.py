"""``--build-context NAME=oci-layout://DIR``: a layout that cannot be used is bad input (exit 2,
naming the layout) before anything runs — never an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelseal._cli import main
from modelseal.errors import GateError
from modelseal.oci import OciLayout


def _layout(tmp_path: Path, index: str) -> Path:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(index)
    return layout


MALFORMED = {
    "not JSON": ("not json", "is not valid JSON"),
    "a list": ("[]", "is not a JSON object"),
    "manifests not a list": ('{"manifests": 5}', "manifests is not a list"),
    "a descriptor not an object": ('{"manifests": [1]}', "a manifest descriptor is malformed"),
    "a descriptor without digest": ('{"manifests": [{"size": 1}]}', "not a sha256 digest"),
    "a digest that names a path": (
        '{"manifests": [{"digest": "sha256:/etc/passwd", "size": 1}]}',
        "not a sha256 digest",
    ),
    "a size that is not a number": (
        '{"manifests": [{"digest": "sha256:' + "0" * 64 + '", "size": "big"}]}',
        "malformed",
    ),
    "nested too deeply": ('{"manifests": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_layout_is_a_usage_error_naming_it(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    index, why = MALFORMED[case]
    layout = _layout(tmp_path, index)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM base\n")
    argv = ["build", str(context), "--build-context", f"base=oci-layout://{layout}",
            "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--build-context base=oci-layout://{layout}" in err
    assert why in err
    assert not (tmp_path / "out").exists()  # refused before the run started


def test_layout_index_read_is_bounded(tmp_path: Path) -> None:
    layout = _layout(tmp_path, json.dumps({"manifests": [], "pad": "x" * (17 << 20)}))
    with pytest.raises(GateError, match="larger than the 16 MiB limit"):
        OciLayout(layout).top_descriptors()


def test_a_digest_that_is_not_one_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = _layout(tmp_path, '{"manifests": []}')
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM base\n")
    argv = ["build", str(context), "--build-context", f"base=oci-layout://{layout}@sha256:zz",
            "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "'sha256:zz' is not a sha256 digest" in capsys.readouterr().err
