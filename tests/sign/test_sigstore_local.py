"""The local Sigstore stack itself: its Merkle proofs, its Rekor read API, its OIDC endpoints."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable

from sigstore._internal.merkle import _chain_border_right, _chain_inner, _decomp_inclusion_proof
from sigstore._internal.rekor.client import RekorClient
from tests.support.sigstore_local import LocalSigstore, inclusion_path, leaf_hash, merkle_root

from modelseal.sign.trust import TrustConfig


def test_inclusion_proofs_verify_for_every_leaf_and_size() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(23)]
    for size in range(1, len(leaves) + 1):
        tree = leaves[:size]
        root = merkle_root(tree)
        for index in range(size):
            proof = inclusion_path(index, tree)
            inner, border = _decomp_inclusion_proof(index, size)
            assert len(proof) == inner + border
            seed = _chain_inner(tree[index], proof[:inner], index)
            assert _chain_border_right(seed, proof[inner:]) == root


def test_rekor_read_api(
    sigstore_stack: LocalSigstore, oidc_token: Callable[..., str], local_trust: TrustConfig
) -> None:
    from modelseal.sign.keyless import KeylessSigner

    signed = KeylessSigner(local_trust, identity_token=oidc_token()).sign_message(b"read me")
    index = int(signed.extra["rekor_log_index"])
    client = RekorClient(sigstore_stack.rekor.url)
    entry = client.log.entries.get(log_index=index)
    body = base64.b64decode(signed.rekor_bundle["Payload"]["body"])
    assert entry._inner.canonicalized_body == body
    by_uuid = client.log.entries.get(uuid=leaf_hash(body).hex())
    assert by_uuid._inner.canonicalized_body == body
    assert by_uuid._inner.log_index == index
    info = client.log.get()
    assert info.tree_size > index


def test_github_token_endpoint_needs_the_request_token(sigstore_stack: LocalSigstore) -> None:
    env = sigstore_stack.github_env()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=sigstore",
        headers={"Authorization": f"bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
    )
    with opener.open(request, timeout=10) as response:
        token = json.load(response)["value"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == "sigstore" and claims["iss"] == sigstore_stack.issuer_url
    assert claims["job_workflow_ref"].endswith("@refs/heads/main")
    bad = urllib.request.Request(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"], headers={"Authorization": "bearer x"}
    )
    try:
        opener.open(bad, timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 401
    else:
        raise AssertionError("a wrong request token was accepted")
