"""A small OCI distribution client on urllib: blobs, manifests, tags and referrers.

Plain HTTP is used only for loopback hosts (or when asked to); everything else is HTTPS.
Credentials and bearer tokens never appear in errors, logs or ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any

from modelseal.errors import GateError
from modelseal.oci import DIGEST_RE, INDEX_TYPES, OciLayout

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_CHUNK = 1 << 20


class RegistryError(GateError):
    """A registry refused a request or could not be reached; names method, path and status."""

    def __init__(self, message: str, *, method: str = "", path: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status


@dataclass(frozen=True)
class Credentials:
    """A registry user name and password (or token); the secret never shows in ``repr``."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def from_docker_config(cls, host: str, path: Path | None = None) -> Credentials | None:
        """``auths[host].auth`` from a docker ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``)."""
        if path is None:
            base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
            path = Path(base) / "config.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        auths = data.get("auths") if isinstance(data, dict) else None
        entry = auths.get(host) if isinstance(auths, dict) else None
        encoded = entry.get("auth") if isinstance(entry, dict) else None
        if not isinstance(encoded, str) or not encoded:
            return None
        try:
            user, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise GateError(
                f"{path}: the auth entry for {host} is not base64 user:password."
            ) from None
        return cls(user, password) if sep else None

    def token(self) -> str:
        """base64 of ``user:password``: docker config's ``auth`` and HTTP Basic's value."""
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def basic(self) -> str:
        """The value of a Basic ``Authorization`` header."""
        return "Basic " + self.token()


