"""Registry artifacts in the shapes cosign reads and writes — pure functions, no network.

Checked against what cosign 2.5.0 itself pushes to a registry (``cosign sign --key``,
``cosign attest --key`` with and without ``--new-bundle-format``):

* **v2 signature** — tag ``sha256-<hex>.sig``: an OCI image manifest whose config is a
  minimal image config listing each layer as a ``diff_id``; one layer per signature, the
  simple-signing payload (``application/vnd.dev.cosign.simplesigning.v1+json``), annotated
  with ``dev.cosignproject.cosign/signature`` (base64) and, for keyless signatures,
  ``dev.sigstore.cosign/certificate``, ``…/chain`` and ``…/bundle`` (the Rekor bundle).
* **v2 attestation** — tag ``sha256-<hex>.att``: the same, with DSSE envelope layers
  (``application/vnd.dsse.envelope.v1+json``), an empty signature annotation and
  ``predicateType``.
* **Sigstore bundle referrer** (``attest --new-bundle-format``): an OCI 1.1 manifest with
  ``artifactType`` = the bundle media type, the empty config, one bundle layer, ``subject``
  = the image, and annotations ``dev.sigstore.bundle.content``,
  ``dev.sigstore.bundle.predicateType`` and ``org.opencontainers.image.created``.

JSON is written in the field order of cosign's Go structs: for the same signatures our
``.sig``/``.att`` manifests, configs and payloads are byte-identical to cosign's (the tests
compare against cosign's own output in ``tests/data/cosign-2.5``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from modelseal.errors import PublishError
from modelseal.oci import DIGEST_RE
from modelseal.publish.registry import OCI_MANIFEST, sha256_digest
from modelseal.publish.registry_limits import RegistryLimitError
from modelseal.sign.interface import BUNDLE_MEDIA_TYPE, Signed

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
"""Layer media type of a cosign v2 image signature (the simple-signing payload)."""
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
"""Layer media type of a cosign v2 attestation (a DSSE envelope)."""
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = sha256_digest(EMPTY_BLOB)
"""``sha256:44136fa…``: the OCI empty descriptor's content, ``{}``."""

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
REKOR_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
PREDICATE_TYPE_ANNOTATION = "predicateType"
BUNDLE_CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_TYPE_ANNOTATION = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION = "org.opencontainers.image.created"

SIMPLE_SIGNING_TYPE = "cosign container image signature"
"""``critical.type`` of a simple-signing payload."""

# cosign's signature images carry Go's zero time.Time wherever a timestamp is due
_ZERO_TIME = "0001-01-01T00:00:00Z"


class CosignFormatError(PublishError):
    """A registry artifact is not in the shape cosign writes (or a blob does not match)."""


class CosignLayer(NamedTuple):
    """One signature or attestation read back from a ``.sig``/``.att`` manifest."""

    content: bytes
    """The simple-signing payload (``.sig``) or the DSSE envelope JSON (``.att``)."""
    annotations: Mapping[str, str]
    """The layer's annotations (signature, certificate, chain, bundle, predicateType)."""


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _hex(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise CosignFormatError(f"{digest!r} is not a sha256:<64 hex> digest.")
    return digest[len("sha256:") :]


def cosign_tag(manifest_digest: str, kind: Literal["sig", "att"]) -> str:
    """The tag cosign v2 stores signatures (``sig``) or attestations (``att``) under:
    ``sha256-<hex>.sig``."""
    if kind not in ("sig", "att"):
        raise ValueError(f"kind must be 'sig' or 'att', not {kind!r}")
    return f"sha256-{_hex(manifest_digest)}.{kind}"


def simple_signing_payload(
    docker_reference: str,
    manifest_digest: str,
    optional: Mapping[str, str] | None = None,
) -> bytes:
    """The payload of a cosign v2 image signature, byte for byte as cosign writes it
    (sigstore/sigstore ``payload.SimpleContainerImage``: ``critical`` then ``optional``,
    ``optional`` null when there are no annotations)."""
    _hex(manifest_digest)
    data = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        # Go marshals a map with sorted keys
        "optional": dict(sorted(optional.items())) if optional else None,
    }
    return _json(data)


