"""The build gate against the real BuildKit (a private dockerd with the containerd store)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from tests.support import EPOCH, REPO
from tests.support.reports import report_gates
from tests.support.tools import docker_cli

from modelseal._cli import main
from modelseal.imagebuild.bases import classify_bases
from modelseal.imagebuild.context import NORMALIZATION_VERSION
from modelseal.imagebuild.dockerfile import parse_dockerfile
from modelseal.imagebuild.engine import PrivateEngine
from modelseal.imagebuild.gate import _unpinned_finding
from modelseal.oci import platform_manifests

pytestmark = pytest.mark.engine

REPORT_SCHEMA = json.loads((REPO / "src/modelseal/reports/report.schema.json").read_text())
STRICT = "version: 1\nbuild:\n  rebuild_check: true\n  require_pinned_base: true\n"


def _build(
    ctx: Path, out: Path, policy_text: str, *extra: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict, str]:
    policy = out.parent / f"{out.name}-policy.yml"
    policy.write_text(policy_text)
    code = main(["build", str(ctx), "--policy", str(policy), "-o", str(out),
                 "--source-date-epoch", str(EPOCH), *extra])  # fmt: skip
    captured = capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    return code, report, captured.out + captured.err


def _gate(report: dict) -> dict:
    (gate,) = report_gates(report).values()
    return gate


def _app(tmp_path: Path, dockerfile: str, files: dict[str, bytes] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {"model.bin": b"\x00weights\x01" * 100}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
    return ctx


def test_example_builds_to_the_same_digest_and_only_content_changes_it(
    example_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "app"
    shutil.copytree(REPO / "examples" / "app", app)
    args = ("--build-context", f"base={example_base}")
    code1, r1, out1 = _build(app, tmp_path / "o1", STRICT, *args, capsys=capsys)
    assert code1 == 0, out1
    g1 = _gate(r1)
    assert g1["status"] == "PASSED" and g1["facts"]["rebuild.reproducible"] == "yes"
    digest = g1["facts"]["image.digest"]
    assert digest.startswith("sha256:") and g1["facts"]["rebuild.digest"] == digest
    assert g1["facts"]["source_date_epoch"] == str(EPOCH)
    assert g1["facts"]["base.0"].endswith(example_base.rpartition("@")[2])

    # Touch every file (new mtimes, other modes): nothing changes.
    for p in app.rglob("*"):
        os.utime(p, (1_900_000_000, 1_900_000_000))
        if p.is_file():
            p.chmod(0o600)
    code2, r2, out2 = _build(app, tmp_path / "o2", STRICT, *args, capsys=capsys)
    assert code2 == 0, out2
    assert _gate(r2)["facts"]["image.digest"] == digest

    # One byte of the model: a different image.
    model = app / "model" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01
    model.write_bytes(bytes(data))
    code3, r3, out3 = _build(app, tmp_path / "o3", STRICT, *args, capsys=capsys)
    assert code3 == 0, out3
    assert _gate(r3)["facts"]["image.digest"] != digest


def test_rebuild_mismatch_names_the_differing_path(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _app(
        tmp_path,
        "FROM base\nCOPY model.bin /m/model.bin\nRUN cat /proc/sys/kernel/random/uuid > /build-stamp\n",
    )
    code, report, out = _build(
        ctx, tmp_path / "o", STRICT, "--build-context", f"base={busybox_base}", capsys=capsys
    )
    assert code == 1, out
    gate = _gate(report)
    assert gate["status"] == "FAILED"
    (finding,) = gate["findings"]
    assert finding["id"] == "build.not-reproducible"
    assert finding["decision"] == "fail"
    assert finding["location"] == "layer 3"
    assert "/build-stamp (content" in finding["evidence"]["layer 3"]
    assert "/build-stamp" in finding["title"]
    assert "/m/model.bin" not in json.dumps(finding)
    assert "build.not-reproducible" in out and "FAILED" in out


def test_run_steps_see_source_date_epoch(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A RUN step that writes SOURCE_DATE_EPOCH is reproducible only because modelseal injects
    # `ARG SOURCE_DATE_EPOCH` into the stage.
    ctx = _app(tmp_path, 'FROM base\nRUN echo "built at $SOURCE_DATE_EPOCH" > /stamp\n')
    code, report, out = _build(
        ctx, tmp_path / "o", STRICT, "--build-context", f"base={busybox_base}", capsys=capsys
    )
    assert code == 0, out
    layout = Path(_gate(report)["artifacts"]["oci_layout"])
    manifest = json.loads(
        (layout / "blobs/sha256" / _gate(report)["facts"]["image.digest"][7:]).read_bytes()
    )
    import tarfile

    from modelseal.oci import open_layer

    layer = manifest["layers"][-1]  # zstd, the default compression
    blob = layout / "blobs/sha256" / layer["digest"][7:]
    with (
        open_layer(blob, layer["mediaType"]) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        member = next(m for m in tar if m.name == "stamp")
        data = tar.extractfile(member)
        assert data is not None
        assert data.read() == f"built at {EPOCH}\n".encode()


def test_facts_name_what_a_rebuild_needs(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Built from a sub-directory of a git work tree: the context and Dockerfile are recorded as
    # the repository's paths, the layout base by its manifest digest, with the normalization
    # version — not the host's directories.
    repo = tmp_path / "repo"
    (repo / "svc").mkdir(parents=True)
    (repo / "svc" / "Dockerfile").write_text("FROM base\nCOPY model.bin /m/model.bin\n")
    (repo / "svc" / "model.bin").write_bytes(b"\x00weights")
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True, env=env)
    code, report, out = _build(
        repo / "svc", tmp_path / "o", "version: 1\n", "--build-context", f"base={busybox_base}",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    facts = _gate(report)["facts"]
    assert facts["source.context"] == "svc"
    assert facts["source.dockerfile"] == "svc/Dockerfile"
    assert facts["build_context.base"] == "oci-layout " + busybox_base.rpartition("@")[2]
    assert facts["context.normalization"] == str(NORMALIZATION_VERSION)


@pytest.fixture(scope="session")
def tagged_busybox(engine: PrivateEngine, busybox_base: str) -> str:
    """The busybox base loaded into the engine's image store under a tag (no registry)."""
    tag = "modelseal-test/busybox:1"
    ctx = Path(busybox_base.removeprefix("oci-layout://").rpartition("@")[0]).parent / "tagctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM base\n")
    subprocess.run(
        [docker_cli(), "buildx", "build", "--pull=false", "--provenance=false", "--network", "none",
         "--build-context", f"base={busybox_base}", "--load", "-t", tag, str(ctx)],
        check=True, capture_output=True,
    )  # fmt: skip
    return tag


