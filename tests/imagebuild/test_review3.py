"""Review 3 of stand-ins for a registry base pinned by digest (``standins.BaseConfigs``,
``registry_configs``): what the base's registry can make modelseal read that BuildKit would
not, and the bounds on reading it. Each test states the expected behaviour; the ones that fail
today were marked ``xfail(strict=True)`` with the defect; all are fixed. A registry double on
127.0.0.1 only."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

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
from modelseal.imagebuild.bases import classify_bases
from modelseal.imagebuild.dockerfile import parse_dockerfile

ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


@pytest.fixture
def double() -> Iterator[tuple[str, type[Registry]]]:
    with registry_double() as served:
        yield served


# --- 1. an index entry BuildKit picks, skipped as an "attestation" --------------------------------


@pytest.mark.parametrize("platform", [{"os": "linux", "architecture": "amd64"}, None])
def test_review3_an_entry_buildkit_can_pick_is_read_whatever_its_annotations(
    double: tuple[str, type[Registry]], platform: dict[str, str] | None
) -> None:
    """The index has a harmless image for linux/s390x and the image BuildKit builds on for
    linux/amd64 (or, without a platform, for any platform), whose config has an ONBUILD trigger
    and USER app — annotated as BuildKit annotates its attestation manifests. BuildKit never
    looks at that annotation when it resolves ``FROM`` (only at the platform); BuildKit's real
    attestation manifests are ``unknown/unknown``, which no build platform matches (what
    ``OciLayout.platform_manifests`` skips for a layout base)."""
    host, handler = double
    harmless = route_image(handler, {"architecture": "s390x", "os": "linux", "config": {}})
    harmless["platform"] = {"os": "linux", "architecture": "s390x"}
    real = route_image(handler, {"architecture": "amd64", "os": "linux",
                            "config": {"User": "app", "OnBuild": [TRIGGER]}})  # fmt: skip
    real["annotations"] = {**ATTESTATION, "vnd.docker.reference.digest": harmless["digest"]}
    if platform is not None:
        real["platform"] = platform
    top = route_index(handler, [harmless, real])
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")

    configs = standins.BaseConfigs({}, timeout=10.0)
    why = standins.base_blocker(bases, {}, configs)
    assert why is not None and "ONBUILD" in why, why
    # Its user is app on the platform built, "" on the other: not one user known.
    assert standins.base_users(bases, {}, configs) == {0: None}


def test_review3_a_real_attestation_manifest_stays_skipped(
    double: tuple[str, type[Registry]],
) -> None:
    """The control for the test above: BuildKit's own attestation manifest (platform
    ``unknown/unknown``, never picked for a build) does not count."""
    host, handler = double
    image = route_image(
        handler, {"architecture": "amd64", "os": "linux", "config": {"User": "app"}}
    )
    image["platform"] = {"os": "linux", "architecture": "amd64"}
    attestation = route_image(handler, {"architecture": "unknown", "os": "unknown", "config": {}})
    attestation["platform"] = {"os": "unknown", "architecture": "unknown"}
    attestation["annotations"] = {**ATTESTATION, "vnd.docker.reference.digest": image["digest"]}
    top = route_index(handler, [image, attestation])
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")
    configs = standins.BaseConfigs({}, timeout=10.0)
    assert standins.base_users(bases, {}, configs) == {0: "app"}
    assert standins.base_blocker(bases, {}, configs) is None


# --- 2. an index entry not named by a sha256 digest ------------------------------------------------


@pytest.mark.parametrize("named", ["sha512", "tag"])
def test_review3_an_index_entry_is_read_only_as_the_digest_that_names_it(
    double: tuple[str, type[Registry]], named: str
) -> None:
    """The index names its amd64 image by ``sha512:…`` (valid OCI, and verified by BuildKit —
    Go registers SHA-512 in any binary that links crypto/tls) or by a tag. The registry answers
    that path with a harmless manifest — another than the one the sha512 digest names, which
    BuildKit gets (a registry can tell the two clients apart, e.g. by User-Agent) and whose
    config has an ONBUILD trigger. modelseal cannot check that answer, so it must not use it."""
    host, handler = double
    served = route_image(handler, {"architecture": "amd64", "os": "linux", "config": {}})
    _, body, _ = handler.routes[f"/v2/base/manifests/{served['digest']}"]
    hidden = json.dumps({"config": {"OnBuild": [TRIGGER]}}).encode()  # what BuildKit would get
    ref = "sha512:" + hashlib.sha512(hidden).hexdigest() if named == "sha512" else "latest"
    handler.routes[f"/v2/base/manifests/{ref}"] = (OCI_MANIFEST, body, 0.0)
    top = route_index(handler, [{"mediaType": OCI_MANIFEST, "digest": ref, "size": len(hidden),
                            "platform": {"os": "linux", "architecture": "amd64"}}])  # fmt: skip
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")

    configs = standins.BaseConfigs({}, timeout=10.0)
    why = standins.base_blocker(bases, {}, configs)
    assert why is not None and "did not give its configs" in why, why


# --- 3. the 30 s are per base, not in all ---------------------------------------------------------


def test_review3_all_bases_together_keep_to_the_timeout(
    double: tuple[str, type[Registry]],
) -> None:
    host, handler = double
    froms = []
    for i in range(4):
        # A registry that sends its answer one byte every 0.2 s.
        desc = route_image(handler, {"architecture": "amd64", "config": {}, "n": i}, drip=0.2)
        froms.append(f"FROM {host}/base@{desc['digest']} AS s{i}\n")
    bases = bases_of("".join(froms) + "FROM s3\nCOPY model/ /app/model/\n")
    configs = standins.BaseConfigs({}, timeout=1.0)
    started = time.monotonic()
    users = standins.base_users(bases, {}, configs)
    took = time.monotonic() - started
    assert users == {0: None, 1: None, 2: None, 3: None, 4: None}
    assert took < 2.0, f"{took:.1f} s for 4 bases under a 1 s timeout"


# --- 4. memory: every platform's parsed manifest and config held at once --------------------------


def test_review3_reading_a_base_holds_no_more_than_it_needs(
    double: tuple[str, type[Registry]],
) -> None:
    """64 index entries (the limit) naming one image whose config is 64 KiB of ``[]`` — 1/64 of
    the 4 MiB a config may have. What stand-ins need of it is its User and OnBuild; holding the
    64 parsed configs costs ~88 MiB here, ~5.5 GiB at the limits."""
    host, handler = double
    filler = b",".join([b"[]"] * (64 * 1024 // 3))
    config = b'{"architecture":"amd64","os":"linux","config":{},"history":[' + filler + b"]}"
    desc = route_image(handler, config)
    top = route_index(handler, [desc] * standins.MAX_BASE_PLATFORMS)
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")
    configs = standins.BaseConfigs({}, timeout=20.0)
    tracemalloc.start()
    try:
        users = standins.base_users(bases, {}, configs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert users == {0: ""}
    assert peak < 16 << 20, f"peak {peak / (1 << 20):.0f} MiB of Python objects"


# --- 5. JSON read by Python's rules, where BuildKit reads it by Go's ------------------------------
#
# BuildKit (and containerd under it) decode the index, the manifest and the image config with
# Go's encoding/json: a key matches a field case-insensitively ("onbuild", "Config" and
# "Manifests" are OnBuild, config and manifests), and of two keys for one field the last one
# wins. modelseal reads the exact keys only ("OnBuild", "User", "config", "manifests"), so the
# same bytes — pinned by one digest — say one thing to modelseal and another to BuildKit.


_HARMLESS = b'{"architecture":"amd64","os":"linux","config":{}}'
_TRIGGERED = json.dumps(
    {"architecture": "amd64", "os": "linux", "config": {"OnBuild": [TRIGGER]}}
).encode()


def _hostile(handler: type[Registry], case: str) -> str:
    """The top digest of a base whose ONBUILD trigger only Go's JSON rules see."""
    amd64 = {"os": "linux", "architecture": "amd64"}
    if case in ("onbuild-lower-case", "Config-capitalised", "OnBuild-then-onBuild"):
        config = {
            "onbuild-lower-case": b'{"architecture":"amd64","config":{"onbuild":["%s"]}}',
            "Config-capitalised": b'{"architecture":"amd64","Config":{"OnBuild":["%s"]}}',
            "OnBuild-then-onBuild":
                b'{"architecture":"amd64","config":{"OnBuild":[],"onBuild":["%s"]}}',
        }[case] % TRIGGER.encode()  # fmt: skip
        _, desc = route_config(handler, config)
        return route(handler, "manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                          "config": desc, "layers": []})  # fmt: skip
    if case == "manifest-config-then-Config":
        _, harmless = route_config(handler, _HARMLESS)
        _, triggered = route_config(handler, _TRIGGERED)
        return route(handler, "manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                          "config": harmless, "Config": triggered,
                                          "layers": []})  # fmt: skip
    assert case == "index-manifests-then-Manifests"
    harmless = route_image(handler, json.loads(_HARMLESS))
    triggered = route_image(handler, json.loads(_TRIGGERED))
    return route(handler, "index", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                   "manifests": [{**harmless, "platform": amd64}],
                                   "Manifests": [{**triggered, "platform": amd64}]})  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["onbuild-lower-case", "Config-capitalised", "OnBuild-then-onBuild",
     "manifest-config-then-Config", "index-manifests-then-Manifests"],
)  # fmt: skip
def test_review3_triggers_are_read_as_buildkit_reads_them(
    double: tuple[str, type[Registry]], case: str
) -> None:
    host, handler = double
    top = _hostile(handler, case)
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")
    why = standins.base_blocker(bases, {}, standins.BaseConfigs({}, timeout=10.0))
    assert why is not None, "stand-ins allowed, yet BuildKit runs the base's ONBUILD trigger"


