"""The post-build gates on a real BuildKit image: models-image and pip-audit share one pass over
the layers (each layer decompressed once between them) with the same results as each gate
reading the image on its own, and syft skips the model paths models-image checks while the SBOM
keeps every package and the pinned models (modelseal.postbuild, modelseal.sbom.gate)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from examples.offline.osv_server import start_osv_server
from tests.support import EPOCH
from tests.support.model_files import safetensors_bytes

from modelseal import imagefs
from modelseal._tools import find_tool
from modelseal.findings import GateResult, Status
from modelseal.imagebuild.finalize import MODEL_LAYERS_FACT
from modelseal.imagebuild.gate import BuildGate
from modelseal.imagefs import ImageFs
from modelseal.models.gate import ModelsGate, ModelsImageGate, _check_image, _image_dirs
from modelseal.models.lock import load_lock
from modelseal.oci import OciLayout, platform_manifests
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import LoadedPolicy, load_policy_text
from modelseal.postbuild import image_fs
from modelseal.sbom.gate import SbomGate, scan
from modelseal.scanview import scan_layout
from modelseal.vuln.pip_audit import PipAuditGate
from modelseal.vuln.site_packages import packages_from

pytestmark = pytest.mark.engine

DIST = "/usr/lib/python3/dist-packages"
SITE = "/usr/local/lib/python3.11/site-packages"


def _meta(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n"


@dataclass
class Built:
    ctx: Path
    policy: LoadedPolicy
    options: RunOptions
    results: dict[str, GateResult]
    opened: dict[str, int]  # layer blob → times opened while the gates ran
    layout: OciLayout
    manifest: str


@pytest.fixture(scope="module")
def built(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("postbuild")
    ctx = root / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "a.safetensors").write_bytes(safetensors_bytes([1.0, 2.0]))
    (ctx / "model" / "b.safetensors").write_bytes(safetensors_bytes([3.0]))
    for name, version in (("requests", "2.19.0"), ("gone", "1.0"), ("pkg0", "1.0")):
        (ctx / f"{name}.METADATA").write_text(_meta(name, version))
    (ctx / "Dockerfile").write_text(
        "FROM base\n"
        f"COPY requests.METADATA {DIST}/requests-2.19.0.dist-info/METADATA\n"
        f"COPY gone.METADATA {DIST}/gone-1.0.dist-info/METADATA\n"
        f"COPY pkg0.METADATA {SITE}/pkg0-1.0.dist-info/METADATA\n"
        "COPY model/ /app/model/\n"
        # A later layer: alters a pinned file, adds a package under the model directory (syft
        # would report it; models-image does), deletes a package (a whiteout).
        "RUN echo tampered >> /app/model/a.safetensors"
        " && mkdir -p /app/model/evil-6.6.dist-info"
        " && printf 'Metadata-Version: 2.1\\nName: evil\\nVersion: 6.6\\n' >"
        " /app/model/evil-6.6.dist-info/METADATA"
        f" && rm -r {DIST}/gone-1.0.dist-info\n"
    )
    from modelseal._cli import main

    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    opened: dict[str, int] = {}
    real = imagefs.open_layer

    def counting(path: Path, media: str) -> object:
        opened[Path(path).name] = opened.get(Path(path).name, 0) + 1
        return real(path, media)

    with start_osv_server() as (osv_url, _stop):
        policy = load_policy_text(
            "version: 1\nbuild:\n  rebuild_check: false\n"
            "models:\n  image_paths: {model: /app/model}\n"
            f"pip_audit:\n  osv_url: {osv_url}\n",
            "policy.yml",
        )
        options = RunOptions(
            context=ctx, build_contexts={"base": busybox_base}, source_date_epoch=EPOCH,
            out_dir=root / "out",
        )  # fmt: skip
        mp = pytest.MonkeyPatch()
        mp.setattr(imagefs, "open_layer", counting)
        try:
            res = run_pipeline(
                [ModelsGate(), BuildGate(), ModelsImageGate(), PipAuditGate(), SbomGate()],
                policy, options, SourceDateEpoch(EPOCH, "option"),
            )  # fmt: skip
        finally:
            mp.undo()
    assert not res.internal_error
    results = {r.gate: r for r in res.results}
    build = results["build"]
    assert build.status is Status.PASSED, build.error
    (manifest,) = platform_manifests(build.facts).values()
    yield Built(ctx, policy, options, results, opened,
                OciLayout(Path(build.artifacts["oci_layout"])), manifest)  # fmt: skip


def test_each_layer_is_decompressed_once_by_models_image_and_pip_audit(built: Built) -> None:
    for gate in ("models-image", "pip-audit"):
        assert built.results[gate].status is Status.PASSED, built.results[gate].error
    layers = [d["digest"].removeprefix("sha256:")
              for d in built.layout.manifest(built.manifest)["layers"]]  # fmt: skip
    assert len(layers) >= 5
    # Every layer read, and none twice, over both gates together.
    assert built.opened == dict.fromkeys(layers, 1)


def test_the_shared_pass_finds_what_each_gate_found_reading_alone(
    built: Built, tmp_path: Path
) -> None:
    # The gates' own results.
    ids = sorted((f.id, f.subject) for f in built.results["models-image"].findings)
    assert ids == [
        ("models.image-changed", "/app/model/a.safetensors"),
        ("models.image-extra", "/app/model/evil-6.6.dist-info/METADATA"),
    ]
    assert built.results["pip-audit"].facts["pip_audit.packages.linux/amd64"] == "2"
    # The same as before: a view of its own per gate, the model paths hashed while applying,
    # the metadata read again from its layers.
    lock = load_lock(built.ctx / "models.lock")
    expected = {f"app/model/{e.path.rpartition('/')[2]}": e for e in lock.entries}
    dirs = _image_dirs({"model": "/app/model"}, {e.path for e in lock.entries})
    alone = ImageFs.build(built.layout, built.manifest,
                          hash_paths=lambda n: n.startswith("app/model/"))  # fmt: skip
    before = _check_image(alone, "linux/amd64", expected, dirs, [])
    assert sorted((f.id, f.subject) for f in before) == ids
    ctx = Context(policy=built.policy, options=built.options, epoch=SourceDateEpoch(EPOCH, "x"),
                  work_dir=tmp_path / "work", out_dir=tmp_path / "out")  # fmt: skip
    ctx.work_dir.mkdir()
    shared = image_fs(ctx, built.layout, built.manifest)
    assert image_fs(ctx, built.layout, built.manifest) is shared  # once per run
    now = _check_image(shared, "linux/amd64", expected, dirs, [])
    assert [f.to_json() for f in now] == [f.to_json() for f in before]
    old = packages_from(ImageFs.build(built.layout, built.manifest), tmp_path / "old")
    new = packages_from(shared, tmp_path / "new")
    assert old == new
    assert sorted((p.name, p.version, p.site_dir) for p in new) == [
        ("pkg0", "1.0", SITE.lstrip("/")), ("requests", "2.19.0", DIST.lstrip("/")),
    ]  # fmt: skip
    for p in new:
        meta = f"{p.meta_path}/METADATA"
        assert (tmp_path / "new" / meta).read_bytes() == (tmp_path / "old" / meta).read_bytes()
    assert sum(shared.reads.values()) == len(shared.layers)


def test_syft_skips_the_model_paths_and_the_sbom_keeps_packages_and_models(
    built: Built, tmp_path: Path
) -> None:
    sbom = built.results["sbom"]
    assert sbom.status is Status.PASSED, sbom.error
    assert sbom.facts["sbom.excluded"] == "/app/model,/app/model/**"
    doc = json.loads(Path(sbom.artifacts["sbom"]).read_text())
    names = {(c["type"], c["name"]) for c in doc["components"]}
    assert ("library", "requests") in names and ("library", "pkg0") in names
    models = sorted(n for t, n in names if t == "machine-learning-model")
    assert models == ["a.safetensors", "b.safetensors"]  # from models.json, not from syft
    assert not any(n == "evil" for _, n in names)
    # Without the exclusion syft reads the model directory and reports what is there: the
    # exclusion is what keeps it out (and models-image reports it, above).
    syft = find_tool("syft", env_var="MODELSEAL_SYFT", hint="")
    full = scan(syft, built.layout.path, tmp_path, None)
    assert any(c.get("name") == "evil" for c in full["components"])


def test_syft_is_not_given_the_layers_that_hold_only_model_files(
    built: Built, tmp_path: Path
) -> None:
    """The layout finalizer marks the COPY of model/ as holding only model files; syft scans
    the image without it (no 2 GiB layer decompressed and copied to skip it) and finds the
    same packages as on the whole image with the model paths excluded (issue 16)."""
    build, sbom = built.results["build"], built.results["sbom"]
    (platform,) = platform_manifests(build.facts)
    layers = [d["digest"] for d in built.layout.manifest(built.manifest)["layers"]]
    model_only = build.facts[MODEL_LAYERS_FACT + platform].split(",")
    # The RUN layer after it writes below /app/model too, but also deletes a package
    # elsewhere (a whiteout): it is scanned.
    assert model_only == [layers[-2]]
    assert sbom.facts["sbom.skipped_layers"] == layers[-2]
    view = scan_layout(built.layout, built.manifest, tmp_path / "view", skip=model_only)
    view_manifest = OciLayout(view).platform_manifests()[0].digest
    assert [d["digest"] for d in OciLayout(view).manifest(view_manifest)["layers"]] == (
        layers[:-2] + layers[-1:]
    )
    syft = find_tool("syft", env_var="MODELSEAL_SYFT", hint="")
    excluded = ["/app/model", "/app/model/**"]
    seen = scan(syft, view, tmp_path, None, excluded)
    whole = scan(syft, built.layout.path, tmp_path, None, excluded)

    def packages(doc: dict[str, object]) -> list[tuple[object, ...]]:
        comps = doc["components"]
        assert isinstance(comps, list)
        return sorted((c.get("type"), c.get("name"), c.get("version"), c.get("purl"))
                      for c in comps)  # fmt: skip

    assert packages(seen) == packages(whole)
    assert ("library", "requests") in {(t, n) for t, n, _, _ in packages(seen)}
