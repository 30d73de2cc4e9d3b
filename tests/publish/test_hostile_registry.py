"""`modelseal verify` and the registry client against a hostile registry on 127.0.0.1
(benchmarks/soak_registry.py's double): every case ends in exit 3 / a RegistryLimitError or
RegistryUnavailable naming the limit, in bounded time and memory; credentials never reach a
token service on another origin."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from benchmarks.soak_registry import (
    CASES,
    MANIFEST,
    OCI_MANIFEST,
    QUICK,
    Case,
    Scale,
    hostile_registry,
    public_key,
    run_case,
)

from modelseal.errors import PublishError
from modelseal.publish.publisher import registry_token_hosts
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_auth import Credentials
from modelseal.publish.registry_limits import RegistryError, RegistryLimitError, RegistryLimits
from modelseal.publish.verify_image import VerifyOptions, verify_image
from modelseal.sign.verify import ExpectedSigner

#: Small bodies and a fast drip (0.2 s, far under the 2 s socket timeout the client then
#: uses): only the wall-clock watchdog can stop it.
TEST_SCALE = Scale(body=64 << 20, drip=0.2, drips=100, descriptors=100_000, drip_timeout=2)
#: What any case may allocate in this process (server thread included): the 4 MiB caps, twice.
MAX_PEAK = 24 << 20


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> ExpectedSigner:
    return ExpectedSigner(public_key_pem=public_key(tmp_path_factory.mktemp("key")).read_bytes())


def _factory(host: str, repo: str) -> RegistryClient:
    return RegistryClient(host, repo, backoff=0.01)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_hostile_case_stops_naming_its_limit(case: Case, expected: ExpectedSigner) -> None:
    timeout = case.timeout(TEST_SCALE)
    with hostile_registry(case.name, TEST_SCALE) as (host, handler):
        tracemalloc.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(PublishError) as err:
                verify_image(
                    f"{host}/hostile/app:1.0",
                    VerifyOptions(expected, timeout_s=timeout),
                    client_factory=_factory,
                )
            elapsed = time.monotonic() - t0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert case.limit in err.value.diagnostics()
    assert err.value.exit_code == 3
    assert elapsed < timeout + 3, elapsed
    assert peak < MAX_PEAK, peak
    assert len(handler.requests) <= 8, handler.requests


def test_the_quick_soak_through_the_cli(tmp_path: Path) -> None:
    """benchmarks/soak_registry.py --quick: `modelseal verify` as a subprocess, exit 3 with
    the limit named, within the bounds, peak RSS from wait4."""
    key = public_key(tmp_path)
    for case in CASES:
        outcome = run_case(case, QUICK, key)
        assert outcome.exit_code == 3, (case.name, outcome.output)
        assert case.limit in outcome.output, (case.name, outcome.output)
        assert outcome.seconds < case.timeout(QUICK) + 15, (case.name, outcome.seconds)
        # a bare interpreter with modelseal imported is ~64 MiB here; the bodies are 64 MiB+
        assert outcome.peak_rss_mib < 160, (case.name, outcome.peak_rss_mib)
        assert "Traceback" not in outcome.output


def test_the_deadline_spans_the_whole_command(expected: ExpectedSigner) -> None:
    """Each answer comes well within its own request budget, but verify does not get the
    time for all of them: the command's deadline stops it."""
    scale = Scale(body=0, drip=0.4, drips=0, descriptors=0, drip_timeout=1)
    with hostile_registry("slow-answers", scale) as (host, handler):
        t0 = time.monotonic()
        with pytest.raises(RegistryLimitError, match="verify timeout") as err:
            verify_image(
                f"{host}/hostile/app:1.0",
                VerifyOptions(expected, timeout_s=1),
                client_factory=_factory,
            )
    assert time.monotonic() - t0 < 2
    assert len(handler.requests) >= 2  # stopped across requests, not inside the first one
    assert err.value.exit_code == 3


def test_json_nested_too_deep_is_malformed_not_a_crash(expected: ExpectedSigner) -> None:
    with hostile_registry("deep-json", TEST_SCALE) as (host, _):
        result = verify_image(
            f"{host}/hostile/app:1.0",
            VerifyOptions(expected, timeout_s=10),
            client_factory=_factory,
        )
    assert not result.ok
    assert "malformed" in result.checks[0].detail or "OCI image manifest" in result.checks[0].detail


def test_the_publish_path_is_bounded_too() -> None:
    """run --push uses the same client: an upload's endless answer stops at error_bytes."""
    with hostile_registry("huge-upload-answer", TEST_SCALE) as (host, _):
        client = RegistryClient(host, "hostile/app", backoff=0.01)
        t0 = time.monotonic()
        with pytest.raises(RegistryLimitError) as err:
            client.push_blob("sha256:" + "1" * 64, b"content")
    assert err.value.limit == "error_bytes"
    assert time.monotonic() - t0 < 10


