"""Signing tests run without the public network.

The local Sigstore fixtures (``sigstore_stack``, ``trust_config_path``, ``trusted_root_path``,
``local_trust``, ``issuer_url``, ``oidc_token``, ``rekor_failing``, ``github_ambient``) live in
``tests/conftest.py`` so the publish tests can sign keyless too; here are the ones only the
signing tests share: a keyless signer and the signer they expect.
"""

from __future__ import annotations

import pytest
from tests.support.sigstore_local import DEFAULT_EMAIL, LocalSigstore

from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig
from modelseal.sign.verify import ExpectedSigner


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


@pytest.fixture(scope="module")
def keyless_signer(sigstore_stack: LocalSigstore, local_trust: TrustConfig) -> KeylessSigner:
    """A keyless signer on the local stack, with a token for ``DEFAULT_EMAIL``."""
    return KeylessSigner(local_trust, identity_token=sigstore_stack.token())


@pytest.fixture
def expected(local_trust: TrustConfig, issuer_url: str) -> ExpectedSigner:
    """The signer :func:`keyless_signer` (or any default token) makes: ``DEFAULT_EMAIL`` at the
    local issuer, under the local trust."""
    return ExpectedSigner(issuer=issuer_url, identity=DEFAULT_EMAIL, trust_config=local_trust)
