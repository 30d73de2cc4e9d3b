"""action.yml and workflows-examples/ follow the rules the action is built on: inputs reach code
only through env, every action is pinned by commit SHA, permissions are least per job (id-token
only where signing happens), and action.yml agrees with the adapter on inputs, defaults and
outputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from tests.support import REPO

from modelseal.github import inputs as action
from modelseal.github.outputs import OUTPUT_NAMES

ACTION = REPO / "action.yml"
EXAMPLES = REPO / "workflows-examples"
WORKFLOWS = sorted(p for p in EXAMPLES.glob("*.yml") if p.name != "gitlab-ci.yml")
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def test_examples_are_all_there() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yml")) == [
        "gitlab-ci.yml", "matrix.yml", "pull-request.yml", "rebuild.yml", "release.yml",
        "verify-before-deploy.yml",
    ]  # fmt: skip


# --- action.yml ----------------------------------------------------------------------------


def test_inputs_match_the_adapter() -> None:
    spec = load(ACTION)
    assert list(spec["inputs"]) == list(action.INPUT_ENV)
    for name, item in spec["inputs"].items():
        assert item["required"] is False, name
        assert str(item["default"]) == action.DEFAULTS.get(name, ""), name


def test_every_input_arrives_as_an_environment_variable() -> None:
    step = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "modelseal")
    expected = {env: f"${{{{ inputs.{name} }}}}" for name, env in action.INPUT_ENV.items()}
    expected["MODELSEAL_PYTHON"] = "${{ steps.install.outputs.python }}"
    expected["MODELSEAL_ACTION_CACHE_DIR"] = "${{ runner.temp }}/modelseal-cache"
    runtime = {
        "ACTIONS_RUNTIME_TOKEN": "token",
        "ACTIONS_CACHE_URL": "cache-url",
        "ACTIONS_RESULTS_URL": "results-url",
        "ACTIONS_CACHE_SERVICE_V2": "cache-service-v2",
    }
    for var, output in runtime.items():
        expected[var] = f"${{{{ steps.gha-runtime.outputs.{output} }}}}"
    assert step["env"] == expected
    assert step["run"].strip() == 'exec "$MODELSEAL_PYTHON" -I -m modelseal action'


def test_outputs_match_the_adapter() -> None:
    outputs = load(ACTION)["outputs"]
    assert list(outputs) == list(OUTPUT_NAMES)
    for name, item in outputs.items():
        assert item["value"] == f"${{{{ steps.modelseal.outputs.{name} }}}}"
        assert item["description"]


def test_no_expression_in_any_script() -> None:
    for step in load(ACTION)["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("id")


def test_install_is_hash_pinned_and_private() -> None:
    install = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "install")
    script = install["run"]
    assert "--require-hashes" in script and "requirements.lock" in script
    assert "--no-build-isolation --no-index" in script
    assert install["env"]["MODELSEAL_VENV"] == "${{ runner.temp }}/modelseal-venv"
    setup = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "python")
    assert setup["with"]["update-environment"] is False


def test_trivy_db_is_cached_by_day_outside_the_workspace() -> None:
    steps = load(ACTION)["runs"]["steps"]
    cache = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache@"))
    run = next(s for s in steps if s.get("id") == "modelseal")
    # The path actions/cache saves is the one modelseal's Trivy gate uses (CACHE_DIR/trivy),
    # under the runner's temp directory: a pull request's files cannot pre-seed a DB.
    assert cache["with"]["path"] == run["env"]["MODELSEAL_ACTION_CACHE_DIR"] + "/trivy"
    assert cache["with"]["path"].startswith("${{ runner.temp }}/")
    assert cache["with"]["key"] == "modelseal-trivy-db-${{ steps.cache-key.outputs.date }}"
    assert cache["with"]["restore-keys"] == "modelseal-trivy-db-"
    key_step = next(s for s in steps if s.get("id") == "cache-key")
    assert "date -u +%Y-%m-%d" in key_step["run"]
    assert steps.index(key_step) < steps.index(cache) < steps.index(run)


def test_the_runtime_token_is_fetched_only_for_a_gha_cache() -> None:
    steps = load(ACTION)["runs"]["steps"]
    runtime = next(s for s in steps if s.get("id") == "gha-runtime")
    assert runtime["if"] == (
        "contains(inputs.cache-from, 'type=gha') || contains(inputs.cache-to, 'type=gha')"
    )
    script = runtime["with"]["script"]
    assert "core.setSecret(value)" in script and "exportVariable" not in script


# --- pins and permissions everywhere -------------------------------------------------------


def _uses_lines(path: Path) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s*-?\s*uses:\s*(.+)$", path.read_text(), re.M)]


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_sha(path: Path) -> None:
    uses = _uses_lines(path)
    assert uses, path
    for line in uses:
        ref, _, comment = line.partition(" # ")
        assert SHA_PIN.match(ref.strip()), line
        # vX.Y.Z: the placeholder for modelseal itself (the release the reader pins).
        assert re.match(r"v(\d|X\.Y\.Z)", comment.strip()), f"{line}: which release is it?"


def _jobs(path: Path) -> dict[str, Any]:
    return dict(load(path)["jobs"])


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def _signs_keyless(step: dict[str, Any]) -> bool:
    """Whether a step signs keyless: the Action publishing with ``sign: keyless`` (its
    default), or a rebuilder's ``modelseal rebuild … --sign keyless``."""
    with_ = step.get("with", {})
    if "modelseal@" in step.get("uses", ""):
        return (
            str(with_.get("push")).lower() == "true" and with_.get("sign", "keyless") == "keyless"
        )
    script = step.get("run", "").replace('"', "").replace("$RUNNER_TEMP/modelseal/bin/", "")
    return "modelseal rebuild" in script and "--sign keyless" in script


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_permissions(path: Path) -> None:
    wf = load(path)
    assert wf["permissions"] == {}, "nothing at the top level; each job asks"
    for name, job in wf["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name}: no permissions block"
        assert "write-all" not in str(perms)
        signs = any(_signs_keyless(s) for s in _steps(job))
        assert (perms.get("id-token") == "write") == signs, f"{name}: id-token only to sign"
        stores = any(
            "modelseal@" in s.get("uses", "")
            and str(s.get("with", {}).get("github-attestations")).lower() == "true"
            for s in _steps(job)
        )
        assert (perms.get("attestations") == "write") == stores, f"{name}: attestations"
        uploads = any("upload-sarif" in s.get("uses", "") for s in _steps(job))
        assert (perms.get("security-events") == "write") == uploads, name
        assert "timeout-minutes" in job, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_drop_credentials_and_scripts_take_no_expressions(path: Path) -> None:
    for name, job in _jobs(path).items():
        for step in _steps(job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, name
            assert "${{" not in step.get("run", ""), f"{name}: use env: for expressions"


def test_signing_jobs_self_check_their_signature() -> None:
    for path in (EXAMPLES / "release.yml", EXAMPLES / "matrix.yml"):
        (job,) = _jobs(path).values()
        seal = next(s for s in _steps(job) if "modelseal@" in s.get("uses", ""))
        assert (
            seal["with"]["verify-identity"] == "${{ github.server_url }}/${{ github.workflow_ref }}"
        )


def test_pull_requests_publish_nothing() -> None:
    jobs = _jobs(EXAMPLES / "pull-request.yml")
    seal = next(s for s in _steps(jobs["scan"]) if "modelseal@" in s.get("uses", ""))
    assert seal["with"]["push"] is False
    # packages: read, for the baseline image's attestation (the base branch's last seal).
    assert jobs["scan"]["permissions"] == {"contents": "read", "packages": "read"}
    assert seal["with"]["baseline"] == "ghcr.io/owner/iris-classifier:main"
    assert "security-events" in jobs["code-scanning"]["permissions"]
    assert not any("modelseal@" in s.get("uses", "") for s in _steps(jobs["code-scanning"]))


def test_gitlab_example() -> None:
    ci = load(EXAMPLES / "gitlab-ci.yml")
    images = [ci["default"]["image"]["name"], *(s["name"] for s in ci["default"]["services"])]
    for image in images:
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), image
    assert "modelseal" in images[0]
    with_tokens = [name for name, job in ci.items() if isinstance(job, dict) and "id_tokens" in job]
    assert with_tokens == ["release"]
    assert ci["release"]["id_tokens"]["SIGSTORE_ID_TOKEN"]["aud"] == "sigstore"
    assert "--push" not in " ".join(ci["scan"]["script"])
