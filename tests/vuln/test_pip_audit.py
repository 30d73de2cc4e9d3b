"""The pip-audit gate: real pip-audit against the offline OSV server, images built by BuildKit.

Non-engine tests drive :func:`run_pip_audit` on hand-made site-packages directories; engine tests
run the whole gate (through the pipeline, so errors become ERRORED) on real images.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.registry import free_port
from tests.support import EPOCH
from tests.support.gates import StubBuild
from tests.support.layouts import M, layer, make_layout
from tests.support.tools import docker_cli

from modelseal.errors import GateError, ToolError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.oci import OciLayout
from modelseal.pipeline import RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import load_policy_text
from modelseal.vuln.osv import AdvisoryLookup, OsvEndpoint, severity_of
from modelseal.vuln.pip_audit import PIP_AUDIT_ENV, PipAuditGate, run_pip_audit
from modelseal.vuln.site_packages import InstalledPackage, extract_packages

SITE = "usr/lib/python3.11/site-packages"
VULNERABLE = {"requests": "2.19.0", "urllib3": "1.26.4", "six": "1.16.0"}


def dist_info(site: Path, name: str, version: str, dirname: str | None = None) -> Path:
    d = site / (dirname or f"{name}-{version}.dist-info")
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (d / "INSTALLER").write_text("pip\n")
    (d / "RECORD").write_text(f"{d.name}/METADATA,,\n{d.name}/INSTALLER,,\n{d.name}/RECORD,,\n")
    return d


def packages(site_image_path: str, pkgs: dict[str, str]) -> list[InstalledPackage]:
    return [
        InstalledPackage(n, v, site_image_path, f"{site_image_path}/{n}-{v}.dist-info")
        for n, v in pkgs.items()
    ]


@pytest.fixture(scope="module")
def osv() -> Iterator[str]:
    with start_osv_server() as (url, _stop):
        yield url


def audit(tmp_path: Path, url: str, pkgs: dict[str, str], tool: str | None = None) -> list:
    site = tmp_path / "site"
    for n, v in pkgs.items():
        dist_info(site, n, v)
    endpoint = OsvEndpoint.from_policy(f"{url}/v1/query")
    exe = tool or str(Path(sys.executable).parent / "pip-audit")
    return run_pip_audit(
        exe, site, endpoint, tmp_path / "cache", packages(SITE, pkgs), AdvisoryLookup(endpoint)
    )


# --- the OSV server -----------------------------------------------------------------------------


def test_osv_server_answers_queries_and_records(osv: str) -> None:
    def query(name: str, version: str) -> list[str]:
        body = json.dumps({"package": {"name": name, "ecosystem": "PyPI"}, "version": version})
        with urllib.request.urlopen(f"{osv}/v1/query", data=body.encode()) as r:
            return sorted(v["id"] for v in json.loads(r.read()).get("vulns", []))

    assert query("requests", "2.19.0") == ["GHSA-x84v-xcm2-53pg", "PYSEC-2018-28"]
    assert query("Requests", "2.19.1") == ["GHSA-x84v-xcm2-53pg", "PYSEC-2018-28"]
    assert query("requests", "2.20.0") == []
    assert query("urllib3", "1.26.4") == ["PYSEC-2021-108"]
    assert query("urllib3", "1.26.5") == []
    with urllib.request.urlopen(f"{osv}/v1/vulns/CVE-2021-33503") as r:
        assert json.loads(r.read())["id"] == "PYSEC-2021-108"


# --- pip-audit on a directory -------------------------------------------------------------------


def test_pip_audit_reads_dist_info_via_path(tmp_path: Path, osv: str) -> None:
    deps = audit(tmp_path, osv, VULNERABLE)
    got = {d["name"]: (d["version"], sorted(v["id"] for v in d["vulns"])) for d in deps}
    assert got == {
        "requests": ("2.19.0", ["PYSEC-2018-28"]),  # GHSA merged into it as an alias
        "urllib3": ("1.26.4", ["PYSEC-2021-108"]),
        "six": ("1.16.0", []),
    }


def test_service_down_errors(tmp_path: Path) -> None:
    with pytest.raises(GateError, match="could not be reached"):
        audit(tmp_path, f"http://127.0.0.1:{free_port()}", VULNERABLE)


def test_http_error_for_one_package_errors_naming_it(tmp_path: Path, osv: str) -> None:
    with pytest.raises(GateError, match=r"answered an error for fail-500 1\.0 .*500 Server Error"):
        audit(tmp_path, osv, {"six": "1.16.0", "fail-500": "1.0"})


def test_package_pip_audit_skips_errors_naming_it(tmp_path: Path, osv: str) -> None:
    site = tmp_path / "site"
    dist_info(site, "six", "1.16.0")
    dist_info(site, "weird", "not a version!!", dirname="weird.dist-info")
    endpoint = OsvEndpoint.from_policy(f"{osv}/v1/query")
    pkgs = [
        *packages(SITE, {"six": "1.16.0"}),
        InstalledPackage("weird", "not a version!!", SITE, f"{SITE}/weird.dist-info"),
    ]
    with pytest.raises(GateError, match=r"could not audit every package: weird: .*invalid version"):
        run_pip_audit(
            str(Path(sys.executable).parent / "pip-audit"), site, endpoint, tmp_path / "c", pkgs,
            AdvisoryLookup(endpoint),
        )  # fmt: skip


def test_package_missing_from_the_report_errors(tmp_path: Path, osv: str) -> None:
    site = tmp_path / "site"
    dist_info(site, "six", "1.16.0")
    endpoint = OsvEndpoint.from_policy(f"{osv}/v1/query")
    pkgs = [*packages(SITE, {"six": "1.16.0"}), *packages(SITE, {"ghost": "1.0"})]
    with pytest.raises(GateError, match=r"ghost 1\.0 .* is missing from its report"):
        run_pip_audit(
            str(Path(sys.executable).parent / "pip-audit"), site, endpoint, tmp_path / "c", pkgs,
            AdvisoryLookup(endpoint),
        )  # fmt: skip


def fake_tool(tmp_path: Path, body: str) -> str:
    """A test double standing in for a crashing / garbage-printing pip-audit."""
    script = tmp_path / "fake-pip-audit"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(
    "body",
    [
        "echo 'this is not json'; exit 0",
        'echo \'{"dependencies": "nope"}\'; exit 1',
        "echo '{\"dependencies\": []}'; exit 1",  # exit 1 without any vulnerability
        "echo Segmentation fault >&2; exit 139",
        "kill -9 $$",
    ],
)
def test_garbage_or_crash_errors(tmp_path: Path, osv: str, body: str) -> None:
    with pytest.raises(ToolError):
        audit(tmp_path, osv, {"six": "1.16.0"}, tool=fake_tool(tmp_path, body))


def test_severity_sources() -> None:
    ghsa = {
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}]
    }
    high = severity_of([{"id": "PYSEC"}, ghsa])
    assert (high.severity, high.source, high.cvss) == (Severity.HIGH, "osv:cvss", 7.5)
    crit = severity_of(
        [
            ghsa,
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
                ]
            },
        ]
    )
    assert (crit.severity, crit.cvss) == (Severity.CRITICAL, 9.8)
    db = severity_of([{"database_specific": {"severity": "MODERATE"}}])
    assert (db.severity, db.source) == (Severity.MEDIUM, "osv:database_specific")
    assert severity_of([{"severity": [{"type": "CVSS_V4", "score": "x"}]}]).severity is (
        Severity.UNKNOWN
    )
    assert severity_of([]).source == "unknown"


def test_osv_url_forms() -> None:
    assert OsvEndpoint.from_policy(None).query_url == "https://api.osv.dev/v1/query"
    assert OsvEndpoint.from_policy(None).default
    e = OsvEndpoint.from_policy("http://mirror:8080/osv/")
    assert (e.base, e.query_url) == ("http://mirror:8080/osv", "http://mirror:8080/osv/v1/query")
    assert OsvEndpoint.from_policy("http://m/v1/query").base == "http://m"
    with pytest.raises(GateError):
        OsvEndpoint.from_policy("file:///etc/passwd")


# --- the whole gate on real images --------------------------------------------------------------


def build_image(ctx: Path, dest: Path, base: str) -> tuple[Path, str]:
    """Build ``ctx`` (FROM base, the busybox layout) into an OCI layout; returns the layout and
    its single platform manifest."""
    meta = dest.with_suffix(".json")
    subprocess.run(
        [
            docker_cli(), "buildx", "build", "--pull=false", "--provenance=false",
            "--sbom=false", "--network", "none", "--build-context", f"base={base}",
            "--output", f"type=oci,dest={dest},tar=false,rewrite-timestamp=true",
            "--metadata-file", str(meta), str(ctx),
        ],
        check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
    )  # fmt: skip
    layout = OciLayout(dest)
    (manifest,) = layout.platform_manifests(json.loads(meta.read_text())["containerimage.digest"])
    return dest, manifest.digest


def run_gate(tmp_path: Path, image: tuple[Path, str], osv_url: str) -> GateResult:
    policy = load_policy_text(f"version: 1\npip_audit:\n  osv_url: {osv_url}\n", "test.yml")
    result = run_pipeline(
        [StubBuild(*image), PipAuditGate()], policy,
        RunOptions(context=tmp_path, out_dir=tmp_path / "out"), SourceDateEpoch(EPOCH, "option"),
    )  # fmt: skip
    assert not result.internal_error, result.results
    return result.results[-1]


def image_context(tmp_path: Path, name: str, pkgs: dict[str, str], extra: str = "") -> Path:
    ctx = tmp_path / name
    for n, v in pkgs.items():
        dist_info(ctx / "site", n, v)
    (ctx / "site").mkdir(parents=True, exist_ok=True)
    (ctx / "site" / "six.py").write_text("# a module, not metadata\n")
    (ctx / "Dockerfile").write_text(f"FROM base\nCOPY site/ /{SITE}/\n{extra}")
    return ctx


@pytest.fixture(scope="module")
def vulnerable_image(
    busybox_base: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("pa-image")
    return build_image(image_context(work, "ctx", VULNERABLE), work / "oci", busybox_base)


def by_id(findings: tuple[Finding, ...]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


@pytest.mark.engine
def test_gate_reports_exactly_the_known_vulnerabilities(
    tmp_path: Path, vulnerable_image: tuple[Path, str], osv: str
) -> None:
    result = run_gate(tmp_path, vulnerable_image, osv)
    assert result.status is Status.PASSED, result.error
    found = by_id(result.findings)
    assert sorted(found) == ["PYSEC-2018-28", "PYSEC-2021-108"]
    req, u3 = found["PYSEC-2018-28"], found["PYSEC-2021-108"]
    assert (req.subject, req.fixed_in, req.severity) == ("requests@2.19.0", "2.20.0", Severity.HIGH)
    assert req.location == f"/{SITE}/requests-2.19.0.dist-info"
    assert req.evidence["aliases"] == "CVE-2018-18074,GHSA-x84v-xcm2-53pg"
    assert req.evidence["cvss"] == "7.5"
    assert req.evidence["cvss_vector"] == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"
    assert req.evidence["severity_source"] == "osv:cvss"
    assert req.evidence["ecosystem"] == "pypi"
    assert req.evidence["type"] == "vulnerability"
    # urllib3's PYSEC record carries no severity, nor does any alias record we serve
    assert (u3.subject, u3.fixed_in, u3.severity) == ("urllib3@1.26.4", "1.26.5", Severity.UNKNOWN)
    assert u3.evidence["severity_source"] == "unknown"
    assert u3.evidence["aliases"] == "CVE-2021-33503"
    assert "cvss" not in u3.evidence
    assert result.facts["pip_audit.packages"] == "3"
    assert result.facts["pip_audit.version"] == "2.10.1"
    assert result.facts["pip_audit.osv_url"] == f"{osv}/v1/query"


@pytest.mark.engine
def test_whiteout_removed_package_is_not_audited(
    tmp_path: Path, busybox_base: str, osv: str
) -> None:
    ctx = image_context(
        tmp_path, "ctx", VULNERABLE, f"RUN rm -rf /{SITE}/requests-2.19.0.dist-info\n"
    )
    image = build_image(ctx, tmp_path / "oci", busybox_base)
    result = run_gate(tmp_path, image, osv)
    assert result.status is Status.PASSED, result.error
    assert sorted(by_id(result.findings)) == ["PYSEC-2021-108"]
    assert result.facts["pip_audit.packages"] == "2"


@pytest.mark.engine
def test_image_without_python_packages_passes_with_zero(
    tmp_path: Path, busybox_base: str, osv: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nRUN echo hi > /tmp/x\n")
    result = run_gate(tmp_path, build_image(ctx, tmp_path / "oci", busybox_base), osv)
    assert result.status is Status.PASSED, result.error
    assert result.findings == ()
    assert result.facts["pip_audit.packages"] == "0"


@pytest.mark.engine
def test_osv_down_errors_the_gate(tmp_path: Path, vulnerable_image: tuple[Path, str]) -> None:
    with start_osv_server() as (url, stop):
        stop()  # the service goes away before the gate runs
        result = run_gate(tmp_path, vulnerable_image, url)
    assert result.status is Status.ERRORED
    assert "could not be reached" in (result.error or "")


@pytest.mark.engine
def test_http_error_for_a_package_errors_the_gate_naming_it(
    tmp_path: Path, busybox_base: str, osv: str
) -> None:
    ctx = image_context(tmp_path, "ctx", {"six": "1.16.0", "fail-503": "2.0"})
    result = run_gate(tmp_path, build_image(ctx, tmp_path / "oci", busybox_base), osv)
    assert result.status is Status.ERRORED
    assert f"fail-503 2.0 (/{SITE}/fail-503-2.0.dist-info)" in (result.error or "")


@pytest.mark.engine
def test_missing_pip_audit_errors_the_gate(
    tmp_path: Path,
    vulnerable_image: tuple[Path, str],
    osv: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.delenv(PIP_AUDIT_ENV, raising=False)
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    monkeypatch.setenv("PATH", str(empty))
    result = run_gate(tmp_path, vulnerable_image, osv)
    assert result.status is Status.ERRORED
    assert "pip-audit was not found" in (result.error or "")


@pytest.mark.engine
def test_garbage_output_errors_the_gate(
    tmp_path: Path, vulnerable_image: tuple[Path, str], osv: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = fake_tool(
        tmp_path, 'case "$1" in --version) echo "pip-audit 2.10.1";; *) echo oops;; esac'
    )
    monkeypatch.setenv(PIP_AUDIT_ENV, tool)
    result = run_gate(tmp_path, vulnerable_image, osv)
    assert result.status is Status.ERRORED
    assert "without a JSON report" in (result.error or "")


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layout(root: Path, layers: list[bytes]) -> tuple[OciLayout, str]:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(x), "size": len(x)}
            for x in layers
        ],
    }).encode()  # fmt: skip
    digest = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))
    return OciLayout(root), digest


def test_extraction_leaves_no_directory_of_a_deleted_package(tmp_path: Path) -> None:
    meta = b"Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n"
    lower = _layer({
        f"{SITE}/gone-1.0.dist-info/METADATA": meta.replace(b"{}", b"gone"),
        f"{SITE}/gone-1.0.dist-info/licenses/LICENSE": b"MIT\n",
        f"{SITE}/kept-1.0.dist-info/METADATA": meta.replace(b"{}", b"kept"),
    })  # fmt: skip
    upper = _layer({f"{SITE}/.wh.gone-1.0.dist-info": b""})
    layout, digest = _layout(tmp_path / "oci", [lower, upper])
    root = tmp_path / "root"
    packages = extract_packages(layout, digest, root)
    assert [(p.name, p.version) for p in packages] == [("kept", "1.0")]
    assert sorted(p.name for p in (root / SITE).iterdir()) == ["kept-1.0.dist-info"]


_META = b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"


def test_a_file_then_a_directory_in_a_layer_is_a_gate_error(tmp_path: Path) -> None:
    # Runtimes refuse such a layer (mkdir below a file); extraction used to crash (exit 4).
    bad = layer(M(f"{SITE}/pkg-1.0.dist-info"), M(f"{SITE}/pkg-1.0.dist-info/METADATA", data=_META))
    layout, digest = make_layout(tmp_path / "oci", [bad])
    with pytest.raises(GateError, match=r"pkg-1\.0\.dist-info, which is a file"):
        extract_packages(layout, digest, tmp_path / "root")


def test_metadata_behind_a_symlink_is_read_inside_the_image(tmp_path: Path) -> None:
    # pip in the container follows the link; so does the extraction, inside the image root.
    layout, digest = make_layout(
        tmp_path / "oci",
        [layer(M("opt/meta/pkg", data=_META),
               M(f"{SITE}/pkg-1.0.dist-info/METADATA", "l", link="/opt/meta/pkg"),
               M(f"{SITE}/alias-1.0.dist-info", "l", link="pkg-1.0.dist-info"))],
    )  # fmt: skip
    root = tmp_path / "root"
    packages = extract_packages(layout, digest, root)
    assert sorted((p.meta_path, p.name) for p in packages) == [
        (f"{SITE}/alias-1.0.dist-info", "pkg"),
        (f"{SITE}/pkg-1.0.dist-info", "pkg"),
    ]
    assert (root / SITE / "alias-1.0.dist-info" / "METADATA").read_bytes() == _META
    assert not (root / SITE / "pkg-1.0.dist-info" / "METADATA").is_symlink()


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        # an absolute link resolves inside the image root, never to the host's /etc/passwd
        ((M(f"{SITE}/pkg-1.0.dist-info/METADATA", "l", link="/etc/passwd"),), "missing"),
        ((M(f"{SITE}/pkg-1.0.dist-info", data=_META),), "file"),
        ((M(f"{SITE}/pkg-1.0.dist-info/METADATA", "p"),), "fifo"),
        ((M(f"{SITE}/pkg-1.0.dist-info", "l", link="pkg-1.0.dist-info"),), "too many symlinks"),
    ],
)
def test_metadata_pip_would_not_read_is_a_gate_error(
    tmp_path: Path, members: tuple[M, ...], reason: str
) -> None:
    layout, digest = make_layout(tmp_path / "oci", [layer(*members)])
    with pytest.raises(GateError, match=f"no readable metadata file .*{reason}"):
        extract_packages(layout, digest, tmp_path / "root")


def test_an_undecodable_metadata_path_is_named_printably(tmp_path: Path) -> None:
    layout, digest = make_layout(
        tmp_path / "oci", [layer(M(f"{SITE}/p\udcff-1.0.dist-info/METADATA", "p"))]
    )
    with pytest.raises(GateError) as e:
        extract_packages(layout, digest, tmp_path / "root")
    assert "p\\xff-1.0.dist-info" in e.value.message
    e.value.message.encode("utf-8")  # reports are UTF-8


# --- a hostile OSV service: every answer bounded by size and wall-clock time -------------------


@contextlib.contextmanager
def _hostile_osv(mode: str) -> Iterator[str]:
    """A server on 127.0.0.1 that drips its answer a byte at a time, or sends far too much."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if mode == "huge":
                self.send_header("Content-Length", str(64 << 20))
            self.end_headers()
            try:
                if mode == "drip":
                    for _ in range(40):  # 10 s in all: each read well inside any socket timeout
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.25)
                    self.wfile.write(b"{}")
                elif mode == "huge":
                    for _ in range(64):
                        self.wfile.write(b" " * (1 << 20))
                else:  # no Content-Length, a body larger than the cap
                    self.wfile.write(b" " * (3 << 20) + b"{}")
            except OSError:
                pass  # the client hung up, as it should

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("mode", "limit"),
    [("drip", "OSV_REQUEST_SECONDS"), ("huge", "OSV_MAX_BYTES"), ("undeclared", "OSV_MAX_BYTES")],
)
def test_a_hostile_osv_answer_errors_naming_the_limit(
    monkeypatch: pytest.MonkeyPatch, mode: str, limit: str
) -> None:
    from modelseal.vuln import osv

    monkeypatch.setattr(osv, "OSV_REQUEST_SECONDS", 1.5)
    monkeypatch.setattr(osv, "OSV_MAX_BYTES", 1 << 20)
    with _hostile_osv(mode) as url:
        lookup = AdvisoryLookup(OsvEndpoint.from_policy(f"{url}/v1/query"))
        started = time.monotonic()
        with pytest.raises(GateError) as exc:
            lookup.record("CVE-2021-33503")
        elapsed = time.monotonic() - started
    assert limit in exc.value.message, exc.value.message
    assert elapsed < 5, f"took {elapsed:.1f} s"
