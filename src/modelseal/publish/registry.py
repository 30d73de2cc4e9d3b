"""A small OCI distribution client on urllib: blobs, manifests, tags and referrers.

:class:`RegistryClient` asks for what the OCI distribution spec offers; how each request is
sent — plain HTTP only for loopback hosts, retries, redirects, a wall-clock watchdog, auth — is
:class:`~modelseal.publish.registry_http.RegistryTransport`'s job. Credentials and bearer
tokens never appear in errors, logs or ``repr``; where they may go is decided in
:mod:`~modelseal.publish.registry_auth`. Every answer is hostile until bounded (the limits and
errors are in :mod:`~modelseal.publish.registry_limits`): referrers and the layers verify
fetches have a count, each body a size cap by what it is; a breach raises
:class:`~modelseal.publish.registry_limits.RegistryLimitError`, naming the limit.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from modelseal.errors import PublishError
from modelseal.oci import DIGEST_RE, INDEX_TYPES, OciLayout
from modelseal.publish.registry_http import RegistryTransport
from modelseal.publish.registry_limits import RegistryError, RegistryLimitError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient(RegistryTransport):
    """One repository on one registry (OCI distribution spec v1.1)."""

    # -- blobs ----------------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        """Whether the repository holds the blob."""
        res = self._request("HEAD", f"/v2/{self.repository}/blobs/{digest}", quiet=(404,))
        return res.status == 200

    def get_blob(
        self, digest: str, kind: Literal["signature", "attestation", "config"] = "attestation"
    ) -> bytes:
        """A blob's bytes, checked against ``digest`` (small blobs only: signatures, bundles,
        attestations, image configs — one larger than the ``kind``'s limit is refused, not read
        into memory)."""
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"{digest!r} is not a sha256 digest.")
        res = self._request("GET", f"/v2/{self.repository}/blobs/{digest}", kind=kind)
        if sha256_digest(res.body) != digest:
            raise RegistryError(f"blob {digest}: the registry sent different content.")
        return res.body

    def push_blob(self, digest: str, content: Path | bytes) -> None:
        """Upload a blob monolithically (POST, then PUT with the whole content, streamed from
        a file); does nothing when the registry already has it."""
        if self.blob_exists(digest):
            return
        res = self._request("POST", f"/v2/{self.repository}/blobs/uploads/", ok=(202,))
        location = res.headers.get("Location")
        if not location:
            raise RegistryError(
                f"registry POST /v2/{self.repository}/blobs/uploads/ gave no upload location.",
                method="POST",
                path=f"/v2/{self.repository}/blobs/uploads/",
                status=res.status,
            )
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(content, bytes):
            headers["Content-Length"] = str(len(content))
        self._request("PUT", url, body=content, headers=headers, ok=(201,))

    # -- manifests ------------------------------------------------------------------------------

    def push_manifest(self, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a digest or a tag; returns its digest, checked against the
        registry's ``Docker-Content-Digest``."""
        return self._put_manifest(ref, body, media_type)[0]

    def _put_manifest(self, ref: str, body: bytes, media_type: str) -> tuple[str, str | None]:
        """The digest, and the ``OCI-Subject`` header (set by registries with the referrers API)."""
        digest = sha256_digest(body)
        if DIGEST_RE.match(ref) and ref != digest:
            raise RegistryError(f"manifest content has digest {digest}, not {ref}.")
        path = f"/v2/{self.repository}/manifests/{ref}"
        res = self._request(
            "PUT", path, body=body, headers={"Content-Type": media_type}, ok=(201, 200)
        )
        reported = res.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            raise RegistryError(
                f"registry PUT {path} stored digest {reported}, but {digest} was pushed.",
                method="PUT",
                path=path,
                status=res.status,
            )
        return digest, res.headers.get("OCI-Subject")

    def get_manifest(self, ref: str) -> tuple[str, bytes, str]:
        """``(media type, bytes, digest)`` of a manifest by tag or digest."""
        path = f"/v2/{self.repository}/manifests/{ref}"
        res = self._request("GET", path, headers={"Accept": MANIFEST_ACCEPT}, kind="manifest")
        digest = sha256_digest(res.body)
        if DIGEST_RE.match(ref) and digest != ref:
            raise RegistryError(
                f"registry GET {path} returned content with digest {digest}.",
                method="GET",
                path=path,
                status=res.status,
            )
        media = res.headers.get("Content-Type", "").split(";")[0].strip()
        return media, res.body, digest

    def tag(self, tag: str, digest: str, media_type: str | None = None) -> None:
        """Point ``tag`` at the manifest ``digest`` (re-PUT of the same bytes); ``media_type``
        when known (some registries answer without a Content-Type)."""
        media, body, _ = self.get_manifest(digest)
        self.push_manifest(tag, body, media_type or media or OCI_MANIFEST)

    # -- referrers ------------------------------------------------------------------------------

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``: the referrers API,
        or the ``sha256-<hex>`` fallback tag when the registry answers 404."""
        path = f"/v2/{self.repository}/referrers/{digest}"
        if artifact_type:
            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        res = self._request("GET", path, headers={"Accept": OCI_INDEX}, quiet=(404,), kind="index")
        if res.status == 200:
            manifests = _manifests_of(res.body)
        else:
            manifests = self._fallback_manifests(digest)
        found = [
            d
            for d in manifests
            if isinstance(d, dict)
            and (artifact_type is None or d.get("artifactType") == artifact_type)
        ]
        cap = self.limits.max_referrers
        if len(found) > cap:
            # Each costs two more requests; anyone who may push to the repository can add them.
            raise RegistryLimitError(
                f"{digest} has {len(found)} referrers"
                + (f" of type {artifact_type}" if artifact_type else "")
                + f", more than the limit max_referrers ({cap}).",
                limit="max_referrers",
                method="GET",
                path=urllib.parse.urlsplit(path).path,
            )
        return found

    def add_referrer(
        self, subject_digest: str, manifest: bytes, media_type: str = OCI_MANIFEST
    ) -> dict[str, Any]:
        """Push a manifest whose ``subject`` is ``subject_digest`` (by digest) and make it
        discoverable; on registries without the referrers API (no ``OCI-Subject`` answer),
        add its descriptor to the fallback-tag index once. Returns the descriptor."""
        data = json.loads(manifest)
        subject = data.get("subject") if isinstance(data, dict) else None
        if not isinstance(subject, dict) or subject.get("digest") != subject_digest:
            raise RegistryError(f"the referrer manifest's subject is not {subject_digest}.")
        digest, acknowledged = self._put_manifest(sha256_digest(manifest), manifest, media_type)
        descriptor: dict[str, Any] = {
            "mediaType": media_type,
            "digest": digest,
            "size": len(manifest),
        }
        artifact_type = data.get("artifactType") or data.get("config", {}).get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if data.get("annotations"):
            descriptor["annotations"] = data["annotations"]
        if acknowledged == subject_digest:
            return descriptor
        self._tag_referrer(subject_digest, descriptor)
        return descriptor

    def _fallback_tag(self, digest: str) -> str:
        return digest.replace(":", "-", 1)

    def _fallback_manifests(self, subject: str) -> list[Any]:
        path = f"/v2/{self.repository}/manifests/{self._fallback_tag(subject)}"
        res = self._request("GET", path, headers={"Accept": OCI_INDEX}, quiet=(404,), kind="index")
        return _manifests_of(res.body) if res.status == 200 else []

    def _tag_referrer(self, subject: str, descriptor: dict[str, Any]) -> None:
        tag = self._fallback_tag(subject)
        manifests = self._fallback_manifests(subject)
        if any(isinstance(d, dict) and d.get("digest") == descriptor["digest"] for d in manifests):
            return
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*manifests, descriptor]}
        self.push_manifest(tag, json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)

    # -- images ---------------------------------------------------------------------------------

    def push_layout(self, layout: OciLayout, manifest_digest: str) -> str:
        """Push one image manifest of ``layout`` with its config and layers (existing blobs
        skipped), the manifest by digest (no tag); returns the digest."""
        path = layout.blob(manifest_digest)
        try:
            body = path.read_bytes()
        except OSError:
            raise PublishError(f"{layout.path}: manifest {manifest_digest} is missing.") from None
        if sha256_digest(body) != manifest_digest:
            raise PublishError(f"{layout.path}: blob {manifest_digest} does not match its digest.")
        manifest = json.loads(body)
        media = str(manifest.get("mediaType") or OCI_MANIFEST)
        if media in INDEX_TYPES:
            raise PublishError(f"{manifest_digest} is an index; push one image manifest at a time.")
        for desc in [manifest["config"], *manifest.get("layers", [])]:
            self.push_blob(str(desc["digest"]), layout.blob(str(desc["digest"])))
        return self.push_manifest(manifest_digest, body, media)


def _manifests_of(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return []
    manifests = data.get("manifests") if isinstance(data, dict) else None
    return manifests if isinstance(manifests, list) else []
