"""Which Sigstore deployment to trust: its roots (Fulcio CA, Rekor and CT keys) and services.

Three sources:

* nothing given — the public-good Sigstore instance, from the trusted root and signing config
  that sigstore-python ships (no network; ``refresh=True`` asks its TUF repository instead);
* a ``ClientTrustConfig`` JSON file — a private deployment (trusted root + signing config):
  sign and verify;
* a ``trusted_root.json`` file — the roots only: verify, never sign.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigstore.errors import Error as SigstoreError
from sigstore.models import ClientTrustConfig, SigningConfig, TrustedRoot
from sigstore_models.trustroot import v1 as trustroot_v1

from modelseal.bounded import MIB, read_input_text, shown_path
from modelseal.errors import ConfigError
from modelseal.sign._sigstore_internal import embedded_production_root
from modelseal.sign.interface import SigningError

MAX_TRUST_CONFIG_BYTES = 4 * MIB
"""A ClientTrustConfig or trusted root is tens of KiB; a larger file is refused (exit 2)."""

PRODUCTION = "the public Sigstore instance (trust root shipped with sigstore-python)"
"""How :func:`production_trust` names its source in messages."""

_CLIENT_TRUST_CONFIG = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
_TRUSTED_ROOT = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


@dataclass(frozen=True, eq=False)
class TrustConfig:
    """A Sigstore deployment to trust, and where that knowledge came from.

    ``client_config`` is None for a verify-only trust (a bare trusted root).
    """

    source: str
    """The file path, or :data:`PRODUCTION`; used in every message about this trust."""
    trusted_root: TrustedRoot
    client_config: ClientTrustConfig | None = None

    @property
    def can_sign(self) -> bool:
        """Whether this trust names the services (Fulcio, Rekor) signing needs."""
        return self.client_config is not None

    def signing_config(self) -> ClientTrustConfig:
        """The full client config, or :class:`SigningError` for a verify-only trust."""
        if self.client_config is None:
            raise SigningError(
                f"{self.source} is a trusted root only; keyless signing needs a Sigstore "
                "ClientTrustConfig (trusted root + signing config naming Fulcio and Rekor).",
                hint="Pass the deployment's trust_config.json, or no file for the public instance.",
            )
        return self.client_config

    def describe(self) -> str:
        """One line for logs and reports."""
        return self.source


def production_trust(*, refresh: bool = False) -> TrustConfig:
    """The public-good Sigstore instance.

    By default from the trusted root and signing config embedded in sigstore-python: no network
    and no writes to the user's cache, so verification works offline and in sandboxes. With
    ``refresh`` the TUF repository is asked for the current ones (needs network).
    """
    if refresh:
        try:
            config = ClientTrustConfig.production()
        except SigstoreError as e:
            raise ConfigError(
                f"Could not refresh the Sigstore trust root from its TUF repository: {e}",
                hint="Without network, leave refresh off to use the root sigstore-python ships.",
            ) from None
        return TrustConfig(PRODUCTION, config.trusted_root, config)
    try:
        root = trustroot_v1.TrustedRoot.from_json(embedded_production_root("trusted_root.json"))
        signing = trustroot_v1.SigningConfig.from_json(
            embedded_production_root("signing_config.v0.2.json")
        )
    except (OSError, ValueError) as e:  # a broken sigstore installation, not user input
        raise ConfigError(
            f"The Sigstore trust root shipped with sigstore-python is unreadable: {e}"
        ) from None
    config = ClientTrustConfig(
        trustroot_v1.ClientTrustConfig(
            media_type=ClientTrustConfig.ClientTrustConfigType.CONFIG_0_1.value,
            trusted_root=root,
            signing_config=signing,
        )
    )
    return TrustConfig(PRODUCTION, config.trusted_root, config)


def load_trust_config(
    path: str | os.PathLike[str] | None = None, *, refresh: bool = False
) -> TrustConfig:
    """Load a trust: ``None`` → :func:`production_trust`; else a ClientTrustConfig or a trusted
    root JSON file, told apart by its ``mediaType``. Errors name the file."""
    if path is None:
        return production_trust(refresh=refresh)
    file = Path(path)
    if not file.exists() and not file.is_symlink():
        raise ConfigError(f"Sigstore trust file {shown_path(file)} does not exist.")
    text = read_input_text(file, what="Sigstore trust file", limit=MAX_TRUST_CONFIG_BYTES)
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"Sigstore trust file {file} is not JSON (line {e.lineno}, column {e.colno}: {e.msg})."
        ) from None
    media_type = doc.get("mediaType") if isinstance(doc, dict) else None
    try:
        if media_type == _CLIENT_TRUST_CONFIG:
            config = ClientTrustConfig.from_json(text)
            # Both properties validate (media types, usable Fulcio and Rekor): fail at load time.
            root = config.trusted_root
            _check_signing_config(config.signing_config)
            root.get_fulcio_certs()
            return TrustConfig(str(file), root, config)
        if media_type == _TRUSTED_ROOT:
            root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(text))
            root.get_fulcio_certs()
            return TrustConfig(str(file), root, None)
    except (SigstoreError, ValueError) as e:
        raise ConfigError(f"Sigstore trust file {file} is not valid: {_first_line(e)}") from None
    raise ConfigError(
        f"Sigstore trust file {file} has mediaType {media_type!r}; expected a ClientTrustConfig "
        f"({_CLIENT_TRUST_CONFIG}) or a trusted root ({_TRUSTED_ROOT})."
    )


def _check_signing_config(config: SigningConfig) -> None:
    config.get_fulcio()
    config.get_tlogs()


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
