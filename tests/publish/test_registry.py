"""RegistryClient against a real registry (Debian's docker-registry, distribution 2.8) on
127.0.0.1, plus a flaky local test double for the retry path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from examples.offline.registry import free_port
from tests.support.httpd import serve
from tests.support.tools import require

from modelseal.oci import OciLayout
from modelseal.publish.registry import OCI_MANIFEST, RegistryClient, sha256_digest
from modelseal.publish.registry_auth import Credentials
from modelseal.publish.registry_limits import RegistryError

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def test_push_layout_by_digest_reads_back_identical(
    registry: str, busybox_layout: tuple[OciLayout, str]
) -> None:
    layout, digest = busybox_layout
    client = RegistryClient(registry, "seal/busybox", backoff=0.01)
    assert client.push_layout(layout, digest) == digest
    media, body, got = client.get_manifest(digest)
    assert got == digest
    assert body == layout.blob(digest).read_bytes()
    assert media == OCI_MANIFEST
    manifest = json.loads(body)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert client.blob_exists(desc["digest"])
    # idempotent: everything exists now, the second push uploads no blob
    sent: list[str] = []
    request = client._request

    def spy(method: str, path: str, **kw: Any) -> Any:
        sent.append(method)
        return request(method, path, **kw)

    client._request = spy  # type: ignore[method-assign]
    assert client.push_layout(layout, digest) == digest
    assert "POST" not in sent
    assert sent.count("PUT") == 1  # the manifest, by digest
    assert client.get_manifest(digest)[1] == body
    # no tag was created by the push (distribution answers 404 when a repository has none)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        tags = json.loads(opener.open(f"http://{registry}/v2/seal/busybox/tags/list").read())
    except urllib.error.HTTPError as e:
        assert e.code == 404
        tags = {}
    assert not tags.get("tags")


def test_skopeo_sees_pushed_image(registry: str, busybox_layout: tuple[OciLayout, str]) -> None:
    require(shutil.which("skopeo") is not None, "skopeo")
    layout, digest = busybox_layout
    RegistryClient(registry, "seal/interop").push_layout(layout, digest)
    proc = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--no-tags",
            "--tls-verify=false",
            f"docker://{registry}/seal/interop@{digest}",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Digest"] == digest


def _push_small_image(client: RegistryClient, content: bytes) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "note": content.decode()}).encode()
    client.push_blob(sha256_digest(config), config)
    client.push_blob(sha256_digest(content), content)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256_digest(content),
                "size": len(content),
            }
        ],
    }
    body = json.dumps(manifest).encode()
    return client.push_manifest(sha256_digest(body), body, OCI_MANIFEST)


def test_tag_moves(registry: str) -> None:
    client = RegistryClient(registry, "seal/tags")
    first = _push_small_image(client, b"one")
    second = _push_small_image(client, b"two")
    client.tag("stable", first)
    assert client.get_manifest("stable")[2] == first
    client.tag("stable", second)
    assert client.get_manifest("stable")[2] == second


def test_push_blob_streams_a_file(registry: str, tmp_path: Path) -> None:
    client = RegistryClient(registry, "seal/blobs")
    data = os.urandom(3 * (1 << 20) + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = sha256_digest(data)
    assert not client.blob_exists(digest)
    client.push_blob(digest, path)
    assert client.blob_exists(digest)
    # already there: a no-op that uploads nothing
    sent: list[str] = []
    request = client._request

    def spy(method: str, target: str, **kw: Any) -> Any:
        sent.append(method)
        return request(method, target, **kw)

    client._request = spy  # type: ignore[method-assign]
    client.push_blob(digest, path)
    assert sent and "POST" not in sent and "PUT" not in sent


def test_referrer_through_fallback_tag(registry: str) -> None:
    client = RegistryClient(registry, "seal/signed")
    subject = _push_small_image(client, b"image")
    subject_size = len(client.get_manifest(subject)[1])
    assert client.referrers(subject) == []
    client.push_blob(EMPTY_DIGEST, b"{}")
    bundle = json.dumps({"mediaType": BUNDLE_TYPE, "note": "test bundle"}).encode()
    client.push_blob(sha256_digest(bundle), bundle)
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope"}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [
                {"mediaType": BUNDLE_TYPE, "digest": sha256_digest(bundle), "size": len(bundle)}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
            "annotations": annotations,
        }
    ).encode()
    desc = client.add_referrer(subject, manifest)
    assert desc["digest"] == sha256_digest(manifest)
    assert desc["artifactType"] == BUNDLE_TYPE
    client.add_referrer(subject, manifest)  # idempotent
    found = client.referrers(subject)
    assert [d["digest"] for d in found] == [desc["digest"]]
    assert found[0]["annotations"] == annotations
    assert client.referrers(subject, artifact_type=BUNDLE_TYPE) == found
    assert client.referrers(subject, artifact_type="application/other") == []
    # the fallback tag is what made it discoverable (distribution 2.8 has no referrers API)
    fallback = client.get_manifest(subject.replace(":", "-"))
    assert json.loads(fallback[1])["manifests"] == found
    with pytest.raises(Exception, match="subject"):
        client.add_referrer(EMPTY_DIGEST, manifest)


def test_errors_name_path_and_status_but_no_secret(registry: str) -> None:
    client = RegistryClient(registry, "seal/errors", auth=Credentials("user", "s3cr3t-pw"))
    assert "s3cr3t" not in repr(client)
    assert "s3cr3t" not in repr(Credentials("user", "s3cr3t-pw"))
    missing = "sha256:" + "0" * 64
    with pytest.raises(RegistryError) as err:
        client.get_manifest(missing)
    assert err.value.status == 404
    assert err.value.path == f"/v2/seal/errors/manifests/{missing}"
    assert f"GET /v2/seal/errors/manifests/{missing}" in str(err.value)
    assert "404" in str(err.value)
    body = b'{"schemaVersion": 2, "mediaType": "%s", "config": {}}' % OCI_MANIFEST.encode()
    with pytest.raises(RegistryError) as err:
        client.push_manifest("latest", body, OCI_MANIFEST)
    assert err.value.status == 400
    assert "PUT /v2/seal/errors/manifests/latest" in str(err.value)
    for text in (str(err.value), err.value.diagnostics()):
        assert "Authorization" not in text
        assert "Basic" not in text
        assert "s3cr3t" not in text


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 for the first ``failures`` requests, then a fixed manifest; a bearer
    challenge is issued when ``token`` is set."""

    failures = 0
    calls = 0
    token = ""
    body = b'{"schemaVersion":2}'
    seen_auth: list[str] = []  # noqa: RUF012

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        cls = type(self)
        if self.path.startswith("/token"):
            assert self.headers.get("Authorization") == Credentials("u", "pw").basic()
            self._send(200, json.dumps({"token": cls.token}).encode(), "application/json")
            return
        cls.calls += 1
        cls.seen_auth.append(self.headers.get("Authorization", ""))
        if cls.calls <= cls.failures:
            self._send(503, b"{}", "application/json")
            return
        if cls.token and self.headers.get("Authorization") != f"Bearer {cls.token}":
            host = self.headers["Host"]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://{host}/token",service="test",scope="repository:r:pull"',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(200, cls.body, OCI_MANIFEST)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"calls": 0, "failures": 0, "seen_auth": []})
    with serve(handler) as host:
        yield host, handler


