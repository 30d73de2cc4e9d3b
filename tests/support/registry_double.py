"""A registry double on 127.0.0.1 for the tests that read a base image's index, manifests and
configs before a build (tests/imagebuild): documents served by path, the requests and their
Authorization headers recorded; helpers that route an image, an index or any document under
the sha256 digest of its bytes, in the repository ``base``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from tests.support.httpd import serve

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

#: What a base's ONBUILD trigger does in the build: it reads the model file, which holds a
#: 128-byte stand-in when stand-ins are used (the image then differs from a real build's).
TRIGGER = "RUN sha256sum /app/model/big.bin > /app/model.sha256"


class Registry(BaseHTTPRequestHandler):
    """Answers GET from ``routes``: path → (content type, body, seconds between bytes), 200;
    404 for any other path. With ``challenge``, a request without an Authorization header gets
    401 with a Basic challenge."""

    routes: ClassVar[dict[str, tuple[str, bytes, float]]] = {}
    requests: ClassVar[list[str]] = []
    authorizations: ClassVar[list[str]] = []
    challenge: ClassVar[bool] = False

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        given = self.headers.get("Authorization")
        if given:
            type(self).authorizations.append(given)
        found = self.routes.get(self.path)
        media, body, drip = found or ("application/json", b'{"errors":[]}', 0.0)
        status = 200 if found else 404
        if self.challenge and not given:
            status, media, body, drip = 401, "application/json", b"{}", 0.0
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if drip:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(drip)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def registry_double(
    base: type[Registry] = Registry, **attrs: Any
) -> Iterator[tuple[str, type[Registry]]]:
    """A fresh handler class (its own routes and records; ``attrs`` set on it) served on
    127.0.0.1; yields ``(host, handler)``."""
    handler = type("Handler", (base,), {"routes": {}, "requests": [], "authorizations": [],
                                        **attrs})  # fmt: skip
    with serve(handler) as host:
        yield host, handler


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def route(handler: type[Registry], kind: str, doc: Any, drip: float = 0.0) -> str:
    """Serve ``doc`` (bytes, or JSON) as a ``config`` blob, a ``manifest`` or an ``index`` under
    the digest of its bytes; returns that digest."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    digest = sha256_of(data)
    where = "blobs" if kind == "config" else "manifests"
    media = {"config": "application/json", "manifest": OCI_MANIFEST, "index": OCI_INDEX}[kind]
    handler.routes[f"/v2/base/{where}/{digest}"] = (media, data, drip)
    return digest


def route_image(
    handler: type[Registry], config: Any, *, drip: float = 0.0, config_drip: float = 0.0
) -> dict[str, Any]:
    """Serve an image manifest and its config blob (``drip``: the manifest's seconds between
    bytes, ``config_drip`` the config's); returns the manifest's descriptor."""
    raw = config if isinstance(config, bytes) else json.dumps(config).encode()
    config_digest = route(handler, "config", raw, config_drip)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(raw)},
    }).encode()  # fmt: skip
    digest = route(handler, "manifest", manifest, drip)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest)}


def route_index(handler: type[Registry], descriptors: list[dict[str, Any]]) -> str:
    """Serve an image index of ``descriptors``; returns its digest."""
    return route(
        handler, "index", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    )


def route_config(handler: type[Registry], config: bytes) -> tuple[str, dict[str, Any]]:
    """Serve a config blob; returns its digest and a manifest's descriptor of it."""
    digest = route(handler, "config", config)
    return digest, {"mediaType": OCI_CONFIG, "digest": digest, "size": len(config)}


def bases_of(text: str) -> tuple[Any, ...]:
    """The classified bases (:func:`modelseal.imagebuild.bases.classify_bases`) of the
    Dockerfile ``text``, without build contexts."""
    from modelseal.imagebuild.bases import classify_bases
    from modelseal.imagebuild.dockerfile import parse_dockerfile

    return classify_bases(parse_dockerfile(text, "Dockerfile"), {})
