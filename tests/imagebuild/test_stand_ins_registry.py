"""Stand-ins with a base image from a registry (issue 16): its configs — every platform's
``OnBuild`` triggers and ``User`` — are read before the build from the registry when the base is
pinned by digest (:class:`modelseal.imagebuild.standins.BaseConfigs`), with the registry client's
bounds; a registry that does not give them, or gives something else, means no stand-ins (the
build as without them), never a crash or a hang. Real BuildKit against the local registry for
the image; a registry double on 127.0.0.1 for the hostile answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.layers import push_layout, weights
from tests.support.registry_double import (
    Registry,
    registry_double,
    route_image,
    route_index,
    sha256_of,
)
from tests.support.standins import build, write_lock

from modelseal.imagebuild import standins
from modelseal.imagebuild.bases import classify_bases
from modelseal.imagebuild.dockerfile import parse_dockerfile
from modelseal.imagebuild.engine import PrivateEngine

MIB = 1 << 20
D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (f"127.0.0.1:5000/seal/base@{D}", ("127.0.0.1:5000", "seal/base", D)),
        (f"127.0.0.1:5000/seal/base:1@{D}", ("127.0.0.1:5000", "seal/base", D)),
        (f"localhost/base@{D}", ("localhost", "base", D)),
        (f"ghcr.io/acme/serve:2.1@{D}", ("ghcr.io", "acme/serve", D)),
        (f"python@{D}", ("registry-1.docker.io", "library/python", D)),
        (f"python:3.11-slim@{D}", ("registry-1.docker.io", "library/python", D)),
        (f"docker.io/library/python@{D}", ("registry-1.docker.io", "library/python", D)),
        (f"index.docker.io/acme/tool@{D}", ("registry-1.docker.io", "acme/tool", D)),
        (f"acme/tool@{D}", ("registry-1.docker.io", "acme/tool", D)),
        ("ghcr.io/acme/serve:2.1", None),
        ("python", None),
        ("ghcr.io/acme/serve@sha256:abc", None),
        (f"Upper/case@{D}", None),
    ],
)
def test_a_pinned_reference_names_its_registry_repository_and_digest(
    image: str, expected: tuple[str, str, str] | None
) -> None:
    assert standins.registry_ref(image) == expected


# --- a registry double on 127.0.0.1 ---------------------------------------------------------------


@pytest.fixture
def double() -> Iterator[tuple[str, type[Registry]]]:
    with registry_double() as served:
        yield served


def _image(
    handler: type[Registry], config: Any, *, config_bytes: bytes | None = None, drip: float = 0.0
) -> tuple[str, dict[str, Any]]:
    """Route a manifest and its config (``config_bytes`` served in its place when given, one
    byte every ``drip`` seconds); returns the manifest digest and its descriptor."""
    desc = route_image(handler, config, config_drip=drip)
    if config_bytes is not None:
        raw = config if isinstance(config, bytes) else json.dumps(config).encode()
        handler.routes[f"/v2/base/blobs/{sha256_of(raw)}"] = (
            "application/json",
            config_bytes,
            drip,
        )
    return desc["digest"], desc


def _bases(host: str, digest: str) -> tuple[Any, ...]:
    df = parse_dockerfile(f"FROM {host}/base@{digest}\nCOPY model/ /app/model/\n", "Dockerfile")
    return classify_bases(df, {})


def test_every_platform_config_is_read_from_the_registry(
    double: tuple[str, type[Registry]],
) -> None:
    host, handler = double
    amd64, amd64_desc = _image(handler, {"architecture": "amd64", "config": {"User": "app"}})
    arm64, arm64_desc = _image(
        handler, {"architecture": "arm64", "config": {"User": "app", "OnBuild": ["ADD . /src"]}}
    )
    # BuildKit's attestation manifest (unknown/unknown, its config names no user): read for
    # triggers, not for the user (no build without --platform runs on it).
    att_digest, att = _image(handler, {"architecture": "unknown", "os": "unknown", "config": {}})
    att |= {"platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}  # fmt: skip
    top = route_index(handler, [amd64_desc, arm64_desc, att])

    bases = _bases(host, top)
    configs = standins.BaseConfigs({})
    assert standins.base_users(bases, {}, configs) == {0: "app"}
    why = standins.base_blocker(bases, {}, configs)
    assert why is not None and "has ONBUILD triggers" in why, why
    # Each document read once for both.
    assert sorted(handler.requests) == sorted(
        [f"/v2/base/manifests/{top}", f"/v2/base/manifests/{amd64}",
         f"/v2/base/manifests/{arm64}", f"/v2/base/manifests/{att_digest}"]
        + [p for p in handler.routes if "/blobs/" in p]
    )  # fmt: skip

    # One platform, no triggers: nothing blocks stand-ins.
    single, _ = _image(handler, {"architecture": "amd64", "config": {"Cmd": ["sh"]}})
    assert standins.base_blocker(_bases(host, single), {}) is None


@pytest.mark.parametrize(
    "case",
    ["other-config-bytes", "config-too-large", "config-nested-deeply", "config-not-an-object",
     "too-many-manifests", "no-manifest-there", "slow-drip"],
)  # fmt: skip
def test_a_registry_that_does_not_give_the_configs_means_no_stand_ins(
    double: tuple[str, type[Registry]], case: str
) -> None:
    host, handler = double
    config: Any = {"architecture": "amd64", "config": {}}
    served: bytes | None = None
    drip = 0.0
    if case == "other-config-bytes":
        served = json.dumps({"architecture": "amd64", "config": {"OnBuild": []}}).encode()
    elif case == "config-too-large":
        config = {"architecture": "amd64", "config": {}, "history": ["x" * (5 * MIB)]}
    elif case == "config-nested-deeply":
        config = b"[" * 200_000 + b"]" * 200_000
    elif case == "config-not-an-object":
        config = ["a", "list"]
    elif case == "slow-drip":
        drip = 0.5
    digest, desc = _image(handler, config, config_bytes=served, drip=drip)
    if case == "too-many-manifests":
        digest = route_index(handler, [desc] * (standins.MAX_BASE_PLATFORMS + 1))
    elif case == "no-manifest-there":
        digest = "sha256:" + "c" * 64
    configs = standins.BaseConfigs({}, timeout=2.0)
    started = time.monotonic()
    why = standins.base_blocker(_bases(host, digest), {}, configs)
    assert time.monotonic() - started < 10
    # A slow drip ends at the client's deadline, or (on a loaded machine, the thread join
    # first) as out of time: either way, no configs.
    said = ("did not give its configs", "ran out") if case == "slow-drip" else (
        "did not give its configs",
    )  # fmt: skip
    assert why is not None and any(s in why for s in said), why
    assert "ONBUILD triggers cannot be read before the build" in why
    assert standins.base_users(_bases(host, digest), {}, configs) == {0: None}


def test_an_image_of_a_real_platform_is_read_whatever_its_annotations_say(
    double: tuple[str, type[Registry]],
) -> None:
    """An index may call its linux/arm64 image an attestation (BuildKit's platform matcher
    does not look at annotations and would build on it): its triggers are read all the same."""
    host, handler = double
    _, amd64 = _image(handler, {"architecture": "amd64", "config": {}})
    arm64_digest, arm64 = _image(
        handler, {"architecture": "arm64", "config": {"OnBuild": ["RUN cat /app/model/*"]}}
    )
    disguised = {**arm64, "platform": {"os": "linux", "architecture": "arm64"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}  # fmt: skip
    top = route_index(handler, [{**amd64, "platform": {"os": "linux", "architecture": "amd64"}},
                           disguised])  # fmt: skip
    why = standins.base_blocker(_bases(host, top), {})
    assert why is not None and "has ONBUILD triggers" in why, why
    assert f"/v2/base/manifests/{arm64_digest}" in handler.requests


def test_only_the_docker_configs_credentials_for_that_registry_are_sent(
    double: tuple[str, type[Registry]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FROM line may come from a pull request and name any host: modelseal's publish
    credentials and GitHub's token never go there, only what BuildKit itself would send it to
    pull the base (the docker config's entry for that host)."""
    import base64

    host, handler = double
    handler.challenge = True
    digest, _ = _image(handler, {"architecture": "amd64", "config": {}})
    monkeypatch.setenv("MODELSEAL_REGISTRY_USERNAME", "publisher")
    monkeypatch.setenv("MODELSEAL_REGISTRY_PASSWORD", "publish-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_" + "t" * 36)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    # No docker config: no credentials at all, and the registry's 401 means no stand-ins.
    why = standins.base_blocker(_bases(host, digest), {})
    assert why is not None and "did not give its configs" in why, why
    assert handler.authorizations == []

    (tmp_path / "docker").mkdir()
    pull = base64.b64encode(b"puller:pull-secret").decode()
    other = base64.b64encode(b"someone:else").decode()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": pull}, "ghcr.io": {"auth": other}}})
    )
    assert standins.base_blocker(_bases(host, digest), {}) is None
    assert handler.authorizations and set(handler.authorizations) == {f"Basic {pull}"}