def test_retries_on_503_then_succeeds(flaky: tuple[str, type[_Flaky]]) -> None:
    host, handler = flaky
    handler.failures = 2
    client = RegistryClient(host, "r", backoff=0.01)
    media, body, digest = client.get_manifest("latest")
    assert (media, body, digest) == (OCI_MANIFEST, handler.body, sha256_digest(handler.body))
    assert handler.calls == 3


def test_retries_are_bounded(flaky: tuple[str, type[_Flaky]]) -> None:
    host, handler = flaky
    handler.failures = 100
    client = RegistryClient(host, "r", retries=2, backoff=0.01)
    with pytest.raises(RegistryError) as err:
        client.get_manifest("latest")
    assert err.value.status == 503
    assert handler.calls == 3


def test_connection_refused_is_retried_then_reported() -> None:
    client = RegistryClient(f"127.0.0.1:{free_port()}", "r", retries=1, backoff=0.01)
    with pytest.raises(RegistryError, match="cannot reach"):
        client.blob_exists("sha256:" + "0" * 64)


def test_bearer_token_flow_keeps_token_secret(flaky: tuple[str, type[_Flaky]]) -> None:
    host, handler = flaky
    handler.token = "tok-very-secret"
    client = RegistryClient(host, "r", auth=Credentials("u", "pw"), backoff=0.01)
    assert client.get_manifest("latest")[1] == handler.body
    assert handler.seen_auth[-1] == "Bearer tok-very-secret"
    assert "tok-very-secret" not in repr(client)


def test_docker_config_credentials(tmp_path: Path) -> None:
    import base64

    cfg = tmp_path / "config.json"
    auth = base64.b64encode(b"alice:pa:ss").decode()
    cfg.write_text(json.dumps({"auths": {"reg.example:5000": {"auth": auth}}}))
    creds = Credentials.from_docker_config("reg.example:5000", cfg)
    assert creds == Credentials("alice", "pa:ss")
    assert Credentials.from_docker_config("other", cfg) is None
    assert "pa:ss" not in repr(creds)


def test_plain_http_only_for_loopback() -> None:
    assert RegistryClient("127.0.0.1:5000", "r").base == "http://127.0.0.1:5000"
    assert RegistryClient("localhost:5000", "r").base == "http://localhost:5000"
    assert RegistryClient("reg.example", "r").base == "https://reg.example"
    assert RegistryClient("reg.example", "r", insecure=True).base == "http://reg.example"
    assert RegistryClient("127.0.0.1:5000", "r", insecure=False).base == "https://127.0.0.1:5000"


def test_credentials_never_go_to_another_origin() -> None:
    from modelseal.publish.registry_auth import same_origin

    assert same_origin("https://ghcr.io/v2/x/blobs/uploads/1?digest=d", "https://ghcr.io")
    assert not same_origin("https://storage.example.com/upload?sig=1", "https://ghcr.io")
    assert not same_origin("http://ghcr.io/v2/", "https://ghcr.io")
