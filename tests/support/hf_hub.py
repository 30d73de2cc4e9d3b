"""A local stand-in of the Hugging Face Hub endpoints huggingface_hub calls for a pinned
download, answering as the Hub documents them, on 127.0.0.1 (the hosted Hub is unreachable in
tests):

* ``GET /api/models/ORG/NAME/revision/REV`` — model info; ``sha`` is the commit REV points at.
* ``GET /api/models/ORG/NAME/tree/REV?recursive=…`` — the listing: ``type``, ``path``, ``oid``
  (git blob SHA-1), ``size``, and for LFS files ``lfs: {oid (sha256), size, pointerSize}``;
  paginated with a ``Link: <…>; rel="next"`` header (``page_size``).
* ``POST /api/models/ORG/NAME/paths-info/REV`` (form ``paths=…&expand=…``) — the same entries
  for the paths that exist.
* ``HEAD|GET /ORG/NAME/resolve/REV/PATH`` — a small file: 200 with ``ETag: "<blob oid>"``,
  ``X-Repo-Commit``, ``Content-Length``; an LFS file: 302 to the CDN stand-in (another origin)
  with ``X-Linked-Etag: "<sha256>"``, ``X-Linked-Size``, ``X-Repo-Commit`` and the pointer's
  ``ETag``.
* Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).

Every request is CHECKED and a broken expectation is recorded in :attr:`FakeHub.violations`
(tests assert it stays empty): file and tree requests name the commit (never a branch), every
request carries huggingface_hub's user agent, the token reaches the Hub only — the CDN origin
must never see an ``Authorization`` header — and nothing asks for compressed bodies it was
told not to get. Tests corrupt what is served (:attr:`FakeRepo.served`) or list hostile names
(:attr:`FakeRepo.extra_listing`) to play a compromised or hostile Hub.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LFS_THRESHOLD = 64  # bytes: larger files are "LFS" in the stand-in (the Hub: 10 MB / by rule)


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git LFS pointer file the repository holds for ``data``."""
    return (
        b"version https://git-lfs.github.com/spec/v1\n"
        + f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()
    )


@dataclass
class FakeRepo:
    """One model repository: commits → files, refs → commits."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    #: path → bytes served instead of the committed ones (a tampered CDN or mirror).
    served: dict[str, bytes] = field(default_factory=dict)
    #: raw listing entries added to the tree (hostile names, lies about sizes).
    extra_listing: list[dict[str, Any]] = field(default_factory=list)

    def commit(self, files: dict[str, bytes], *, ref: str | None = "main") -> str:
        """Add a commit holding ``files``; returns its id (and moves ``ref`` to it)."""
        body = json.dumps(
            {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())}
        ).encode()
        sha = hashlib.sha1(body + str(len(self.commits)).encode()).hexdigest()
        self.commits[sha] = dict(files)
        if ref:
            self.refs[ref] = sha
        return sha

    def entry(self, path: str, data: bytes) -> dict[str, Any]:
        """The Hub's tree / paths-info entry of a file."""
        if len(data) > LFS_THRESHOLD:
            pointer = lfs_pointer(data)
            return {
                "type": "file", "oid": git_blob_sha1(pointer), "size": len(data), "path": path,
                "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "pointerSize": len(pointer)},
            }  # fmt: skip
        return {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}

    def listing(self, commit: str) -> list[dict[str, Any]]:
        """The recursive tree at ``commit``: directories, then files, as the Hub lists."""
        files = self.commits[commit]
        dirs = sorted(
            {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        )
        out: list[dict[str, Any]] = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in dirs
        ]
        out += [self.entry(p, files[p]) for p in sorted(files)]
        return out + self.extra_listing


