"""action.yml, run step by step as a runner would (tests/support/github_runner.py), against the example
model server: the outputs, the job summary and the annotations a workflow would see.

The ``install`` step is replaced by the repository's own virtualenv (the step would install the
same pinned packages from the index), except in one test that runs it for real from the wheels
`make deps` prefetched.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from tests.support import EPOCH, REPO, TEST_CACHE
from tests.support.github_runner import ActionRun, Composite, StepContext
from tests.support.reports import read_report, report_gates
from tests.support.rootfs import REQUESTS_METADATA
from tests.support.sigstore_local import LocalSigstore, github_identity
from tests.support.tools import require

EXAMPLES = REPO / "examples"
VENV_PYTHON = Path(sys.executable)


def _venv(ctx: StepContext) -> Mapping[str, str]:
    """Stands in for the install step: the repository's venv has the same pinned packages."""
    return {"python": str(VENV_PYTHON)}


def run_action(
    workspace: Path,
    inputs: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    real_install: bool = False,
    oidc: LocalSigstore | None = None,
    github_token: str = "",
) -> ActionRun:
    """Run action.yml from this repository in ``workspace``."""
    setup_python = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    return Composite(REPO).run(
        inputs,
        workspace=workspace,
        runner_temp=workspace.parent / "runner-temp",
        env={"SOURCE_DATE_EPOCH": str(EPOCH), **(env or {})},
        replace=None if real_install else {"install": _venv},
        uses_outputs={"python": {"python-path": setup_python}},
        oidc=oidc,
        github_token=github_token,
    )


