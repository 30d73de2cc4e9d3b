"""The build gate's outputs (``oci/``, ``build.log``) in an output directory where links were
planted: BuildKit writes into a private directory that is renamed into place, and no link is
followed (issue 11; see tests/test_fsio.py for the other writers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.reports import read_report, report_gates

from modelseal._cli import main
from modelseal.imagebuild.engine import PrivateEngine

pytestmark = pytest.mark.engine

PRECIOUS = "precious: must stay as it is\n"


def test_build_outputs_replace_planted_links(
    engine: PrivateEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    (ctx / "hello.txt").write_text("hello\n")
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nbuild:\n  rebuild_check: false\n")
    victims = tmp_path / "victims"
    (victims / "layout").mkdir(parents=True)
    (victims / "layout" / "index.json").write_text(PRECIOUS)
    (victims / "log").write_text(PRECIOUS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "oci").symlink_to(victims / "layout")
    (out / "build.log").symlink_to(victims / "log")

    code = main(["build", str(ctx), "--policy", str(policy), "-o", str(out),
                 "--source-date-epoch", str(EPOCH)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    assert (victims / "layout" / "index.json").read_text() == PRECIOUS
    assert sorted(p.name for p in (victims / "layout").iterdir()) == ["index.json"]
    assert (victims / "log").read_text() == PRECIOUS
    assert not (out / "oci").is_symlink() and not (out / "build.log").is_symlink()
    index = json.loads((out / "oci" / "index.json").read_text())
    (gate,) = report_gates(read_report(out / "report.json")).values()
    assert index["manifests"][0]["digest"] == gate["facts"]["image.digest"]
    assert gate["artifacts"]["oci_layout"] == str(out / "oci")
    # The private directory BuildKit wrote into was renamed, nothing of it is left.
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
