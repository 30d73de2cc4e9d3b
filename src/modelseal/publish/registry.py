"""A small OCI distribution client on urllib: blobs, manifests, tags and referrers.

Plain HTTP is used only for loopback hosts (or when asked to); everything else is HTTPS.
Credentials and bearer tokens never appear in errors, logs or ``repr``; they go to the registry's
own origin and to a Bearer token service only when that is the registry's origin or an
allowlisted HTTPS host (never over plain HTTP to another origin).

Every answer is hostile until bounded (:class:`RegistryLimits`): each body has a size cap by
what it is (manifest, index, signature, attestation, token, error), each request a wall-clock
budget enforced by a watchdog that shuts its socket (a per-read socket timeout cannot stop a
server that sends one byte every few seconds), the client an optional overall deadline, and
redirects, retries and referrers a count. A breach raises :class:`RegistryLimitError`, naming
the limit.
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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any, Literal

from modelseal._http import HttpLimitError, _Current, _opener, _Watchdog, read_body
from modelseal.errors import PublishError
from modelseal.oci import DIGEST_RE, INDEX_TYPES, OciLayout
from modelseal.untrusted import untrusted

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


class RegistryError(PublishError):
    """A registry refused a request or could not be reached; names method, path and status."""

    def __init__(self, message: str, *, method: str = "", path: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status


class RegistryUnavailable(RegistryError):
    """The registry could not answer: unreachable, broken answers, or 5xx/429 after every
    retry. A verification cannot run without it (exit 3), whatever else it found."""


class RegistryLimitError(RegistryError):
    """An answer broke a limit (too large, too slow, too many, an encoding never asked for);
    ``limit`` names it. Never retried, never ignored: the command cannot run (exit 3)."""

    def __init__(self, message: str, *, limit: str, method: str = "", path: str = "") -> None:
        super().__init__(message, method=method, path=path)
        self.limit = limit


BodyKind = Literal["manifest", "index", "signature", "attestation", "token", "error"]
"""What a response body is, which decides its size cap."""


@dataclass(frozen=True)
class RegistryLimits:
    """How much a registry may send and how long it may take (README: "Registry limits").

    The sizes leave room for what real registries hold: the OCI distribution spec asks
    registries to accept manifests of at least 4 MiB, a cosign simple-signing payload is under
    1 KiB, and a DSSE envelope with a large SBOM or scan report runs to a few MiB."""

    manifest_bytes: int = 4 << 20
    """An image manifest, or a ``.sig``/``.att``/referrer manifest."""
    index_bytes: int = 4 << 20
    """A referrers API answer or a fallback-tag index."""
    signature_bytes: int = 1 << 20
    """One ``.sig`` layer (a simple-signing payload)."""
    attestation_bytes: int = 32 << 20
    """One Sigstore bundle or ``.att`` DSSE envelope blob."""
    token_bytes: int = 1 << 20
    """A token service's answer."""
    error_bytes: int = 64 << 10
    """An error body, or the body of an answer to HEAD, POST or PUT."""
    request_seconds: float = 120.0
    """Wall clock for one request, connect to last byte (uploads get ``upload_rate`` more)."""
    upload_rate: int = 1 << 20
    """Bytes per second an upload is given on top of ``request_seconds``."""
    max_redirects: int = 5
    max_retries: int = 16
    """Retries across the whole client (each request also stops after its own ``retries``)."""
    max_referrers: int = 128
    """Sigstore bundle referrers of one image that verify will fetch."""
    max_signature_layers: int = 128
    """Layers of one ``.sig`` or ``.att`` manifest that verify will fetch."""

    def cap(self, kind: BodyKind) -> tuple[int, str]:
        """``(bytes, limit name)`` for a body of ``kind``."""
        name = f"{kind}_bytes"
        value = getattr(self, name)
        assert isinstance(value, int)
        return value, name


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
            raise RegistryError(
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
        limits: RegistryLimits | None = None,
        token_hosts: Collection[str] = (),
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
        self.limits = limits or RegistryLimits()
        self._token_hosts = frozenset(token_hosts)
        self._retries_left = self.limits.max_retries
        self._deadline: float | None = None
        self._deadline_name = ""
        self._current = _Current()
        self._opener = _opener(self._current, direct=local)

    def __repr__(self) -> str:
        return f"RegistryClient({self.base}/{self.repository})"

    def set_deadline(self, seconds: float, name: str) -> None:
        """Every request from now on must finish within ``seconds`` in all; ``name`` is the
        limit named when it runs out (e.g. the flag that set it)."""
        self._deadline = time.monotonic() + seconds
        self._deadline_name = f"{name} ({seconds:g} s)"

    def check_deadline(self, what: str = "") -> None:
        """Raise :class:`RegistryLimitError` when the deadline has passed."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise RegistryLimitError(
                f"{what or 'talking to ' + self.host}: out of time, the limit "
                f"{self._deadline_name} ran out.",
                limit=self._deadline_name,
            )

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
        kind: BodyKind = "error",
    ) -> _Response:
        """Send with retries (5xx, 429, connection errors) and auth; statuses in ``quiet``
        are returned instead of raised. A body of an ``ok`` answer is capped by ``kind``."""
        url = self._url(path)
        shown = urllib.parse.urlsplit(url).path
        authenticated = False
        attempt = 0
        while True:
            try:
                result = self._send(
                    method,
                    url,
                    body=body,
                    headers=headers or {},
                    ok=ok,
                    kind=kind,
                    authorization=(self._authorization, self.base),
                )
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                if self._may_retry(attempt, method, shown):
                    attempt += 1
                    continue
                raise RegistryUnavailable(
                    f"registry {method} {shown} failed{self._tries(attempt)}: "
                    f"{_transport_failure(e, self.host)}.",
                    method=method,
                    path=shown,
                ) from None
            status = result.status
            if status in ok or status in quiet:
                return result
            if status == 401 and not authenticated:
                authenticated = True
                if self._authenticate(result.headers.get("WWW-Authenticate", "")):
                    continue
            if status >= 500 or status == 429:
                if self._may_retry(attempt, method, shown):
                    attempt += 1
                    continue
                raise RegistryUnavailable(
                    f"registry {method} {shown} answered {status}{_error_code(result.body)}"
                    f"{self._tries(attempt)}.",
                    method=method,
                    path=shown,
                    status=status,
                )
            raise RegistryError(
                f"registry {method} {shown} answered {status}{_error_code(result.body)}.",
                method=method,
                path=shown,
                status=status,
            )

    def _tries(self, attempt: int) -> str:
        said = f" after {attempt} retries" if attempt else ""
        if self._retries_left > 0:
            return said
        return f"{said} (the limit max_retries, {self.limits.max_retries} retries in all, is spent)"

    def _may_retry(self, attempt: int, method: str, shown: str) -> bool:
        """Whether to try again, after the backoff; never past the deadline."""
        if attempt >= self.retries or self._retries_left <= 0:
            return False
        self._retries_left -= 1
        delay = self.backoff * (2**attempt)
        if self._deadline is not None and time.monotonic() + delay >= self._deadline:
            self.check_deadline(f"registry {method} {shown}")
            raise RegistryLimitError(
                f"registry {method} {shown}: no time left to retry, the limit "
                f"{self._deadline_name} would run out.",
                limit=self._deadline_name,
                method=method,
                path=shown,
            )
        self._sleep(attempt)
        return True

    def _sleep(self, attempt: int) -> None:
        time.sleep(self.backoff * (2**attempt))

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | Path | None,
        headers: Mapping[str, str],
        ok: tuple[int, ...],
        kind: BodyKind,
        authorization: tuple[str | None, str],
    ) -> _Response:
        """One request, following at most ``max_redirects`` redirects (GET and HEAD only),
        each hop under its watchdog; ``authorization`` (header value, origin) is sent only to
        that origin. Raises :class:`RegistryLimitError` on any breach."""
        shown = urllib.parse.urlsplit(url).path
        for _hop in range(self.limits.max_redirects + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise RegistryLimitError(
                    f"registry {method} {shown}: refused to follow a {_plain(parts.scheme)[:20]}: "
                    "URL (limit: http(s) only).",
                    limit="http(s) only",
                    method=method,
                    path=shown,
                )
            seconds, name = self._budget(body)
            if seconds <= 0:
                self.check_deadline(f"registry {method} {shown}")
            with _Watchdog(seconds) as dog:
                self._current.watchdog = dog
                try:
                    result = self._exchange(
                        method, url, body, headers, ok, kind, authorization, min(seconds, 60)
                    )
                except (urllib.error.URLError, http.client.HTTPException, OSError):
                    if dog.fired:
                        raise self._timed_out(method, shown, name) from None
                    raise
                finally:
                    self._current.watchdog = None
                if dog.fired:
                    raise self._timed_out(method, shown, name)
            if result.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return result
            location = result.headers.get("Location")
            if not location:
                return result
            target = urllib.parse.urljoin(url, location)
            if parts.scheme == "https" and urllib.parse.urlsplit(target).scheme != "https":
                raise RegistryLimitError(
                    f"registry {method} {shown}: refused a redirect from https to plain http "
                    "(limit: no https downgrade).",
                    limit="no https downgrade",
                    method=method,
                    path=shown,
                )
            url = target
        raise RegistryLimitError(
            f"registry {method} {shown}: more than {self.limits.max_redirects} redirects "
            "(the limit max_redirects).",
            limit="max_redirects",
            method=method,
            path=shown,
        )

    def _budget(self, body: bytes | Path | None) -> tuple[float, str]:
        """Seconds this request may take, and the limit that sets it."""
        seconds = self.limits.request_seconds
        if isinstance(body, Path):
            seconds += body.stat().st_size / self.limits.upload_rate
        elif body:
            seconds += len(body) / self.limits.upload_rate
        name = f"request_seconds ({seconds:g} s for one request)"
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left < seconds:
                return left, self._deadline_name
        return seconds, name

    def _timed_out(self, method: str, shown: str, name: str) -> RegistryLimitError:
        return RegistryLimitError(
            f"registry {method} {shown}: the answer took too long, the limit {name} ran out "
            "(a server sending slowly is cut off by the wall clock).",
            limit=name,
            method=method,
            path=shown,
        )

    def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | Path | None,
        headers: Mapping[str, str],
        ok: tuple[int, ...],
        kind: BodyKind,
        authorization: tuple[str | None, str],
        timeout: float,
    ) -> _Response:
        stream: IO[bytes] | None = None
        data: bytes | IO[bytes] | None
        if isinstance(body, Path):
            stream = body.open("rb")
            data = stream
        else:
            data = body
        try:
            req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            for k, v in headers.items():
                req.add_header(k, v)
            if isinstance(body, Path):
                req.add_header("Content-Length", str(body.stat().st_size))
            # Only to the origin it is for: an upload Location or a redirect may point at
            # another host (storage backends), which must not see the registry's credentials.
            value, origin = authorization
            if value and _same_origin(url, origin):
                req.add_unredirected_header("Authorization", value)
            shown = f"{method} {urllib.parse.urlsplit(url).path}"
            try:
                resp = self._opener.open(req, timeout=max(timeout, 0.001))
            except urllib.error.HTTPError as e:
                with e:
                    cap = self.limits.cap(kind if e.code in ok else "error")
                    return _Response(e.code, e.headers, _read_capped(e, e.headers, cap, shown))
            with resp:
                cap = self.limits.cap(kind if resp.status in ok else "error")
                return _Response(
                    resp.status, resp.headers, _read_capped(resp, resp.headers, cap, shown)
                )
        finally:
            if stream is not None:
                stream.close()

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
        where = urllib.parse.urlsplit(realm)
        # The credentials go to the token service only when it is the registry itself or an
        # allowlisted host over HTTPS; anywhere else the token is asked for anonymously.
        basic = (
            self._auth.basic()
            if self._auth is not None and self.may_send_credentials(realm)
            else None
        )
        try:
            res = self._send(
                "GET", url, body=None, headers={}, ok=(200,), kind="token",
                authorization=(basic, f"{where.scheme}://{where.netloc}"),
            )  # fmt: skip
        except RegistryLimitError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            raise RegistryUnavailable(
                f"token request to {where.netloc}{where.path} failed.",
                method="GET",
                path=where.path,
            ) from None
        if res.status != 200:
            raise RegistryError(
                f"token request to {where.netloc}{where.path} answered {res.status}.",
                method="GET",
                path=where.path,
                status=res.status,
            )
        try:
            data = json.loads(res.body)
        except (ValueError, RecursionError):
            data = None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return False
        self._authorization = f"Bearer {token}"
        return True

    def may_send_credentials(self, url: str) -> bool:
        """Whether the registry's credentials may go to ``url`` (a Bearer realm): the
        registry's own origin, or an HTTPS URL on an allowlisted ``host[:port]``."""
        parts = urllib.parse.urlsplit(url)
        if _same_origin(url, self.base):
            return True
        return parts.scheme == "https" and parts.netloc.lower() in self._token_hosts

    # -- blobs ----------------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        """Whether the repository holds the blob."""
        res = self._request("HEAD", f"/v2/{self.repository}/blobs/{digest}", quiet=(404,))
        return res.status == 200

    def get_blob(
        self, digest: str, kind: Literal["signature", "attestation"] = "attestation"
    ) -> bytes:
        """A blob's bytes, checked against ``digest`` (small blobs only: signatures, bundles,
        attestations — one larger than the ``kind``'s limit is refused, not read into memory)."""
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"{digest!r} is not a sha256 digest.")
        res = self._request("GET", f"/v2/{self.repository}/blobs/{digest}", kind=kind)
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
            raise RegistryError(f"manifest content has digest {digest}, not {ref}.")
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
        res = self._request("GET", path, headers={"Accept": MANIFEST_ACCEPT}, kind="manifest")
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
        res = self._request("GET", path, headers={"Accept": OCI_INDEX}, quiet=(404,), kind="index")
        if res.status == 200:
            manifests = _manifests_of(res.body)
        else:
            manifests = self._fallback_manifests(digest)
        found = [
            d
            for d in manifests
            if isinstance(d, dict)
            and (artifact_type is None or d.get("artifactType") == artifact_type)
        ]
        cap = self.limits.max_referrers
        if len(found) > cap:
            # Each costs two more requests; anyone who may push to the repository can add them.
            raise RegistryLimitError(
                f"{digest} has {len(found)} referrers"
                + (f" of type {artifact_type}" if artifact_type else "")
                + f", more than the limit max_referrers ({cap}).",
                limit="max_referrers",
                method="GET",
                path=urllib.parse.urlsplit(path).path,
            )
        return found

    def add_referrer(
        self, subject_digest: str, manifest: bytes, media_type: str = OCI_MANIFEST
    ) -> dict[str, Any]:
        """Push a manifest whose ``subject`` is ``subject_digest`` (by digest) and make it
        discoverable; on registries without the referrers API (no ``OCI-Subject`` answer),
        add its descriptor to the fallback-tag index once. Returns the descriptor."""
        data = json.loads(manifest)
        subject = data.get("subject") if isinstance(data, dict) else None
        if not isinstance(subject, dict) or subject.get("digest") != subject_digest:
            raise RegistryError(f"the referrer manifest's subject is not {subject_digest}.")
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
        res = self._request("GET", path, headers={"Accept": OCI_INDEX}, quiet=(404,), kind="index")
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
            raise PublishError(f"{layout.path}: manifest {manifest_digest} is missing.") from None
        if sha256_digest(body) != manifest_digest:
            raise PublishError(f"{layout.path}: blob {manifest_digest} does not match its digest.")
        manifest = json.loads(body)
        media = str(manifest.get("mediaType") or OCI_MANIFEST)
        if media in INDEX_TYPES:
            raise PublishError(f"{manifest_digest} is an index; push one image manifest at a time.")
        for desc in [manifest["config"], *manifest.get("layers", [])]:
            self.push_blob(str(desc["digest"]), layout.blob(str(desc["digest"])))
        return self.push_manifest(manifest_digest, body, media)