def _line_of(path: Path, prefix: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(prefix):
            return number
    raise AssertionError(f"{prefix!r} not in {path}")


def _assert_no_job_side_effects(run: ActionRun) -> None:
    """A composite action must not change the caller's job: no GITHUB_ENV or GITHUB_PATH."""
    for step in run.steps:
        assert step.env_file == "" and step.path_file == "", step.id


# --- no engine needed ----------------------------------------------------------------------


def test_bad_inputs_fail_the_step_with_annotations(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run = run_action(ws, {"push": "yes", "image": "--output=/etc", "build-args": "A=1\nnot a pair"})
    assert run.returncode == 2
    errors = run.annotations()
    assert {e.props.get("title") for e in errors} == {"modelseal: invalid input"}
    messages = sorted(e.message for e in errors)
    assert messages == [
        "input build-args: line 2: expected NAME=VALUE, got 'not a pair'",
        "input image: must not start with '-' (got '--output=/etc')",
        "input push: expected true or false, got 'yes'",
    ]
    assert run.outputs["verdict"] == "ERRORED" and run.outputs["exit-code"] == "2"
    assert run.outputs["digest"] == "" and run.outputs["report-path"] == ""
    assert "## modelseal: ⚠️ ERRORED" in run.summary and "input push" in run.summary
    _assert_no_job_side_effects(run)


def test_bad_release_inputs_fail_the_step_naming_each_input(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    token = "ghs_" + "t0ken" * 8
    run = run_action(
        ws,
        {
            "push": "true",
            "tags": "ghcr.io/org/app:v1, ghcr.io/other/app:v1\n$(touch pwned)",
            "labels": "org.opencontainers.image.title=app\n=novalue",
            "annotations": "index:org.opencontainers.image.description=ok\nbad key=x",
            "platforms": "linux/amd64,Linux/ARM64",
            "policy-ref": "--upload-pack=touch pwned",
        },
        github_token=token,
    )
    assert run.returncode == 2
    problems = sorted(e.message.split(":")[0] for e in run.annotations())
    assert problems == [
        "input annotations", "input labels", "input platforms", "input policy-ref",
        "input tags", "input tags",
    ]  # fmt: skip
    assert not (ws / "pwned").exists()
    assert token not in run.log and token not in run.summary
    assert token not in "".join(run.outputs.values())


def test_a_pull_request_is_judged_by_its_base_policy(tmp_path: Path) -> None:
    """The composite end to end on a real shallow PR checkout: the base branch's policy is
    fetched and judges; the PR's loosened copy only earns a warning."""
    from tests.support.gitrepo import LOOSE, STRICT, git

    upstream = tmp_path / "upstream"
    (upstream / "ctx").mkdir(parents=True)
    git(upstream, "init", "-q", "-b", "main")
    (upstream / "modelseal.yml").write_text(STRICT)
    (upstream / "ctx" / "model.pkl").write_bytes(b"\x80\x04K\x01.")  # pickle protocol 4: 1
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", "base")
    git(upstream, "checkout", "-qb", "pr")
    (upstream / "modelseal.yml").write_text(LOOSE)
    git(upstream, "commit", "-qam", "loosen")
    ws = tmp_path / "ws"
    git(tmp_path, "clone", "-q", "--depth=1", "--branch", "pr", f"file://{upstream}", str(ws))
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_BASE_REF": "main"}
    run = run_action(ws, {"context": "ctx"}, env=env)
    assert run.returncode == 1, run.log
    assert run.outputs["policy-ref"] == "main"
    assert run.outputs["policy-digest"] == "sha256:" + hashlib.sha256(STRICT.encode()).hexdigest()
    warnings = run.annotations("warning")
    assert any(c.props.get("title") == "modelseal: policy changed" for c in warnings)
    # the same checkout on a push: its own policy passes it
    assert run_action(ws, {"context": "ctx"}, env={"GITHUB_EVENT_NAME": "push"}).returncode == 0


def test_bad_policy_points_at_its_lines(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "policies").mkdir(parents=True)
    (ws / "policies" / "strict.yml").write_text(
        "version: 1\n"
        "build:\n"
        "  rebuild_check: true\n"
        "  rebuild_chek: false\n"
        "vulnerabilities:\n"
        "  fail_on: severe\n"
    )
    run = run_action(ws, {"policy": "policies/strict.yml", "context": "."})
    assert run.returncode == 2
    errors = [
        (e.props.get("file"), e.props.get("line"), e.props.get("col")) for e in run.annotations()
    ]
    assert errors == [("policies/strict.yml", "4", "3"), ("policies/strict.yml", "6", "12")]
    first, second = run.annotations()
    assert first.props["title"] == "modelseal: invalid policy file"
    assert first.message == "build.rebuild_chek: unknown key (did you mean rebuild_check?)"
    assert second.message.startswith("vulnerabilities.fail_on: ")
    assert run.outputs["verdict"] == "ERRORED"
    assert "policies/strict.yml:4:3" in run.summary


def test_a_missing_context_is_reported(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run = run_action(ws, {"context": "no-such-dir"})
    assert run.returncode == 2
    (error,) = run.annotations()
    assert error.props["title"] == "modelseal: the run could not start"
    assert error.message == "build context no-such-dir is not a directory."


def _wheel_cache() -> Path:
    """The lock's wheels (and the build backend's) as `make deps` prefetched them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("wheelhouse", REPO / ".ci" / "wheelhouse.py")
    assert spec is not None and spec.loader is not None
    wheelhouse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wheelhouse)
    key = wheelhouse.deps_key(wheelhouse.LOCK.read_text(), wheelhouse.machine_arch())
    return TEST_CACHE / "wheelhouse" / f"deps-{key[:16]}"


@pytest.mark.slow
def test_the_install_step_for_real(tmp_path: Path) -> None:
    """The real install step (venv, hash-checked installs, the build from a copy), fed from the
    prefetched wheel cache instead of the index: tests stay off the network."""
    cache = _wheel_cache()
    require((cache / ".complete").is_file(), f"the prefetched wheel cache {cache} (make deps)")
    ws = tmp_path / "ws"
    ws.mkdir()
    leftovers = [REPO / "build", REPO / "src" / "modelseal.egg-info"]
    existed = [p.exists() for p in leftovers]
    offline = {
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # and if pip tried anyway, it fails
        "PIP_FIND_LINKS": f"{cache} {cache / 'build-backend'}",
    }
    run = run_action(ws, {"push": "maybe"}, env=offline, real_install=True)
    install = next(s for s in run.steps if s.id == "install")
    assert install.returncode == 0, install.log
    python = Path(install.outputs["python"])
    assert python.is_relative_to(tmp_path / "runner-temp") and python.exists()
    # Built from a copy: the action's own directory is left as it was.
    assert [p.exists() for p in leftovers] == existed
    # The installed modelseal is the one that answered.
    assert run.returncode == 2
    (error,) = run.annotations()
    assert error.message == "input push: expected true or false, got 'maybe'"


# --- the example, end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    with start_osv_server() as (url, _stop):
        yield url


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODELSEAL_CACHE_DIR with a fresh offline Trivy DB (examples/modelseal.yml: mode offline)."""
    cache = tmp_path_factory.mktemp("modelseal-cache")
    write_trivy_db(cache / "trivy", updated_at=datetime.now(UTC))
    return cache


def example_workspace(root: Path, osv_url: str, *, vulnerable: bool = False) -> Path:
    """A checkout-like workspace: examples/app as ``app/`` and examples/modelseal.yml as
    ``modelseal.yml``, its OSV address pointed at this test's server (the only change).
    ``vulnerable`` adds requests 2.19.0 (CVE-2018-18074) to the image's dist-packages."""
    ws = root / "ws"
    shutil.copytree(EXAMPLES / "app", ws / "app", ignore=shutil.ignore_patterns("__pycache__"))
    policy = (EXAMPLES / "modelseal.yml").read_text()
    assert policy.count("http://127.0.0.1:8765") == 1
    (ws / "modelseal.yml").write_text(policy.replace("http://127.0.0.1:8765", osv_url))
    if vulnerable:
        dist = ws / "app" / "vendor" / "requests-2.19.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(REQUESTS_METADATA)
        (dist / "RECORD").write_text("requests/__init__.py,,\n")
        dockerfile = ws / "app" / "Dockerfile"
        text = dockerfile.read_text()
        assert text.count("\nUSER ") == 1
        dockerfile.write_text(
            text.replace("\nUSER ", "\nCOPY vendor/ /usr/lib/python3/dist-packages/\nUSER ")
        )
    return ws


def _example_inputs(example_base: str) -> dict[str, str]:
    return {
        "policy": "modelseal.yml",
        "context": "app",
        "build-contexts": f"base={example_base}\n",
        "push": "false",
        "sign": "none",
    }


@pytest.mark.engine
@pytest.mark.slow
def test_the_example_passes(
    example_base: str,
    osv_url: str,
    cache_dir: Path,
    sigstore_stack: LocalSigstore,
    tmp_path: Path,
) -> None:
    ws = example_workspace(tmp_path, osv_url)
    asked = len(sigstore_stack.github_token_requests)
    run = run_action(
        ws,
        _example_inputs(example_base),
        env={"MODELSEAL_CACHE_DIR": str(cache_dir)},
        oidc=sigstore_stack,
    )
    assert run.returncode == 0, run.log
    out = run.outputs
    assert out["verdict"] == "PASSED" and out["exit-code"] == "0"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", out["digest"])
    assert out["out-dir"] == str(ws / "modelseal-out")
    for name in ("report-path", "summary-path", "sarif-path", "sbom-path"):
        assert Path(out[name]).is_absolute() and Path(out[name]).is_file(), name
    report = read_report(Path(out["report-path"]))
    assert report["verdict"] == "PASSED"
    build = report_gates(report)["build"]
    assert build["facts"]["image.digest"] == out["digest"]
    assert json.loads(Path(out["sbom-path"]).read_text())["bomFormat"] == "CycloneDX"
    assert json.loads(Path(out["sarif-path"]).read_text())["version"] == "2.1.0"
    # Nothing was published, so nothing signed, and no OIDC token was asked for.
    for name in ("image-ref", "provenance-path", "signature-bundle-path"):
        assert out[name] == "", name
    assert len(sigstore_stack.github_token_requests) == asked
    assert run.annotations("error") == []

    summary = run.summary
    assert summary.startswith("## modelseal: ✅ PASSED")
    assert f"| digest | <code>sha256:{out['digest'][7:]}</code> |" in summary
    for gate in ("models", "build", "models-image", "image", "sbom", "trivy", "pip-audit"):
        assert re.search(rf"^\| {re.escape(gate)} \| ✅ PASSED \|", summary, re.M), gate
    assert "<details><summary>" in summary
    _assert_no_job_side_effects(run)


@pytest.mark.engine
@pytest.mark.slow
def test_a_vulnerable_example_fails_with_the_right_annotation(
    example_base: str, osv_url: str, cache_dir: Path, tmp_path: Path
) -> None:
    ws = example_workspace(tmp_path, osv_url, vulnerable=True)
    run = run_action(ws, _example_inputs(example_base), env={"MODELSEAL_CACHE_DIR": str(cache_dir)})
    assert run.returncode == 1, run.log
    assert run.outputs["verdict"] == "FAILED" and run.outputs["exit-code"] == "1"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", run.outputs["digest"])

    errors = run.annotations()
    titles = [e.props.get("title", "") for e in errors]
    assert any("CVE-2018-18074" in t for t in titles), titles
    cve = next(e for e in errors if "CVE-2018-18074" in e.props.get("title", ""))
    # The breached rule: vulnerabilities.fail_on in the policy.
    assert cve.props["file"] == "modelseal.yml"
    assert cve.props["line"] == str(_line_of(ws / "modelseal.yml", "  fail_on:"))
    assert cve.props["col"] == "3"
    assert cve.props["title"] == "modelseal trivy: CVE-2018-18074 (HIGH) requests@2.19.0"
    assert "requests" in cve.message and "vulnerabilities.fail_on" in cve.message
    assert "fixed in 2.20.0" in cve.message

    summary = run.summary
    assert summary.startswith("## modelseal: ❌ FAILED")
    assert re.search(r"^\| trivy \| ❌ FAILED \| 1 failing", summary, re.M), summary
    details = summary[summary.index("<details><summary>") :]
    assert "CVE-2018-18074" in details and "requests@2.19.0" in details


@pytest.mark.engine
@pytest.mark.slow
def test_a_release_publishes_signs_and_self_checks(
    example_base: str,
    osv_url: str,
    cache_dir: Path,
    registry: str,
    sigstore_stack: LocalSigstore,
    trust_config_path: Path,
    tmp_path: Path,
) -> None:
    """release.yml's job: push to a registry, keyless-sign with the job's OIDC token (the local
    Sigstore's GitHub-like token endpoint), attach the attestations, verify the signer."""
    ws = example_workspace(tmp_path, osv_url)
    identity = github_identity(sigstore_stack.github_claims)
    inputs = {
        **_example_inputs(example_base),
        "image": f"{registry}/iris-server:v1.0.0",
        "push": "true",
        "sign": "keyless",
        "trust-config": str(trust_config_path),
        "verify-identity": identity,
        "verify-issuer": sigstore_stack.issuer_url,
    }
    asked = len(sigstore_stack.github_token_requests)
    run = run_action(ws, inputs, env={"MODELSEAL_CACHE_DIR": str(cache_dir)}, oidc=sigstore_stack)
    assert run.returncode == 0, run.log
    assert sigstore_stack.github_token_requests[asked:][:1] == ["sigstore"]
    out = run.outputs
    assert out["verdict"] == "PASSED"
    assert out["image-ref"] == f"{registry}/iris-server@{out['digest']}"
    publish = json.loads((Path(out["out-dir"]) / "publish.json").read_text())
    assert publish["reference"] == out["image-ref"] and publish["signed"] is True
    provenance = json.loads(Path(out["provenance-path"]).read_text())
    assert provenance["subject"][0]["digest"]["sha256"] == out["digest"].removeprefix("sha256:")
    for kind in ("signature", "provenance", "sbom", "scan-report"):
        path = Path(out[f"{kind}-bundle-path"])
        assert path.is_absolute() and path.is_file(), kind
        bundle = json.loads(path.read_text())
        assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle"), kind
    assert run.annotations("error") == []
    assert f"| image | <code>{registry}/iris-server@{out['digest']}</code> |" in run.summary
    _assert_no_job_side_effects(run)
