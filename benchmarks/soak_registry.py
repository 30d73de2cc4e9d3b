"""Soak `modelseal verify` against a hostile registry on 127.0.0.1.

Each case starts a registry double that misbehaves one way (huge or endless manifests, a slow
drip, endless referrers, 500s, redirect loops, a wrong Content-Length, a gzip bomb, an endless
token or error body, thousands of ``.sig`` layers), runs ``modelseal verify`` against it as a
subprocess, and prints the exit code, wall time and peak memory (RSS) of the verify. Every case
must end with exit 3 naming the limit it broke, within its time bound and under the memory
bound; the script exits 1 when one does not.

    python benchmarks/soak_registry.py            # full sizes (1 GiB bodies, 20 s drip)
    python benchmarks/soak_registry.py --quick    # what tests/publish/test_hostile_registry.py runs

Three more behaviours serve the tests only: ``slow-answers`` (every answer correct, each
``drip`` seconds late: only a deadline across the whole command stops it), ``deep-json`` (referrers and ``.sig`` nested deeper
than the JSON parser goes: malformed, so "NOT verified", never a crash) and
``huge-upload-answer`` (an endless answer to an upload's POST: the publish path).

The server's loops are bounded too (it stops after a fixed number of bytes or drips, and when
the client hangs up), so a client without limits would be slow and large, not endless.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

try:
    from benchmarks._common import run_peak  # imported as a package (the tests)
except ImportError:
    from _common import run_peak  # run as a script

REPO = Path(__file__).resolve().parent.parent

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
_EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#: The one small, valid image manifest the double serves where a case needs one.
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": _EMPTY, "size": 2},
        "layers": [],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
_MiB = 1 << 20


@dataclass(frozen=True)
class Case:
    """One way to misbehave, and the limit the verify must name when it stops."""

    name: str
    what: str
    limit: str
    """Text the verify's error output must contain."""
    drip: bool = False
    """A slow-drip case: runs under the scale's ``drip_timeout`` instead of 30 s."""

    def timeout(self, scale: Scale) -> int:
        """``modelseal verify --timeout`` for this case."""
        return scale.drip_timeout if self.drip else 30


CASES = (
    Case("huge-manifest", "a manifest that says it is 1 GiB (Content-Length) and is", "manifest_bytes"),
    Case("endless-manifest", "a manifest without a length, streamed until the client stops", "manifest_bytes"),
    Case("slow-drip", "a manifest body at one byte per drip interval", "verify timeout", drip=True),
    Case("slow-headers", "response headers at one byte per drip interval", "verify timeout", drip=True),
    Case("server-errors", "500 to every request", "after 4 retries"),
    Case("redirect-loop", "302 to itself, for ever", "max_redirects"),
    Case("wrong-length", "Content-Length 4096, then 16 bytes and a hang-up", "Content-Length"),
    Case("gzip-bomb", "a gzip-encoded manifest that inflates to 1 GiB", "identity encoding only"),
    Case("endless-referrers", "a referrers index of a million descriptors", "index_bytes"),
    Case("many-referrers", "1000 bundle referrers in a small index", "max_referrers"),
    Case("many-sig-layers", "a .sig manifest with 5000 signature layers", "max_signature_layers"),
    Case("huge-token", "a Bearer challenge whose token service answers 1 GiB", "token_bytes"),
    Case("huge-error", "a 404 whose body is 1 GiB, without a length", "error_bytes"),
)  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """How big the hostile answers are, and how slow the drip."""

    body: int
    drip: float
    """Seconds between two bytes: less than the client's 60 s socket timeout, so only a
    wall clock stops it."""
    drips: int
    descriptors: int
    drip_timeout: int


