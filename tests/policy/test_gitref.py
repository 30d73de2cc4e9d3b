"""The policy read from a git ref (``--policy-ref``, the action's ``policy-ref``): a pull
request that loosens modelseal.yml is still judged by its base branch's policy — with real
git repositories, a shallow clone that has to fetch the base, and the action adapter."""

from __future__ import annotations

import dataclasses
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

from modelseal import github
from modelseal._cli import main
from modelseal.errors import ConfigError, ToolError
from modelseal.github import inputs as action
from modelseal.policy.gitref import check_ref, check_trust_inputs, load_policy_at_ref
from modelseal.policy.loader import LoadedPolicy, load_policy_text


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
    code = github.run_action(env, stdout=stdout)
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
    assert github.run_action(push, stdout=stdout) == 0
    assert "policy changed" not in stdout.getvalue()
    assert parse_file_command((work / "out.txt").read_text())["policy-ref"] == ""


def test_the_base_ref_comes_from_the_event_payload(
    upstream: Path, pr_checkout: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"base": {"ref": "main"}}}))
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="pull_request", GITHUB_EVENT_PATH=str(event))
    assert action.parse_inputs(env).policy_ref == "main"
    assert github.run_action(env, stdout=io.StringIO()) == 1
    # No base ref at all on a pull_request event: refused, not judged by the PR's policy.
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="pull_request_target")
    with pytest.raises(action.ActionInputError) as e:
        action.parse_inputs(env)
    assert e.value.problems[0][0] == "policy-ref"


def test_an_unchanged_policy_is_not_flagged(upstream: Path, pr_checkout: Path) -> None:
    (pr_checkout / "modelseal.yml").write_text(STRICT)
    stdout = io.StringIO()
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="pull_request", GITHUB_BASE_REF="main")
    assert github.run_action(env, stdout=stdout) == 1
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


# --- the files the policy trusts come with it (issue 10 §5, review H1, H2, L1, L10) ----------

VEX = {
    "@context": "https://openvex.dev/ns/v0.2.0",
    "@id": "https://example.com/vex/1",
    "author": "t",
    "timestamp": "2026-01-01T00:00:00Z",
    "version": 1,
    "statements": [],
}
TRUSTING = (
    STRICT
    + "  signature: {path: model.sig, model_dir: ., public_key: pub.pem}\n"
    + "vulnerabilities: {vex: [vex.json]}\nsign: {trust_config: trust.json}\n"
)