def parse_simple_signing_payload(payload: bytes) -> tuple[str, str]:
    """``(docker-reference, docker-manifest-digest)`` of a simple-signing payload."""
    try:
        data = json.loads(payload)
        critical = data["critical"]
        reference = critical["identity"]["docker-reference"]
        digest = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
    except (ValueError, LookupError, TypeError, RecursionError):
        raise CosignFormatError("not a cosign simple-signing payload.") from None
    if kind != SIMPLE_SIGNING_TYPE or not isinstance(reference, str):
        raise CosignFormatError(f"unexpected simple-signing type {kind!r}.")
    _hex(str(digest))
    return reference, str(digest)


def _keyless_annotations(signed: Signed) -> dict[str, str]:
    out: dict[str, str] = {}
    if signed.certificate_pem:
        out[CERTIFICATE_ANNOTATION] = signed.certificate_pem
    if signed.chain_pem:
        out[CHAIN_ANNOTATION] = signed.chain_pem
    if signed.rekor_bundle is not None:
        out[REKOR_BUNDLE_ANNOTATION] = _json(signed.rekor_bundle).decode()
    return out


def _descriptor(
    media_type: str, blob: bytes, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    # go-containerregistry's v1.Descriptor field order: mediaType, size, digest, annotations
    desc: dict[str, Any] = {
        "mediaType": media_type,
        "size": len(blob),
        "digest": sha256_digest(blob),
    }
    if annotations:
        desc["annotations"] = dict(annotations)
    return desc


def _signature_image(
    layers: Sequence[tuple[bytes, str, Mapping[str, str]]],
) -> tuple[bytes, dict[str, bytes]]:
    """A cosign signature image: config listing the layers, then the layers, in order."""
    if not layers:
        raise ValueError("a signature image needs at least one signature")
    blobs: dict[str, bytes] = {}
    descriptors = []
    for content, media_type, layer_annotations in layers:
        desc = _descriptor(media_type, content, layer_annotations)
        descriptors.append(desc)
        blobs[desc["digest"]] = content
    manifest, config_blobs = _manifest_of(descriptors)
    return manifest, blobs | config_blobs


def _manifest_of(descriptors: Sequence[Mapping[str, Any]]) -> tuple[bytes, dict[str, bytes]]:
    config = _json(
        {
            "architecture": "",
            "created": _ZERO_TIME,
            "history": [{"created": _ZERO_TIME} for _ in descriptors],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
            "config": {},
        }
    )
    config_desc = _descriptor(OCI_CONFIG_MEDIA_TYPE, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": list(descriptors),
    }
    return _json(manifest), {config_desc["digest"]: config}


def merge_signature_images(existing: bytes, new: bytes) -> tuple[bytes, dict[str, bytes]]:
    """``.sig``/``.att`` manifest ``new`` plus the layers of the ``existing`` one that it does
    not hold, as cosign does when it signs an image again: earlier signatures (ours or anyone
    else's) are kept. Returns the merged manifest and the new config blob; every layer blob is
    already in the registry or in ``new``'s blobs."""
    try:
        old_layers = json.loads(existing)["layers"]
        new_layers = json.loads(new)["layers"]
    except (ValueError, LookupError, TypeError, RecursionError):
        raise CosignFormatError("the existing signature manifest is not an OCI manifest.") from None
    if not isinstance(old_layers, list):
        raise CosignFormatError("the existing signature manifest has no layer list.")
    # Layers of one payload share a digest; what tells signatures apart are the annotations
    # (signature, certificate), so only a descriptor equal in full is a duplicate.
    seen = {_json(d) for d in new_layers}
    kept = [
        d
        for d in old_layers
        if isinstance(d, dict) and isinstance(d.get("digest"), str) and _json(d) not in seen
    ]
    return _manifest_of([*kept, *new_layers])


def sig_manifest(signed_list: Sequence[Signed]) -> tuple[bytes, dict[str, bytes]]:
    """The manifest for the ``sha256-<hex>.sig`` tag and its blobs (``{digest: bytes}``,
    config and layers), from message signatures over simple-signing payloads."""
    layers = []
    for signed in signed_list:
        if signed.content != "message-signature":
            raise ValueError("a .sig manifest holds message signatures only")
        annotations = {SIGNATURE_ANNOTATION: signed.signature_b64, **_keyless_annotations(signed)}
        layers.append((signed.payload, SIMPLE_SIGNING_MEDIA_TYPE, annotations))
    return _signature_image(layers)


def _statement_predicate_type(payload: bytes) -> str:
    try:
        value = json.loads(payload)["predicateType"]
    except (ValueError, LookupError, TypeError, RecursionError):
        raise CosignFormatError("the signed statement has no predicateType.") from None
    if not isinstance(value, str) or not value:
        raise CosignFormatError("the signed statement has no predicateType.")
    return value


def att_manifest(signed_list: Sequence[Signed]) -> tuple[bytes, dict[str, bytes]]:
    """The manifest for the ``sha256-<hex>.att`` tag and its blobs, from DSSE-signed
    statements (one layer per envelope, annotated with its ``predicateType``)."""
    layers = []
    for signed in signed_list:
        if signed.content != "dsse-envelope" or signed.dsse_envelope is None:
            raise ValueError("an .att manifest holds DSSE envelopes only")
        annotations = {
            # cosign writes the key, empty: the signature lives inside the envelope
            SIGNATURE_ANNOTATION: "",
            PREDICATE_TYPE_ANNOTATION: _statement_predicate_type(signed.payload),
            **_keyless_annotations(signed),
        }
        layers.append((signed.dsse_envelope, DSSE_MEDIA_TYPE, annotations))
    return _signature_image(layers)


def _created(value: datetime | int) -> str:
    if isinstance(value, int):
        when = datetime.fromtimestamp(value, UTC)
    else:  # a naive datetime is taken as UTC, never as the machine's local time
        when = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def bundle_referrer_manifest(
    signed: Signed,
    subject_digest: str,
    subject_size: int,
    subject_media_type: str = OCI_MANIFEST,
    predicate_type: str | None = None,
    *,
    created: datetime | int | None = None,
) -> tuple[bytes, dict[str, bytes]]:
    """An OCI 1.1 referrer holding ``signed``'s Sigstore bundle, as ``cosign attest
    --new-bundle-format`` writes it; returns the manifest and its blobs (the empty config
    and the bundle). Push it with :meth:`RegistryClient.add_referrer`.

    ``predicate_type`` defaults to the signed statement's; a message signature without one
    gets no predicate annotation. ``created`` (epoch seconds or a datetime — pass
    SOURCE_DATE_EPOCH or the run's time) becomes ``org.opencontainers.image.created``; left
    out when None, which keeps the manifest digest a function of the bundle alone.
    """
    _hex(subject_digest)
    bundle = signed.bundle_json()
    bundle_desc = _descriptor(BUNDLE_MEDIA_TYPE, bundle)
    annotations: dict[str, str] = {BUNDLE_CONTENT_ANNOTATION: signed.content}
    if predicate_type is None and signed.content == "dsse-envelope":
        predicate_type = _statement_predicate_type(signed.payload)
    if predicate_type:
        annotations[BUNDLE_PREDICATE_TYPE_ANNOTATION] = predicate_type
    if created is not None:
        annotations[CREATED_ANNOTATION] = _created(created)
    config = {
        "mediaType": EMPTY_MEDIA_TYPE,
        "size": len(EMPTY_BLOB),
        "digest": EMPTY_DIGEST,
        # cosign sets it on the config descriptor as well as on the manifest
        "artifactType": BUNDLE_MEDIA_TYPE,
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [bundle_desc],
        "annotations": dict(sorted(annotations.items())),
        "subject": {
            "mediaType": subject_media_type,
            "size": subject_size,
            "digest": subject_digest,
        },
        "artifactType": BUNDLE_MEDIA_TYPE,
    }
    return _json(manifest), {EMPTY_DIGEST: EMPTY_BLOB, bundle_desc["digest"]: bundle}


def _layers(
    manifest_bytes: bytes,
    media_type: str,
    fetch_blob: Callable[[str], bytes],
    max_layers: int | None,
) -> list[CosignLayer]:
    try:
        manifest = json.loads(manifest_bytes)
        layers = manifest["layers"]
    except (ValueError, LookupError, TypeError, RecursionError):
        raise CosignFormatError("not an OCI image manifest (no layers).") from None
    if not isinstance(layers, list):
        raise CosignFormatError("not an OCI image manifest (layers is not a list).")
    wanted = sum(1 for d in layers if isinstance(d, dict) and d.get("mediaType") == media_type)
    if max_layers is not None and wanted > max_layers:
        # each is one more blob to fetch and verify; anyone who may push can add them
        raise RegistryLimitError(
            f"the signature manifest has {wanted} {media_type} layers, more than the limit "
            f"max_signature_layers ({max_layers}).",
            limit="max_signature_layers",
        )
    out = []
    for i, desc in enumerate(layers):
        if not isinstance(desc, dict) or desc.get("mediaType") != media_type:
            continue
        digest = desc.get("digest")
        if not isinstance(digest, str):
            raise CosignFormatError(f"layer {i} has no digest.")
        _hex(digest)
        content = fetch_blob(digest)
        if sha256_digest(content) != digest:
            raise CosignFormatError(f"layer {i}: blob content does not match {digest}.")
        if desc.get("size") not in (None, len(content)):
            raise CosignFormatError(f"layer {i}: blob size {len(content)} != {desc['size']}.")
        raw = desc.get("annotations") or {}
        annotations = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        out.append(CosignLayer(content, annotations))
    return out


def parse_sig_manifest(
    manifest_bytes: bytes, fetch_blob: Callable[[str], bytes], max_layers: int | None = None
) -> list[CosignLayer]:
    """The signatures of a ``.sig`` manifest: ``(simple-signing payload, annotations)`` per
    simple-signing layer, blobs fetched with ``fetch_blob(digest)`` and checked against
    their digests. Nothing is verified cryptographically here. More than ``max_layers``
    such layers raise :class:`RegistryLimitError` before any is fetched."""
    return _layers(manifest_bytes, SIMPLE_SIGNING_MEDIA_TYPE, fetch_blob, max_layers)


def parse_att_manifest(
    manifest_bytes: bytes, fetch_blob: Callable[[str], bytes], max_layers: int | None = None
) -> list[CosignLayer]:
    """The attestations of an ``.att`` manifest: ``(DSSE envelope JSON, annotations)`` per
    envelope layer, blobs checked against their digests (signatures are not verified);
    ``max_layers`` as for :func:`parse_sig_manifest`."""
    return _layers(manifest_bytes, DSSE_MEDIA_TYPE, fetch_blob, max_layers)


def decode_envelope(envelope: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """``(payloadType, payload, [(keyid, signature)])`` of a DSSE envelope JSON."""
    try:
        data = json.loads(envelope)
        payload_type = data["payloadType"]
        payload = base64.b64decode(data["payload"], validate=True)
        signatures = [
            (str(s.get("keyid") or ""), base64.b64decode(s["sig"], validate=True))
            for s in data["signatures"]
        ]
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError):
        raise CosignFormatError("not a DSSE envelope.") from None
    if not isinstance(payload_type, str):
        raise CosignFormatError("not a DSSE envelope (payloadType).")
    return payload_type, payload, signatures