def _read_capped(fp: Any, headers: Message, cap: tuple[int, str], shown: str) -> bytes:
    """The body, refused when it is (or says it is) larger than ``cap`` or is encoded."""
    if shown.startswith("HEAD "):
        return b""  # its Content-Length is the resource's; there is no body
    limit, name = cap
    try:
        return read_body(fp, headers, limit, f"registry {shown}", name)
    except HttpLimitError as e:
        raise RegistryLimitError(e.message, limit=e.limit) from None


def _transport_failure(e: BaseException, host: str) -> str:
    if isinstance(e, http.client.IncompleteRead):
        return f"{host} sent a broken answer (it ended before its Content-Length)"
    if isinstance(e, http.client.HTTPException) and not isinstance(e, ConnectionError):
        return f"{host} sent a broken answer ({type(e).__name__})"
    return f"cannot reach {host} ({_plain(str(getattr(e, 'reason', e)))[:200]})"


def _plain(text: str) -> str:
    # Registry text inside a message: printed escaped, markup escaping left to the printer.
    return untrusted(text, markup=False)


def _same_origin(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _manifests_of(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return []
    manifests = data.get("manifests") if isinstance(data, dict) else None
    return manifests if isinstance(manifests, list) else []


def _error_code(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors")
        code = errors[0]["code"]
    except (ValueError, AttributeError, LookupError, TypeError, RecursionError):
        return ""
    return f" ({code})" if isinstance(code, str) and code.isupper() else ""