def test_a_token_realm_of_another_scheme_is_refused() -> None:
    """A realm is fetched only over http(s): no file:, data: or ftp: URLs from a registry."""
    _Registry.realm = "file:///dev/zero"
    with _serve(_Registry) as host:
        client = RegistryClient(host, "r", auth=Credentials("u", "pw"), backoff=0.01)
        with pytest.raises(RegistryLimitError, match=r"http\(s\) only"):
            client.get_manifest("latest")


# --- credentials: only to the registry's origin, or an allowlisted HTTPS token service -------


class _Realm(BaseHTTPRequestHandler):
    """A token service that records the Authorization headers it receives."""

    seen: list[str | None] = []  # noqa: RUF012

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        _Realm.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"token": "anonymous-token"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Registry(BaseHTTPRequestHandler):
    """Challenges with a Bearer realm (``realm``), serves MANIFEST to any bearer token."""

    realm = ""

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        if (self.headers.get("Authorization") or "").startswith("Bearer "):
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.send_header("Content-Length", str(len(MANIFEST)))
            self.end_headers()
            self.wfile.write(MANIFEST)
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}",service="reg"')
        self.send_header("Content-Length", "0")
        self.end_headers()


class _serve:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def realm() -> Iterator[str]:
    _Realm.seen = []
    with _serve(_Realm) as host:
        yield host


@pytest.mark.parametrize("allowlisted", [False, True])
def test_a_realm_on_another_port_over_http_gets_no_credentials(
    realm: str, allowlisted: bool
) -> None:
    """The registry names a token service on another origin over plain http: the token is
    asked for anonymously, even when that host is allowlisted (allowlisting is for HTTPS)."""
    _Registry.realm = f"http://{realm}/token"
    with _serve(_Registry) as host:
        client = RegistryClient(
            host, "r", auth=Credentials("u", "s3cr3t"), token_hosts=[realm] if allowlisted else []
        )
        assert client.get_manifest("latest")[1] == MANIFEST
    assert _Realm.seen == [None]


def test_a_realm_on_the_registrys_origin_gets_credentials() -> None:
    _Realm.seen = []
    handler = type("Both", (_Registry,), {})

    def do_get(self: Any) -> None:
        if self.path.startswith("/token"):
            _Realm.do_GET(self)
        else:
            _Registry.do_GET(self)

    handler.do_GET = do_get  # type: ignore[method-assign]
    with _serve(handler) as host:
        handler.realm = f"http://{host}/token"
        client = RegistryClient(host, "r", auth=Credentials("u", "s3cr3t"))
        client.get_manifest("latest")
    assert _Realm.seen == [Credentials("u", "s3cr3t").basic()]


def test_which_realms_may_receive_credentials() -> None:
    client = RegistryClient("reg.example", "r", token_hosts=registry_token_hosts(
        {"MODELSEAL_REGISTRY_TOKEN_HOSTS": " Auth.Example , other.example:8443 "}
    ))  # fmt: skip
    assert client.may_send_credentials("https://reg.example/token")
    assert client.may_send_credentials("https://auth.example/token?x=1")
    assert client.may_send_credentials("https://other.example:8443/jwt")
    assert not client.may_send_credentials("http://auth.example/token")  # never over http
    assert not client.may_send_credentials("http://reg.example/token")  # downgrade
    assert not client.may_send_credentials("https://evil.example/token")
    assert not client.may_send_credentials("https://auth.example@evil.example/token")
    assert not client.may_send_credentials("https://reg.example:444/token")
    assert registry_token_hosts({}) == ()


def test_limits_name_themselves() -> None:
    limits = RegistryLimits()
    assert limits.cap("manifest") == (4 << 20, "manifest_bytes")
    assert limits.cap("error") == (64 << 10, "error_bytes")
    with pytest.raises(RegistryError):
        RegistryClient("127.0.0.1:1", "r").get_blob("not-a-digest")


# --- over TLS: the watchdog shuts the socket TLS took over -------------------------------------


def _tls_cert(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: ``(cert PEM, key PEM)``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = work / "cert.pem", work / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_slow_drip_over_tls_is_cut_off_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    cert, key = _tls_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with hostile_registry("slow-drip", TEST_SCALE) as (_, handler):
        # the same double, behind TLS
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        tls = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=tls.serve_forever, daemon=True).start()
        try:
            client = RegistryClient(
                f"127.0.0.1:{tls.server_address[1]}", "hostile/app", insecure=False, backoff=0.01
            )
            assert client.base.startswith("https://")
            with pytest.raises(RegistryError) as err:
                client.get_manifest("missing")
            assert err.value.status == 404  # an honest answer, read over TLS
            client.set_deadline(1.5, "tls deadline")
            t0 = time.monotonic()
            with pytest.raises(RegistryLimitError, match="tls deadline"):
                client.get_manifest("1.0")
            assert time.monotonic() - t0 < 3
        finally:
            tls.shutdown()
            tls.server_close()
