"""The GitHub Action adapter (modelseal.github): inputs, the requests it builds, workflow
commands, outputs, the job summary, annotations — and run_action with a stand-in application."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.support.github_runner import parse_commands, parse_file_command

from modelseal import _cli, app
from modelseal.errors import EngineError, ExitCode
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.github import annotations as action
from modelseal.github import run_action
from modelseal.github.commands import Annotation, escape_data, escape_property, format_output
from modelseal.github.inputs import (
    INPUT_ENV,
    ActionInputError,
    ActionInputs,
    parse_inputs,
    run_request,
    use_action_cache_dir,
    verify_request,
)
from modelseal.github.outputs import OUTPUT_NAMES, Judged, collect_outputs
from modelseal.github.summary import render_summary
from modelseal.judge import Decision, GateVerdict, Outcome, Verdict
from modelseal.policy import LoadedPolicy, default_policy
from modelseal.publish.publisher import PublishResult
from modelseal.reports.markdown import MAX_FINDINGS, md_escape

DIGEST = "sha256:" + "ab" * 32


def env_of(**inputs: str) -> dict[str, str]:
    """MODELSEAL_* variables from input names written with underscores."""
    return {INPUT_ENV[k.replace("_", "-")]: v for k, v in inputs.items()}


# --- inputs --------------------------------------------------------------------------------


def test_defaults() -> None:
    got = parse_inputs({})
    assert got == ActionInputs(context=".", out_dir="modelseal-out")
    assert got.sign is None and not got.push and not got.self_check
    assert got.verify_issuer == "https://token.actions.githubusercontent.com"


def test_empty_values_mean_the_default() -> None:
    got = parse_inputs(env_of(context="  ", out_dir="", push="", sign=""))
    assert (got.context, got.out_dir, got.push, got.sign) == (".", "modelseal-out", False, None)


def test_everything_set() -> None:
    got = parse_inputs(
        env_of(
            policy="ci/modelseal.yml",
            context="app",
            dockerfile="app/Dockerfile.gpu",
            image="ghcr.io/org/iris:1.0",
            push="true",
            sign="keyless",
            trust_config="trust.json",
            build_args="VERSION=1.0\n\n  FLAGS=-O2 -g  \nEMPTY=\n",
            build_contexts="base=oci-layout:///tmp/base@sha256:" + "0" * 64,
            out_dir="out",
            verify_identity="https://github.com/org/iris/.github/workflows/release.yml@refs/tags/v1",
        )
    )
    assert got.build_args == (("VERSION", "1.0"), ("FLAGS", "-O2 -g"), ("EMPTY", ""))
    assert got.build_contexts == (("base", "oci-layout:///tmp/base@sha256:" + "0" * 64),)
    assert got.push and got.sign == "keyless" and got.self_check


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"push": "True"}, "input push: expected true or false, got 'True'"),
        ({"push": "1"}, "input push: expected true or false, got '1'"),
        ({"sign": "sigstore"}, "input sign: expected one of keyless, key, none, got 'sigstore'"),
        ({"policy": "--help"}, "input policy: must not start with '-'"),
        ({"context": "-"}, "input context: must not start with '-'"),
        ({"dockerfile": "a\nb"}, "input dockerfile: must be a single line"),
        ({"out-dir": "out\x00"}, "input out-dir: contains a control character"),
        (
            {"image": "ghcr.io/org/iris server"},
            "input image: value 'ghcr.io/org/iris server': expected REGISTRY/REPOSITORY[:TAG]",
        ),
        ({"image": "ghcr.io/org/app@sha256:" + "0" * 64}, "not a digest"),
        ({"image": "-ghcr.io/x"}, "input image: must not start with '-'"),
        ({"push": "true"}, "input image: required when push is true"),
        ({"push": "true", "image": "r.io/x", "sign": "key"}, "input key-file: required when"),
        ({"key-file": "k.pem", "sign": "keyless"}, "input key-file: only used with sign: key"),
        ({"github-attestations": "yes"}, "input github-attestations: expected true or false"),
        ({"github-attestations": "true"}, "input github-attestations: submits what is published"),
        (
            {"github-attestations": "true", "push": "true", "image": "r.io/x", "sign": "none"},
            "input github-attestations: submits signed attestations: sign is none",
        ),
        (
            {"github-attestations": "true", "push": "true", "image": "r.io/x", "sign": "key",
             "key-file": "k.pem"},
            "input github-attestations: needs keyless signing: sign is key",
        ),
        ({"build-args": "-X=1"}, "input build-args: line 1: expected NAME=VALUE"),
        ({"build-args": "NOVALUE"}, "input build-args: line 1: expected NAME=VALUE"),
        ({"build-args": "A=1\nB C=2"}, "input build-args: line 2: expected NAME=VALUE"),
        ({"build-args": "A=\x1b[31m"}, "the value of A contains a control character"),
        ({"build-contexts": "base="}, "input build-contexts: the value of base must be"),
        ({"build-contexts": "base=--x"}, "input build-contexts: the value of base must be"),
        ({"verify-issuer": "token.actions"}, "input verify-issuer: expected an http(s) URL"),
        ({"builder": "my builder"}, "input builder: expected a buildx builder name"),
        ({"builder": "-x"}, "input builder: must not start with '-'"),
        ({"baseline": "-x"}, "input baseline: must not start with '-'"),
        ({"baseline": "a\x1bb"}, "input baseline: contains a control character"),
        ({"baseline": "r.io/x:" + "t" * 1030}, "input baseline: expected a report.json path"),
        ({"rebuild-on": "a builder"}, "input rebuild-on: expected same, fresh or a buildx"),
        (
            {"buildkit-image": "moby/buildkit:v0.31.2"},
            "input buildkit-image: expected a BuildKit image pinned by digest",
        ),
        ({"cache-from": "type=gha\ntype=s3,bucket=x"}, "input cache-from: line 2: type must be"),
        ({"cache-from": "type=local,dest=d"}, "input cache-from: line 1: type=local needs src="),
        ({"cache-to": "type=registry"}, "input cache-to: line 1: type=registry needs ref="),
        ({"cache-to": "type=gha,token=s3cr3t"}, "token= would put a credential on the command"),
        ({"cache-to": "user/app:cache"}, "input cache-to: line 1: 'user/app:cache' is not KEY"),
        (
            {"verify-identity": "a", "verify-identity-regexp": "b"},
            "input verify-identity: give verify-identity or verify-identity-regexp, not both",
        ),
        ({"verify-identity": "a"}, "the self-check verifies the pushed image: set push: true"),
        ({"verify-identity-regexp": "https://x/.*"}, "verify-identity-regexp: must be anchored"),
        (
            {"verify-identity-regexp": "^a|.*$"},
            "input verify-identity-regexp: is not anchored as a whole",
        ),
        (
            {"verify-identity-regexp": "^(a+)+$"},
            "input verify-identity-regexp: is unsafe: a repeated group contains",
        ),
        (
            {"verify-identity-regexp": "^a$", "push": "true", "image": "r.io/x", "sign": "none"},
            "input verify-identity-regexp: only keyless signatures are verified by identity",
        ),
    ],
)
def test_bad_inputs(inputs: dict[str, str], problem: str) -> None:
    env = {INPUT_ENV[k]: v for k, v in inputs.items()}
    with pytest.raises(ActionInputError) as exc:
        parse_inputs(env)
    assert problem in str(exc.value)
    assert exc.value.exit_code == 2


def test_the_baseline_input_is_the_runs_baseline() -> None:
    """The baseline input becomes the run's --baseline (the policy's when empty)."""
    inputs = parse_inputs(env_of(baseline="ghcr.io/org/iris:main"))
    assert inputs.baseline == "ghcr.io/org/iris:main"
    assert run_request(inputs, default_policy()).baseline == "ghcr.io/org/iris:main"
    assert run_request(parse_inputs({}), default_policy()).baseline is None


def test_every_problem_at_once() -> None:
    with pytest.raises(ActionInputError) as exc:
        parse_inputs(env_of(push="yes", sign="maybe", policy="-x", build_args="1=2"))
    assert [name for name, _ in exc.value.problems] == ["policy", "push", "sign", "build-args"]


def test_release_inputs() -> None:
    got = parse_inputs(
        env_of(
            push="true",
            # docker/metadata-action's outputs, as they come: full references, one per line
            tags="ghcr.io/org/app:v1.2.0\nghcr.io/org/app:latest\n\nghcr.io/org/app:1.2, edge",
            labels="org.opencontainers.image.title=app\norg.opencontainers.image.source=https://github.com/org/app\n",
            annotations="manifest:org.opencontainers.image.title=app\n"
            "index:org.opencontainers.image.description=a, b\n"
            "manifest[linux/arm64]:note=x=y\n",
            platforms="linux/amd64, linux/arm64\nlinux/arm/v7,linux/amd64",
            policy_ref="refs/heads/main",
        )
    )
    # no image input: the first full reference names it
    assert got.image == "ghcr.io/org/app:v1.2.0"
    assert got.tags == ("ghcr.io/org/app:latest", "ghcr.io/org/app:1.2", "edge")
    assert got.labels == (
        ("org.opencontainers.image.title", "app"),
        ("org.opencontainers.image.source", "https://github.com/org/app"),
    )
    assert got.annotations == (
        ("manifest:org.opencontainers.image.title", "app"),
        ("index:org.opencontainers.image.description", "a, b"),
        ("manifest[linux/arm64]:note", "x=y"),
    )
    assert got.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert got.policy_ref == "refs/heads/main"
    request = run_request(got, POLICY_DEFAULTS)
    assert request.push is not None
    assert (request.push.name, request.push.tag) == ("ghcr.io/org/app", "v1.2.0")
    assert request.tags == ("ghcr.io/org/app:latest", "ghcr.io/org/app:1.2", "edge")
    assert request.labels[1] == ("org.opencontainers.image.source", "https://github.com/org/app")
    assert request.annotations[2] == ("manifest[linux/arm64]:note", "x=y")
    assert request.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert request.context == Path(".") and request.out_dir == Path("modelseal-out")


def test_tags_are_only_passed_when_pushing() -> None:
    got = parse_inputs(env_of(tags="ghcr.io/org/app:pr-7", image="ghcr.io/org/app"))
    request = run_request(got, POLICY_DEFAULTS)
    assert request.tags == () and request.push is None


def test_the_github_token_never_reaches_argv_or_inputs() -> None:
    token = "ghs_" + "x" * 36
    got = parse_inputs(env_of(github_token=token, image="ghcr.io/org/app", push="true"))
    assert token not in repr(got) and token not in repr(run_request(got, POLICY_DEFAULTS))
    from modelseal.publish.publisher import registry_credentials

    env = {"MODELSEAL_GITHUB_TOKEN": token, "GITHUB_ACTOR": "bot"}
    creds = registry_credentials("ghcr.io", env)
    assert creds is not None and (creds.username, creds.password) == ("bot", token)
    # another registry never gets it
    other = registry_credentials("registry.example.com", {**env, "DOCKER_CONFIG": "/nonexistent"})
    assert other is None or other.password != token


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"tags": "v1 beta"}, "input tags: 'v1 beta' is neither a tag nor REGISTRY/REPOSITORY:TAG"),
        ({"tags": "-v1"}, "input tags: must not start with '-'"),
        ({"tags": "ghcr.io/org/app"}, "input tags: 'ghcr.io/org/app' names no tag"),
        ({"tags": "ghcr.io/org/app@sha256:" + "0" * 64}, "not a digest"),
        ({"tags": "ghcr.io/a/x:1\nghcr.io/b/x:1"}, "modelseal publishes to one repository"),
        ({"tags": "ghcr.io/b/x:1", "image": "ghcr.io/a/x"}, "is not in ghcr.io/a/x"),
        ({"tags": "v1\x00"}, "input tags: contains a control character"),
        ({"labels": "a b=1"}, "input labels: line 1: expected KEY=VALUE"),
        ({"labels": "=1"}, "input labels: line 1: expected KEY=VALUE"),
        ({"labels": "k=\x1b[2J"}, "input labels: line 1: the value of k contains a control"),
        ({"annotations": "foo:bar=1"}, "input annotations: line 1: expected KEY=VALUE"),
        ({"annotations": "-x=1"}, "input annotations: line 1: expected KEY=VALUE"),
        ({"platforms": "linux"}, "input platforms: expected os/arch or os/arch/variant"),
        ({"platforms": "linux/AMD64"}, "input platforms: expected os/arch"),
        ({"platforms": "--push"}, "input platforms: must not start with '-'"),
        ({"github-token": "a\nb"}, "input github-token: must be one line"),
        ({"policy-ref": "main..evil"}, "input policy-ref: value 'main..evil' is not a git ref"),
        ({"policy-ref": "-c"}, "input policy-ref: must not start with '-'"),
        ({"push": "true", "tags": "v1"}, "input image: required when push is true"),
    ],
)
def test_bad_release_inputs(inputs: dict[str, str], problem: str) -> None:
    env = {INPUT_ENV[k]: v for k, v in inputs.items()}
    with pytest.raises(ActionInputError) as exc:
        parse_inputs(env)
    assert problem in str(exc.value)
    assert "a\nb" not in str(exc.value)  # a token is never echoed


def test_policy_ref_defaults_to_the_base_branch_on_pull_requests(tmp_path: Path) -> None:
    assert parse_inputs({"GITHUB_EVENT_NAME": "push", "GITHUB_BASE_REF": "main"}).policy_ref is None
    pr = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_BASE_REF": "release/1.x"}
    assert parse_inputs(pr).policy_ref == "release/1.x"
    assert parse_inputs({**pr, **env_of(policy_ref="main")}).policy_ref == "main"
    hostile = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_BASE_REF": "--upload-pack=x"}
    with pytest.raises(ActionInputError) as exc:
        parse_inputs(hostile)
    assert exc.value.problems[0][0] == "policy-ref"


# --- requests ------------------------------------------------------------------------------

POLICY_DEFAULTS = default_policy()


def test_run_request_scan_only() -> None:
    inputs = parse_inputs(env_of(context="app", build_args="A=1", build_contexts="b=dir"))
    request = run_request(inputs, POLICY_DEFAULTS)
    assert request.context == Path("app") and request.policy is POLICY_DEFAULTS
    assert request.build_args == (("A", "1"),) and request.build_contexts == (("b", "dir"),)
    assert request.push is None and request.gates == ()


def test_run_request_publish() -> None:
    inputs = parse_inputs(
        env_of(
            policy="p.yml", dockerfile="D", image="ghcr.io/org/iris:v1", push="true", sign="key",
            key_file="k.pem", trust_config="t.json", out_dir="o",
        )
    )  # fmt: skip
    request = run_request(inputs, POLICY_DEFAULTS)
    assert (request.dockerfile, request.sign, request.key_file, request.trust_config) == (
        Path("D"), "key", Path("k.pem"), Path("t.json"),
    )  # fmt: skip
    assert request.push is not None and request.push.name == "ghcr.io/org/iris"
    assert request.out_dir == Path("o")


def test_run_request_leaves_sign_to_the_policy() -> None:
    inputs = parse_inputs(env_of(image="r.example/x", push="true"))
    assert run_request(inputs, POLICY_DEFAULTS).sign is None


def test_a_context_that_looks_like_an_option_stays_a_path() -> None:
    # Rejected by parse_inputs, and harmless even if it were not: no command line is built.
    inputs = ActionInputs(context="--help", out_dir="o")
    assert run_request(inputs, POLICY_DEFAULTS).context == Path("--help")


def test_run_request_builder_and_cache() -> None:
    image = "127.0.0.1:5000/mirror/buildkit:v0.31.2@sha256:" + "ab" * 32
    inputs = parse_inputs(
        env_of(
            builder="ci-builder", buildkit_image=image, rebuild_on="ci-remote",
            cache_from="type=gha,scope=seal\n\ntype=registry,ref=r.io/c:cache",
            cache_to="type=gha,mode=max,scope=seal",
        )
    )  # fmt: skip
    request = run_request(inputs, POLICY_DEFAULTS)
    assert (request.builder, request.buildkit_image) == ("ci-builder", image)
    assert request.rebuild_on == "ci-remote"
    assert request.cache_from == ("type=gha,scope=seal", "type=registry,ref=r.io/c:cache")
    assert request.cache_to == ("type=gha,mode=max,scope=seal",)


def test_the_action_cache_dir_unless_the_job_chose_one() -> None:
    target: dict[str, str] = {}
    use_action_cache_dir({"MODELSEAL_ACTION_CACHE_DIR": "/rt/modelseal-cache"}, target)
    assert target == {"MODELSEAL_CACHE_DIR": "/rt/modelseal-cache"}
    target = {}
    both = {"MODELSEAL_ACTION_CACHE_DIR": "/rt/c", "MODELSEAL_CACHE_DIR": "/job/c"}
    use_action_cache_dir(both, target)
    assert target == {}  # the job's own wins (it is already in the environment)
    use_action_cache_dir({}, target)
    assert target == {}


def test_verify_request() -> None:
    inputs = parse_inputs(
        env_of(
            policy="p.yml", image="r.example/x", push="true", trust_config="t.json",
            verify_identity_regexp="^https://github.com/org/.*$",
        )
    )  # fmt: skip
    request = verify_request(inputs, POLICY_DEFAULTS, f"r.example/x@{DIGEST}")
    assert request.image == f"r.example/x@{DIGEST}" and request.rejudge
    assert request.signer == app.SignerFlags(
        identity_regexp="^https://github.com/org/.*$",
        issuer="https://token.actions.githubusercontent.com",
        trust_config=Path("t.json"),
    )
    # the one resolution of the expected signer takes it as the command line's flags
    expected = app.expected_signer(
        dataclasses.replace(request.signer, trust_config=None), POLICY_DEFAULTS
    )
    assert expected.identity_regexp == "^https://github.com/org/.*$"


def test_the_action_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli.main(["action", "--help"])
    assert exc.value.code == 0
    assert "MODELSEAL_*" in capsys.readouterr().out


# --- workflow commands and outputs ---------------------------------------------------------


def test_escaping() -> None:
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_annotation_command_round_trips() -> None:
    a = Annotation(
        "error",
        "line one\nline two: 50%",
        title="modelseal trivy: CVE-1 (HIGH), x",
        file="dir,1/Dockerfile",
        line=3,
        col=7,
    )
    text = a.command()
    assert "\n" not in text
    assert text.startswith("::error file=dir%2C1/Dockerfile,line=3,col=7,title=modelseal trivy%3A")
    (cmd,) = parse_commands(text)
    assert cmd.name == "error" and cmd.message == "line one\nline two: 50%"
    assert cmd.props == {
        "file": "dir,1/Dockerfile",
        "line": "3",
        "col": "7",
        "title": "modelseal trivy: CVE-1 (HIGH), x",
    }


def test_annotation_without_location() -> None:
    assert Annotation("warning", "m").command() == "::warning::m"
    assert Annotation("error", "m", line=3).command() == "::error::m"  # a line needs a file


def test_outputs_are_multiline_safe() -> None:
    hostile = "a\nverdict=PASSED\nghadelimiter_x\nEOF\nname<<EOF"
    text = format_output("digest", hostile) + format_output("verdict", "FAILED")
    assert parse_file_command(text) == {"digest": hostile, "verdict": "FAILED"}
    delimiters = re.findall(r"^\w[\w-]*<<(ghadelimiter_\S+)$", text, re.M)
    assert len(set(delimiters)) == 2


# --- the summary ---------------------------------------------------------------------------

HOSTILE = (
    "<img src=x onerror=alert(1)> [click](https://evil.example) ![p](https://evil.example/p.png)"
    " a|b `code` **bold** ~~gone~~ _it_ &amp;\nsecond line"
)


def test_md_escape_neutralizes_markup() -> None:
    out = md_escape(HOSTILE)
    assert "<img" not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    assert "\\[click\\](https://evil.example)" in out and "!\\[p\\]" in out
    assert "a\\|b" in out and "\\`code\\`" in out and "\\*\\*bold\\*\\*" in out
    assert "\\~\\~gone\\~\\~" in out and "\\_it\\_" in out
    assert "&amp;amp;" in out and out.endswith("<br>second line")
    assert "\n" not in out


def test_md_escape_uses_the_projects_escaping_for_what_is_not_markup() -> None:
    # A bidi override reorders what a reviewer reads in a PR comment; an escape sequence and a
    # line that is a workflow command are shown, not acted on.
    out = md_escape("evil\u202etxt.pt\x1b]8;;x\x07 \x9b\n::add-mask::x")
    assert "\u202e" not in out and "\x1b" not in out and "\x9b" not in out and "\x07" not in out
    assert "\\\\u202e" in out  # shown as the text \u202e (its backslash escaped for Markdown)
    assert "<br>\\\\x3a:add-mask::x" in out


def test_md_escape_clips() -> None:
    assert md_escape("x" * 1000, limit=10) == "x" * 9 + "…"


def _finding(**kw: Any) -> dict[str, Any]:
    base = {
        "gate": "trivy", "id": "CVE-2018-18074", "severity": "HIGH", "title": "requests: redirect",
        "subject": "requests@2.19.0", "fixed_in": "2.20.0", "location": "usr/lib/x/METADATA",
        "evidence": {"type": "vulnerability"}, "decision": "fail",
        "reason": "HIGH ≥ vulnerabilities.fail_on HIGH",
    }  # fmt: skip
    return {**base, **kw}


def _decision(f: Mapping[str, Any]) -> Decision:
    finding = Finding(
        gate=f["gate"], id=f["id"], severity=Severity[f["severity"]], title=f["title"],
        subject=f["subject"], fixed_in=f.get("fixed_in"), location=f.get("location"),
        evidence=f.get("evidence") or {},
    )  # fmt: skip
    return Decision(finding, Outcome(f["decision"]), f["reason"])


def _report(gates: Sequence[Mapping[str, Any]], verdict: str = "FAILED") -> Verdict:
    """A typed verdict as the judge makes it: each gate's findings (``_finding``, decision
    included) as the collected evidence and the decisions on it."""
    out = []
    for g in gates:
        status = Status(g.get("status", "FAILED"))
        decisions = tuple(_decision(f) for f in g.get("findings", []))
        result = GateResult(
            gate=g.get("gate", "trivy"),
            status=Status.ERRORED if status is Status.ERRORED else Status.PASSED,
            findings=tuple(d.finding for d in decisions),
            artifacts={k: Path(v) for k, v in g.get("artifacts", {}).items()},
            facts=g.get("facts", {}),
            error=g.get("error"),
            duration_s=1.5,
        )
        out.append(GateVerdict(result, status, decisions))
    codes = {"PASSED": 0, "FAILED": 1, "ERRORED": 3}
    return Verdict(tuple(out), Status(verdict), ExitCode(codes[verdict]))


POLICY_FILE = LoadedPolicy(policy=POLICY_DEFAULTS.policy, source="modelseal.yml", sha256="f" * 64)


def test_summary_escapes_finding_text() -> None:
    report = _report([{"findings": [_finding(title=HOSTILE, subject="x|y<script>")]}])
    outputs = {"verdict": "FAILED", "exit-code": "1", "digest": DIGEST, "image-ref": ""}
    text = render_summary(report, POLICY_FILE, outputs)
    assert "<img" not in text and "<script>" not in text
    assert not re.search(r"(?<!\\)\]\(https://evil", text)  # no live link or image
    row = next(line for line in text.splitlines() if "CVE-2018-18074" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells: no cell broke out
    assert text.startswith("## modelseal: ❌ FAILED")
    assert "<details><summary>1 finding(s), 1 failing</summary>" in text
    assert f"<code>{DIGEST}</code>" in text


def test_summary_shows_why_a_gate_errored() -> None:
    report = _report([{"gate": "trivy", "status": "ERRORED", "error": "DB too old\n<b>x</b>"}])
    text = render_summary(report, None, {"verdict": "ERRORED", "exit-code": "3"})
    assert "| trivy | ⚠️ ERRORED | 0 | 1.5s | DB too old |" in text
    assert "<pre>DB too old\n&lt;b&gt;x&lt;/b&gt;</pre>" in text


def test_summary_caps_the_finding_list() -> None:
    many = [_finding(id=f"CVE-{i}") for i in range(MAX_FINDINGS + 5)]
    text = render_summary(_report([{"findings": many}]), None, {"verdict": "FAILED"})
    assert "… and 5 more in report.json." in text


# --- annotations ---------------------------------------------------------------------------

POLICY = """\
version: 1
build:
  rebuild_check: true
