"""How a registry may fail the client: its errors, and the limits on what a registry may send.

Every answer is hostile until bounded (:class:`RegistryLimits`): each body has a size cap by
what it is (manifest, index, signature, attestation, token, error), each request a wall-clock
budget, the client an optional overall deadline, and redirects, retries and referrers a count.
A breach raises :class:`RegistryLimitError`, naming the limit. The client that enforces them is
:class:`~modelseal.publish.registry.RegistryClient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelseal.errors import PublishError


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


BodyKind = Literal["manifest", "index", "signature", "attestation", "config", "token", "error"]
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
    config_bytes: int = 1 << 20
    """An image config (a base image's, read before a build; real ones are a few KiB)."""
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
