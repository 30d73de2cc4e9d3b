"""Review 4 of stand-ins for a base read before the build (``standins.BaseConfigs``,
``_image_configs``): what is still open after the third review's fixes (e8b6f27). Each test
states the expected behaviour; the ones that failed were marked ``xfail(strict=True)`` with
the defect. A registry double on 127.0.0.1 only; name resolution is replaced in-process."""

from __future__ import annotations

import socket
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.registry_double import (
    OCI_INDEX,
    OCI_MANIFEST,
    TRIGGER,
    Registry,
    bases_of,
    registry_double,
    route,
    route_config,
    route_image,
    route_index,
)

from modelseal.imagebuild import standins


@pytest.fixture
def double() -> Iterator[tuple[str, type[Registry]]]:
    with registry_double() as served:
        yield served


# --- 1. the unknown/unknown skip: a build platform can name it ------------------------------------


@pytest.mark.parametrize("platform", ["unknown/unknown", "Unknown/UNKNOWN", None])
def test_review4_the_triggers_of_an_unknown_entry_block_them(
    double: tuple[str, type[Registry]], platform: str | None
) -> None:
    """The Dockerfile (from the pull request, like the registry) pins an index whose linux/amd64
    image is harmless and whose unknown/unknown entry is an ordinary image with an ONBUILD
    trigger. With ``FROM --platform=unknown/unknown`` BuildKit builds on that entry; without
    it no default build platform matches it, but one may be set elsewhere (the policy, the
    command line): the triggers of every entry count (BuildKit's own attestations have none,
    so real bases lose nothing)."""
    host, handler = double
    harmless = route_image(handler, {"architecture": "amd64", "os": "linux", "config": {}})
    harmless["platform"] = {"os": "linux", "architecture": "amd64"}
    hidden = route_image(handler, {"architecture": "unknown", "os": "unknown",
                                   "config": {"OnBuild": [TRIGGER]}})  # fmt: skip
    hidden["platform"] = {"os": "unknown", "architecture": "unknown"}
    top = route_index(handler, [harmless, hidden])
    flag = f"--platform={platform} " if platform else ""
    bases = bases_of(f"FROM {flag}{host}/base@{top}\nCOPY model/ /app/model/\n")
    why = standins.base_blocker(bases, {}, standins.BaseConfigs({}, timeout=10.0))
    assert why is not None and "has ONBUILD triggers" in why, why


# --- 2. the deadline does not cover name resolution or connecting ---------------------------------


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A 127.0.0.1 listener whose accept queue is full: a connect to it hangs (SYN dropped),
    as one to an address that drops packets does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    held = socket.create_connection(addr, timeout=2)
    try:
        yield addr
    finally:
        held.close()
        listener.close()


@pytest.mark.parametrize("case", ["slow-dns", "dead-addresses"])
def test_review4_resolving_and_connecting_keep_to_the_timeout(
    monkeypatch: pytest.MonkeyPatch, blackhole: tuple[str, int], case: str
) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "registry.invalid.localhost":
            return real(host, port, *args, **kwargs)
        if case == "slow-dns":
            time.sleep(3.0)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        entry = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", blackhole)
        return [entry] * 4

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    digest = "sha256:" + "a" * 64
    bases = bases_of(
        f"FROM registry.invalid.localhost:{blackhole[1]}/base@{digest}\nCOPY model/ /app/model/\n"
    )
    configs = standins.BaseConfigs({}, timeout=1.0)
    started = time.monotonic()
    users = standins.base_users(bases, {}, configs)
    took = time.monotonic() - started
    assert users == {0: None}
    assert took < 2.0, f"{took:.1f} s under a 1 s timeout ({configs.why(bases[0])})"


# --- 3. what is kept of a config: all of its OnBuild value ----------------------------------------


def test_review4_reading_the_bases_keeps_no_more_than_their_bytes(
    double: tuple[str, type[Registry]],
) -> None:
    host, handler = double
    filler = b",".join([b"[]"] * ((1 << 20) // 3 - 40))
    descriptors = []
    for n in range(4):
        config = b'{"architecture":"amd64","os":"linux","n":%d,"config":{"OnBuild":[%s]}}' % (
            n,
            filler,
        )
        assert len(config) <= 1 << 20
        _, desc = route_config(handler, config)
        digest = route(handler, "manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                            "config": desc, "layers": []})  # fmt: skip
        descriptors.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1,
                            "platform": {"os": "linux", "architecture": "amd64"}})  # fmt: skip
    top = route(handler, "index", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                  "manifests": descriptors})  # fmt: skip
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")
    configs = standins.BaseConfigs({}, timeout=20.0)
    tracemalloc.start()
    try:
        standins.base_users(bases, {}, configs)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "ONBUILD" in (standins.base_blocker(bases, {}, configs) or "")
    # 4 MiB read: what is kept afterwards should not be more than that.
    assert kept < 4 << 20, f"{kept / (1 << 20):.0f} MiB of Python objects kept"


# --- 4. registry text in the reason, unescaped ------------------------------------------------------


class _Challenge(Registry):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header(
            "WWW-Authenticate",
            'Bearer realm="http://127.0.0.1:1/\x1b]0;pwned\x07\x1b[2J",service="s"',
        )
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_review4_the_reason_holds_no_control_characters_from_the_registry() -> None:
    with registry_double(_Challenge) as (host, _):
        bases = bases_of(f"FROM {host}/base@sha256:{'a' * 64}\nCOPY model/ /app/model/\n")
        why = standins.base_blocker(bases, {}, standins.BaseConfigs({}, timeout=5.0))
    assert why is not None
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in why), repr(why)
