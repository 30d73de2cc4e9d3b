"""Publishing a sealed image: sign, push by digest, attach, and only then move the tags.

Order matters (fail closed):

1. everything is **signed first** — the image signature and every attestation; a Sigstore
   outage stops the publish before anything reaches the registry;
2. the image is pushed **by digest** with skopeo (``--preserve-digests``: the digest the gates
   judged is the digest that ships), or with modelseal's own OCI client when the policy opts in
   (``publish.pusher: builtin``); a missing skopeo without that opt-in stops the publish before
   anything is signed;
3. the signatures and attestations are stored: cosign v2 ``sha256-<hex>.sig`` / ``.att`` and
   Sigstore bundles as OCI referrers (or the fallback tag where the registry has no referrers
   API);
4. with ``publish.github_attestations``, the signed attestation bundles are submitted to
   GitHub's attestation store (:mod:`~modelseal.publish.github_attestations`) — after the
   registry holds the image and everything attached, so an id GitHub returns always names a
   digest that can be pulled and verified, and before any tag moves, so a refused submission
   leaves the tags where they were;
5. the **tags are moved last**. Any failure before that leaves no tag pointing at the new
   digest — an unsigned image is never reachable by tag.

Credentials: ``MODELSEAL_REGISTRY_USERNAME`` / ``MODELSEAL_REGISTRY_PASSWORD``, else
``MODELSEAL_GITHUB_TOKEN`` (the action's ``github-token``) or ``GITHUB_TOKEN`` for ``ghcr.io``
only (user ``GITHUB_ACTOR``), else the docker config. skopeo gets
them through a private auth file, never its argv. modelseal's own client sends them to the
registry's origin, and to a Bearer token service only on that origin or on an HTTPS host named
in ``MODELSEAL_REGISTRY_TOKEN_HOSTS``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelseal import fsio
from modelseal._tools import run_tool, which
from modelseal.errors import ConfigError, PublishError, ToolError
from modelseal.oci import INDEX_TYPES, OciLayout
from modelseal.publish.cosign import (
    att_manifest,
    bundle_referrer_manifest,
    cosign_tag,
    merge_signature_images,
    sig_manifest,
    simple_signing_payload,
)
from modelseal.publish.github_attestations import GitHubTarget, submit_attestations
from modelseal.publish.registry import OCI_MANIFEST, RegistryClient, sha256_digest
from modelseal.publish.registry_auth import Credentials
from modelseal.publish.registry_http import is_local_host
from modelseal.publish.registry_limits import RegistryError
from modelseal.sign.interface import Signed, Signer

_REF = re.compile(
    r"^(?P<host>(?:[a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\])(?::[0-9]+)?)/"
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_SKOPEO_TIMEOUT = 1800.0


@dataclass(frozen=True)
class ImageRef:
    """An image reference: ``HOST[:PORT]/REPOSITORY[:TAG][@sha256:…]``."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, what: str = "--push", allow_digest: bool = False) -> ImageRef:
        """Parse ``text`` (named ``what`` in errors). ``--push`` takes no digest: the digest
        is the one the build produced; ``modelseal verify`` takes one (and should)."""
        if "@" in text and not allow_digest:
            raise ConfigError(
                f"{what} {text}: give a repository and optionally a tag, not a digest "
                "(the digest is the one the build produced)."
            )
        m = _REF.match(text)
        if m is None or (
            "." not in m["host"] and ":" not in m["host"] and m["host"] != "localhost"
        ):
            shape = "REGISTRY/REPOSITORY[:TAG]" + ("[@sha256:…]" if allow_digest else "")
            raise ConfigError(
                f"{what} {text!r}: expected {shape} with a registry host, e.g. "
                "ghcr.io/org/model-server:1.2 or 127.0.0.1:5000/seal/app (lower-case "
                "repository path)."
            )
        return cls(m["host"], m["repo"], m["tag"], m["digest"])

    @property
    def name(self) -> str:
        """``host/repository``: the image name in statements and signatures."""
        return f"{self.host}/{self.repository}"

    @property
    def is_local(self) -> bool:
        """Loopback registries are spoken to over plain HTTP."""
        return is_local_host(self.host)


