"""A small offline OSV API: what pip-audit's OSV service and modelseal's severity look-up call.

* ``POST /v1/query`` with ``{"package": {"name", "ecosystem"}, "version"}`` answers
  ``{"vulns": [record, …]}`` (``{}`` when nothing matches, like api.osv.dev): the records whose
  ``affected[]`` entry for that package lists the version in ``versions`` or covers it by an
  ``ECOSYSTEM``/``SEMVER`` range (compared with :mod:`packaging.version`);
* ``GET /v1/vulns/<id>`` answers the full record, looked up by id or by alias.

Records are real OSV JSON files (``*.json``) in a directory (``examples/offline/osv_records``).
Package names ``fail-<status>`` (e.g. ``fail-500``) make ``/v1/query`` answer that HTTP status,
so tests can exercise a failing service for one package.

Use from Python::

    with start_osv_server(Path("examples/offline/osv_records")) as (url, stop):
        ...  # url = "http://127.0.0.1:PORT"

or from the command line: ``python examples/offline/osv_server.py --port 8765``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

DEFAULT_RECORDS = Path(__file__).resolve().parent / "osv_records"
_FAIL = re.compile(r"^fail-(\d{3})$")


def load_records(records_dir: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` OSV record in ``records_dir``, in file-name order."""
    return [json.loads(p.read_text()) for p in sorted(records_dir.glob("*.json"))]


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: Sequence[Mapping[str, str]]) -> bool:
    """OSV range evaluation: events sorted by version; introduced opens, fixed/limit close,
    last_affected closes after itself."""
    points: list[tuple[Version, int, str]] = []
    for event in events:
        for kind, value in event.items():
            v = Version("0") if value == "0" else _version(value)
            if v is None:
                continue
            points.append((v, 0 if kind == "introduced" else 1, kind))
    points.sort(key=lambda p: (p[0], p[1]))
    affected = False
    for v, _, kind in points:
        if kind == "introduced":
            if version >= v:
                affected = True
        elif kind in ("fixed", "limit"):
            if version >= v:
                affected = False
        elif kind == "last_affected" and version > v:
            affected = False
    return affected


def affects(record: Mapping[str, Any], name: str, ecosystem: str, version: str) -> bool:
    """Whether ``record`` affects ``name`` (any spelling) at ``version``."""
    wanted = canonicalize_name(name)
    parsed = _version(version)
    for aff in record.get("affected", []):
        pkg = aff.get("package", {})
        if pkg.get("ecosystem") != ecosystem or canonicalize_name(pkg.get("name", "")) != wanted:
            continue
        if version in aff.get("versions", []):
            return True
        if parsed is None:
            continue
        for r in aff.get("ranges", []):
            if r.get("type") in ("ECOSYSTEM", "SEMVER") and _in_range(parsed, r.get("events", [])):
                return True
    return False


class _Handler(BaseHTTPRequestHandler):
    records: ClassVar[list[dict[str, Any]]] = []
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/query":
            self._send(404, {"code": 5, "message": "Not Found"})
            return
        try:
            query = json.loads(raw)
            name = str(query["package"]["name"])
            ecosystem = str(query["package"].get("ecosystem", "PyPI"))
            version = str(query["version"])
        except (ValueError, KeyError, TypeError):
            self._send(400, {"code": 3, "message": "Invalid query."})
            return
        if m := _FAIL.match(name):
            self._send(int(m.group(1)), {"code": 13, "message": "injected failure"})
            return
        vulns = [r for r in self.records if affects(r, name, ecosystem, version)]
        self._send(200, {"vulns": vulns} if vulns else {})

    def do_GET(self) -> None:
        prefix = "/v1/vulns/"
        if not self.path.startswith(prefix):
            self._send(404, {"code": 5, "message": "Not Found"})
            return
        wanted = self.path[len(prefix) :]
        for r in self.records:
            if r.get("id") == wanted:
                self._send(200, r)
                return
        for r in self.records:
            if wanted in r.get("aliases", []):
                self._send(200, r)
                return
        self._send(404, {"code": 5, "message": "Bug not found."})


def make_server(records_dir: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port`` (0: an ephemeral port) serving ``records_dir``."""
    handler = type("OsvHandler", (_Handler,), {"records": load_records(records_dir)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


@contextmanager
def start_osv_server(
    records_dir: Path = DEFAULT_RECORDS, port: int = 0
) -> Iterator[tuple[str, Callable[[], None]]]:
    """Serve ``records_dir`` on 127.0.0.1:``port`` (0: an ephemeral port) in a background
    thread; yields ``(base_url, stop)``. ``stop`` may be called early (to simulate the service
    going down); it is called again on exit, harmlessly."""
    server = make_server(records_dir, port)
    thread = threading.Thread(target=server.serve_forever, name="osv-server", daemon=True)
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    host, port = server.server_address[:2]
    try:
        yield f"http://{host!s}:{port}", stop
    finally:
        stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    args = parser.parse_args(argv)
    server = make_server(args.records, args.port)
    host, port = server.server_address[:2]
    print(f"OSV API on http://{host!s}:{port} ({len(load_records(args.records))} records)")
    print(f"pip-audit: -s osv --osv-url http://{host!s}:{port}/v1/query", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
