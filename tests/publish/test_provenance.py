"""Provenance, scan-report and SBOM statements: checked against JSON Schemas written from the
in-toto and SLSA specs (tests/data) and against in-toto-attestation's own validators."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from referencing import Registry, Resource
from tests.support import REPO
from tests.support.tools import require

from modelseal.errors import ConfigError
from modelseal.imagebuild import context as context_module
from modelseal.imagebuild.context import NORMALIZATION_VERSION
from modelseal.imagebuild.gate import _source_facts
from modelseal.judge import judge
from modelseal.models.mlbom import model_records
from modelseal.policy import load_policy_text
from modelseal.publish.build_environment import (
    LOCAL_BUILDER_ID,
    detect_build_environment,
    path_in_repository,
    public_repository_url,
)
from modelseal.publish.provenance import (
    BUILD_TYPE,
    SLSA_PROVENANCE_V1,
    BaseImage,
    Byproduct,
    ModelFile,
    ProvenanceInput,
    oci_purl,
    provenance_input_from_env,
    provenance_statement,
    rfc3339,
)
from modelseal.publish.run import _bases as run_bases
from modelseal.publish.run import rebuild_inputs
from modelseal.publish.statements import (
    CYCLONEDX_PREDICATE,
    SCAN_REPORT_PREDICATE,
    sbom_statement,
    scan_report_statement,
    statement_bytes,
)
from modelseal.reports import Report
from modelseal.reports.json_report import report_to_json, results_from_data
from modelseal.sign.key import statement_json

DATA = Path(__file__).resolve().parent.parent / "data"
IMAGE = "127.0.0.1:5000/seal/app"
DIGEST = "sha256:" + "ab" * 32
COMMIT = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"
GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo/models",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": COMMIT,
    "GITHUB_WORKFLOW_REF": "octo/models/.github/workflows/seal.yml@refs/heads/main",
    "GITHUB_RUN_ID": "1234567890",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_REPOSITORY_ID": "42",
    "RUNNER_ENVIRONMENT": "github-hosted",
}


def _schema(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.schema.json").read_text())  # type: ignore[no-any-return]


def _validator(name: str) -> jsonschema.Draft202012Validator:
    registry: Registry = Registry()
    for other in ("in-toto-statement-v1", "slsa-provenance-v1"):
        schema = _schema(other)
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return jsonschema.Draft202012Validator(
        _schema(name),
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _errors(name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(name).iter_errors(instance)
    ]


def _realistic_input(env: dict[str, str] | None = None, **over: Any) -> ProvenanceInput:
    (record,) = model_records(
        [
            {
                "path": "models/bert/model.safetensors",
                "size": 438_000_000,
                "sha256": "cd" * 32,
                "format": "safetensors",
                "source": {
                    "uri": "https://huggingface.co/google-bert/bert-base-uncased",
                    "revision": "86b5e0934494bd15",
                },
            }
        ]
    )
    fields: dict[str, Any] = {
        "dockerfile": "Dockerfile",
        "source_date_epoch": 1700000000,
        "started_on": rfc3339(1700000100),
        "finished_on": rfc3339(1700000160.7),
        "build_args": {"PYTHON_VERSION": "3.12", "APP_ENV": "prod"},
        "policy_path": "modelseal.yml",
        "policy_sha256": "ef" * 32,
        "buildx_version": "0.13.1",
        "buildkit_version": "v0.13.2",
        "base_images": [
            BaseImage("python:3.12-slim", "sha256:" + "01" * 32),
            BaseImage("oci-layout:///var/cache/base@sha256:" + "02" * 32, "sha256:" + "02" * 32),
        ],
        "models": [
            ModelFile.from_record(record),
            ModelFile("models/bert/config json", "03" * 32, 570, "json"),
        ],
        "byproducts": [
            Byproduct("sbom.cdx.json", "sha256:" + "04" * 32, "application/vnd.cyclonedx+json"),
            Byproduct("report.json", "05" * 32, "application/json"),
        ],
    }
    fields.update(over)
    return provenance_input_from_env(
        IMAGE, DIGEST, env=GITHUB_ENV if env is None else env, **fields
    )


def test_full_statement_is_valid_against_the_spec_schemas() -> None:
    statement = provenance_statement(_realistic_input())
    assert _errors("in-toto-statement-v1", statement) == []
    assert _errors("slsa-provenance-v1", statement) == []
    assert statement["predicateType"] == SLSA_PROVENANCE_V1
    assert statement["subject"] == [{"name": IMAGE, "digest": {"sha256": "ab" * 32}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    deps = definition["resolvedDependencies"]
    assert deps[0] == {
        "uri": "git+https://github.com/octo/models@refs/heads/main",
        "digest": {"gitCommit": COMMIT},
    }
    assert deps[1] == {
        "name": "policy",
        "uri": "file:modelseal.yml",
        "digest": {"sha256": "ef" * 32},
    }
    assert deps[2]["uri"] == (
        "pkg:oci/python@sha256%3A"
        + "01" * 32
        + "?repository_url=docker.io/library/python&tag=3.12-slim"
    )
    assert deps[3]["uri"].startswith("oci-layout:///var/cache/base@")  # local: the ref itself
    by_name = {d.get("name"): d for d in deps}
    bert = by_name["models/bert/model.safetensors"]
    assert bert["uri"] == "https://huggingface.co/google-bert/bert-base-uncased"
    assert bert["annotations"] == {
        "size": 438_000_000,
        "format": "safetensors",
        "revision": "86b5e0934494bd15",
    }
    assert by_name["models/bert/config json"]["uri"] == "file:models/bert/config%20json"
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["version"]["buildx"] == "0.13.1"
    assert run["metadata"]["startedOn"] == "2023-11-14T22:15:00Z"
    assert run["metadata"]["finishedOn"] == "2023-11-14T22:16:00Z"
    assert [b["digest"]["sha256"] for b in run["byproducts"]] == ["04" * 32, "05" * 32]


def test_a_pinned_buildkit_image_is_a_resolved_dependency() -> None:
    image = "moby/buildkit:v0.31.2@sha256:" + "2f" * 32
    builder = {"name": "modelseal-buildkit-2f2f", "driver": "docker-container",
               "image": image, "engine": "28.0.4"}  # fmt: skip
    statement = provenance_statement(_realistic_input(builder=builder))
    assert _errors("slsa-provenance-v1", statement) == []
    definition = statement["predicate"]["buildDefinition"]
    (dep,) = [d for d in definition["resolvedDependencies"] if d.get("name") == "buildkit"]
    assert dep == {
        "name": "buildkit",
        "uri": "pkg:oci/buildkit@sha256%3A" + "2f" * 32
        + "?repository_url=docker.io/moby/buildkit&tag=v0.31.2",
        "digest": {"sha256": "2f" * 32},
        "annotations": {"builder": "modelseal-buildkit-2f2f", "driver": "docker-container",
                        "version": "v0.13.2"},
    }  # fmt: skip
    assert "builder" not in definition["internalParameters"]


def test_the_engines_own_buildkit_is_an_internal_parameter() -> None:
    builder = {"name": "default", "driver": "docker", "engine": "26.1.5"}
    statement = provenance_statement(_realistic_input(builder=builder))
    assert _errors("slsa-provenance-v1", statement) == []
    definition = statement["predicate"]["buildDefinition"]
    assert definition["internalParameters"]["builder"] == builder
    assert definition["internalParameters"]["buildkit"] == "v0.13.2"
    assert not any(d.get("name") == "buildkit" for d in definition["resolvedDependencies"])


def test_schemas_are_not_vacuous() -> None:
    good = provenance_statement(_realistic_input())

    def broken(path: tuple[str, ...], value: Any) -> list[str]:
        data = json.loads(json.dumps(good))
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return _errors("slsa-provenance-v1", data)

    assert broken(("predicate", "runDetails", "metadata", "startedOn"), "2023-11-14 22:15")
    assert broken(("predicate", "runDetails", "metadata", "startedOn"), "2023-13-14T22:15:00Z")
    assert broken(("predicate", "runDetails", "metadata", "startedOn"), "2023-11-14T22:15:00+01:00")
    assert broken(("predicate", "buildDefinition", "internalParameter"), {})
    assert broken(("predicate", "buildDefinition", "buildType"), "not a uri")
    assert broken(("subject",), [{"name": IMAGE}])
    assert broken(("subject",), [{"name": IMAGE, "digest": {"sha256": "AB" * 32}}])
    assert broken(("_type",), "https://in-toto.io/Statement/v0.1")
    assert broken(("predicate", "runDetails", "builder"), {"version": {}})
    assert not broken(("predicate", "runDetails", "modelseal_note"), "extension fields are fine")


def test_in_toto_attestation_validators_accept_it() -> None:
    statement = provenance_statement(_realistic_input())
    pb = json_format.ParseDict(statement, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    # strict parse: an unknown field or a malformed timestamp raises
    prov = json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
    assert prov.build_definition.build_type == BUILD_TYPE
    assert prov.run_details.metadata.started_on.seconds == 1700000100
    assert len(prov.build_definition.resolved_dependencies) == 6
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(
            {**statement["predicate"], "buildDefinitionn": {}},
            provenance_pb2.Provenance(),
        )


def test_github_environment_mapping() -> None:
    p = _realistic_input()
    assert p.builder_id == "https://github.com/actions/runner/github-hosted"
    assert p.invocation_id == "https://github.com/octo/models/actions/runs/1234567890/attempts/2"
    assert (p.repository, p.ref, p.commit) == (
        "https://github.com/octo/models",
        "refs/heads/main",
        COMMIT,
    )
    assert p.workflow_path == ".github/workflows/seal.yml"
    params = provenance_statement(p)["predicate"]["buildDefinition"]
    assert params["externalParameters"]["workflow"] == {
        "repository": "https://github.com/octo/models",
        "ref": "refs/heads/main",
        "path": ".github/workflows/seal.yml",
    }
    assert params["externalParameters"]["buildArgs"] == {
        "APP_ENV": "prod",
        "PYTHON_VERSION": "3.12",
    }
    assert params["internalParameters"] == {
        "sourceDateEpoch": 1700000000,
        "buildx": "0.13.1",
        "buildkit": "v0.13.2",
        "github": {
            "event_name": "push",
            "repository_id": "42",
            "runner_environment": "github-hosted",
        },
    }
    # GHES server URL and an unknown runner kind: never claim github-hosted
    ghes = {**GITHUB_ENV, "GITHUB_SERVER_URL": "https://ghe.example.com/"}
    del ghes["RUNNER_ENVIRONMENT"]
    env = detect_build_environment(ghes)
    assert env.builder_id == "https://github.com/actions/runner/self-hosted"
    assert env.repository == "https://ghe.example.com/octo/models"
    assert env.invocation_id.startswith("https://ghe.example.com/octo/models/actions/runs/")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo), "PATH": "/usr/bin:/bin"},
    )


def test_local_fallback_uses_git_head_and_strips_credentials(tmp_path: Path) -> None:
    require(shutil.which("git") is not None, "git")
    repo = tmp_path / "src"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "work")
    (repo / "Dockerfile").write_text("FROM scratch\n")
    _git(repo, "add", "Dockerfile")
    _git(repo, "commit", "-q", "-m", "one")
    _git(
        repo, "remote", "add", "origin", "https://ci-bot:ghp_SECRETTOKEN@github.com/octo/models.git"
    )
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    p = _realistic_input(env={"PATH": "/usr/bin"}, repo_dir=repo)
    assert p.builder_id == LOCAL_BUILDER_ID
    assert p.invocation_id.startswith("urn:uuid:")
    assert (p.repository, p.ref, p.commit) == (
        "https://github.com/octo/models",
        "refs/heads/work",
        head,
    )
    statement = provenance_statement(p)
    assert "SECRET" not in statement_bytes(statement).decode()
    assert "workflow" not in statement["predicate"]["buildDefinition"]["externalParameters"]
    assert "github" not in statement["predicate"]["buildDefinition"]["internalParameters"]
    assert _errors("slsa-provenance-v1", statement) == []


def test_local_fallback_without_a_repository(tmp_path: Path) -> None:
    p = _realistic_input(env={}, repo_dir=tmp_path, invocation_id="local-run-1")
    assert (p.builder_id, p.invocation_id) == (LOCAL_BUILDER_ID, "local-run-1")
    assert (p.repository, p.ref, p.commit) == (None, None, None)
    statement = provenance_statement(p)
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert not any(d.get("uri", "").startswith("git+") for d in deps)
    assert "source" not in statement["predicate"]["buildDefinition"]["externalParameters"]
    assert _errors("slsa-provenance-v1", statement) == []


def test_statement_is_deterministic() -> None:
    one = _realistic_input()
    two = _realistic_input(build_args={"APP_ENV": "prod", "PYTHON_VERSION": "3.12"})
    assert provenance_statement(one) == provenance_statement(two)
    first = statement_bytes(provenance_statement(one))
    assert first == statement_bytes(provenance_statement(two))
    # canonical: sorted keys, no whitespace; the signer serializes identically
    assert first == json.dumps(json.loads(first), sort_keys=True, separators=(",", ":")).encode()
    assert statement_json(provenance_statement(one)) == first
    # the dict itself has a fixed, readable key order
    assert list(provenance_statement(one)) == ["_type", "subject", "predicateType", "predicate"]


def test_repository_urls_and_purls() -> None:
    assert (
        public_repository_url("git@github.com:octo/models.git") == "https://github.com/octo/models"
    )
    assert public_repository_url("ssh://git@gitlab.example.com:2222/g/p.git") == (
        "https://gitlab.example.com:2222/g/p"
    )
    assert public_repository_url("https://u:p@github.com/o/r/") == "https://github.com/o/r"
    assert public_repository_url("/srv/git/r.git") is None
    assert oci_purl("127.0.0.1:5000/seal/base:1", "sha256:" + "0a" * 32) == (
        "pkg:oci/base@sha256%3A" + "0a" * 32 + "?repository_url=127.0.0.1:5000/seal/base&tag=1"
    )
    assert oci_purl("ghcr.io/o/img@sha256:" + "0b" * 32, "0b" * 32) == (
        "pkg:oci/img@sha256%3A" + "0b" * 32 + "?repository_url=ghcr.io/o/img"
    )
    assert oci_purl("oci-layout:///x@sha256:" + "0c" * 32, "0c" * 32) is None


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="manifest digest"):
        dataclasses.replace(_realistic_input(), manifest_digest="sha256:xyz")
    with pytest.raises(ConfigError, match="RFC 3339"):
        _realistic_input(started_on="2023-11-14T22:15:00+00:00")
    with pytest.raises(ConfigError, match="SHA-256"):
        BaseImage("python:3", "sha256:short")
    with pytest.raises(ConfigError, match="policy"):
        _realistic_input(policy_sha256="nothex")


def _report() -> dict[str, Any]:
    return {
        "$schema": "https://modelseal.dev/schemas/report-v1.json",
        "schema_version": 1,
        "tool": {"name": "modelseal", "version": "0.1.0"},
        "command": "modelseal run",
        "policy": {"source": "modelseal.yml", "sha256": "ef" * 32},
        "started_at": "2023-11-14T22:15:00Z",
        "finished_at": "2023-11-14T22:16:00Z",
        "verdict": "PASSED",
        "exit_code": 0,
        "gates": [
            {"gate": "models", "status": "PASSED", "findings": []},
            {"gate": "vuln", "status": "PASSED", "findings": [{"id": "CVE-1"}, {"id": "CVE-2"}]},
        ],
    }


def test_scan_report_statement() -> None:
    statement = scan_report_statement(IMAGE, DIGEST, _report())
    assert _errors("in-toto-statement-v1", statement) == []
    assert statement["predicateType"] == SCAN_REPORT_PREDICATE
    predicate = statement["predicate"]
    assert (predicate["verdict"], predicate["exit_code"]) == ("PASSED", 0)
    assert predicate["finished_at"] == "2023-11-14T22:16:00Z"
    assert predicate["policy"] == {"sha256": "ef" * 32}
    assert predicate["gates"] == [
        {"gate": "models", "status": "PASSED", "findings": 0},
        {"gate": "vuln", "status": "PASSED", "findings": 2},
    ]
    assert predicate["report"] == _report()
    pb = json_format.ParseDict(statement, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    with pytest.raises(ConfigError, match="report"):
        scan_report_statement(IMAGE, DIGEST, {"gates": []})


def test_scan_report_statement_summarises_a_version_2_report() -> None:
    # What `modelseal run` writes now: the judged status and the findings decided (collected
    # and judge-made) are under each gate's decision.
    v1 = json.loads((REPO / "tests" / "data" / "report-v1.json").read_text())
    policy = load_policy_text(
        (REPO / "tests" / "data" / "report-v1.policy.yml").read_text(), "modelseal.yml"
    )
    verdict = judge(results_from_data(v1, "v1"), policy.policy, today=date(2026, 11, 23))
    report = report_to_json(Report(verdict, policy.source, policy.sha256, 0.0, 1.0, "0.2.0"))
    predicate = scan_report_statement(IMAGE, DIGEST, report)["predicate"]
    assert predicate["gates"] == [
        {"gate": "build", "status": "FAILED", "findings": 1},
        {"gate": "models", "status": "ERRORED", "findings": 0},
        {"gate": "sbom", "status": "SKIPPED", "findings": 0},
        {"gate": "trivy", "status": "FAILED", "findings": 4},
        {"gate": "pip-audit", "status": "PASSED", "findings": 1},
    ]
    assert predicate["report"] == report
    with pytest.raises(ConfigError, match="report"):
        scan_report_statement(IMAGE, DIGEST, {**report, "gates": [{"gate": "x", "decision": {}}]})


def test_sbom_statement() -> None:
    sbom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []}
    statement = sbom_statement(IMAGE, DIGEST, sbom)
    assert _errors("in-toto-statement-v1", statement) == []
    assert statement["predicateType"] == CYCLONEDX_PREDICATE
    assert statement["predicate"] == sbom
    assert statement["subject"] == [{"name": IMAGE, "digest": {"sha256": "ab" * 32}}]
    with pytest.raises(ConfigError, match="CycloneDX"):
        sbom_statement(IMAGE, DIGEST, {"spdxVersion": "SPDX-2.3"})


def test_release_inputs_are_external_parameters_only_when_given() -> None:
    plain = provenance_statement(_realistic_input())["predicate"]["buildDefinition"]
    params = plain["externalParameters"]
    assert not {"platforms", "labels", "annotations", "tags"} & set(params)
    assert params["policy"] == {"path": "modelseal.yml", "sha256": "ef" * 32}
    given = _realistic_input(
        policy_ref="main",
        platforms=["linux/amd64", "linux/arm64"],
        labels={"org.opencontainers.image.version": "1.2", "org.opencontainers.image.title": "t"},
        annotations={"index:org.opencontainers.image.title": "t"},
        tags=["1.2", "latest"],
    )
    params = provenance_statement(given)["predicate"]["buildDefinition"]["externalParameters"]
    assert params["policy"] == {"path": "modelseal.yml", "sha256": "ef" * 32, "ref": "main"}
    assert params["platforms"] == ["linux/amd64", "linux/arm64"]
    assert list(params["labels"]) == [
        "org.opencontainers.image.title", "org.opencontainers.image.version",
    ]  # fmt: skip
    assert params["annotations"] == {"index:org.opencontainers.image.title": "t"}
    assert params["tags"] == ["1.2", "latest"]
    assert _errors("slsa-provenance-v1", provenance_statement(given)) == []


@pytest.mark.parametrize(
    "value", ["sha256:" + "a" * 64 + "\n", "a" * 64 + "\n", "sha256:" + "A" * 64]
)
def test_a_digest_with_a_trailing_newline_is_refused(value: str) -> None:
    # "$" matches before a final newline; the one digest check (oci.DIGEST_RE) does not.
    with pytest.raises(ConfigError, match="not a SHA-256 digest"):
        BaseImage("base", value)
    with pytest.raises(ConfigError, match="not a SHA-256 digest"):
        ModelFile("model.bin", value, 1)


# --- what a rebuild needs (issue 13 §1) ---------------------------------------------------

#: NORMALIZATION_VERSION and the SHA-256 of the module that defines the normalization, as of
#: that version. Change the module and this test fails until both are looked at.
PINNED_NORMALIZATION = (1, "4690ade414492dec6975f4a574d8d25a06ab1f2f03688201af4612151b850789")


def _normalization_source_sha256() -> str:
    # The whole file except the line that sets the version (so that bumping it is one edit of
    # the module and one of PINNED_NORMALIZATION).
    text = Path(context_module.__file__ or "").read_text(encoding="utf-8")
    kept = [ln for ln in text.splitlines() if not ln.startswith("NORMALIZATION_VERSION =")]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def test_the_normalization_version_is_bumped_with_the_normalization() -> None:
    version, digest = PINNED_NORMALIZATION
    actual = _normalization_source_sha256()
    assert (NORMALIZATION_VERSION, actual) == (version, digest), (
        "src/modelseal/imagebuild/context.py changed. If the change can change the normalized "
        "build context (what is copied, its names, modes, times, or the .dockerignore "
        "semantics), bump NORMALIZATION_VERSION there; then, in any case, set "
        f"PINNED_NORMALIZATION in {Path(__file__).name} to ({NORMALIZATION_VERSION}, "
        f'"{actual}").'
    )


def _repository(tmp_path: Path) -> Path:
    require(shutil.which("git") is not None, "git")
    repo = tmp_path / "checkout"
    (repo / "services" / "api" / "docker").mkdir(parents=True)
    (repo / "vendor" / "assets").mkdir(parents=True)
    (repo / "services" / "api" / "docker" / "Dockerfile").write_text("FROM base\n")
    (repo / "vendor" / "assets" / "a.txt").write_text("a\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    return repo


def test_context_and_dockerfile_are_recorded_inside_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repository(tmp_path)
    # The checkout reached through a symbolic link, and run from a directory below its top:
    # the paths are still the repository's, never the host's.
    link = tmp_path / "link"
    link.symlink_to(repo)
    monkeypatch.chdir(link / "services")
    facts = _source_facts(Path("api"), Path("api/docker/Dockerfile"), {})
    assert facts == {
        "source.context": "services/api",
        "source.dockerfile": "services/api/docker/Dockerfile",
    }
    assert path_in_repository(link) == "."
    assert path_in_repository(tmp_path) is None  # not in a work tree: nothing claimed
    p = _realistic_input(env={"PATH": "/usr/bin"}, repo_dir=repo, **rebuild_inputs(facts))
    statement = provenance_statement(p)
    source = statement["predicate"]["buildDefinition"]["externalParameters"]["source"]
    assert source == {
        "ref": "refs/heads/main",
        "context": "services/api",
        "dockerfile": "services/api/docker/Dockerfile",
    }
    assert str(tmp_path) not in statement_bytes(statement).decode()
    assert _errors("slsa-provenance-v1", statement) == []
    with pytest.raises(ConfigError, match="inside the repository"):
        _realistic_input(context_path="/abs/path")
    with pytest.raises(ConfigError, match="inside the repository"):
        _realistic_input(dockerfile_path="../Dockerfile")


def test_named_build_contexts_are_recorded_by_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repository(tmp_path)
    monkeypatch.chdir(repo)
    layout_digest = "sha256:" + "0d" * 32
    pinned_image = "127.0.0.1:5000/seal/base@sha256:" + "0e" * 32
    contexts = {
        "base": f"oci-layout://{tmp_path}/layouts/base@{layout_digest}",
        "tools": f"docker-image://{pinned_image}",
        "assets": "vendor/assets",
        "outside": str(tmp_path),
    }
    facts = _source_facts(Path("services/api"), Path("services/api/docker/Dockerfile"), contexts)
    assert facts["build_context.base"] == f"oci-layout {layout_digest}"
    facts["base.0"] = f"base {layout_digest}"
    facts["base.1"] = f"tools {pinned_image.rpartition('@')[2]}"
    p = _realistic_input(base_images=run_bases(facts), **rebuild_inputs(facts))
    definition = provenance_statement(p)["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["buildContexts"] == {
        "assets": {"type": "local", "path": "vendor/assets"},
        "base": {"type": "oci-layout", "digest": layout_digest},
        "outside": {"type": "host", "path": str(tmp_path)},
        "tools": {"type": "docker-image", "ref": pinned_image, "digest": "sha256:" + "0e" * 32},
    }
    by_name = {d.get("name"): d for d in definition["resolvedDependencies"]}
    # The layout's base: its manifest digest, no host path and no made-up registry purl.
    assert by_name["base"] == {
        "name": "base",
        "digest": {"sha256": "0d" * 32},
        "annotations": {"buildContext": "oci-layout"},
    }
    assert by_name["tools"]["uri"] == (
        "pkg:oci/base@sha256%3A" + "0e" * 32 + "?repository_url=127.0.0.1:5000/seal/base"
    )
    assert _errors("slsa-provenance-v1", provenance_statement(p)) == []
    with pytest.raises(ConfigError, match="build context base"):
        _realistic_input(build_contexts={"base": "oci-layout sha256:short"})


def test_the_normalization_version_is_an_internal_parameter() -> None:
    facts = {"context.normalization": str(NORMALIZATION_VERSION), "layout.finalizer": "1"}
    p = _realistic_input(**rebuild_inputs(facts))
    internal = provenance_statement(p)["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["contextNormalization"] == NORMALIZATION_VERSION
    # The layout finalizer that clamped and compressed the new layers, likewise.
    assert internal["layoutFinalizer"] == 1
    assert internal["sourceDateEpoch"] == 1700000000
    # Absent from an older run's facts: absent from the provenance, not made up.
    internal = provenance_statement(_realistic_input())["predicate"]["buildDefinition"]
    assert "contextNormalization" not in internal["internalParameters"]
    assert "layoutFinalizer" not in internal["internalParameters"]


def test_a_url_build_context_is_recorded_without_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token in a build-context URL (user info or query) reaches neither report.json's facts
    nor the signed provenance; the repository and ref stay."""
    repo = _repository(tmp_path)
    monkeypatch.chdir(repo)
    contexts = {
        "src": "https://x-access-token:ghs_SECRET@github.com/o/r.git?token=QSECRET#main",
        "tools": "docker-image://127.0.0.1:5000/seal/base@sha256:" + "0e" * 32,
    }
    facts = _source_facts(Path("services/api"), Path("services/api/docker/Dockerfile"), contexts)
    assert facts["build_context.src"] == "https://github.com/o/r.git#main"
    assert facts["build_context.tools"] == contexts["tools"]
    statement = provenance_statement(_realistic_input(**rebuild_inputs(facts)))
    text = statement_bytes(statement).decode()
    assert "SECRET" not in text and "github.com/o/r.git#main" in text


