"""Who the registry client is, and where it may say so: credentials and the auth challenge.

:class:`Credentials` come from the caller or a docker ``config.json``; the secret never shows in
``repr``, errors or logs. They go to the registry's own origin, and to a Bearer token service
(the challenge's ``realm``) only when that is the registry's origin or an allowlisted HTTPS host
(:func:`may_send_credentials`) — never over plain HTTP to another origin; anywhere else the
token is asked for anonymously. The client that sends them is
:class:`~modelseal.publish.registry.RegistryClient`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from modelseal.publish.registry_limits import RegistryError


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


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``(scheme, params)`` of a ``WWW-Authenticate`` header; the scheme lower-case."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def token_url(params: dict[str, str], repository: str) -> str:
    """The token request for a Bearer challenge's ``params``: its realm with the service and
    the scope (``pull,push`` on ``repository`` when the challenge names none)."""
    query = {"service": params.get("service", "")}
    query["scope"] = params.get("scope") or f"repository:{repository}:pull,push"
    realm = params["realm"]
    return realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)


def bearer_token(body: bytes) -> str | None:
    """The token in a token service's answer (``token`` or ``access_token``), if any."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


def may_send_credentials(url: str, base: str, token_hosts: Collection[str]) -> bool:
    """Whether a registry's credentials may go to ``url`` (a Bearer realm): the registry's
    own origin ``base``, or an HTTPS URL on an allowlisted ``host[:port]``."""
    parts = urllib.parse.urlsplit(url)
    if same_origin(url, base):
        return True
    return parts.scheme == "https" and parts.netloc.lower() in token_hosts


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` has the scheme and ``host[:port]`` of ``base``."""
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