models:
  formats: [safetensors]
vulnerabilities:
  fail_on: high
  ignore:
    - {id: CVE-1, reason: r, expires: 2000-01-01}
"""


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM python:3.11\n")
    (tmp_path / "modelseal.yml").write_text(POLICY)
    return action.Places(
        workspace=tmp_path,
        context=Path("app"),
        policy="modelseal.yml",
        positions=action.policy_positions(Path("modelseal.yml")),
    )


def _where(a: Annotation) -> tuple[str | None, int | None, int | None]:
    return a.file, a.line, a.col


def test_policy_positions(places: Any) -> None:
    pos = action.policy_positions(Path("modelseal.yml"))
    assert pos["version"] == (1, 1)
    assert pos["vulnerabilities.fail_on"] == (7, 3)
    assert pos["build.rebuild_check"] == (3, 3)
    assert action.policy_positions(Path("missing.yml")) == {}


def test_findings_point_at_the_dockerfile_or_the_breached_rule(places: Any) -> None:
    findings = [
        _finding(
            gate="build", id="build.unpinned-base", location="app/Dockerfile:1", evidence={},
            reason="build.require_pinned_base is true", subject="python:3.11",
        ),
        _finding(),  # a vulnerability → vulnerabilities.fail_on
        _finding(id="vulnerabilities.expired-ignore", location="vulnerabilities.ignore"),
        _finding(
            gate="models", id="models.format", location="model/m.pt", evidence={},
            reason="format pytorch is not in models.formats (safetensors)", severity="HIGH",
        ),
        _finding(
            gate="build", id="build.not-reproducible", location="layer 2", evidence={},
            reason="build.rebuild_check: the rebuild differs",
        ),
        _finding(gate="sbom", id="sbom.x", location=None, evidence={}, reason="no rule"),
    ]  # fmt: skip
    got = action.annotations_for_verdict(_report([{"findings": findings}]), places)
    assert [_where(a) for a in got] == [
        ("app/Dockerfile", 1, None),
        ("modelseal.yml", 7, 3),
        ("modelseal.yml", 8, 3),
        ("modelseal.yml", 5, 3),
        ("modelseal.yml", 3, 3),
        ("modelseal.yml", None, None),
    ]
    assert got[0].title == "modelseal build: build.unpinned-base (HIGH) python:3.11"
    assert all(a.level == "error" for a in got)


def test_a_model_file_in_the_context_is_annotated(places: Any, tmp_path: Path) -> None:
    (tmp_path / "app" / "model").mkdir()
    (tmp_path / "app" / "model" / "m.pt").write_bytes(b"x")
    f = _finding(gate="models", id="models.unsafe-global", location="model/m.pt (data.pkl)",
                 evidence={}, reason="loading this pickle could run code")  # fmt: skip
    (a,) = action.annotations_for_verdict(_report([{"findings": [f]}]), places)
    assert _where(a) == ("app/model/m.pt", None, None)


def test_warnings_and_ignored(places: Any) -> None:
    findings = [_finding(decision="warn", reason="LOW is below"), _finding(decision="ignored")]
    got = action.annotations_for_verdict(_report([{"findings": findings}]), places)
    assert [a.level for a in got] == ["warning"]


def test_gates_not_run_because_of_another_are_not_annotated(places: Any) -> None:
    gates = [
        {"gate": "build", "status": "ERRORED", "error": "docker buildx build failed"},
        {"gate": "sbom", "status": "ERRORED", "error": "not run: it needs build, which errored"},
    ]
    (a,) = action.annotations_for_verdict(_report(gates), places)
    assert a.title == "modelseal: gate build errored"


def test_errored_gate_names_the_dockerfile_line(places: Any) -> None:
    error = "app/Dockerfile:1: FROM requires either one or three arguments"
    gates = [{"gate": "build", "status": "ERRORED", "error": error}]
    (a,) = action.annotations_for_verdict(_report(gates), places)
    assert _where(a) == ("app/Dockerfile", 1, None)
    assert a.message == "FROM requires either one or three arguments"
    assert a.title == "modelseal: gate build errored"
    other = [{"gate": "trivy", "status": "ERRORED", "error": "the DB is 9 days old"}]
    (b,) = action.annotations_for_verdict(_report(other), places)
    assert _where(b) == (None, None, None) and b.message == "the DB is 9 days old"


def test_annotations_are_capped(places: Any) -> None:
    many = [_finding(id=f"CVE-{i}") for i in range(15)]
    got = action.annotations_for_verdict(_report([{"findings": many}]), places)
    assert len(got) == action.MAX_ANNOTATIONS
    assert got[-1].message.startswith("… and 6 more errors")


def test_summary_md_and_the_job_summary_show_a_verdict_alike(places: Any) -> None:
    from modelseal.reports import Report, render_markdown

    gates = [
        {"gate": "build", "status": "ERRORED", "error": "app/Dockerfile:1: FROM needs arguments"},
        {"findings": [_finding(), _finding(id="CVE-2", decision="warn", reason="LOW is below")]},
    ]
    verdict = _report(gates)
    got = action.annotations_for_verdict(verdict, places)
    assert [(a.level, a.title) for a in got] == [
        ("error", "modelseal: gate build errored"),
        ("error", "modelseal trivy: CVE-2018-18074 (HIGH) requests@2.19.0"),
        ("warning", "modelseal trivy: CVE-2 (HIGH) requests@2.19.0"),
    ]
    job = render_summary(verdict, POLICY_FILE, {"verdict": "FAILED", "exit-code": "1"})
    report = Report(verdict, "modelseal.yml", "f" * 64, 0.0, 0.0, "0")
    md = render_markdown(report)
    assert "<details><summary>2 finding(s), 1 failing</summary>" in job
    body = job[job.index("| gate | status |") :].rstrip("\n")
    assert body in md  # one renderer: summary.md carries the same tables


def test_findings_under_the_default_policy_have_no_file(tmp_path: Path) -> None:
    places = action.Places(workspace=tmp_path, context=tmp_path, policy=None)
    (a,) = action.annotations_for_verdict(_report([{"findings": [_finding()]}]), places)
    assert _where(a) == (None, None, None)


def test_a_policy_file_that_never_ends_is_read_bounded_and_flagged(tmp_path: Path) -> None:
    # A pull request may commit modelseal.yml -> /dev/zero (or a huge file): the check that it
    # differs from the ref's policy reads at most a policy's worth, and warns.
    import resource

    link = tmp_path / "modelseal.yml"
    link.symlink_to("/dev/zero")
    from modelseal.policy.loader import LoadedPolicy
    from modelseal.policy.model import Policy

    judged = LoadedPolicy(Policy(version=1), "modelseal.yml", "0" * 64, ref="main", commit="1" * 40)
    places = action.Places(workspace=tmp_path, context=tmp_path, policy="modelseal.yml")
    # An unbounded read would take all the memory there is: capped, it fails fast instead.
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), hard))
    try:
        changed = action.policy_changed(judged, link, places)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert changed is not None and changed.level == "warning"
    assert changed.title == "modelseal: policy changed" and "as of main" in changed.message
    big = tmp_path / "big.yml"
    with big.open("wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of zeros
    changed = action.policy_changed(judged, big, places)
    assert changed is not None and changed.level == "warning"


# --- outputs -------------------------------------------------------------------------------


def test_collect_outputs_after_publishing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "bundles").mkdir(parents=True)
    for name in ("report.json", "summary.md", "modelseal.sarif", "sbom.cdx.json",
                 "provenance.intoto.json", "bundles/signature.sigstore.json"):  # fmt: skip
        (out / name).write_text("{}")
    verdict = _report(
        [{"gate": "build", "status": "PASSED", "facts": {"image.digest": "sha256:" + "1" * 64}}],
        verdict="PASSED",
    )
    paths = {"json": out / "report.json", "markdown": out / "summary.md",
             "sarif": out / "modelseal.sarif"}  # fmt: skip
    published = PublishResult(
        image="r.example/x", digest=DIGEST, tags=(), signed=True,
        bundles={"image": out / "bundles/signature.sigstore.json",
                 "image-cosign": out / "bundles/signature.sigstore.json",
                 "sbom": Path("bundles/missing.json")},
    )  # fmt: skip
    got = collect_outputs(out, Judged(verdict, POLICY_FILE, paths), published, 0)
    assert set(got) == set(OUTPUT_NAMES)
    assert got["digest"] == DIGEST and got["image-ref"] == f"r.example/x@{DIGEST}"
    assert got["signature-bundle-path"] == str(out / "bundles/signature.sigstore.json")
    assert got["sbom-bundle-path"] == "" and got["provenance-bundle-path"] == ""
    assert got["provenance-path"] == str(out / "provenance.intoto.json")
    assert got["sbom-path"] == str(out / "sbom.cdx.json")
    assert got["report-path"] == str(out / "report.json")
    assert got["verdict"] == "PASSED" and got["exit-code"] == "0"
    assert got["policy-digest"] == "sha256:" + "f" * 64 and got["policy-ref"] == ""
    assert got["github-attestation-ids"] == ""


def test_the_github_attestation_ids_are_an_output_and_in_the_summary(tmp_path: Path) -> None:
    published = PublishResult(
        image="r.example/x", digest=DIGEST, tags=(), signed=True,
        github_attestations={"sbom": 12, "provenance": 11},
    )  # fmt: skip
    got = collect_outputs(tmp_path, None, published, 0)
    assert json.loads(got["github-attestation-ids"]) == {"provenance": 11, "sbom": 12}
    assert got["github-attestation-ids"] == '{"provenance":11,"sbom":12}'
    summary = render_summary(None, None, got)
    assert '| GitHub attestations | <code>{"provenance":11,"sbom":12}</code> |' in summary
    assert "GitHub attestations" not in render_summary(
        None, None, {**got, "github-attestation-ids": ""}
    )


def test_github_attestations_reach_the_run_only_when_pushing() -> None:
    on = parse_inputs(env_of(push="true", image="r.io/x", github_attestations="true"))
    assert on.github_attestations and run_request(on, POLICY_DEFAULTS).github_attestations
    assert not run_request(parse_inputs({}), POLICY_DEFAULTS).github_attestations


def test_collect_outputs_without_publishing_reads_the_build_evidence(tmp_path: Path) -> None:
    sbom = tmp_path / "elsewhere.cdx.json"
    sbom.write_text("{}")
    gates = [
        {"gate": "build", "status": "PASSED", "facts": {"image.digest": DIGEST}},
        {"gate": "sbom", "status": "PASSED", "artifacts": {"sbom": str(sbom)}},
    ]
    got = collect_outputs(tmp_path, Judged(_report(gates, "PASSED"), POLICY_FILE), None, 0)
    assert got["digest"] == DIGEST and got["sbom-path"] == str(sbom)
    assert got["report-path"] == ""  # no reports were written by this run


def test_the_runtime_profile_and_its_bundle_are_outputs(tmp_path: Path) -> None:
    profile, bundle = tmp_path / "runtime-profile.json", tmp_path / "rp.sigstore.json"
    profile.write_text("{}")
    bundle.write_text("{}")
    gates = [{"gate": "image", "status": "PASSED", "artifacts": {"runtime_profile": str(profile)}}]
    published = PublishResult(
        image="r.example/x", digest=DIGEST, tags=(), signed=True,
        bundles={"runtime-profile": bundle},
    )  # fmt: skip
    got = collect_outputs(tmp_path, Judged(_report(gates, "PASSED"), POLICY_FILE), published, 0)
    assert got["runtime-profile-path"] == str(profile)
    assert got["runtime-profile-bundle-path"] == str(bundle)
    got = collect_outputs(tmp_path, Judged(_report([], "PASSED"), POLICY_FILE), None, 0)
    assert got["runtime-profile-path"] == "" and got["runtime-profile-bundle-path"] == ""


def test_a_passing_report_with_a_failing_exit_is_not_passed(tmp_path: Path) -> None:
    got = collect_outputs(tmp_path, Judged(_report([], "PASSED"), POLICY_FILE), None, 3)
    assert got["verdict"] == "ERRORED"


# --- run_action with a stand-in application ------------------------------------------------


class FakeApp:
    """Replaces modelseal.app's run and verify (and, given ``policy``, load_policy): records
    the requests, writes what a run would, judges, prints hostile lines (a build log may
    contain anything), raises ``error`` (after judging when there is a verdict)."""

    def __init__(
        self,
        out_dir: Path,
        *,
        verdict: Verdict | None = None,
        published: PublishResult | None = None,
        error: BaseException | None = None,
        verified: bool = True,
        policy: LoadedPolicy | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.verdict, self.published, self.error = verdict, published, error
        self.verified, self.policy = verified, policy
        self.runs: list[app.RunRequest] = []
        self.verifies: list[app.VerifyRequest] = []
        self.loads: list[tuple[Path | None, str | None]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_load = app.load_policy

        def load(path: Path | None = None, ref: str | None = None) -> LoadedPolicy:
            self.loads.append((path, ref))
            return self.policy if self.policy is not None else real_load(path, ref)

        monkeypatch.setattr(app, "load_policy", load)
        monkeypatch.setattr(app, "run", self.run)
        monkeypatch.setattr(app, "verify", self.verify)

    def run(self, request: app.RunRequest, hooks: app.RunHooks | None = None) -> app.RunOutcome:
        from modelseal.pipeline import PipelineResult
        from modelseal.reports import Report

        assert hooks is not None
        self.runs.append(request)
        print("::error::injected by a RUN step")
        print("::add-mask::nothing")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.verdict is None:
            assert self.error is not None
            raise self.error
        paths = {"json": self.out_dir / "report.json"}
        paths["json"].write_text("{}")
        hooks.judged(self.verdict, paths)
        if self.error is not None:
            raise self.error
        report = Report(self.verdict, request.policy.source, request.policy.sha256, 0, 0, "0")
        return app.RunOutcome(
            policy=request.policy, verdict=self.verdict, report=report,
            pipeline=PipelineResult((), False, 0.0, 0.0), paths=paths, out_dir=self.out_dir,
            published=self.published,
        )  # fmt: skip

    def verify(self, request: app.VerifyRequest) -> app.VerifyOutcome:
        from modelseal.publish.verify_image import Check, VerifyResult

        self.verifies.append(request)
        detail = "verified" if self.verified else "no signature by the expected identity"
        check = Check("signature", self.verified, detail)
        return app.VerifyOutcome(VerifyResult("r.example/x", DIGEST, (check,)))


def _published(**kw: Any) -> PublishResult:
    return PublishResult(**{"image": "r.example/x", "digest": DIGEST, "tags": (), "signed": True,
                            **kw})  # fmt: skip


@pytest.fixture
def gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.txt").write_text("")
    (tmp_path / "summary.md").write_text("")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "out.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_WORKSPACE": str(tmp_path),
        "MODELSEAL_KEY_PASSWORD": "s3cret-pw",
        "GITHUB_TOKEN": "ghs_s3cret",
    }


def _run(env: Mapping[str, str], fake: FakeApp, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    fake.install(monkeypatch)
    stdout = io.StringIO()
    code = run_action(env, stdout=stdout)
    return code, stdout.getvalue()


def test_run_action_publishes_and_self_checks(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "modelseal-out"
    fake = FakeApp(out, verdict=_report([], "PASSED"), published=_published())
    env = {**gh, **env_of(image="r.example/x:1", push="true", verify_identity="https://id")}
    code, stdout = _run(env, fake, monkeypatch)
    assert code == 0
    (run,) = fake.runs
    assert run.push is not None and (run.push.name, run.push.tag) == ("r.example/x", "1")
    (check,) = fake.verifies
    assert check.image == f"r.example/x@{DIGEST}" and check.policy is run.policy
    assert check.signer == app.SignerFlags(
        identity="https://id", issuer="https://token.actions.githubusercontent.com"
    )
    assert fake.loads == [(None, None)]  # the policy is loaded once, for the run and the check
    # What the pipeline printed was not taken for workflow commands.
    assert parse_commands(stdout) == []
    assert stdout.count("::stop-commands::") == 2
    outputs = parse_file_command((tmp_path / "out.txt").read_text())
    assert outputs["image-ref"] == f"r.example/x@{DIGEST}" and outputs["verdict"] == "PASSED"
    everything = stdout + (tmp_path / "out.txt").read_text() + (tmp_path / "summary.md").read_text()
    assert "s3cret" not in everything


def test_a_failed_self_check_fails_the_step(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeApp(tmp_path / "modelseal-out", verdict=_report([], "PASSED"),
                   published=_published(), verified=False)  # fmt: skip
    env = {**gh, **env_of(image="r.example/x", push="true", verify_identity_regexp="^x$")}
    code, stdout = _run(env, fake, monkeypatch)
    assert code == 1
    (error,) = parse_commands(stdout)
    assert error.props["title"] == "modelseal: self-check failed"
    assert "no signature by the expected identity" in error.message
    outputs = parse_file_command((tmp_path / "out.txt").read_text())
    assert outputs["verdict"] == "ERRORED" and outputs["exit-code"] == "1"


def test_a_self_check_that_cannot_run_fails_the_step(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeApp(tmp_path / "modelseal-out", verdict=_report([], "PASSED"),
                   published=_published())  # fmt: skip

    def unreachable(request: app.VerifyRequest) -> app.VerifyOutcome:
        raise EngineError("the registry at r.example does not answer.")

    env = {**gh, **env_of(image="r.example/x", push="true", verify_identity="https://id")}
    fake.install(monkeypatch)
    monkeypatch.setattr(app, "verify", unreachable)
    stdout = io.StringIO()
    assert run_action(env, stdout=stdout) == 3
    (error,) = parse_commands(stdout.getvalue())
    assert "did not verify: the registry at r.example does not answer." in error.message


def test_a_breach_fails_with_the_verdict_code_and_annotations(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "modelseal.yml").write_text(POLICY)
    fake = FakeApp(tmp_path / "modelseal-out", verdict=_report([{"findings": [_finding()]}]))
    code, stdout = _run({**gh, **env_of(push="false")}, fake, monkeypatch)
    assert code == 1
    assert fake.loads == [(None, None)]  # app.load_policy finds modelseal.yml itself
    assert fake.runs[0].policy.source == "modelseal.yml"
    (error,) = parse_commands(stdout)
    assert (error.props["file"], error.props["line"]) == ("modelseal.yml", "7")
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## modelseal: ❌ FAILED") and "CVE-2018-18074" in summary


def test_findings_judged_by_the_base_policy_do_not_point_into_the_edited_copy(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "modelseal.yml").write_text(POLICY)  # the PR's edit; the base's digest is f…f
    base = dataclasses.replace(POLICY_FILE, ref="main", commit="c" * 40)
    fake = FakeApp(tmp_path / "modelseal-out", verdict=_report([{"findings": [_finding()]}]),
                   policy=base)  # fmt: skip
    env = {**gh, "GITHUB_EVENT_NAME": "pull_request", "GITHUB_BASE_REF": "main"}
    code, stdout = _run(env, fake, monkeypatch)
    assert code == 1 and fake.loads == [(None, "main")]
    warning, error = parse_commands(stdout)
    assert (warning.name, warning.props["title"]) == ("warning", "modelseal: policy changed")
    assert "as of main (cccccccccccc, sha256:ffffffffffff…)" in warning.message
    # line 7 of the edited copy is not where the judging policy's fail_on is
    assert error.name == "error" and "file" not in error.props
    outputs = parse_file_command((tmp_path / "out.txt").read_text())
    assert (outputs["policy-ref"], outputs["policy-digest"]) == ("main", "sha256:" + "f" * 64)


def test_a_stale_report_is_not_taken_for_this_run(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "modelseal-out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    (out / "publish.json").write_text("{}")
    (out / "summary.md").write_text("## modelseal: ✅ PASSED")
    fake = FakeApp(out, error=EngineError("the engine at unix:///x does not answer."))
    code, stdout = _run(gh, fake, monkeypatch)
    assert code == 3
    outputs = parse_file_command((tmp_path / "out.txt").read_text())
    assert outputs["verdict"] == "ERRORED" and outputs["report-path"] == ""
    assert outputs["summary-path"] == ""  # an earlier run's summary is not this run's
    assert not (out / "report.json").exists()
    (error,) = parse_commands(stdout)
    assert error.message == "the engine at unix:///x does not answer."
    assert error.props["title"] == "modelseal: the run could not start"


def test_a_failed_publish_is_annotated(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelseal.publish.publisher import PublishError

    fake = FakeApp(
        tmp_path / "modelseal-out", verdict=_report([], "PASSED"),
        error=PublishError("PUT /v2/x/manifests/sha256:… answered 401: authentication required"),
    )  # fmt: skip
    code, stdout = _run({**gh, **env_of(image="r.example/x", push="true")}, fake, monkeypatch)
    assert code == 3
    (error,) = parse_commands(stdout)
    assert error.props["title"] == "modelseal: publishing failed"
    assert "answered 401" in error.message
    outputs = parse_file_command((tmp_path / "out.txt").read_text())
    assert outputs["verdict"] == "ERRORED" and outputs["image-ref"] == ""
    assert "answered 401" in (tmp_path / "summary.md").read_text()


def test_bad_input_the_application_refuses_becomes_exit_2(
    gh: dict[str, str], tmp_path: Path
) -> None:
    stdout = io.StringIO()
    assert run_action({**gh, **env_of(context="missing")}, stdout=stdout) == 2
    (error,) = parse_commands(stdout.getvalue())
    assert error.props["title"] == "modelseal: the run could not start"
    assert error.message == "build context missing is not a directory."


def test_a_bug_under_runner_debug_still_writes_outputs(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    fake = FakeApp(tmp_path / "modelseal-out", error=RuntimeError("boom"))
    code, _ = _run({**gh, "RUNNER_DEBUG": "1"}, fake, monkeypatch)
    assert code == 4
    outputs = parse_file_command((tmp_path / "out.txt").read_text())
    assert outputs["exit-code"] == "4" and outputs["verdict"] == "ERRORED"
    assert "Traceback" in capsys.readouterr().err  # RUNNER_DEBUG shows where


def test_outside_github_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake = FakeApp(tmp_path / "modelseal-out", verdict=_report([], "PASSED"))
    code, stdout = _run({}, fake, monkeypatch)
    assert code == 0 and "::stop-commands::" not in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modelseal-out"]


def test_a_policy_input_starting_with_colons_prints_nothing_outside_the_window(
    gh: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner reads stdout and stderr as one log: both go to one buffer, in order.
    name = "::notice::pwned.yml"
    (tmp_path / name).write_text("version: 1\nbogus: 1\n")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert run_action({**gh, **env_of(policy=name)}, stdout=log) == 2
    text = log.getvalue()
    assert [c.name for c in parse_commands(text)] == ["error"]  # the annotation, nothing else
    window = False
    for line in text.splitlines():
        if line.startswith("::stop-commands::"):
            window = True
        elif window and re.fullmatch(r"::[0-9a-f]{32}::", line):
            window = False
        elif not window:
            assert line.startswith("::error "), (
                f"printed outside the stop-commands window: {line!r}"
            )
        else:
            assert not line.lstrip().startswith("::"), line
    assert "invalid policy file" in text