def test_review3_the_control_an_exact_onbuild_blocks_them(
    double: tuple[str, type[Registry]],
) -> None:
    """What the cases above hide: the same trigger under its exact key blocks stand-ins."""
    host, handler = double
    _, desc = route_config(handler, _TRIGGERED)
    top = route(handler, "manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                     "config": desc, "layers": []})  # fmt: skip
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\n")
    why = standins.base_blocker(bases, {}, standins.BaseConfigs({}, timeout=10.0))
    assert why is not None and "has ONBUILD triggers" in why, why


def test_review3_the_base_user_is_read_as_buildkit_reads_it(
    double: tuple[str, type[Registry]],
) -> None:
    host, handler = double
    _, desc = route_config(handler, b'{"architecture":"amd64","config":{"user":"app"}}')
    top = route(handler, "manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                     "config": desc, "layers": []})  # fmt: skip
    bases = bases_of(f"FROM {host}/base@{top}\nCOPY model/ /app/model/\nWORKDIR /app\n")
    users = standins.base_users(bases, {}, standins.BaseConfigs({}, timeout=10.0))
    assert users != {0: ""}, "the base's user 'app' taken for root"


def test_review3_a_layout_base_trigger_is_read_as_buildkit_reads_it(tmp_path: Path) -> None:
    from tests.support.layers import image_layout

    digest = image_layout(tmp_path / "layout", {"config": {"onbuild": [TRIGGER]}}, [])
    contexts = {"base": f"oci-layout://{tmp_path / 'layout'}@{digest}"}
    df = parse_dockerfile("FROM base\nCOPY model/ /app/model/\n", "Dockerfile")
    assert standins.base_blocker(classify_bases(df, contexts), contexts) is not None
