"""Sigstore keyless signing: OIDC identity → short-lived Fulcio certificate → Rekor entry.

Built on sigstore-python. The identity token is either given (never logged, never put into an
error) or taken from the CI's ambient credentials (GitHub Actions: ``permissions: id-token:
write``). Fulcio and Rekor are retried a bounded number of times on connection errors and 5xx
answers; after that the signer fails closed with :class:`SigningError` — an image is never
published with a signature that is not in the transparency log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ExtendedKeyUsage
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from sigstore import dsse
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle
from sigstore.oidc import IdentityToken, detect_credential
from sigstore.sign import Signer as SigstoreSigner
from sigstore.sign import SigningContext

from modelseal.sign._sigstore_internal import (
    fulcio_client,
    logged_dsse_envelope,
    rekor_client,
    rekor_session,
    signing_certificate,
)
from modelseal.sign.expected import certificate_identity, certificate_issuer
from modelseal.sign.interface import IN_TOTO_PAYLOAD_TYPE, Signed, Signer, SigningError
from modelseal.sign.trust import TrustConfig, production_trust

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: HTTP statuses worth another try: the service is overloaded or briefly broken.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class KeylessSigner(Signer):
    """Sign with a Fulcio certificate bound to an OIDC identity, logged in Rekor.

    One certificate (and ephemeral key) is used for every signature this object makes while
    it is valid (10 minutes), so signing an image and its attestations costs one Fulcio call.
    """

    mode = "keyless"

    def __init__(
        self,
        trust: TrustConfig | None = None,
        *,
        identity_token: str | None = None,
        attempts: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``trust`` names Fulcio and Rekor (default: the public instance). Without
        ``identity_token`` the ambient CI credential is used. ``attempts`` bounds the tries per
        service call; the wait doubles from ``backoff_s``; one HTTP request may take at most
        ``timeout_s`` (connect and each read)."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._trust = trust or production_trust()
        self._context = SigningContext.from_trust_config(self._trust.signing_config())
        self.__token = identity_token
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._signer: SigstoreSigner | None = None
        self._renew_at = datetime.min.replace(tzinfo=UTC)
        self._chain_pem: str | None = None

    def __repr__(self) -> str:
        # Never show the token; say only where trust comes from.
        return f"KeylessSigner(trust={self._trust.source!r})"

    # --- public API ---------------------------------------------------------------------

    def sign_message(self, payload: bytes) -> Signed:
        """Sign ``payload`` (hashedrekord: ECDSA over its SHA-256) and log it in Rekor."""
        bundle = self._sign(lambda s: s.sign_artifact(payload))
        return self._signed("message-signature", bundle, payload)

    def sign_statement(self, statement: Mapping[str, Any]) -> Signed:
        """Sign an in-toto Statement as a DSSE envelope and log it in Rekor (dsse 0.0.1)."""
        # The same bytes the key signer signs for a statement: sorted keys, no whitespace, UTF-8.
        payload = json.dumps(
            statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        try:
            stmt = dsse.Statement(payload)
        except SigstoreError as e:
            raise SigningError(
                f"The in-toto Statement cannot be signed: {_first_line(e)}"
            ) from None
        bundle = self._sign(lambda s: s.sign_dsse(stmt))
        return self._signed("dsse-envelope", bundle, payload)

    # --- signing with retries -----------------------------------------------------------

    def _identity(self) -> IdentityToken:
        raw = self.__token
        if raw is None:
            try:
                raw = detect_credential()
            except SigstoreError as e:
                raise SigningError(
                    f"Could not get an OIDC identity token from the CI environment: {self._scrub(_first_line(e))}",
                    hint="In GitHub Actions the job needs `permissions: id-token: write`.",
                ) from None
            if raw is None:
                raise SigningError(
                    "No OIDC identity token for keyless signing: none was given and no CI "
                    "ambient credential was found.",
                    hint="Run in GitHub Actions with `permissions: id-token: write`, pass a token, "
                    "or sign with a key.",
                )
            self.__token = raw
        try:
            return IdentityToken(raw)
        except SigstoreError as e:
            raise SigningError(
                f"The OIDC identity token is not usable: {self._scrub(_first_line(e))}"
            ) from None

    def _sign(self, sign: Callable[[SigstoreSigner], Bundle]) -> Bundle:
        signer = self._certificate()
        self._bound_http(rekor_session(self._context))
        return self._retry(
            f"Recording the signature in Rekor ({self._tlog_url()})",
            lambda: sign(signer),
        )

    def _certificate(self) -> SigstoreSigner:
        """The sigstore Signer holding a valid Fulcio certificate (requested on first use)."""
        now = datetime.now(UTC)
        if self._signer is not None and now < self._renew_at:
            return self._signer
        token = self._identity()
        self._bound_http(getattr(fulcio_client(self._context), "session", None))
        signer = self._retry(
            f"Getting a signing certificate from Fulcio ({self._fulcio_url()})",
            lambda: SigstoreSigner(token, self._context, cache=True),
        )
        # The certificate is cached inside the signer; renew a little before it expires so a
        # signature is never logged after the certificate's validity.
        cert = signing_certificate(signer)
        self._renew_at = cert.not_valid_after_utc - timedelta(seconds=60)
        self._signer = signer
        return signer

    def _bound_http(self, session: object) -> None:
        """Give sigstore-python's HTTP session a timeout: it sets none, and a hung Fulcio or
        Rekor would otherwise hang the publish instead of failing it. (The Rekor session is
        per thread, so this runs before each call, in the calling thread.)"""
        if not isinstance(session, requests.Session):
            return
        if isinstance(session.get_adapter("http://"), _TimeoutAdapter):
            return
        adapter = _TimeoutAdapter(self._timeout_s)
        session.mount("http://", adapter)
        session.mount("https://", adapter)

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        for attempt in range(1, self._attempts + 1):
            try:
                return call()
            except Exception as e:
                transient = _is_transient(e)
                reason = self._scrub(_describe(e))
                if not transient or attempt == self._attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise SigningError(
                        f"{what} failed{tries}: {reason}.",
                        hint=None
                        if not transient
                        else "The service did not answer, or answered with a server error. "
                        "Signing fails closed: nothing is signed without a transparency log "
                        "entry. Try again later.",
                    ) from None
                delay = self._backoff_s * 2 ** (attempt - 1)
                _log.warning("%s failed (%s); retrying in %.1f s", what, reason, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _scrub(self, text: str) -> str:
        # Exceptions from HTTP libraries can echo request data; the token must never leak.
        token = self.__token
        return text.replace(token, "[token]") if token else text

    def _fulcio_url(self) -> str:
        return str(getattr(fulcio_client(self._context), "url", "Fulcio"))

    def _tlog_url(self) -> str:
        return str(getattr(rekor_client(self._context), "url", "Rekor"))

    # --- turning a bundle into a Signed -------------------------------------------------

    def _signed(
        self, content: Literal["message-signature", "dsse-envelope"], bundle: Bundle, payload: bytes
    ) -> Signed:
        doc: dict[str, Any] = json.loads(bundle.to_json())
        cert = bundle.signing_certificate
        entry = doc["verificationMaterial"]["tlogEntries"][0]
        body_b64: str = entry["canonicalizedBody"]
        rekor_bundle: dict[str, Any] | None = None
        if entry.get("inclusionPromise") and entry.get("integratedTime"):
            # Rekor v1 only: a v2 log gives no signed promise, so no cosign v2 annotation.
            rekor_bundle = {
                "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
                "Payload": {
                    "body": body_b64,
                    "integratedTime": int(entry["integratedTime"]),
                    "logIndex": int(entry["logIndex"]),
                    "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
                },
            }
        envelope_json: bytes | None = None
        if content == "dsse-envelope":
            envelope = doc["dsseEnvelope"]
            if envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
                raise SigningError(
                    f"sigstore produced a DSSE envelope of type {envelope.get('payloadType')!r}"
                )
            signature_b64 = envelope["signatures"][0]["sig"]
            envelope_json = self._logged_envelope(bundle, body_b64)
        else:
            signature_b64 = doc["messageSignature"]["signature"]
        return Signed(
            content=content,
            bundle=doc,
            payload=payload,
            signature_b64=signature_b64,
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            chain_pem=self._chain(cert),
            rekor_bundle=rekor_bundle,
            dsse_envelope=envelope_json,
            identity=certificate_identity(cert),
            issuer=certificate_issuer(cert),
            extra={
                "rekor_url": self._tlog_url(),
                "rekor_log_index": str(entry.get("logIndex", "")),
                "rekor_integrated_time": str(entry.get("integratedTime", "")),
            },
        )

    @staticmethod
    def _logged_envelope(bundle: Bundle, body_b64: str) -> bytes:
        """The DSSE envelope exactly as submitted to Rekor.

        cosign checks a ``.att`` layer by hashing it against the log entry's ``envelopeHash``,
        so the layer must be these bytes, not a re-serialization (which is why the signature
        carries no empty ``keyid``: sigstore-python did not submit one).
        """
        inner = logged_dsse_envelope(bundle)
        if inner is None:  # pragma: no cover - sign_dsse always makes one
            raise SigningError("sigstore returned a DSSE bundle without an envelope")
        data = inner.to_json().encode()
        body = json.loads(base64.b64decode(body_b64))
        logged = body.get("spec", {}).get("envelopeHash", {}).get("value")
        if body.get("kind") == "dsse" and logged != hashlib.sha256(data).hexdigest():
            raise SigningError(
                "The DSSE envelope does not hash to the envelopeHash Rekor logged; "
                "a cosign .att made from it would not verify."
            )
        return data

    def _chain(self, cert: x509.Certificate) -> str | None:
        """The Fulcio intermediate(s) and root that issued ``cert``, from the trusted root."""
        if self._chain_pem is not None:
            return self._chain_pem
        cas = self._trust.trusted_root.get_fulcio_certs()
        roots = [c for c in cas if c.subject == c.issuer]
        if not roots:
            return None
        # Trust only self-signed certificates so the path builder walks up to the root.
        verifier = (
            PolicyBuilder()
            .store(Store(roots))
            .time(cert.not_valid_before_utc)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca().may_be_present(
                    ExtendedKeyUsage, Criticality.NON_CRITICAL, None
                ),
                ee_policy=ExtensionPolicy.webpki_defaults_ee().may_be_present(
                    ExtendedKeyUsage, Criticality.NON_CRITICAL, None
                ),
            )
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(cert, [c for c in cas if c not in roots]).chain[1:]
        except Exception:
            _log.debug("could not build the Fulcio chain for the cosign annotation", exc_info=True)
            return None
        self._chain_pem = "".join(
            c.public_bytes(serialization.Encoding.PEM).decode() for c in chain
        )
        return self._chain_pem


class _TimeoutAdapter(HTTPAdapter):
    """An HTTP adapter that applies a default timeout to every request."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout_s
        return super().send(request, **kwargs)


def _causes(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = e
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_transient(e: BaseException) -> bool:
    for cause in _causes(e):
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return True
        if isinstance(cause, requests.HTTPError) and cause.response is not None:
            return cause.response.status_code in _RETRY_STATUSES
    return False


def _describe(e: BaseException) -> str:
    """A short, secret-free reason: HTTP status and URL, or the error's first line."""
    for cause in _causes(e):
        if isinstance(cause, requests.HTTPError) and cause.response is not None:
            response = cause.response
            detail = ""
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict) and isinstance(answer.get("message"), str):
                detail = f" ({answer['message'][:200]})"
            return f"HTTP {response.status_code} from {response.url.split('?')[0]}{detail}"
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            request = cause.request
            url = getattr(request, "url", None)
            where = f" {str(url).split('?')[0]}" if url else ""
            kind = "timed out" if isinstance(cause, requests.Timeout) else "could not connect"
            return f"{kind}{' to' if where else ''}{where}"
    return f"{type(e).__name__}: {_first_line(e)}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