@pytest.fixture
def trusting(upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main: a policy naming a VEX document, a model-signing key and a trust config, all
    committed; the working directory: a clone of it on a branch ``pr`` (as a PR checks out)."""
    (upstream / "modelseal.yml").write_text(TRUSTING)
    (upstream / "ctx" / "vex.json").write_text(json.dumps(VEX))
    (upstream / "ctx" / "pub.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    (upstream / "trust.json").write_text("{}\n")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", "trust inputs")
    work = tmp_path / "trusting"
    subprocess.run(["git", "clone", "-q", f"file://{upstream}", str(work)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    git(work, "checkout", "-qb", "pr")
    monkeypatch.chdir(work)
    return work


def _at_main(work: Path) -> tuple[LoadedPolicy, str]:
    return load_policy_at_ref(work / "modelseal.yml", "main"), git(work, "rev-parse", "main")


def test_the_files_the_policy_trusts_are_checked_against_the_ref(trusting: Path) -> None:
    loaded, commit = _at_main(trusting)
    found = check_trust_inputs(loaded, Path("ctx"))
    digests = {t.path: t.sha256 for t in found}
    assert digests == {
        name: hashlib.sha256((trusting / name).read_bytes()).hexdigest()
        for name in ("ctx/vex.json", "ctx/pub.pem", "trust.json")
    }
    assert [t.key for t in found] == [
        "vulnerabilities.vex", "models.signature.public_key", "sign.trust_config",
    ]  # fmt: skip
    # Each one changed, added or removed by the checkout: refused, naming the file and the ref.
    suppress = {**VEX, "statements": [{"vulnerability": {"name": "CVE-2024-0001"},
                                       "status": "not_affected",
                                       "justification": "vulnerable_code_not_present"}]}  # fmt: skip
    for name, edit in [
        ("ctx/vex.json", lambda p: p.write_text(json.dumps(suppress))),
        ("ctx/pub.pem", lambda p: p.write_text("-----BEGIN PUBLIC KEY-----\nBBBB\n-----END PUBLIC KEY-----\n")),
        ("trust.json", lambda p: p.unlink()),
    ]:  # fmt: skip
        path = trusting / name
        before = path.read_bytes()
        edit(path)
        with pytest.raises(ConfigError) as e:
            check_trust_inputs(loaded, Path("ctx"))
        assert name in str(e.value) and f"main ({commit[:12]})" in str(e.value), str(e.value)
        assert type(e.value) is ConfigError
        path.write_bytes(before)
    assert check_trust_inputs(loaded, Path("ctx")) == found
    # A link the checkout commits below its top does not choose the file compared against:
    # ctx -> a directory holding the same-named files the PR wrote.
    (trusting / "evil").mkdir()
    for name in ("vex.json", "pub.pem", "model.pkl"):
        (trusting / "evil" / name).write_bytes((trusting / "ctx" / name).read_bytes())
    (trusting / "evil" / "vex.json").write_text(json.dumps(suppress))
    git(trusting, "rm", "-rq", "ctx")
    (trusting / "ctx").symlink_to("evil")
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(loaded, Path("ctx"))
    assert "ctx/vex.json" in str(e.value)


def test_a_pull_request_cannot_judge_itself_by_its_own_vex(
    trusting: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "ctx", "--gate", "models", "--policy-ref", "main", "-o", str(trusting / "o")]
    vex = trusting / "ctx" / "vex.json"
    vex.write_text(json.dumps({**VEX, "statements": [
        {"vulnerability": {"name": "CVE-2024-0001"}, "status": "not_affected",
         "justification": "vulnerable_code_not_present"}]}))  # fmt: skip
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "vulnerabilities.vex" in err and "ctx/vex.json" in err and "main" in err
    assert not (trusting / "o").exists()  # refused before anything ran
    # The same files as committed: the run goes on, and the report records their digests.
    git(trusting, "checkout", "-q", "--", "ctx/vex.json")
    assert main(base) in (1, 3)  # the pickle (and the unsigned model) fail the models gate
    report = read_report(trusting / "o" / "report.json")
    assert report["policy"]["inputs"] == {
        name: hashlib.sha256((trusting / name).read_bytes()).hexdigest()
        for name in ("ctx/vex.json", "ctx/pub.pem", "trust.json")
    }
    assert "vulnerabilities.vex ctx/vex.json: as committed" in capsys.readouterr().err


def _policy_at_main(work: Path, text: str) -> LoadedPolicy:
    loaded = load_policy_text(text, "modelseal.yml")
    return dataclasses.replace(loaded, ref="main", commit=git(work, "rev-parse", "main"))


def test_a_trivy_db_the_checkout_could_supply_is_refused_under_a_ref(
    trusting: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake DB (far-future NextUpdate) committed into a context-relative cache_dir.
    relative = _policy_at_main(trusting, "version: 1\ntrivy: {db: {cache_dir: .trivy}}\n")
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(relative, Path("ctx"))
    assert "relative to the build context" in str(e.value)
    inside = _policy_at_main(
        trusting, f"version: 1\ntrivy: {{db: {{cache_dir: '{trusting}/db'}}}}\n"
    )
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(inside, Path("ctx"))
    assert "inside the checkout" in str(e.value)
    default = _policy_at_main(trusting, "version: 1\n")
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(trusting / "cache"))
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(default, Path("ctx"))
    assert "MODELSEAL_CACHE_DIR" in str(e.value)
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(tmp_path / "cache"))
    assert check_trust_inputs(default, Path("ctx")) == ()
    # Without a ref the checkout's own policy judges: nothing to compare.
    assert (
        check_trust_inputs(dataclasses.replace(relative, ref=None, commit=None), Path("ctx")) == ()
    )


def test_a_linked_directory_does_not_choose_the_policy_read_at_the_ref(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main: conf/modelseal.yml is the strict policy; fixtures/modelseal.yml a loose one.
    (upstream / "conf").mkdir()
    (upstream / "fixtures").mkdir()
    (upstream / "conf" / "modelseal.yml").write_text(STRICT)
    (upstream / "fixtures" / "modelseal.yml").write_text(LOOSE)
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", "policies")
    monkeypatch.chdir(upstream)
    git(upstream, "checkout", "-qb", "link")
    git(upstream, "rm", "-rq", "conf")
    (upstream / "conf").symlink_to("fixtures")
    loaded = load_policy_at_ref(Path("conf/modelseal.yml"), "main")
    assert loaded.sha256 == hashlib.sha256(STRICT.encode()).hexdigest()
    assert main(["run", "ctx", "--gate", "models", "--policy", "conf/modelseal.yml",
                 "--policy-ref", "main", "-o", str(tmp_path / "o")]) == 1  # fmt: skip


def test_git_failing_to_read_the_policy_is_not_taken_for_a_missing_one(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # A partial clone (no blobs but the checkout's) whose promisor remote then goes away.
    (upstream / "modelseal.yml").write_text(STRICT.replace("high", "low") + "# main only\n")
    git(upstream, "commit", "-qam", "main's own policy bytes")
    git(upstream, "config", "uploadpack.allowFilter", "true")
    work = tmp_path / "partial"
    subprocess.run(
        ["git", "clone", "-q", "--filter=blob:none", "--branch", "pr", f"file://{upstream}",
         str(work)], check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    missing = git(work, "rev-list", "--objects", "--missing=print", "origin/main")
    assert any(line.startswith("?") for line in missing.splitlines()), missing
    upstream.rename(tmp_path / "moved")
    monkeypatch.chdir(work)
    with pytest.raises(ToolError) as e:
        load_policy_at_ref(Path("modelseal.yml"), "main")
    assert "git could not read" in str(e.value)
    assert main(["run", "ctx", "--gate", "models", "--policy-ref", "main",
                 "-o", str(tmp_path / "o")]) == 3  # fmt: skip
    assert "judging under" not in capsys.readouterr().err
    # A path that is not in the commit is still the defaults (git ls-tree: no entry).
    loaded = load_policy_at_ref(Path("ctx/none.yml"), "main")
    assert loaded.source == "<defaults>" and loaded.commit == git(work, "rev-parse", "origin/main")


def test_policy_names_are_escaped_when_printed(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (upstream / "p[").mkdir()
    (upstream / "p[" / "red].yml").write_text(STRICT)
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", "a policy with markup in its name")
    monkeypatch.chdir(upstream)
    code = main(["run", "ctx", "--gate", "models", "--policy", "p[/red].yml", "--policy-ref",
                 "main", "-o", str(tmp_path / "o")])  # fmt: skip
    assert code == 1
    assert "judging under p[/red].yml as of main" in capsys.readouterr().err


def test_a_merge_group_is_judged_by_its_base_branch(
    upstream: Path, pr_checkout: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"merge_group": {"base_ref": "refs/heads/main",
                                                 "head_ref": "refs/heads/gh-readonly-queue/main/pr-1"}}))  # fmt: skip
    env = _gh(pr_checkout, GITHUB_EVENT_NAME="merge_group", GITHUB_EVENT_PATH=str(event))
    assert action.parse_inputs(env).policy_ref == "refs/heads/main"
    assert github.run_action(env, stdout=io.StringIO()) == 1  # main's policy refuses the pickle
    report = read_report(pr_checkout / "modelseal-out" / "report.json")
    assert report["policy"]["ref"] == "refs/heads/main"
    # A merge_group event without its base ref is refused, not judged by the checkout's policy.
    event.write_text(json.dumps({"merge_group": {}}))
    with pytest.raises(action.ActionInputError) as e:
        action.parse_inputs(env)
    assert e.value.problems[0][0] == "policy-ref"


def test_a_trusted_file_the_ref_does_not_have_cannot_come_from_the_checkout(
    trusting: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(tmp_path / "cache"))
    loaded = _policy_at_main(trusting, "version: 1\nvulnerabilities: {vex: [added.json]}\n")
    # In neither: nothing to compare (the judge reports the missing document).
    assert check_trust_inputs(loaded, Path("ctx"))[0].sha256 == ""
    (trusting / "ctx" / "added.json").write_text(json.dumps(VEX))
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(loaded, Path("ctx"))
    assert "ctx/added.json" in str(e.value) and "is not there; the checkout has its own" in str(
        e.value
    )
    # Outside the repository: it cannot be checked against the commit, so it is refused.
    outside = tmp_path / "vex.json"
    outside.write_text(json.dumps(VEX))
    loaded = _policy_at_main(trusting, f"version: 1\nvulnerabilities: {{vex: ['{outside}']}}\n")
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(loaded, Path("ctx"))
    assert "is outside the git repository" in str(e.value)


def test_a_baseline_file_the_policy_names_is_the_committed_one(
    trusting: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vulnerabilities.baseline decides which findings are existing: under a ref, the checkout
    cannot supply its own (a pull request listing its new findings there); an image baseline
    is checked by its signature instead, not here."""
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(tmp_path / "cache"))
    loaded = _policy_at_main(trusting, "version: 1\nvulnerabilities: {baseline: base.json}\n")
    assert [(t.key, t.path, t.sha256) for t in check_trust_inputs(loaded, Path("ctx"))] == [
        ("vulnerabilities.baseline", "ctx/base.json", "")
    ]
    (trusting / "ctx" / "base.json").write_text('{"schema_version": 2, "gates": []}')
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(loaded, Path("ctx"))
    assert "vulnerabilities.baseline ctx/base.json" in str(e.value)
    assert "is not there; the checkout has its own" in str(e.value)
    image = _policy_at_main(
        trusting, "version: 1\nvulnerabilities: {baseline: 'ghcr.io/org/app:main'}\n"
    )
    assert check_trust_inputs(image, Path("ctx")) == ()


