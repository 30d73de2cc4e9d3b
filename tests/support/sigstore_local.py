"""A local Sigstore deployment for tests: OIDC issuer, Fulcio, Rekor v1 and a CT log key.

Everything listens on 127.0.0.1 (``http.server`` threads) and is built on ``cryptography``:

* **OIDC issuer** — discovery document, JWKS, ES256 ID tokens with any claims
  (:meth:`LocalSigstore.token`), and a GitHub-Actions-style token endpoint
  (``ACTIONS_ID_TOKEN_REQUEST_URL`` + bearer ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``) so
  ``sigstore.oidc.detect_credential()`` works with ``GITHUB_ACTIONS=true``.
* **Fulcio** (``/api/v2/signingCert``) — checks the token against the issuer's JWKS (fetched
  over HTTP, like the real one), checks proof of possession, and issues a 10-minute leaf from a
  local root → intermediate CA with the Fulcio extensions (issuer 1.1/1.8, the GitHub workflow
  ones when the token has them) and an embedded SCT from the local CT log key (precertificate
  flow, so the SCT verifies).
* **Rekor v1** — ``hashedrekord``/``dsse`` 0.0.1 entries on a real RFC 6962 Merkle tree, with
  integrated time, signed entry timestamp, inclusion proof and signed checkpoint; GET by index
  or UUID, log info, public key. :attr:`Service.fail_status` makes it (or Fulcio) answer with an
  HTTP error, and :attr:`Service.calls` counts the attempts.

:meth:`LocalSigstore.write_files` writes a ``ClientTrustConfig`` (trusted root + signing config
v0.2) for sigstore-python, a ``trusted_root.json`` for ``cosign --trusted-root``, and the PEM
files cosign's ``SIGSTORE_*`` variables want.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

AUDIENCE = "sigstore"
DEFAULT_EMAIL = "release-bot@modelseal.test"
SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_FULCIO = "1.3.6.1.4.1.57264.1."

Response = tuple[int, str, bytes]


# --- small encoders -------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Standard base64 as text."""
    return base64.b64encode(data).decode()


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 key ID: SHA-256 of the DER SubjectPublicKeyInfo (log IDs, SCT log IDs)."""
    return hashlib.sha256(spki_der(key)).digest()


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _ecdsa(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, doc: Any) -> Response:
    return status, "application/json", json.dumps(doc).encode()


def _error(status: int, message: str) -> Response:
    return _json(status, {"code": status, "message": message})


# --- RFC 6962 Merkle tree -------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash."""
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH over already-hashed leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), lowest level first."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


# --- HTTP plumbing --------------------------------------------------------------------------


@dataclass
class Service:
    """One HTTP service of the stack, with a fault switch and a call counter."""

    name: str
    route: Callable[[str, str, dict[str, list[str]], Any, bytes], Response]
    fail_status: int | None = None
    """When set, every request that changes state (POST) is answered with this HTTP status."""
    calls: int = 0
    """POST requests received (including failed ones): how many attempts a client made."""
    delay_s: float = 0.0
    """When set, every POST is answered only after this many seconds (a hung service)."""
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Listen on an ephemeral 127.0.0.1 port in a daemon thread."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if method == "POST":
                    with service._lock:
                        service.calls += 1
                    if service.delay_s:
                        time.sleep(service.delay_s)
                    if service.fail_status is not None:
                        self._send(_error(service.fail_status, f"{service.name} is failing"))
                        return
                try:
                    result = service.route(
                        method, parts.path, parse_qs(parts.query), self.headers, body
                    )
                except Exception as e:  # a bug in the stack must show up as a 500, not a hang
                    result = _error(500, f"{type(e).__name__}: {e}")
                self._send(result)

            def _send(self, result: Response) -> None:
                status, ctype, data = result
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeout tests)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        ).start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def failing(self, status: int = 500) -> Iterator[Service]:
        """Answer every POST with ``status`` inside the block; resets the call counter first."""
        self.calls = 0
        self.fail_status = status
        try:
            yield self
        finally:
            self.fail_status = None


# --- the stack ------------------------------------------------------------------------------


@dataclass
class _Entry:
    body: bytes
    integrated_time: int
    set_b64: str


