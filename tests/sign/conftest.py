"""Signing tests run without the public network.

The local Sigstore fixtures (``sigstore_stack``, ``trust_config_path``, ``trusted_root_path``,
``local_trust``, ``issuer_url``, ``oidc_token``, ``rekor_failing``, ``github_ambient``) live in
``tests/conftest.py`` so the publish tests can sign keyless too.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_public_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that tries a public Sigstore service (TUF, Fulcio, Rekor) hits a dead proxy,
    and no ambient CI credential leaks in from the machine running the tests."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in (
        "GITHUB_ACTIONS",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