def test_the_runs_baseline_flag_and_an_image_baselines_key_are_checked_against_the_ref(
    trusting: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline the run uses, however given: a --baseline file inside the checkout must be
    the committed one, one outside it (a downloaded artifact) is the caller's; an image
    baseline's verify.public_key must be the committed one (only when an image is the
    baseline: a file baseline does not read it)."""
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(tmp_path / "cache"))
    key = hashlib.sha256((trusting / "ctx" / "pub.pem").read_bytes()).hexdigest()
    text = "version: 1\nverify: {public_key: ctx/pub.pem}\n"
    plain = _policy_at_main(trusting, text)
    assert check_trust_inputs(plain, Path("ctx")) == ()
    outside = tmp_path / "artifact" / "report.json"
    outside.parent.mkdir()
    outside.write_text('{"schema_version": 2, "gates": []}')
    assert check_trust_inputs(plain, Path("ctx"), baseline=str(outside)) == ()
    # Inside the checkout: absent at the ref, present here — the pull request's own.
    (trusting / "ctx" / "base.json").write_text('{"schema_version": 2, "gates": []}')
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(plain, Path("ctx"), baseline="ctx/base.json")
    assert "--baseline ctx/base.json" in str(e.value)
    # An image, by the flag or the policy: its key is checked, and a changed one refused.
    image = _policy_at_main(trusting, text + "vulnerabilities: {baseline: 'ghcr.io/o/a:main'}\n")
    for loaded, flag in [(plain, "ghcr.io/o/a:main"), (image, None)]:
        found = check_trust_inputs(loaded, Path("ctx"), baseline=flag)
        assert [(t.key, t.path, t.sha256) for t in found] == [
            ("verify.public_key", "ctx/pub.pem", key)
        ]
    (trusting / "ctx" / "pub.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nBBBB\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(ConfigError) as e:
        check_trust_inputs(image, Path("ctx"))
    assert "verify.public_key ctx/pub.pem differs" in str(e.value)
    # A file baseline given by the flag replaces the policy's image: the key is not read.
    assert check_trust_inputs(image, Path("ctx"), baseline=str(outside)) == ()