def test_a_context_reached_through_a_link_out_of_the_repository_is_not_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sub/link/..` is, for the build, the directory above the link's target, outside the
    work tree: nothing is recorded, rather than `sub`."""
    repo = _repository(tmp_path)
    (tmp_path / "other" / "ctx").mkdir(parents=True)
    (repo / "vendor" / "link").symlink_to(tmp_path / "other" / "ctx")
    monkeypatch.chdir(repo)
    assert path_in_repository(Path("vendor/link/..")) is None
    assert path_in_repository(Path("vendor/link")) is None
    assert path_in_repository(Path("vendor/assets/..")) == "vendor"


def test_the_layer_compression_is_an_external_parameter() -> None:
    facts = {"compression": "zstd", "compression.level": "3", "compression.force": "true"}
    p = _realistic_input(**rebuild_inputs(facts))
    statement = provenance_statement(p)
    external = statement["predicate"]["buildDefinition"]["externalParameters"]
    assert external["compression"] == {"type": "zstd", "level": 3, "force": True}
    assert _errors("slsa-provenance-v1", statement) == []
    p = _realistic_input(**rebuild_inputs({"compression": "gzip", "compression.force": "false"}))
    external = provenance_statement(p)["predicate"]["buildDefinition"]["externalParameters"]
    assert external["compression"] == {"type": "gzip", "force": False}
    # An older run's facts record none: the provenance does not make one up.
    external = provenance_statement(_realistic_input())["predicate"]["buildDefinition"]
    assert "compression" not in external["externalParameters"]
    with pytest.raises(ConfigError, match="not valid for gzip"):
        _realistic_input(compression={"type": "gzip", "level": 12, "force": False})
