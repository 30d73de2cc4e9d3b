"""Loading a Sigstore trust: the shipped public root, a private ClientTrustConfig, a bare root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelseal.errors import ConfigError
from modelseal.sign.interface import SigningError
from modelseal.sign.trust import PRODUCTION, load_trust_config, production_trust


def test_default_is_the_public_instance_without_network() -> None:
    trust = load_trust_config(None)  # HTTPS_PROXY points at a dead port: no TUF refresh
    assert trust.source == PRODUCTION
    assert trust.can_sign
    urls = [tlog.base_url for tlog in trust.trusted_root._inner.tlogs]
    assert "https://rekor.sigstore.dev" in urls
    assert trust.signing_config().signing_config.get_fulcio().url == "https://fulcio.sigstore.dev"


def test_production_trust_is_offline_by_default() -> None:
    assert production_trust().trusted_root.get_fulcio_certs()


def test_client_trust_config_file(trust_config_path: Path, sigstore_stack) -> None:
    trust = load_trust_config(trust_config_path)
    assert trust.source == str(trust_config_path)
    assert trust.can_sign
    assert trust.signing_config().signing_config.get_fulcio().url == sigstore_stack.fulcio.url


def test_trusted_root_only_verifies_but_cannot_sign(trusted_root_path: Path) -> None:
    trust = load_trust_config(str(trusted_root_path))
    assert not trust.can_sign
    with pytest.raises(SigningError, match="trusted root only"):
        trust.signing_config()


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=f"{missing} does not exist"):
        load_trust_config(missing)


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "trust.json"
    bad.write_text('{\n  "mediaType": \n}')
    with pytest.raises(ConfigError, match=rf"{bad} is not JSON \(line 3"):
        load_trust_config(bad)


def test_unknown_media_type(tmp_path: Path) -> None:
    odd = tmp_path / "trust.json"
    odd.write_text(json.dumps({"mediaType": "application/x-other"}))
    with pytest.raises(ConfigError, match="has mediaType 'application/x-other'"):
        load_trust_config(odd)


def test_malformed_client_config_is_refused(tmp_path: Path, trust_config_path: Path) -> None:
    doc = json.loads(trust_config_path.read_text())
    doc["signingConfig"]["rekorTlogUrls"] = []
    broken = tmp_path / "trust.json"
    broken.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"{broken} is not valid: .*Rekor"):
        load_trust_config(broken)