def test_a_docker_image_build_context_pinned_by_digest_is_read_from_its_registry(
    double: tuple[str, type[Registry]],
) -> None:
    host, handler = double
    digest, _ = _image(handler, {"architecture": "amd64", "config": {"User": "svc"}})
    df = parse_dockerfile("FROM serving\nCOPY model/ /app/model/\n", "Dockerfile")
    contexts = {"serving": f"docker-image://{host}/base@{digest}"}
    bases = classify_bases(df, contexts)
    assert bases[0].kind == "context"
    configs = standins.BaseConfigs(contexts)
    assert standins.base_blocker(bases, contexts, configs) is None
    assert standins.base_users(bases, contexts, configs) == {0: "svc"}
    # By a tag: not read.
    tagged = {"serving": f"docker-image://{host}/base:1"}
    why = standins.base_blocker(classify_bases(df, tagged), tagged)
    assert why is not None and "neither an OCI layout nor a registry image pinned" in why, why
    assert len(handler.requests) == 2  # the manifest and the config, once


def test_a_base_named_by_a_tag_is_not_read(double: tuple[str, type[Registry]]) -> None:
    host, handler = double
    df = parse_dockerfile(f"FROM {host}/base:1\nCOPY model/ /app/model/\n", "Dockerfile")
    why = standins.base_blocker(classify_bases(df, {}), {})
    assert why is not None and "is not pinned by digest" in why, why
    assert handler.requests == []


# --- real BuildKit, the local registry -----------------------------------------------------------


@pytest.mark.engine
def test_a_registry_base_pinned_by_digest_gets_stand_ins_and_the_same_image(
    engine: PrivateEngine, busybox_base: str, registry: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    pinned = push_layout(busybox_base, f"{registry}/stand-ins/base")
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "big.bin").write_bytes(weights(3, 2 * MIB + 5, b"registry-"))
    (ctx / "model" / "config.json").write_text('{"small": true}\n')
    (ctx / "Dockerfile").write_text(
        f"FROM {pinned}\nCOPY model/ /app/model/\nWORKDIR /app\nUSER 1000\n"
    )
    write_lock(ctx, ["model/big.bin", "model/config.json"])

    on_code, on, on_out = build(ctx, tmp_path / "on", busybox_base, True, capsys)
    assert on_code == 0, on_out
    off_code, off, off_out = build(ctx, tmp_path / "off", busybox_base, False, capsys)
    assert off_code == 0, off_out
    assert on["stand_ins"] == "1", on
    assert on["stand_ins.replaced"] == "1", on
    assert on["image.digest"] == off["image.digest"]