FULL = Scale(body=1 << 30, drip=20.0, drips=1000, descriptors=1_000_000, drip_timeout=60)
QUICK = Scale(body=64 * _MiB, drip=1.0, drips=60, descriptors=100_000, drip_timeout=3)


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    case: ClassVar[str] = ""
    scale: ClassVar[Scale] = QUICK
    bomb: ClassVar[bytes] = b""
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_HEAD(self) -> None:
        self._send(404, b"")

    def do_POST(self) -> None:
        type(self).requests.append(self.path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if self.case == "huge-upload-answer":  # the publish path: an upload's answer
                return self._stream(self.scale.body, length=False, status=202)
            self._send(404, b"")

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        # the client hanging up is what a bounded client does
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer()

    # -- the cases ------------------------------------------------------------------------------

    def _answer(self) -> None:
        case, path = self.case, self.path
        if case == "slow-answers":  # each answer honest and in time, all of them too slow
            time.sleep(self.scale.drip)
            case = "honest"
        manifest_path = "/manifests/" in path
        if case == "server-errors":
            return self._send(500, b'{"errors":[{"code":"UNKNOWN"}]}')
        if case == "redirect-loop":
            self.send_response(302)
            self.send_header("Location", path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if case == "huge-token":
            if path.startswith("/token"):
                return self._stream(self.scale.body, length=True)
            self.send_response(401)
            host = self.headers["Host"]
            self.send_header("WWW-Authenticate", f'Bearer realm="http://{host}/token",service="x"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if case == "huge-error":
            return self._stream(self.scale.body, length=False, status=404)
        if case == "deep-json" and ("/referrers/" in path or path.endswith(".sig")):
            return self._send(200, b"[" * 100_000, OCI_INDEX)
        if manifest_path and path.endswith("/manifests/1.0"):
            return self._first_manifest(case)
        if case == "endless-referrers" and "/referrers/" in path:
            return self._referrers(self.scale.descriptors, stream=True)
        if case == "many-referrers" and "/referrers/" in path:
            return self._referrers(1000, stream=False)
        if case == "many-sig-layers" and path.endswith(".sig"):
            layers = [
                {"mediaType": SIMPLE_SIGNING, "size": 2, "digest": f"sha256:{i:064x}"}
                for i in range(5000)
            ]
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers})
            return self._send(200, body.encode(), OCI_MANIFEST)
        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    def _first_manifest(self, case: str) -> None:
        scale = self.scale
        if case == "huge-manifest":
            return self._stream(scale.body, length=True)
        if case == "endless-manifest":
            return self._stream(scale.body, length=False)
        if case == "slow-drip":
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.send_header("Content-Length", str(scale.drips))
            self.end_headers()
            for _ in range(scale.drips):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(scale.drip)
            return None
        if case == "slow-headers":
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            for _ in range(scale.drips):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(scale.drip)
            return None
        if case == "wrong-length":
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(MANIFEST[:16])
            self.close_connection = True
            return None
        if case == "gzip-bomb":
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(self.bomb)))
            self.end_headers()
            self.wfile.write(self.bomb)
            return None
        return self._send(200, MANIFEST, OCI_MANIFEST)

    def _referrers(self, count: int, *, stream: bool) -> None:
        def descriptor(i: int) -> bytes:
            return json.dumps(
                {"mediaType": OCI_MANIFEST, "artifactType": BUNDLE_TYPE,
                 "digest": f"sha256:{i:064x}", "size": 1000}
            ).encode()  # fmt: skip

        head = b'{"schemaVersion":2,"mediaType":"%s","manifests":[' % OCI_INDEX.encode()
        if not stream:
            body = head + b",".join(descriptor(i) for i in range(count)) + b"]}"
            return self._send(200, body, OCI_INDEX)
        self.send_response(200)
        self.send_header("Content-Type", OCI_INDEX)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(head)
        for start in range(0, count, 1000):
            batch = b",".join(descriptor(i) for i in range(start, min(count, start + 1000)))
            self.wfile.write((b"," if start else b"") + batch)
        self.wfile.write(b"]}")
        return None

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, size: int, *, length: bool, status: int = 200) -> None:
        """``size`` zero bytes, with a Content-Length or ended by closing the connection."""
        self.send_response(status)
        self.send_header("Content-Type", OCI_MANIFEST)
        if length:
            self.send_header("Content-Length", str(size))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        chunk = bytes(_MiB)
        sent = 0
        while sent < size:
            self.wfile.write(chunk[: size - sent])
            sent += len(chunk)


