"""The policy read from a git ref (``--policy-ref``, the action's ``policy-ref``): a pull
request that loosens modelseal.yml is still judged by its base branch's policy — with real
git repositories, a shallow clone that has to fetch the base, and the action adapter."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
from pathlib import Path

import pytest
from tests.support.github_runner import parse_commands, parse_file_command
from tests.support.gitrepo import LOOSE, STRICT, git
from tests.support.reports import read_report

from modelseal import action
from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.policy.gitref import check_ref, load_policy_at_ref


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """main: the strict policy and a pickle it refuses; pr: the same with the policy loosened."""
    repo = tmp_path / "upstream"
    (repo / "ctx").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "modelseal.yml").write_text(STRICT)
    (repo / "ctx" / "model.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "pr")
    (repo / "modelseal.yml").write_text(LOOSE)
    git(repo, "commit", "-qam", "loosen the policy")
    git(repo, "checkout", "-q", "main")
    return repo


@pytest.fixture
def pr_checkout(upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What actions/checkout leaves: one commit of the PR, no base branch (it must be fetched)."""
    work = tmp_path / "work"
    subprocess.run(
        ["git", "clone", "-q", "--depth=1", "--branch", "pr", f"file://{upstream}", str(work)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert subprocess.run(
        ["git", "-C", str(work), "rev-parse", "--verify", "--quiet", "origin/main"],
        capture_output=True, check=False,
    ).returncode != 0  # fmt: skip
    monkeypatch.chdir(work)
    return work


def _gh(work: Path, **extra: str) -> dict[str, str]:
    (work / "out.txt").write_text("")
    (work / "summary.md").write_text("")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(work / "out.txt"),
        "GITHUB_STEP_SUMMARY": str(work / "summary.md"),
        "GITHUB_WORKSPACE": str(work),
        action.INPUT_ENV["context"]: "ctx",
        **extra,
    }


def test_a_pull_request_cannot_loosen_the_policy_that_judges_it(
    upstream: Path, pr_checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = pr_checkout
    # What the PR's own policy would say: pass.
    assert main(["run", "ctx", "--gate", "models", "-o", str(work / "own")]) == 0
    capsys.readouterr()

    env = _gh(work, GITHUB_EVENT_NAME="pull_request", GITHUB_BASE_REF="main")
    stdout = io.StringIO()
    code = action.run_action(env, stdout=stdout)
    assert code == 1  # judged by main's policy: the pickle is refused
    base_commit = git(upstream, "rev-parse", "main")
    base_digest = hashlib.sha256(STRICT.encode()).hexdigest()
    report = read_report(work / "modelseal-out" / "report.json")
    assert report["policy"] == {
        "source": "modelseal.yml", "sha256": base_digest, "ref": "main", "commit": base_commit,
    }  # fmt: skip
    outputs = parse_file_command((work / "out.txt").read_text())
    assert outputs["policy-ref"] == "main"
    assert outputs["policy-digest"] == f"sha256:{base_digest}"
    assert outputs["verdict"] == "FAILED"
    warnings = [c for c in parse_commands(stdout.getvalue()) if c.name == "warning"]
    (changed,) = [c for c in warnings if c.props.get("title") == "modelseal: policy changed"]
    assert changed.props["file"] == "modelseal.yml"
    assert f"as of main ({base_commit[:12]}, sha256:{base_digest[:12]}" in changed.message
    # the failing finding is not pinned to a line of the edited copy (not the policy that judged)
    errors = [c for c in parse_commands(stdout.getvalue()) if c.name == "error"]
    assert errors and all(c.props.get("file") != "modelseal.yml" for c in errors), errors
    summary = (work / "summary.md").read_text()
    assert "<code>main</code>" in summary and base_digest[:12] in summary
    assert "judging under modelseal.yml as of main" in capsys.readouterr().err

    # On a push event the checkout's policy judges (no ref, no warning).
    push = _gh(work, GITHUB_EVENT_NAME="push")
    stdout = io.StringIO()
    assert action.run_action(push, stdout=stdout) == 0
    assert "policy changed" not in stdout.getvalue()
    assert parse_file_command((work / "out.txt").read_text())["policy-ref"] == ""


def test_the_base_ref_comes_from_the_event_payload(
    upstream: Path, pr_checkout: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"base": {"ref": "main"}}}))
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="pull_request", GITHUB_EVENT_PATH=str(event))
    assert action.parse_inputs(env).policy_ref == "main"
    assert action.run_action(env, stdout=io.StringIO()) == 1
    # No base ref at all on a pull_request event: refused, not judged by the PR's policy.
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="pull_request_target")
    with pytest.raises(action.ActionInputError) as e:
        action.parse_inputs(env)
    assert e.value.problems[0][0] == "policy-ref"