def is_local_host(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) is a loopback registry, spoken to over plain HTTP."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return hostname in _LOCAL_HOSTS


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class _Response:
    status: int
    headers: Message
    body: bytes


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    """One repository on one registry (OCI distribution spec v1.1)."""

    def __init__(
        self,
        host: str,
        repository: str,
        *,
        insecure: bool | None = None,
        auth: Credentials | None = None,
        retries: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.host = host
        self.repository = repository
        local = is_local_host(host)
        plain = local if insecure is None else insecure
        self.base = f"{'http' if plain else 'https'}://{host}"
        self._auth = auth
        self._authorization: str | None = None
        self.retries = max(0, retries)
        self.backoff = backoff
        handlers: list[urllib.request.BaseHandler] = []
        if local:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"RegistryClient({self.base}/{self.repository})"

    # -- transport ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if "://" in path else self.base + path

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Path | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        quiet: tuple[int, ...] = (),
    ) -> _Response:
        """Send with retries (5xx, 429, connection errors) and auth; statuses in ``quiet``
        are returned instead of raised."""
        url = self._url(path)
        shown = urllib.parse.urlsplit(url).path
        authenticated = False
        attempt = 0
        while True:
            stream: IO[bytes] | None = None
            data: bytes | IO[bytes] | None
            if isinstance(body, Path):
                stream = body.open("rb")
                data = stream
            else:
                data = body
            req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            for k, v in (headers or {}).items():
                req.add_header(k, v)
            if isinstance(body, Path):
                req.add_header("Content-Length", str(body.stat().st_size))
            # Only to the registry itself: an upload Location may point at another host
            # (storage backends), which must not see the registry's credentials.
            if self._authorization and _same_origin(url, self.base):
                req.add_unredirected_header("Authorization", self._authorization)
            try:
                with self._opener.open(req, timeout=60) as resp:
                    result = _Response(resp.status, resp.headers, resp.read())
            except urllib.error.HTTPError as e:
                result = _Response(e.code, e.headers, e.read() if e.fp else b"")
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                if attempt < self.retries:
                    self._sleep(attempt)
                    attempt += 1
                    continue
                reason = getattr(e, "reason", e)
                raise RegistryError(
                    f"registry {method} {shown} failed: cannot reach {self.host} ({reason}).",
                    method=method,
                    path=shown,
                ) from None
            finally:
                if stream is not None:
                    stream.close()
            status = result.status
            if status in ok or status in quiet:
                return result
            if status == 401 and not authenticated:
                authenticated = True
                if self._authenticate(result.headers.get("WWW-Authenticate", "")):
                    continue
            if (status >= 500 or status == 429) and attempt < self.retries:
                self._sleep(attempt)
                attempt += 1
                continue
            raise RegistryError(
                f"registry {method} {shown} answered {status}{_error_code(result.body)}.",
                method=method,
                path=shown,
                status=status,
            )

    def _sleep(self, attempt: int) -> None:
        time.sleep(self.backoff * (2**attempt))

    def _authenticate(self, challenge: str) -> bool:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if self._auth is None:
                return False
            self._authorization = self._auth.basic()
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or f"repository:{self.repository}:pull,push"
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, method="GET")  # noqa: S310
        if self._auth is not None:
            req.add_unredirected_header("Authorization", self._auth.basic())
        try:
            with self._opener.open(req, timeout=60) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            where = urllib.parse.urlsplit(realm)
            raise RegistryError(
                f"token request to {where.netloc}{where.path} answered {e.code}.",
                method="GET",
                path=where.path,
                status=e.code,
            ) from None
        except (urllib.error.URLError, OSError, ValueError):
            where = urllib.parse.urlsplit(realm)
            raise RegistryError(
                f"token request to {where.netloc}{where.path} failed.",
                method="GET",
                path=where.path,
            ) from None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return False
        self._authorization = f"Bearer {token}"
        return True

    # -- blobs ----------------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        """Whether the repository holds the blob."""
        res = self._request("HEAD", f"/v2/{self.repository}/blobs/{digest}", quiet=(404,))
        return res.status == 200

    def get_blob(self, digest: str, max_bytes: int = 64 << 20) -> bytes:
        """A blob's bytes, checked against ``digest`` (small blobs only: signatures, bundles,
        attestations — a larger one is refused rather than read into memory)."""
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"{digest!r} is not a sha256 digest.")
        res = self._request("GET", f"/v2/{self.repository}/blobs/{digest}")
        if len(res.body) > max_bytes:
            raise RegistryError(f"blob {digest} is larger than {max_bytes} bytes.")
        if sha256_digest(res.body) != digest:
            raise RegistryError(f"blob {digest}: the registry sent different content.")
        return res.body

    def push_blob(self, digest: str, content: Path | bytes) -> None:
        """Upload a blob monolithically (POST, then PUT with the whole content, streamed from
        a file); does nothing when the registry already has it."""
        if self.blob_exists(digest):
            return
        res = self._request("POST", f"/v2/{self.repository}/blobs/uploads/", ok=(202,))
        location = res.headers.get("Location")
        if not location:
            raise RegistryError(
                f"registry POST /v2/{self.repository}/blobs/uploads/ gave no upload location.",
                method="POST",
                path=f"/v2/{self.repository}/blobs/uploads/",
                status=res.status,
            )
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(content, bytes):
            headers["Content-Length"] = str(len(content))
        self._request("PUT", url, body=content, headers=headers, ok=(201,))

    # -- manifests ------------------------------------------------------------------------------

    def push_manifest(self, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a digest or a tag; returns its digest, checked against the
        registry's ``Docker-Content-Digest``."""
        return self._put_manifest(ref, body, media_type)[0]

    def _put_manifest(self, ref: str, body: bytes, media_type: str) -> tuple[str, str | None]:
        """The digest, and the ``OCI-Subject`` header (set by registries with the referrers API)."""
        digest = sha256_digest(body)
        if DIGEST_RE.match(ref) and ref != digest:
            raise GateError(f"manifest content has digest {digest}, not {ref}.")
        path = f"/v2/{self.repository}/manifests/{ref}"
        res = self._request(
            "PUT", path, body=body, headers={"Content-Type": media_type}, ok=(201, 200)
        )
        reported = res.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            raise RegistryError(
                f"registry PUT {path} stored digest {reported}, but {digest} was pushed.",
                method="PUT",
                path=path,
                status=res.status,
            )
        return digest, res.headers.get("OCI-Subject")

    def get_manifest(self, ref: str) -> tuple[str, bytes, str]:
        """``(media type, bytes, digest)`` of a manifest by tag or digest."""
        path = f"/v2/{self.repository}/manifests/{ref}"
        res = self._request("GET", path, headers={"Accept": MANIFEST_ACCEPT})
        digest = sha256_digest(res.body)
        if DIGEST_RE.match(ref) and digest != ref:
            raise RegistryError(
                f"registry GET {path} returned content with digest {digest}.",
                method="GET",
                path=path,
                status=res.status,
            )
        media = res.headers.get("Content-Type", "").split(";")[0].strip()
        return media, res.body, digest

    def tag(self, tag: str, digest: str, media_type: str | None = None) -> None:
        """Point ``tag`` at the manifest ``digest`` (re-PUT of the same bytes); ``media_type``
        when known (some registries answer without a Content-Type)."""
        media, body, _ = self.get_manifest(digest)
        self.push_manifest(tag, body, media_type or media or OCI_MANIFEST)

    # -- referrers ------------------------------------------------------------------------------

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``: the referrers API,
        or the ``sha256-<hex>`` fallback tag when the registry answers 404."""
        path = f"/v2/{self.repository}/referrers/{digest}"
        if artifact_type:
            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        res = self._request("GET", path, headers={"Accept": OCI_INDEX}, quiet=(404,))
        if res.status == 200:
            manifests = _manifests_of(res.body)
        else:
            manifests = self._fallback_manifests(digest)
        return [
            d
            for d in manifests
            if isinstance(d, dict)
            and (artifact_type is None or d.get("artifactType") == artifact_type)
        ]

    def add_referrer(
        self, subject_digest: str, manifest: bytes, media_type: str = OCI_MANIFEST
    ) -> dict[str, Any]:
        """Push a manifest whose ``subject`` is ``subject_digest`` (by digest) and make it
        discoverable; on registries without the referrers API (no ``OCI-Subject`` answer),
        add its descriptor to the fallback-tag index once. Returns the descriptor."""
        data = json.loads(manifest)
        subject = data.get("subject") if isinstance(data, dict) else None
        if not isinstance(subject, dict) or subject.get("digest") != subject_digest:
            raise GateError(f"the referrer manifest's subject is not {subject_digest}.")
        digest, acknowledged = self._put_manifest(sha256_digest(manifest), manifest, media_type)
        descriptor: dict[str, Any] = {
            "mediaType": media_type,
            "digest": digest,
            "size": len(manifest),
        }
        artifact_type = data.get("artifactType") or data.get("config", {}).get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if data.get("annotations"):
            descriptor["annotations"] = data["annotations"]
        if acknowledged == subject_digest:
            return descriptor
        self._tag_referrer(subject_digest, descriptor)
        return descriptor

    def _fallback_tag(self, digest: str) -> str:
        return digest.replace(":", "-", 1)

    def _fallback_manifests(self, subject: str) -> list[Any]:
        path = f"/v2/{self.repository}/manifests/{self._fallback_tag(subject)}"
        res = self._request("GET", path, headers={"Accept": OCI_INDEX}, quiet=(404,))
        return _manifests_of(res.body) if res.status == 200 else []

    def _tag_referrer(self, subject: str, descriptor: dict[str, Any]) -> None:
        tag = self._fallback_tag(subject)
        manifests = self._fallback_manifests(subject)
        if any(isinstance(d, dict) and d.get("digest") == descriptor["digest"] for d in manifests):
            return
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*manifests, descriptor]}
        self.push_manifest(tag, json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)

    # -- images ---------------------------------------------------------------------------------

    def push_layout(self, layout: OciLayout, manifest_digest: str) -> str:
        """Push one image manifest of ``layout`` with its config and layers (existing blobs
        skipped), the manifest by digest (no tag); returns the digest."""
        path = layout.blob(manifest_digest)
        try:
            body = path.read_bytes()
        except OSError:
            raise GateError(f"{layout.path}: manifest {manifest_digest} is missing.") from None
        if sha256_digest(body) != manifest_digest:
            raise GateError(f"{layout.path}: blob {manifest_digest} does not match its digest.")
        manifest = json.loads(body)
        media = str(manifest.get("mediaType") or OCI_MANIFEST)
        if media in INDEX_TYPES:
            raise GateError(f"{manifest_digest} is an index; push one image manifest at a time.")
        for desc in [manifest["config"], *manifest.get("layers", [])]:
            self.push_blob(str(desc["digest"]), layout.blob(str(desc["digest"])))
        return self.push_manifest(manifest_digest, body, media)


def _same_origin(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _manifests_of(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    manifests = data.get("manifests") if isinstance(data, dict) else None
    return manifests if isinstance(manifests, list) else []


def _error_code(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors")
        code = errors[0]["code"]
    except (ValueError, AttributeError, LookupError, TypeError):
        return ""
    return f" ({code})" if isinstance(code, str) and code.isupper() else ""
