"""The Action with ``github-attestations: true`` end to end, in-process (``modelseal action``):
a private repository's job signs keylessly with its own Sigstore instance (the local stack
standing in for GitHub's private one, given as trust-config), publishes to the local registry,
and submits the signed attestations to the local stand-in of GitHub's attestations API; the
ids reach the outputs, publish.json and the job summary, and the token appears nowhere."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.github_api import GitHubApi, github_api, written_text
from tests.support.github_runner import parse_file_command

from modelseal.github import run_action
from modelseal.github.inputs import INPUT_ENV

POLICY = """\
version: 1
models: {enabled: false}
trivy: {enabled: false}
pip_audit: {enabled: false}
build: {rebuild_check: false}
"""


@pytest.fixture
def api() -> Iterator[GitHubApi]:
    with github_api(repository="acme/private-models") as running:
        yield running


def _job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: GitHubApi, inputs: dict[str, str]
) -> Path:
    """A private repository's job (event payload ``repository.private``); returns the
    workspace. The token arrives as the github-token input only, as action.yml passes it."""
    ws = tmp_path / "ws"
    (ws / "ctx").mkdir(parents=True)
    (ws / "ctx" / "hello.txt").write_text("hello\n")
    (ws / "ctx" / "Dockerfile").write_text("FROM base\nCOPY hello.txt /srv/\nUSER 65534\n")
    (ws / "modelseal.yml").write_text(POLICY)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"full_name": api.repository, "private": True}}))
    env = {
        **api.env(),
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_WORKSPACE": str(ws),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        INPUT_ENV["github-token"]: api.token,
        INPUT_ENV["policy"]: str(ws / "modelseal.yml"),
        INPUT_ENV["context"]: str(ws / "ctx"),
        INPUT_ENV["out-dir"]: str(ws / "out"),
        **{INPUT_ENV[k]: v for k, v in inputs.items()},
    }
    del env["GITHUB_TOKEN"]
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY_VISIBILITY", "GITHUB_BASE_REF"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ws)
    return ws


def _outputs(tmp_path: Path) -> dict[str, str]:
    return parse_file_command((tmp_path / "output").read_text())


def _everything(tmp_path: Path, stdout: str, stderr: str) -> str:
    return written_text(tmp_path, stdout, stderr)


@pytest.mark.engine
def test_a_private_repository_publishes_to_githubs_store_with_its_own_sigstore(
    registry: str,
    busybox_base: str,
    github_ambient: dict[str, Any],
    trust_config_path: Path,
    api: GitHubApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = f"{registry}/acme/private-models"
    _job(tmp_path, monkeypatch, api, {
        "image": f"{image}:v1", "push": "true", "sign": "keyless",
        "trust-config": str(trust_config_path), "github-attestations": "true",
        "build-contexts": f"base={busybox_base}",
    })  # fmt: skip
    stdout = io.StringIO()
    code = run_action(dict(os.environ), stdout)
    err = capsys.readouterr().err
    assert code == 0, err + stdout.getvalue()
    out = _outputs(tmp_path)
    assert api.rejected == []
    ids = json.loads(out["github-attestation-ids"])
    assert set(ids) == {"provenance", "sbom", "scan-report", "runtime-profile"}
    assert sorted(ids.values()) == [s.id for s in api.stored]
    assert all(s.subject_digests == (out["digest"],) for s in api.stored)
    # What was submitted is the keyless bundle written next to the reports: a Fulcio
    # certificate of the private instance, as `gh attestation verify` expects.
    stored = next(s for s in api.stored if s.id == ids["provenance"])
    assert stored.bundle == json.loads(Path(out["provenance-bundle-path"]).read_text())
    assert "certificate" in stored.bundle["verificationMaterial"]
    publish = json.loads((Path(out["out-dir"]) / "publish.json").read_text())
    assert publish["github_attestations"] == ids
    summary = (tmp_path / "summary.md").read_text()
    assert "| GitHub attestations | <code>" in summary
    assert api.token not in _everything(tmp_path, stdout.getvalue(), err)


def test_a_private_repository_without_its_own_sigstore_is_refused_before_the_build(
    api: GitHubApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = _job(tmp_path, monkeypatch, api, {
        "image": "127.0.0.1:9/acme/private-models:v1", "push": "true", "sign": "keyless",
        "github-attestations": "true",
    })  # fmt: skip
    stdout = io.StringIO()
    assert run_action(dict(os.environ), stdout) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "acme/private-models is a private repository" in err
    assert "GitHub's private Sigstore instance" in err and "trust-config" in err
    assert _outputs(tmp_path)["exit-code"] == "2"
    assert "private Sigstore instance" in stdout.getvalue()  # the ::error annotation
    assert not (ws / "out" / "report.json").exists() and api.requests == 0
    assert api.token not in _everything(tmp_path, stdout.getvalue(), err)