def test_an_unchanged_policy_is_not_flagged(upstream: Path, pr_checkout: Path) -> None:
    (pr_checkout / "modelseal.yml").write_text(STRICT)
    stdout = io.StringIO()
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="pull_request", GITHUB_BASE_REF="main")
    assert action.run_action(env, stdout=stdout) == 1
    assert "policy changed" not in stdout.getvalue()


def test_a_policy_missing_at_the_ref_means_the_defaults(
    upstream: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(upstream / "ctx")  # the repository of the working directory
    git(upstream, "checkout", "-qb", "bare", "main")
    git(upstream, "rm", "-q", "modelseal.yml")
    git(upstream, "commit", "-qm", "no policy")
    loaded = load_policy_at_ref(upstream / "modelseal.yml", "bare")
    assert loaded.source == "<defaults>" and loaded.ref == "bare"
    assert loaded.commit == git(upstream, "rev-parse", "bare")
    assert loaded.policy.models.pickle == "deny"
    at_main = load_policy_at_ref(upstream / "modelseal.yml", "main", upstream)
    assert at_main.sha256 == hashlib.sha256(STRICT.encode()).hexdigest()
    at_commit = load_policy_at_ref(upstream / "modelseal.yml", git(upstream, "rev-parse", "pr"))
    assert at_commit.policy.models.pickle == "allow"


@pytest.mark.parametrize(
    "ref",
    ["-c", "--upload-pack=touch /tmp/x", "main..pr", "main@{1}", "a b", "refs/heads/",
     "x.lock", "/main", "HEAD~1", "main^", ".hidden/x", "", "a//b"],
)  # fmt: skip
def test_refs_that_are_options_or_expressions_are_refused(ref: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_ref(ref)
    assert "is not a git ref" in str(e.value)


@pytest.mark.parametrize("ref", ["main", "refs/heads/main", "v1.2", "release/2.x", "a" * 40])
def test_plain_refs_are_accepted(ref: str) -> None:
    assert check_ref(ref) == ref


def test_bad_refs_and_paths_are_usage_errors(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(upstream)
    base = ["run", "ctx", "--gate", "models", "-o", str(tmp_path / "o")]
    assert main([*base, "--policy-ref=--upload-pack=x"]) == 2
    assert "is not a git ref" in capsys.readouterr().err
    outside = tmp_path / "elsewhere.yml"
    outside.write_text(STRICT)
    assert main([*base, "--policy-ref", "main", "--policy", str(outside)]) == 2
    assert "is not inside the git repository" in capsys.readouterr().err
    assert main([*base, "--policy-ref", "main", "--policy", "ctx/../../up/modelseal.yml"]) == 2
    assert "is not inside the git repository" in capsys.readouterr().err
    # not here and not on origin (there is no origin): the fetch fails, bounded and quiet
    assert main([*base, "--policy-ref", "no-such-branch"]) == 2
    assert "fetching it from origin failed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # the action names the input
    env = {action.INPUT_ENV["policy-ref"]: "main..pr"}
    with pytest.raises(action.ActionInputError) as e:
        action.parse_inputs(env)
    assert e.value.problems == (("policy-ref", e.value.problems[0][1]),)
    assert "is not a git ref" in e.value.problems[0][1]


def test_a_policy_with_crlf_line_ends_is_refused_at_a_ref(upstream: Path) -> None:
    (upstream / "modelseal.yml").write_bytes(STRICT.replace("\n", "\r\n").encode())
    git(upstream, "commit", "-qam", "crlf")
    with pytest.raises(ConfigError) as e:
        load_policy_at_ref(upstream / "modelseal.yml", "main", upstream)
    assert "LF line ends" in str(e.value)
