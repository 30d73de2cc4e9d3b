"""The contract with sigstore-python's private APIs (modelseal/sign/_sigstore_internal.py).

sigstore-python is pinned exactly; when an upgrade moves or renames a private name modelseal
uses, these tests fail naming it, before any signing run does.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest
import requests
from sigstore.sign import SigningContext

from modelseal.sign import _sigstore_internal
from modelseal.sign._sigstore_internal import (
    PRIVATE_APIS,
    fulcio_client,
    rekor_client,
    rekor_session,
)
from modelseal.sign.trust import TrustConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "modelseal"


def _resolve(api: str) -> object:
    """The object ``module:Qual.name`` names; an attribute a constructor sets (``self.x = …``)
    counts as present."""
    module_name, _, qualname = api.partition(":")
    obj: object = importlib.import_module(module_name)
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        init = getattr(obj, "__init__", None) if inspect.isclass(obj) else None
        last = i == len(parts) - 1
        if (
            last
            and init is not None
            and re.search(rf"\bself\.{part}\s*[:=]", inspect.getsource(init))
        ):
            return part
        raise AttributeError(part)
    return obj


@pytest.mark.parametrize("api", PRIVATE_APIS)
def test_each_private_sigstore_api_still_exists(api: str) -> None:
    version = metadata.version("sigstore")
    try:
        _resolve(api)
    except (ImportError, AttributeError, OSError, TypeError) as e:
        pytest.fail(
            f"sigstore-python {version} no longer provides {api} ({type(e).__name__}: {e}); "
            "modelseal/sign/_sigstore_internal.py relies on it — adapt that module (and only "
            "that one) to the new sigstore, or keep the pin in pyproject.toml."
        )


def test_the_private_callables_keep_their_parameters() -> None:
    """Call shapes the wrappers depend on (keyword names included)."""
    expected = {
        "sigstore._internal.sct:verify_sct": ["cert", "chain", "ct_keyring"],
        "sigstore._internal.trust:Keyring.verify": ["self", "key_id", "signature", "data"],
        "sigstore._utils:read_embedded": ["name", "url"],
        "sigstore.models:TransparencyLogEntry._verify": ["self", "keyring"],
        "sigstore.sign:Signer._signing_cert": ["self"],
    }
    for api, params in expected.items():
        fn = _resolve(api)
        assert callable(fn), api
        got = list(inspect.signature(fn).parameters)
        assert got == params, f"{api} now takes {got}, modelseal calls it with {params}"


def test_nothing_else_in_modelseal_reaches_into_sigstore_privates() -> None:
    """Only _sigstore_internal.py imports sigstore._internal / sigstore._utils or reads a private
    attribute of a sigstore object, so an upgrade has one place to adapt."""
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "_sigstore_internal.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("sigstore") and re.search(r"(^|\.)_", name):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} imports {name}")
    assert offenders == []
    text = "\n".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "_sigstore_internal.py")
    for private in ("_inner", "_signing_cert", "_fulcio", "_rekor", "_verify"):
        # a private sigstore attribute read on anything but self
        hits = re.findall(rf"(?<!self)\.{private}\b", text)
        assert hits == [], f".{private} is used outside _sigstore_internal.py"


def test_the_wrappers_reach_a_real_signing_context(local_trust: TrustConfig) -> None:
    """The instance attributes the keyless signer reads exist on a context sigstore builds."""
    context = SigningContext.from_trust_config(local_trust.signing_config())
    assert isinstance(fulcio_client(context).url, str)
    assert isinstance(fulcio_client(context).session, requests.Session)
    assert isinstance(rekor_client(context).url, str)
    assert isinstance(rekor_session(context), requests.Session)


def test_the_module_lists_every_private_name_it_uses() -> None:
    """PRIVATE_APIS covers each private import of the module (so the contract stays complete)."""
    tree = ast.parse(inspect.getsource(_sigstore_internal))
    listed = "\n".join(PRIVATE_APIS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "._" in node.module:
            for alias in node.names:
                assert f"{node.module}:{alias.name}" in listed, (node.module, alias.name)