class FakeHub:
    """The Hub and its CDN, two HTTP servers on 127.0.0.1 (two origins)."""

    def __init__(self, *, token: str | None = None, page_size: int = 1000) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.token = token
        self.page_size = page_size
        self.requests: list[tuple[str, str, str]] = []  # (server, method, path)
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        self._blobs: dict[str, bytes] = {}
        #: origin the tree listing's ``Link: rel="next"`` points at (a hostile Hub: the CDN's).
        self.link_origin: str | None = None
        #: a Content-Length the CDN announces instead of the real one (then it hangs up).
        self.cdn_content_length: int | None = None
        #: Content-Encoding the Hub puts on small files it serves, asked or not.
        self.content_encoding: str | None = None
        #: seconds the CDN waits between two bytes of a file (a server that dribbles).
        self.cdn_trickle = 0.0

    @property
    def endpoint(self) -> str:
        """HF_ENDPOINT for the stand-in."""
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_origin(self) -> str:
        """The CDN's origin (``localhost``: another origin than the endpoint's)."""
        return f"http://localhost:{self.cdn.server_address[1]}"

    def repo(self, repo_id: str) -> FakeRepo:
        """The repository ``repo_id``, made on first use."""
        return self.repos.setdefault(repo_id, FakeRepo(repo_id))

    def violate(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def __enter__(self) -> FakeHub:
        for server in (self.hub, self.cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()

    # -- the handler --------------------------------------------------------------------------

    def _handler(self, server: str) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._serve(server, self, "GET")

            def do_HEAD(self) -> None:
                hub._serve(server, self, "HEAD")

            def do_POST(self) -> None:
                hub._serve(server, self, "POST")

        return Handler

    def _check_headers(self, server: str, h: BaseHTTPRequestHandler) -> None:
        agent = h.headers.get("User-Agent", "")
        if "hf_hub/" not in agent:
            self.violate(f"{server} {h.path}: user agent {agent!r} is not huggingface_hub's")
        auth = h.headers.get("Authorization")
        if server == "cdn" and auth is not None:
            self.violate(f"cdn {h.path}: received an Authorization header (token leak)")
        if server == "hub" and self.token and auth != f"Bearer {self.token}":
            self.violate(f"hub {h.path}: Authorization {auth!r}, expected the token")
        encoding = h.headers.get("Accept-Encoding", "identity")
        if encoding != "identity":
            self.violate(f"{server} {h.path}: Accept-Encoding {encoding!r}")

    def _serve(self, server: str, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests.append((server, method, h.path))
        self._check_headers(server, h)
        url = urllib.parse.urlsplit(h.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        body = b""
        if method == "POST":
            body = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        if server == "cdn":
            data = self._blobs.get(url.path.rsplit("/", 1)[-1])
            if data is None or method != "GET":
                return _send(h, 404, b"", {})
            if self.cdn_content_length is not None:
                h.send_response(200)
                h.send_header("Content-Length", str(self.cdn_content_length))
                h.end_headers()
                h.close_connection = True
                return None
            if self.cdn_trickle:
                return _dribble(h, data, self.cdn_trickle)
            return _send(h, 200, data, {"Content-Type": "application/octet-stream"})
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, action, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
            return self._api(h, method, repo_id, action, rev, "/".join(parts[6:]), url, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
            return self._resolve(h, method, repo_id, rev, path)
        self.violate(f"hub: unexpected request {method} {h.path}")
        _send(h, 404, b"", {})

    def _find(
        self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, *, pinned: bool
    ) -> tuple[FakeRepo, str] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            _send(h, 404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return None
        commit = repo.refs.get(rev, rev)
        if commit not in repo.commits:
            _send(h, 404, b'{"error":"Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
            return None
        if pinned and rev != commit:
            self.violate(f"hub {h.path}: asked by ref {rev!r}, not by the commit")
        return repo, commit

    def _api(
        self, h: BaseHTTPRequestHandler, method: str, repo_id: str, action: str, rev: str,
        rest: str, url: urllib.parse.SplitResult, body: bytes,
    ) -> None:  # fmt: skip
        found = self._find(h, repo_id, rev, pinned=action != "revision")
        if found is None:
            return
        repo, commit = found
        if action == "revision" and method == "GET":
            files = repo.commits[commit]
            info = {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id,
                "modelId": repo_id, "author": repo_id.split("/")[0], "sha": commit,
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
                "private": False, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                "tags": [], "library_name": "transformers",
                "siblings": [{"rfilename": p} for p in sorted(files)],
            }  # fmt: skip
            return _send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        if action == "tree" and method == "GET":
            query = urllib.parse.parse_qs(url.query)
            if query.get("recursive", [""])[0].lower() != "true":
                self.violate(f"hub {h.path}: tree listing not recursive")
            start = int(query.get("cursor", ["0"])[0])
            entries = repo.listing(commit)
            page = entries[start : start + self.page_size]
            headers = {"Content-Type": "application/json"}
            if start + self.page_size < len(entries):
                nxt = f"{self.link_origin or self.endpoint}/api/models/{repo_id}/tree/{commit}?recursive=True&expand=False&cursor={start + self.page_size}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            return _send(h, 200, json.dumps(page).encode(), headers)
        if action == "paths-info" and method == "POST":
            form = urllib.parse.parse_qs(body.decode())
            files = repo.commits[commit]
            out = [repo.entry(p, files[p]) for p in form.get("paths", []) if p in files]
            return _send(h, 200, json.dumps(out).encode(), {"Content-Type": "application/json"})
        self.violate(f"hub: unexpected API call {method} {h.path}")
        _send(h, 404, b"", {})

    def _resolve(
        self, h: BaseHTTPRequestHandler, method: str, repo_id: str, rev: str, path: str
    ) -> None:
        found = self._find(h, repo_id, rev, pinned=True)
        if found is None:
            return
        repo, commit = found
        files = repo.commits[commit]
        if path not in files:
            return _send(h, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        data = files[path]
        served = repo.served.get(path, data)
        entry = repo.entry(path, data)
        if "lfs" in entry:
            key = hashlib.sha256(served).hexdigest() + hashlib.sha256(path.encode()).hexdigest()[:8]
            self._blobs[key] = served
            headers = {
                "Location": f"{self.cdn_origin}/repos/blobs/{key}",
                "X-Repo-Commit": commit, "ETag": f'"{entry["oid"]}"',
                "X-Linked-Etag": f'"{entry["lfs"]["oid"]}"', "X-Linked-Size": str(len(data)),
            }  # fmt: skip
            return _send(h, 302, b"", headers, head=method == "HEAD")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry["oid"]}"'}
        if self.content_encoding and method == "GET":
            headers["Content-Encoding"] = self.content_encoding
        _send(h, 200, served, headers, head=method == "HEAD")

    # -- blobs --------------------------------------------------------------------------------

    def resolve_requests(self) -> Iterator[str]:
        """Paths of every resolve request the Hub got."""
        return (p for s, _, p in self.requests if s == "hub" and "/resolve/" in p)


def _send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str],
    *,
    head: bool = False,
) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if not head and h.command != "HEAD":
        h.wfile.write(body)


def _dribble(h: BaseHTTPRequestHandler, body: bytes, pause: float) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    try:
        for i in range(len(body)):
            h.wfile.write(body[i : i + 1])
            h.wfile.flush()
            time.sleep(pause)
    except OSError:
        pass  # the client gave up: what the test wants