class LocalSigstore:
    """OIDC issuer + Fulcio + Rekor v1 + CT log key on 127.0.0.1; see the module docstring."""

    def __init__(self) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.started = now
        self._oidc_key = ec.generate_private_key(ec.SECP256R1())
        self._oidc_kid = secrets.token_hex(8)
        self._root_key = ec.generate_private_key(ec.SECP384R1())
        self._inter_key = ec.generate_private_key(ec.SECP384R1())
        self._ct_key = ec.generate_private_key(ec.SECP256R1())
        self._rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.actions_request_token = secrets.token_urlsafe(24)
        """Bearer token the GitHub-style endpoint demands (``ACTIONS_ID_TOKEN_REQUEST_TOKEN``)."""
        self.github_claims: dict[str, Any] = github_claims()
        """Claims the GitHub-style endpoint puts into the tokens it hands out."""
        self.github_token_requests: list[str] = []
        """The audience of every request to the GitHub-style endpoint (answered or refused)."""
        self.root_cert, self.intermediate_cert = self._make_ca(now)
        self._entries: list[_Entry] = []
        self._leaves: list[bytes] = []
        self._log_lock = threading.Lock()
        self._tree_id = secrets.randbelow(2**62)
        # Entry 0 is a placeholder: sigstore-go (cosign 2.5) takes a log index of 0 for
        # "missing" and rejects the entry, and a real log never hands out index 0 any more.
        self._append(b'{"apiVersion":"0.0.1","kind":"placeholder","spec":{}}')
        self._jwks_cache: dict[str, Any] = {}

        self.issuer = Service("oidc", self._route_oidc)
        self.fulcio = Service("fulcio", self._route_fulcio)
        self.rekor = Service("rekor", self._route_rekor)
        for service in (self.issuer, self.fulcio, self.rekor):
            service.start()
        self.issuer_url = self.issuer.url
        self.trust_config_path: Path | None = None
        self.trusted_root_path: Path | None = None
        self.cosign_files: dict[str, Path] = {}

    def close(self) -> None:
        """Stop the three servers."""
        for service in (self.issuer, self.fulcio, self.rekor):
            service.stop()

    # --- OIDC -------------------------------------------------------------------------------

    def token(self, *, lifetime: int = 600, **claims: Any) -> str:
        """A signed ES256 ID token from this issuer. Defaults: ``aud=sigstore``, an e-mail
        identity; any claim can be overridden (``None`` removes it)."""
        now = int(time.time())
        doc: dict[str, Any] = {
            "iss": self.issuer_url,
            "aud": AUDIENCE,
            "sub": DEFAULT_EMAIL,
            "email": DEFAULT_EMAIL,
            "email_verified": True,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
        }
        doc.update(claims)
        doc = {k: v for k, v in doc.items() if v is not None}
        return jwt.encode(doc, self._oidc_key, algorithm="ES256", headers={"kid": self._oidc_kid})

    def github_token(self, **overrides: Any) -> str:
        """A token shaped like GitHub Actions' (no e-mail; workflow claims)."""
        return self.token(
            **{**self.github_claims, "email": None, "email_verified": None, **overrides}
        )

    def github_env(self) -> dict[str, str]:
        """The environment a GitHub Actions job with ``id-token: write`` sees."""
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.issuer_url}/gh-token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.actions_request_token,
        }

    def _jwk(self) -> dict[str, str]:
        numbers = self._oidc_key.public_key().public_numbers()

        def enc(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

        return {
            "kty": "EC",
            "crv": "P-256",
            "x": enc(numbers.x),
            "y": enc(numbers.y),
            "kid": self._oidc_kid,
            "use": "sig",
            "alg": "ES256",
        }

    def _route_oidc(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        _: bytes,
    ) -> Response:
        if method == "GET" and path == "/.well-known/openid-configuration":
            return _json(
                200,
                {
                    "issuer": self.issuer_url,
                    "jwks_uri": f"{self.issuer_url}/jwks",
                    "authorization_endpoint": f"{self.issuer_url}/authorize",
                    "token_endpoint": f"{self.issuer_url}/token",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                },
            )
        if method == "GET" and path == "/jwks":
            return _json(200, {"keys": [self._jwk()]})
        if method == "GET" and path == "/gh-token":
            audience = (query.get("audience") or [AUDIENCE])[0]
            self.github_token_requests.append(audience)
            auth = headers.get("Authorization") or ""
            if auth.split(" ", 1)[-1] != self.actions_request_token:
                return _error(401, "bad request token")
            return _json(200, {"count": 1, "value": self.github_token(aud=audience)})
        return _error(404, f"no route {method} {path}")

    def _verify_token(self, token: str) -> dict[str, Any]:
        """What Fulcio does: discovery → JWKS → signature, issuer, audience and expiry."""
        unverified = jwt.decode(token, options={"verify_signature": False})
        iss = unverified.get("iss")
        if iss != self.issuer_url:
            raise ValueError(f"untrusted OIDC issuer {iss!r}")
        if iss not in self._jwks_cache:
            # No proxies: the issuer is on loopback and the tests set HTTPS_PROXY to a dead port.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{iss}/.well-known/openid-configuration", timeout=10) as r:
                jwks_uri = json.load(r)["jwks_uri"]
            with opener.open(jwks_uri, timeout=10) as r:
                self._jwks_cache[iss] = json.load(r)
        kid = jwt.get_unverified_header(token).get("kid")
        for jwk in self._jwks_cache[iss]["keys"]:
            if jwk.get("kid") == kid:
                key = jwt.PyJWK(jwk).key
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=["ES256"], audience=AUDIENCE, issuer=iss
                )
                return claims
        raise ValueError("token signed by an unknown key")

    # --- CA and Fulcio ----------------------------------------------------------------------

    def _make_ca(self, now: datetime) -> tuple[x509.Certificate, x509.Certificate]:
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelseal.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "modelseal-test-root"),
            ]
        )
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelseal.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "modelseal-test-intermediate"),
            ]
        )
        root_pub = self._root_key.public_key()
        inter_pub = self._inter_key.public_key()
        usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(usage, critical=True)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_pub), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_pub), critical=False
            )
            .sign(self._root_key, hashes.SHA384())
        )
        inter = (
            x509.CertificateBuilder()
            .subject_name(inter_name)
            .issuer_name(root_name)
            .public_key(inter_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3000))
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_pub), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_pub), critical=False
            )
            .sign(self._root_key, hashes.SHA384())
        )
        return root, inter

    def _leaf_extensions(self, claims: Mapping[str, Any]) -> list[tuple[x509.ExtensionType, bool]]:
        """Fulcio's profile: SAN from the token, the issuer, GitHub workflow facts."""
        iss = str(claims["iss"])
        exts: list[tuple[x509.ExtensionType, bool]] = []
        gh = claims.get("job_workflow_ref")
        if gh:
            san: x509.GeneralName = x509.UniformResourceIdentifier(f"https://github.com/{gh}")
        elif claims.get("email"):
            san = x509.RFC822Name(str(claims["email"]))
        else:
            san = x509.UniformResourceIdentifier(str(claims["sub"]))
        # Fulcio leaves have an empty subject, so the SAN is critical (RFC 5280 4.2.1.6).
        exts.append((x509.SubjectAlternativeName([san]), True))

        def raw(n: int, value: str) -> None:  # 1.1–1.6: the bare string (deprecated encoding)
            exts.append(
                (
                    x509.UnrecognizedExtension(ObjectIdentifier(f"{_FULCIO}{n}"), value.encode()),
                    False,
                )
            )

        def utf8(n: int, value: str) -> None:  # 1.8+: a DER UTF8String
            exts.append(
                (
                    x509.UnrecognizedExtension(
                        ObjectIdentifier(f"{_FULCIO}{n}"), _der(0x0C, value.encode())
                    ),
                    False,
                )
            )

        raw(1, iss)
        if gh:
            c = {k: str(v) for k, v in claims.items() if v is not None}
            gh_url = "https://github.com/"
            for n, key in (
                (2, "event_name"),
                (3, "sha"),
                (4, "workflow"),
                (5, "repository"),
                (6, "ref"),
            ):
                if key in c:
                    raw(n, c[key])
        utf8(8, iss)
        if gh:
            optional = [
                (9, gh_url + c["job_workflow_ref"]),
                (10, c.get("job_workflow_sha")),
                (11, c.get("runner_environment")),
                (12, gh_url + c["repository"] if "repository" in c else None),
                (13, c.get("sha")),
                (14, c.get("ref")),
                (15, c.get("repository_id")),
                (16, gh_url + c["repository_owner"] if "repository_owner" in c else None),
                (17, c.get("repository_owner_id")),
                (18, gh_url + c["workflow_ref"] if "workflow_ref" in c else None),
                (19, c.get("workflow_sha")),
                (20, c.get("event_name")),
                (
                    21,
                    f"{gh_url}{c['repository']}/actions/runs/{c['run_id']}/attempts/{c['run_attempt']}"
                    if {"repository", "run_id", "run_attempt"} <= c.keys()
                    else None,
                ),
                (22, c.get("repository_visibility")),
            ]
            for n, value in optional:
                if value:
                    utf8(n, value)
        return exts

    def issue_certificate(
        self, public_key: ec.EllipticCurvePublicKey, claims: Mapping[str, Any]
    ) -> x509.Certificate:
        """A Fulcio leaf for ``public_key`` with an embedded SCT (precertificate flow)."""
        now = datetime.now(UTC).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._inter_key.public_key()),
                critical=False,
            )
        )
        for ext, critical in self._leaf_extensions(claims):
            builder = builder.add_extension(ext, critical=critical)

        # The SCT signs the precertificate's TBS without its poison extension. That is the final
        # certificate's TBS without its SCT list, as long as either sits last: build once with
        # an empty list to get those bytes, sign them, then build again with the real SCT.
        def with_scts(scts: bytes) -> x509.Certificate:
            value = _der(0x04, struct.pack("!H", len(scts)) + scts)
            return builder.add_extension(
                x509.UnrecognizedExtension(SCT_LIST_OID, value), critical=False
            ).sign(self._inter_key, hashes.SHA384())

        tbs = with_scts(b"").tbs_precertificate_bytes
        sct = self._sct(tbs, int(time.time() * 1000))
        cert = with_scts(struct.pack("!H", len(sct)) + sct)
        assert cert.tbs_precertificate_bytes == tbs
        return cert

    def _sct(self, tbs: bytes, timestamp_ms: int) -> bytes:
        """An RFC 6962 v1 SCT over a precertificate entry, signed by the CT log key."""
        issuer_key_hash = key_id(self._inter_key.public_key())
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp_ms, 1)  # v1, certificate_timestamp, precert_entry
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)  # no extensions
        )
        signature = _ecdsa(self._ct_key, signed)
        return (
            struct.pack("!B", 0)
            + key_id(self._ct_key.public_key())
            + struct.pack("!QH", timestamp_ms, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )

    def _route_fulcio(
        self,
        method: str,
        path: str,
        _: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        chain_pem = [
            c.public_bytes(serialization.Encoding.PEM).decode()
            for c in (self.intermediate_cert, self.root_cert)
        ]
        if method == "GET" and path == "/api/v2/trustBundle":
            return _json(200, {"chains": [{"certificates": chain_pem}]})
        if method == "GET" and path == "/api/v2/configuration":
            return _json(200, {"issuers": [{"issuerUrl": self.issuer_url, "audience": AUDIENCE}]})
        if not (method == "POST" and path in ("/api/v1/signingCert", "/api/v2/signingCert")):
            return _error(404, f"no route {method} {path}")
        try:
            request = json.loads(body)
        except ValueError:
            return _error(400, "request is not JSON")
        if path == "/api/v1/signingCert":  # cosign 2.x still speaks the v1 API
            # {"publicKey": {"content": b64(PEM), "algorithm"}, "signedEmailAddress": b64(sig)}
            request = {
                "publicKeyRequest": {
                    "publicKey": {
                        "content": base64.b64decode(request["publicKey"]["content"]).decode()
                    },
                    "proofOfPossession": request["signedEmailAddress"],
                }
            }
        auth = headers.get("Authorization") or ""
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        token = token or (request.get("credentials") or {}).get("oidcIdentityToken", "")
        try:
            claims = self._verify_token(token)
        except Exception as e:
            return _error(401, f"the OIDC token was refused: {type(e).__name__}: {e}")
        try:
            if "certificateSigningRequest" in request:
                csr = x509.load_pem_x509_csr(base64.b64decode(request["certificateSigningRequest"]))
                if not csr.is_signature_valid:
                    return _error(400, "CSR signature does not verify")
                public_key: object = csr.public_key()
            else:
                pkr = request["publicKeyRequest"]
                public_key = serialization.load_pem_public_key(pkr["publicKey"]["content"].encode())
                proof = base64.b64decode(pkr["proofOfPossession"])
        except (KeyError, ValueError, TypeError) as e:
            return _error(400, f"bad signing request: {e}")
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return _error(400, "only ECDSA keys are supported here")
        if "certificateSigningRequest" not in request:
            # Proof of possession: the token's subject (e-mail or sub), signed with the key.
            for subject in {str(claims.get("sub")), str(claims.get("email"))}:
                try:
                    public_key.verify(proof, subject.encode(), ec.ECDSA(hashes.SHA256()))
                    break
                except InvalidSignature:
                    continue
            else:
                return _error(400, "proof of possession does not verify")
        cert = self.issue_certificate(public_key, claims)
        leaf = cert.public_bytes(serialization.Encoding.PEM).decode()
        if path == "/api/v1/signingCert":  # v1 answers with the PEM chain itself
            return 201, "application/pem-certificate-chain", "".join([leaf, *chain_pem]).encode()
        return _json(
            201, {"signedCertificateEmbeddedSct": {"chain": {"certificates": [leaf, *chain_pem]}}}
        )

    # --- Rekor v1 ---------------------------------------------------------------------------

    @property
    def rekor_log_id(self) -> bytes:
        """The Rekor log ID (key ID of its signing key)."""
        return key_id(self._rekor_key.public_key())

    def _checkpoint(self, size: int, root: bytes) -> str:
        note = f"rekor.local - {self._tree_id}\n{size}\n{b64(root)}\n"
        signature = self.rekor_log_id[:4] + _ecdsa(self._rekor_key, note.encode())
        return f"{note}\n\u2014 rekor.local {b64(signature)}\n"

    def _entry_response(self, index: int) -> dict[str, Any]:
        with self._log_lock:
            entry = self._entries[index]
            leaves = list(self._leaves)
        root = merkle_root(leaves)
        return {
            leaf_hash(entry.body).hex(): {
                "body": b64(entry.body),
                "integratedTime": entry.integrated_time,
                "logID": self.rekor_log_id.hex(),
                "logIndex": index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": self._checkpoint(len(leaves), root),
                        "hashes": [h.hex() for h in inclusion_path(index, leaves)],
                        "logIndex": index,
                        "rootHash": root.hex(),
                        "treeSize": len(leaves),
                    },
                    "signedEntryTimestamp": entry.set_b64,
                },
            }
        }

    def _append(self, body: bytes) -> int:
        with self._log_lock:
            index = len(self._entries)
            integrated = int(time.time())
            promise = rfc8785.dumps(
                {
                    "body": b64(body),
                    "integratedTime": integrated,
                    "logID": self.rekor_log_id.hex(),
                    "logIndex": index,
                }
            )
            self._entries.append(_Entry(body, integrated, b64(_ecdsa(self._rekor_key, promise))))
            self._leaves.append(leaf_hash(body))
            return index

    def _canonical_body(self, proposed: Mapping[str, Any]) -> dict[str, Any]:
        """Check a proposed entry like Rekor does and return its canonical form."""
        kind, version = proposed.get("kind"), proposed.get("apiVersion")
        spec = proposed["spec"]
        if (kind, version) == ("hashedrekord", "0.0.1"):
            sig_b64 = spec["signature"]["content"]
            pem_b64 = spec["signature"]["publicKey"]["content"]
            algorithm, value = spec["data"]["hash"]["algorithm"], spec["data"]["hash"]["value"]
            if algorithm != "sha256":
                raise ValueError("only sha256 digests are supported here")
            _verifier_key(pem_b64).verify(
                base64.b64decode(sig_b64),
                bytes.fromhex(value),
                ec.ECDSA(Prehashed(hashes.SHA256())),
            )
            return {
                "apiVersion": "0.0.1",
                "kind": "hashedrekord",
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": value}},
                    "signature": {"content": sig_b64, "publicKey": {"content": pem_b64}},
                },
            }
        if (kind, version) == ("dsse", "0.0.1"):
            proposed_content = spec["proposedContent"]
            envelope_text: str = proposed_content["envelope"]
            envelope = json.loads(envelope_text)
            payload = base64.b64decode(envelope["payload"])
            ptype: str = envelope["payloadType"]
            pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)
            verifiers: list[str] = proposed_content["verifiers"]
            signatures = []
            for sig in envelope["signatures"]:
                for verifier in verifiers:
                    try:
                        _verifier_key(verifier).verify(
                            base64.b64decode(sig["sig"]), pae, ec.ECDSA(hashes.SHA256())
                        )
                    except InvalidSignature:
                        continue
                    signatures.append({"signature": sig["sig"], "verifier": verifier})
                    break
                else:
                    raise ValueError("a DSSE signature does not verify with any verifier")
            return {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(envelope_text.encode()).hexdigest(),
                    },
                    "payloadHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(payload).hexdigest(),
                    },
                    "signatures": signatures,
                },
            }
        raise ValueError(f"unsupported entry kind {kind}/{version}")

    def _route_rekor(
        self, method: str, path: str, query: dict[str, list[str]], _: Mapping[str, str], body: bytes
    ) -> Response:
        if method == "POST" and path == "/api/v1/log/entries":
            try:
                canonical = rfc8785.dumps(self._canonical_body(json.loads(body)))
            except InvalidSignature:
                return _error(400, "signature does not verify")
            except (KeyError, ValueError, TypeError) as e:
                return _error(400, f"bad entry: {e}")
            with self._log_lock:
                duplicate = leaf_hash(canonical) in self._leaves
            if duplicate:
                return _error(409, "an equivalent entry already exists in the transparency log")
            return _json(201, self._entry_response(self._append(canonical)))
        if method == "GET" and path == "/api/v1/log/entries" and "logIndex" in query:
            index = int(query["logIndex"][0])
            if not 0 <= index < len(self._entries):
                return _error(404, "no such entry")
            return _json(200, self._entry_response(index))
        if method == "GET" and path.startswith("/api/v1/log/entries/"):
            wanted = path.rsplit("/", 1)[-1][-64:]
            with self._log_lock:
                hexes = [leaf.hex() for leaf in self._leaves]
            if wanted not in hexes:
                return _error(404, "no such entry")
            return _json(200, self._entry_response(hexes.index(wanted)))
        if method == "GET" and path == "/api/v1/log":
            with self._log_lock:
                leaves = list(self._leaves)
            root = merkle_root(leaves)
            return _json(
                200,
                {
                    "rootHash": root.hex(),
                    "treeSize": len(leaves),
                    "signedTreeHead": self._checkpoint(len(leaves), root),
                    "treeID": str(self._tree_id),
                },
            )
        if method == "GET" and path == "/api/v1/log/publicKey":
            return 200, "application/x-pem-file", self._pem(self._rekor_key.public_key())
        return _error(404, f"no route {method} {path}")

    # --- trust files ------------------------------------------------------------------------

    @staticmethod
    def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def trusted_root(self) -> dict[str, Any]:
        """The trusted root (protobuf-specs JSON) naming this stack's CA, Rekor and CT keys."""
        start = _iso(self.started - timedelta(days=1))

        def log(url: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki_der(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": b64(key_id(key))},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor.url, self._rekor_key.public_key())],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "modelseal.test", "commonName": "modelseal-test"},
                    "uri": self.fulcio.url,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                            for c in (self.intermediate_cert, self.root_cert)
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [log(f"{self.fulcio.url}/ct", self._ct_key.public_key())],
            "timestampAuthorities": [],
        }

    def signing_config(self) -> dict[str, Any]:
        """A signing config v0.2 pointing at this stack (Rekor v1, no TSA)."""
        start = _iso(self.started - timedelta(days=1))

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": {"start": start},
                "operator": "modelseal.test",
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(self.fulcio.url)],
            "oidcUrls": [service(self.issuer_url)],
            "rekorTlogUrls": [service(self.rekor.url)],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        }

    def client_trust_config(self) -> dict[str, Any]:
        """A ClientTrustConfig (what a private Sigstore deployment hands its clients)."""
        return {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.trusted_root(),
            "signingConfig": self.signing_config(),
        }

    def write_files(self, directory: Path) -> None:
        """Write the trust config, the trusted root and cosign's PEM files into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.trust_config_path = directory / "trust_config.json"
        self.trust_config_path.write_text(json.dumps(self.client_trust_config(), indent=2))
        self.trusted_root_path = directory / "trusted_root.json"
        self.trusted_root_path.write_text(json.dumps(self.trusted_root(), indent=2))
        files = {
            "fulcio_chain": b"".join(
                c.public_bytes(serialization.Encoding.PEM)
                for c in (self.intermediate_cert, self.root_cert)
            ),
            "rekor_pub": self._pem(self._rekor_key.public_key()),
            "ctfe_pub": self._pem(self._ct_key.public_key()),
        }
        for name, data in files.items():
            path = directory / f"{name}.pem"
            path.write_bytes(data)
            self.cosign_files[name] = path

    def cosign_env(self, home: Path) -> dict[str, str]:
        """Environment for cosign: this stack's keys instead of the public TUF root, no proxy
        for loopback, a dead proxy for everything else, and a private HOME/TUF cache."""
        return {
            "SIGSTORE_ROOT_FILE": str(self.cosign_files["fulcio_chain"]),
            "SIGSTORE_REKOR_PUBLIC_KEY": str(self.cosign_files["rekor_pub"]),
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(self.cosign_files["ctfe_pub"]),
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "HOME": str(home),
            "TUF_ROOT": str(home / "tuf"),
        }

    def run_cosign(self, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``cosign ARGS`` against this stack (:meth:`cosign_env` with ``home``; ``env``
        on top, e.g. ``SIGSTORE_ID_TOKEN``); the caller checks the return code."""
        return subprocess.run(
            ["cosign", *args],
            env={**os.environ, **self.cosign_env(home), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _verifier_key(pem_b64: str) -> ec.EllipticCurvePublicKey:
    pem = base64.b64decode(pem_b64)
    if b"CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)  # type: ignore[assignment]
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("only ECDSA verifiers are supported here")
    return key


def github_claims(
    repository: str = "modelseal-test/model-server",
    workflow: str = "release.yml",
    ref: str = "refs/heads/main",
    sha: str = "0123456789abcdef0123456789abcdef01234567",
) -> dict[str, Any]:
    """The claims GitHub Actions puts into an ID token (the ones Fulcio turns into extensions)."""
    owner = repository.split("/", 1)[0]
    workflow_ref = f"{repository}/.github/workflows/{workflow}@{ref}"
    return {
        "sub": f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "repository_owner": owner,
        "repository_owner_id": "1000",
        "repository_id": "2000",
        "repository_visibility": "public",
        "workflow": "release",
        "workflow_ref": workflow_ref,
        "workflow_sha": sha,
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": sha,
        "ref": ref,
        "sha": sha,
        "event_name": "push",
        "run_id": "4242",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "actor": "release-bot",
    }


def github_identity(claims: Mapping[str, Any]) -> str:
    """The certificate identity (SAN URI) Fulcio gives a GitHub Actions token."""
    return f"https://github.com/{claims['job_workflow_ref']}"


# --- samples for signing tests --------------------------------------------------------------

SIMPLE_SIGNING_PAYLOAD = (
    b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/model-server"},'
    b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
    b'"type":"cosign container image signature"},"optional":null}'
)
"""A cosign simple-signing payload, as an image signature signs it."""


def sample_statement(data: bytes = b"model") -> dict[str, Any]:
    """A minimal SLSA v1 provenance Statement about ``data``."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://modelseal.test/build/v1",
                "externalParameters": {},
            },
            "runDetails": {"builder": {"id": "https://modelseal.test/builder"}},
        },
    }


def cosign_annotations(signed: Any) -> dict[str, str]:
    """The annotations of the cosign v2 ``.sig``/``.att`` layer made from a keyless ``Signed``
    (an attestation's signature annotation is empty, as cosign writes it)."""
    return {
        "dev.cosignproject.cosign/signature": (
            signed.signature_b64 if signed.content == "message-signature" else ""
        ),
        "dev.sigstore.cosign/certificate": signed.certificate_pem,
        "dev.sigstore.cosign/chain": signed.chain_pem,
        "dev.sigstore.cosign/bundle": json.dumps(signed.rekor_bundle),
    }