def gzip_bomb(size: int) -> bytes:
    """gzip of ``size`` zero bytes (about 1/1000 of it)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as f:
        chunk = bytes(_MiB)
        for _ in range(size // _MiB):
            f.write(chunk)
    return out.getvalue()


@contextmanager
def hostile_registry(case: str, scale: Scale = QUICK) -> Iterator[tuple[str, type[_Hostile]]]:
    """A registry double on 127.0.0.1 misbehaving as ``case``; yields ``(host, handler)``
    (``handler.requests`` lists the paths asked for)."""
    attrs: dict[str, Any] = {"case": case, "scale": scale, "requests": []}
    if case == "gzip-bomb":
        attrs["bomb"] = gzip_bomb(scale.body)
    handler = type("Hostile", (_Hostile,), attrs)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Outcome:
    """What one verify did."""

    case: Case
    exit_code: int
    seconds: float
    peak_rss_mib: float
    requests: int
    output: str

    def ok(self, max_seconds: float, max_rss_mib: float) -> bool:
        """Exit 3, the limit named, within the time and memory bounds."""
        return (
            self.exit_code == 3
            and self.case.limit in self.output
            and self.seconds <= max_seconds
            and self.peak_rss_mib <= max_rss_mib
        )


def public_key(work: Path) -> Path:
    """A throwaway P-256 public key: the expected signer nobody here signs with."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = work / "expected.pub"
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def run_case(case: Case, scale: Scale, key: Path, python: str = sys.executable) -> Outcome:
    """``modelseal verify`` against the double, as a subprocess; its own peak RSS."""
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "HOME": str(key.parent),
    }
    for name in ("MODELSEAL_REGISTRY_USERNAME", "MODELSEAL_REGISTRY_PASSWORD", "DOCKER_CONFIG"):
        env.pop(name, None)
    with hostile_registry(case.name, scale) as (host, handler):
        argv = [
            python, "-m", "modelseal", "verify", f"{host}/hostile/app:1.0",
            "--key", str(key), "--timeout", str(case.timeout(scale)),
        ]  # fmt: skip
        with tempfile.TemporaryFile() as out:
            # Past any sane bound: stop it (and report it as failed) rather than hang the soak.
            code, seconds, peak = run_peak(
                argv, timeout=case.timeout(scale) + 120, env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            out.seek(0)
            text = out.read().decode(errors="replace")
        return Outcome(case, code, seconds, peak, len(handler.requests), text)


def main() -> int:
    """Run every case; print a table; exit 1 when a case is not bounded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB bodies, 1 s drip")
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    parser.add_argument("--max-rss-mib", type=float, default=256.0)
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    cases = [c for c in CASES if not args.case or c.name in args.case]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="modelseal-soak-") as tmp:
        key = public_key(Path(tmp))
        print(
            f"{'case':<18} {'exit':>4} {'seconds':>8} {'peak MiB':>9} {'requests':>8}  limit named"
        )
        for case in cases:
            o = run_case(case, scale, key)
            good = o.ok(case.timeout(scale) + 15, args.max_rss_mib)
            failed += not good
            named = case.limit if case.limit in o.output else "NOT NAMED"
            print(
                f"{case.name:<18} {o.exit_code:>4} {o.seconds:>8.1f} {o.peak_rss_mib:>9.1f} "
                f"{o.requests:>8}  {named}{'' if good else '   <-- FAILED'}",
                flush=True,
            )
            if not good:
                print("    " + o.output.strip()[-1500:].replace("\n", "\n    "))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