def registry_credentials(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for ``host``: explicit env, GitHub's token for ghcr.io, the docker config."""
    env = os.environ if env is None else env
    user, password = env.get("MODELSEAL_REGISTRY_USERNAME"), env.get("MODELSEAL_REGISTRY_PASSWORD")
    scope = env.get("MODELSEAL_REGISTRY_HOST")
    # With MODELSEAL_REGISTRY_HOST set, the explicit credentials go to that registry only (an
    # image reference from elsewhere, e.g. a deploy input, must not collect them).
    if user and password and (not scope or scope == host):
        return Credentials(user, password)
    token = (env.get("MODELSEAL_GITHUB_TOKEN") or "").strip() or env.get("GITHUB_TOKEN")
    if host == "ghcr.io" and token:
        return Credentials(env.get("GITHUB_ACTOR") or "github-actions", token)
    return Credentials.from_docker_config(host)


def registry_token_hosts(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``MODELSEAL_REGISTRY_TOKEN_HOSTS``: comma-separated ``host[:port]`` of token services
    (Bearer realms) on another host than the registry that may receive its credentials, over
    HTTPS only (e.g. ``gitlab.com`` for ``registry.gitlab.com``)."""
    env = os.environ if env is None else env
    raw = env.get("MODELSEAL_REGISTRY_TOKEN_HOSTS") or ""
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


@dataclass(frozen=True)
class Attestation:
    """One in-toto statement to sign and attach (``name`` names its bundle file)."""

    name: str
    statement: Mapping[str, Any]


#: What pushes the image (``publish.pusher``).
Pusher = Literal["skopeo", "builtin"]


@dataclass(frozen=True)
class PublishResult:
    """What was published (written as ``publish.json``)."""

    image: str
    digest: str
    tags: tuple[str, ...]
    signed: bool
    bundles: Mapping[str, Path] = field(default_factory=dict)
    referrers: tuple[str, ...] = ()
    pushed_with: str = "skopeo"
    github_attestations: Mapping[str, int] = field(default_factory=dict)
    """Attestation name → the id GitHub's attestation store gave it (empty: not submitted)."""

    @property
    def reference(self) -> str:
        """``image@digest``."""
        return f"{self.image}@{self.digest}"

    def to_json(self) -> dict[str, Any]:
        """The ``publish.json`` object."""
        return {
            "image": self.image,
            "digest": self.digest,
            "reference": self.reference,
            "tags": list(self.tags),
            "signed": self.signed,
            "bundles": {k: str(v) for k, v in sorted(self.bundles.items())},
            "referrers": list(self.referrers),
            "pushed_with": self.pushed_with,
            "github_attestations": dict(sorted(self.github_attestations.items())),
        }


def publish(
    ref: ImageRef,
    layout: OciLayout,
    digest: str,
    *,
    signer: Signer | None,
    attestations: Sequence[Attestation],
    out_dir: Path,
    extra_tags: Sequence[str] = (),
    created: int | None = None,
    credentials: Credentials | None = None,
    client: RegistryClient | None = None,
    pusher: Pusher = "skopeo",
    github: GitHubTarget | None = None,
) -> PublishResult:
    """Sign, push ``digest`` of ``layout``, attach, then tag; see the module docstring.

    ``pusher`` (``publish.pusher``): ``skopeo``, or ``builtin`` for modelseal's own client.
    ``github``: submit the signed attestations to that repository's attestation store too.
    """
    if github is not None and signer is None:
        raise ConfigError(
            "publish.github_attestations submits signed attestations, but sign mode is none."
        )
    manifest_bytes = layout.blob(digest).read_bytes()
    if sha256_digest(manifest_bytes) != digest:
        raise PublishError(f"{layout.path}: the manifest blob does not match {digest}.")
    media_type = str(json.loads(manifest_bytes).get("mediaType") or OCI_MANIFEST)
    # Before signing: a keyless signature is logged in Rekor for good, even if nothing is pushed.
    skopeo = _skopeo_for(pusher, media_type)
    tags = list(dict.fromkeys([*([ref.tag] if ref.tag else []), *extra_tags]))

    # 1. sign everything before the registry sees anything
    bundles_dir = out_dir / "bundles"
    bundles: dict[str, Path] = {}
    image_sig: Signed | None = None
    cosign_sig: Signed | None = None
    signed_atts: list[tuple[Attestation, Signed]] = []
    if signer is not None:
        # The bundle signs the manifest itself (its message digest IS the image digest); the
        # cosign v2 .sig signs the simple-signing payload naming that digest.
        image_sig = signer.sign_message(manifest_bytes)
        cosign_sig = signer.sign_message(simple_signing_payload(ref.name, digest))
        signed_atts = [(a, signer.sign_statement(a.statement)) for a in attestations]
        # Written before anything is pushed, so a bundles directory that cannot be written
        # (a link planted there is refused) stops the publish while nothing has moved.
        for name, signed in [("image", image_sig), ("image-cosign", cosign_sig)] + [
            (a.name, s) for a, s in signed_atts
        ]:
            path = bundles_dir / f"{name}.sigstore.json"
            fsio.write_bytes_atomic(path, signed.bundle_json() + b"\n")
            bundles[name] = path

    client = client or RegistryClient(
        ref.host, ref.repository, auth=credentials, token_hosts=registry_token_hosts()
    )
    moved: list[str] = []
    github_ids: dict[str, int] = {}
    try:
        # 2. the image, by digest
        pushed_with = _push_image(ref, layout, digest, media_type, credentials, client, skopeo)
        # 3. signatures and attestations
        referrers: list[str] = []
        if image_sig is not None and cosign_sig is not None:
            _push_tagged(client, cosign_tag(digest, "sig"), *sig_manifest([cosign_sig]))
            if signed_atts:
                _push_tagged(
                    client, cosign_tag(digest, "att"), *att_manifest([s for _, s in signed_atts])
                )
            for signed in [image_sig, *(s for _, s in signed_atts)]:
                body, blobs = bundle_referrer_manifest(
                    signed, digest, len(manifest_bytes), media_type, created=created
                )
                for blob_digest, blob in blobs.items():
                    client.push_blob(blob_digest, blob)
                referrers.append(str(client.add_referrer(digest, body)["digest"]))
        # 4. GitHub's attestation store, before any tag moves
        if github is not None and signed_atts:
            try:
                github_ids = submit_attestations(
                    github, [(a.name, s.bundle_json()) for a, s in signed_atts]
                )
            except PublishError as e:
                raise PublishError(
                    f"{ref.name}@{digest} is pushed with its signature and attestations "
                    f"({len(referrers)} referrers), but submitting the attestations to GitHub's "
                    f"attestation store of {github.repository} failed: {e.message} No tag was "
                    "moved"
                    + (f" ({', '.join(tags)} still point where they did)." if tags else "."),
                    hint=e.hint,
                ) from None
        # 5. tags, last
        for tag in tags:
            client.tag(tag, digest, media_type)
            moved.append(tag)
    except RegistryError as e:
        if moved:
            # Everything is signed and attached by now; only some of the tags moved.
            raise PublishError(
                f"publishing {ref.name}@{digest}: every signature and attestation is stored, "
                f"but moving the tags failed after {', '.join(moved)}: {e.diagnostics()}"
            ) from None
        raise PublishError(
            f"publishing {ref.name}@{digest} failed: {e.diagnostics()} No tag was moved"
            + (f" ({', '.join(tags)} still point where they did)." if tags else ".")
        ) from None
    return PublishResult(
        image=ref.name,
        digest=digest,
        tags=tuple(tags),
        signed=signer is not None,
        bundles=bundles,
        referrers=tuple(referrers),
        pushed_with=pushed_with,
        github_attestations=github_ids,
    )


def _skopeo_for(pusher: Pusher, media_type: str) -> str | None:
    """The skopeo to push with, or None for the builtin client; raises :class:`PublishError`
    (exit 3) when the chosen pusher cannot push this image."""
    if pusher == "builtin":
        if media_type in INDEX_TYPES:
            raise PublishError(
                "publish.pusher: builtin pushes one image manifest, not a multi-platform index.",
                hint="Install skopeo and set publish.pusher: skopeo (the default).",
            )
        return None
    skopeo = which("skopeo")
    if skopeo is None:
        raise PublishError(
            "skopeo was not found on PATH; it pushes the image (publish.pusher: skopeo). "
            "Nothing was signed or pushed.",
            hint="Install skopeo (Debian/Ubuntu: apt-get install skopeo), or opt in to "
            "modelseal's own registry client with `publish: {pusher: builtin}` in the policy "
            "(single-platform images only).",
        )
    return skopeo


def _push_tagged(client: RegistryClient, tag: str, body: bytes, blobs: dict[str, bytes]) -> None:
    """Store a cosign ``.sig``/``.att`` image; signatures already under the tag (an earlier
    run's, or someone else's) are kept, as cosign keeps them."""
    for blob_digest, blob in blobs.items():
        client.push_blob(blob_digest, blob)
    try:
        _, existing, _ = client.get_manifest(tag)
    except RegistryError as e:
        if e.status != 404:
            raise
    else:
        body, config = merge_signature_images(existing, body)
        for blob_digest, blob in config.items():
            client.push_blob(blob_digest, blob)
    client.push_manifest(tag, body, OCI_MANIFEST)


def _push_image(
    ref: ImageRef,
    layout: OciLayout,
    digest: str,
    media_type: str,
    credentials: Credentials | None,
    client: RegistryClient,
    skopeo: str | None,
) -> str:
    """Push with ``skopeo`` (its path), or with ``client`` when it is None (builtin)."""
    if skopeo is None:
        client.push_layout(layout, digest)
        return "modelseal"
    with (
        _single_image_view(layout, digest, media_type) as view,
        auth_file(ref.host, credentials) as auth,
    ):
        argv = [
            skopeo, "copy", "--quiet", "--preserve-digests", "--all", "--retry-times", "3",
            f"oci:{view}:modelseal", f"docker://{ref.name}@{digest}",
        ]  # fmt: skip
        if auth is not None:
            argv[2:2] = ["--dest-authfile", str(auth)]
        if ref.is_local:
            argv[2:2] = ["--dest-tls-verify=false"]
        try:
            run_tool(argv, timeout=_SKOPEO_TIMEOUT)
        except ToolError as e:
            raise PublishError(
                f"skopeo could not push {ref.name}@{digest}: {e.diagnostics()} No tag was moved."
            ) from None
    return "skopeo"


@contextmanager
def _single_image_view(layout: OciLayout, digest: str, media_type: str) -> Iterator[Path]:
    """A throwaway layout naming only ``digest`` (ref ``modelseal``), sharing the blobs: the
    skopeo in Debian 12 cannot select an image of a layout by digest."""
    with fsio.private_temp_dir("modelseal-push-") as tmp:
        view = Path(tmp)
        fsio.write_text_atomic(view / "oci-layout", '{"imageLayoutVersion":"1.0.0"}')
        (view / "blobs").symlink_to(layout.path.resolve() / "blobs")
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": layout.blob(digest).stat().st_size,
                    "annotations": {"org.opencontainers.image.ref.name": "modelseal"},
                }
            ],
        }
        fsio.write_text_atomic(view / "index.json", json.dumps(index))
        yield view


@contextmanager
def auth_file(host: str, credentials: Credentials | None) -> Iterator[Path | None]:
    """A private (0600) temporary Docker auth file holding ``credentials`` for ``host``, for
    skopeo's ``--authfile``/``--src-authfile``; removed on exit. None without credentials."""
    if credentials is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="modelseal-auth-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600
            json.dump({"auths": {host: {"auth": credentials.token()}}}, f)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