def test_unpinned_from_is_a_finding_naming_the_line(
    tagged_busybox: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _app(
        tmp_path, f"# app\nARG BASE={tagged_busybox}\n\nFROM ${{BASE}} AS app\nCOPY model.bin /m\n"
    )
    policy = "version: 1\nbuild:\n  rebuild_check: false\n"
    code, report, out = _build(ctx, tmp_path / "o", policy, capsys=capsys)
    assert code == 1, out
    (finding,) = _gate(report)["findings"]
    assert finding["id"] == "build.unpinned-base"
    assert finding["location"].endswith("Dockerfile:4")
    assert finding["subject"] == tagged_busybox
    assert "Dockerfile:4" in out

    lax = policy + "  require_pinned_base: false\n"
    code, report, out = _build(ctx, tmp_path / "o2", lax, capsys=capsys)
    assert code == 0, out
    assert _gate(report)["findings"][0]["decision"] == "warn"


def test_dockerfile_syntax_error_errors_with_the_users_line(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _app(tmp_path, "FROM base\nCOPY model.bin /m\nFOOBAR nonsense\n")
    code, report, out = _build(
        ctx, tmp_path / "o", STRICT, "--build-context", f"base={busybox_base}", capsys=capsys
    )
    assert code == 3, out
    gate = _gate(report)
    assert gate["status"] == "ERRORED"
    assert "line 3" in gate["error"] and "FOOBAR" in gate["error"].upper()
    assert "line 5" not in gate["error"], "line numbers must be the user's, not the injected file's"
    assert "Traceback" not in out


def test_engine_unreachable_exits_3_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    ctx = _app(tmp_path, "FROM scratch\nCOPY model.bin /m\n")
    code, report, out = _build(ctx, tmp_path / "o", STRICT, capsys=capsys)
    assert code == 3
    error = _gate(report)["error"]
    assert "cannot reach a Docker engine" in error and "nothing.sock" in error
    assert "modelseal engine start" in error
    assert "Traceback" not in out
    assert report["verdict"] == "ERRORED"


def test_missing_build_context_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["build", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert code == 2
    assert "is not a directory" in capsys.readouterr().err


def test_platform_manifests_reads_the_manifest_facts_sorted_by_platform() -> None:
    facts = {
        "image.digest": "sha256:top",
        "image.manifest.linux/arm64": "sha256:b",
        "base.0": "busybox sha256:c",
        "image.manifest.linux/amd64": "sha256:a",
    }
    assert list(platform_manifests(facts).items()) == [
        ("linux/amd64", "sha256:a"),
        ("linux/arm64", "sha256:b"),
    ]
    assert platform_manifests({}) == {}


@pytest.mark.parametrize(
    ("value", "pinned"),
    [
        ("docker-image://busybox@sha256:" + "a" * 64, True),
        ("docker-image://busybox@sha256:" + "a" * 63, False),
        ("docker-image://busybox@sha256:latest", False),
        ("docker-image://busybox:1.36", False),
    ],
)
def test_a_docker_image_context_is_pinned_only_by_a_well_formed_digest(
    value: str, pinned: bool
) -> None:
    contexts = {"base": value}
    (base,) = classify_bases(parse_dockerfile("FROM base\n", "Dockerfile"), contexts)
    assert base.kind == "context"
    finding = _unpinned_finding(base, "Dockerfile", contexts)
    assert (finding is None) is pinned
