"""A local stand-in of GitHub's "Create an attestation" endpoint (the hosted service is not
reachable from the tests), on 127.0.0.1.

It checks each request as the REST API documents it —
``POST /repos/{owner}/{repo}/attestations`` with ``Accept: application/vnd.github+json``,
``X-GitHub-Api-Version: 2022-11-28``, ``Authorization: Bearer <token>`` and a JSON body
``{"bundle": <Sigstore bundle>}`` whose bundle has a Sigstore bundle media type, verification
material and a DSSE envelope of an in-toto statement — and answers as GitHub does:
``201 {"id": N}``, or a JSON error (``{"message": …, "documentation_url": …}``) with 401, 404,
415 or 422. Faults are queued with :meth:`GitHubApi.answer_next`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest/repos/attestations#create-an-attestation"
BUNDLE_MEDIA_TYPES = (
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
)


@dataclass(frozen=True)
class Stored:
    """One attestation the stand-in accepted."""

    id: int
    repository: str
    subject_digests: tuple[str, ...]
    """``sha256:<hex>`` of each subject of the statement."""
    predicate_type: str
    bundle: dict[str, Any]


@dataclass
class GitHubApi:
    """The endpoint for one repository and one token."""

    repository: str
    token: str
    url: str = ""
    stored: list[Stored] = field(default_factory=list)
    requests: int = 0
    """Every request received, accepted or not."""
    rejected: list[str] = field(default_factory=list)
    """Why each request that broke the documented shape was refused (a client bug)."""
    _queue: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def answer_next(
        self, status: int, message: str, *, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``times`` well-formed requests with ``status`` and GitHub's error
        body carrying ``message``."""
        body = {"message": message, "documentation_url": DOCS, "status": str(status)}
        self._queue.extend([(status, body, headers or {})] * times)

    def _check(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        def refuse(status: int, why: str) -> tuple[int, dict[str, Any], dict[str, str]]:
            self.rejected.append(why)
            return status, {"message": why, "documentation_url": DOCS, "status": str(status)}, {}

        if method != "POST":
            return refuse(404, f"Not Found ({method})")
        if path != f"/repos/{self.repository}/attestations":
            return refuse(404, f"Not Found ({path})")
        if headers.get("Authorization") != f"Bearer {self.token}":
            return refuse(401, "Bad credentials")
        if headers.get("Accept") != "application/vnd.github+json":
            return refuse(415, f"Accept {headers.get('Accept')!r}")
        if headers.get("X-GitHub-Api-Version") != API_VERSION:
            return refuse(400, f"X-GitHub-Api-Version {headers.get('X-GitHub-Api-Version')!r}")
        if (headers.get("Content-Type") or "").split(";")[0] != "application/json":
            return refuse(415, f"Content-Type {headers.get('Content-Type')!r}")
        try:
            doc = json.loads(body)
        except ValueError:
            return refuse(400, "Problems parsing JSON")
        if (
            not isinstance(doc, dict)
            or set(doc) != {"bundle"}
            or not isinstance(doc["bundle"], dict)
        ):
            return refuse(422, 'Invalid request: the body is {"bundle": {...}} only')
        bundle = doc["bundle"]
        if bundle.get("mediaType") not in BUNDLE_MEDIA_TYPES:
            return refuse(422, f"unknown bundle mediaType {bundle.get('mediaType')!r}")
        if not isinstance(bundle.get("verificationMaterial"), dict):
            return refuse(422, "bundle without verificationMaterial")
        envelope = bundle.get("dsseEnvelope")
        if not isinstance(envelope, dict) or not envelope.get("signatures"):
            return refuse(422, "bundle without a signed dsseEnvelope")
        if envelope.get("payloadType") != "application/vnd.in-toto+json":
            return refuse(422, f"payloadType {envelope.get('payloadType')!r}")
        try:
            statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
            digests = tuple(f"sha256:{s['digest']['sha256']}" for s in statement["subject"])
            predicate_type = str(statement["predicateType"])
        except (ValueError, KeyError, TypeError):
            return refuse(422, "the payload is not an in-toto statement with sha256 subjects")
        if not statement.get("_type", "").startswith("https://in-toto.io/Statement/"):
            return refuse(422, f"_type {statement.get('_type')!r}")
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
            ident = 1000 + len(self.stored)
            self.stored.append(Stored(ident, self.repository, digests, predicate_type, bundle))
        return 201, {"id": ident}, {}

    def start(self) -> None:
        """Listen on an ephemeral 127.0.0.1 port."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with api._lock:
                    api.requests += 1
                status, answer, extra = api._check(method, self.path, self.headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def env(self) -> dict[str, str]:
        """What a GitHub Actions job of this repository sees (the token as GITHUB_TOKEN)."""
        return {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_API_URL": self.url,
            "GITHUB_TOKEN": self.token,
        }


@contextmanager
def github_api(
    repository: str = "acme/models", token: str = "ghs_" + "s3cr3t" * 6
) -> Iterator[GitHubApi]:
    """A running stand-in for ``repository``, accepting ``token``."""
    api = GitHubApi(repository, token)
    api.start()
    try:
        yield api
    finally:
        api.stop()


def written_text(directory: Path, *also: str) -> str:
    """``also`` and the text of every regular file under ``directory`` (files of 8 MiB or
    more left out): where a token that leaked would be found."""
    files = [p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()]
    small = [p for p in files if p.stat().st_size < 8 * 1024 * 1024]
    return "\n".join([*also, *(p.read_bytes().decode("utf-8", "replace") for p in small)])
