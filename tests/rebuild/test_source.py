"""The source a rebuild builds from: always a clean clone of --source at the recorded commit
(a hostile .git/config runs nothing, modified or untracked files never reach the build), the
model weights that are not in git copied from --source only with the recorded SHA-256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from tests.support.gitrepo import git

from modelseal.errors import ConfigError
from modelseal.rebuild.plan import CannotRebuild, ModelPin, RebuildPlan, plan_from_statement
from modelseal.rebuild.runner import engine_notes
from modelseal.rebuild.source import (
    check_models,
    fill_models,
    prepare_source,
    refuse_out_dir_inside,
)

WEIGHTS = b"\x00weights\x01" * 1000


def _repo(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitattributes").write_text("*.txt filter=evil\n")
    (repo / "app" / "a.txt").write_text("committed\n")
    (repo / "app" / ".gitignore").write_text("*.bin\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    return repo, git(repo, "rev-parse", "HEAD")


def test_a_hostile_git_config_in_the_source_runs_nothing(tmp_path: Path) -> None:
    repo, commit = _repo(tmp_path)
    marker = tmp_path / "PWNED"
    # A hostile .git/config (a source tarball with its .git, say): a clean filter runs when
    # `git status` re-hashes a stat-dirty file; an fsmonitor hook on most porcelain commands.
    git(repo, "config", "filter.evil.clean", f"sh -c 'touch {marker}; cat'")
    git(repo, "config", "filter.evil.smudge", f"sh -c 'touch {marker}; cat'")
    git(repo, "config", "core.fsmonitor", f"sh -c 'touch {marker}'")
    os.utime(repo / "app" / "a.txt", (1, 1))
    work = tmp_path / "work"
    work.mkdir()
    checkout = prepare_source(repo, commit, work)
    assert not marker.exists(), "a program named by --source's .git/config ran"
    assert checkout.root == work / "source" and checkout.how == "clean clone"
    assert checkout.source == repo.resolve()
    assert (checkout.root / "app" / "a.txt").read_text() == "committed\n"
    assert git(checkout.root, "rev-parse", "HEAD") == commit


def test_modified_and_untracked_files_never_reach_the_build(tmp_path: Path) -> None:
    repo, commit = _repo(tmp_path)
    (repo / "app" / "a.txt").write_text("modified, not committed\n")
    (repo / "app" / "planted.py").write_text("untracked\n")
    work = tmp_path / "work"
    work.mkdir()
    checkout = prepare_source(repo / "app", commit, work)  # a subdirectory works too
    assert (checkout.root / "app" / "a.txt").read_text() == "committed\n"
    assert not (checkout.root / "app" / "planted.py").exists()
    assert (repo / "app" / "a.txt").read_text() == "modified, not committed\n"  # left alone
    with pytest.raises(CannotRebuild, match=r"0{40} is not in"):
        prepare_source(repo, "0" * 40, tmp_path / "work2")
    with pytest.raises(ConfigError, match="not a git work tree"):
        prepare_source(tmp_path / "work", commit, tmp_path)


def test_model_weights_not_in_git_are_copied_only_with_the_recorded_digest(
    tmp_path: Path,
) -> None:
    repo, commit = _repo(tmp_path)
    (repo / "app" / "good.bin").write_bytes(WEIGHTS)
    (repo / "app" / "bad.bin").write_bytes(WEIGHTS[:-1] + b"\x02")
    (tmp_path / "outside.bin").write_bytes(WEIGHTS)
    (repo / "app" / "linked.bin").symlink_to(tmp_path / "outside.bin")
    (repo / "app" / "dir").symlink_to(tmp_path)  # a link on the way: not followed
    sha, size = hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS)
    models = tuple(
        ModelPin(name, sha, size)
        for name in ("good.bin", "bad.bin", "linked.bin", "dir/outside.bin", "gone.bin")
    )
    work = tmp_path / "work"
    work.mkdir()
    checkout = prepare_source(repo, commit, work)
    notes = fill_models(checkout, "app", models)
    assert notes[0] == "model good.bin: not in git; copied from --source (sha256 matches)"
    assert notes[1].startswith("model bad.bin: not in git, and in --source has sha256 ")
    assert notes[2] == "model linked.bin: not in git, and in --source a symbolic link; not copied"
    assert notes[3].startswith("model dir/outside.bin: not in git, and in --source behind a ")
    assert notes[4] == "model gone.bin: not in git, and in --source missing too"
    clone = checkout.root / "app"
    assert (clone / "good.bin").read_bytes() == WEIGHTS
    assert sorted(p.name for p in clone.iterdir()) == [".gitignore", "a.txt", "good.bin"]
    # what is still missing or different is a note of check_models
    checked = check_models(clone, models)
    assert [n.split(":")[0] for n in checked] == [
        "model bad.bin", "model linked.bin", "model dir/outside.bin", "model gone.bin",
    ]  # fmt: skip


def _plan(context: str, contexts: dict[str, str]) -> RebuildPlan:
    from tests.rebuild.test_plan import _statement

    return plan_from_statement(
        _statement(context_path=context, dockerfile_path="Dockerfile", build_contexts=contexts)
    )


def test_an_out_dir_in_a_local_build_context_is_refused(tmp_path: Path) -> None:
    repo, commit = _repo(tmp_path)
    (repo / "data" / "assets").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    checkout = prepare_source(repo, commit, work)
    plan = _plan("app", {"assets": "local data/assets"})
    with pytest.raises(ConfigError, match="data/assets, a directory the rebuild reads"):
        refuse_out_dir_inside(repo / "data" / "assets" / "out", checkout, plan)
    with pytest.raises(ConfigError, match="app, a directory the rebuild reads"):
        refuse_out_dir_inside(repo / "app" / "out", checkout, plan)
    refuse_out_dir_inside(repo / "data" / "out", checkout, plan)


def test_a_fresh_engine_without_the_recorded_network_is_a_note() -> None:
    from tests.rebuild.test_plan import _statement

    online = plan_from_statement(_statement(network="default"))
    (note,) = engine_notes(online, None)
    assert "network: default" in note and "--bridge=none" in note and "--builder" in note
    assert engine_notes(online, "remote") == []
    assert engine_notes(plan_from_statement(_statement(network="none")), None) == []
