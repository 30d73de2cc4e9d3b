"""GitHub's attestation store (issue 14 §2): the signed attestation bundles of a publish are
POSTed to a local stand-in of ``/repos/{owner}/{repo}/attestations`` (tests/support/github_api.py,
which checks each request as the REST API documents it), between the referrers and the tags;
and keyless signing with the public Sigstore is refused in a private repository's job unless
the policy opts in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.github_api import GitHubApi, github_api, written_text
from tests.support.sigstore_local import sample_statement

from modelseal._cli import main
from modelseal.errors import ConfigError, PublishError
from modelseal.publish.github_attestations import (
    GitHubTarget,
    check_public_log,
    github_target,
    repository_visibility,
    submit_attestations,
)
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_limits import RegistryError
from modelseal.publish.run import SignOptions, make_signer
from modelseal.sign.key import KeySigner
from modelseal.sign.keyless import KeylessSigner

POLICY = """\
version: 1
build:
  rebuild_check: false
publish:
  tags: [stable]
  github_attestations: true
"""


@pytest.fixture
def api() -> Iterator[GitHubApi]:
    with github_api() as running:
        yield running


def _event(tmp_path: Path, **repository: object) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"repository": {"full_name": "acme/models", **repository}}))
    return path


def _job(monkeypatch: pytest.MonkeyPatch, api: GitHubApi, event: Path | None = None) -> None:
    for name, value in api.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MODELSEAL_GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY_VISIBILITY", raising=False)
    if event is not None:
        monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    else:
        monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)


def _target(api: GitHubApi) -> GitHubTarget:
    return github_target(api.env())


def _bundle(keys: tuple[Path, Path], data: bytes = b"image") -> tuple[bytes, str]:
    statement = sample_statement(data)
    signed = KeySigner.from_file(keys[0]).sign_statement(statement)
    return signed.bundle_json(), "sha256:" + statement["subject"][0]["digest"]["sha256"]


# --- the request, as the API documents it ----------------------------------------------------


def test_each_bundle_is_posted_as_documented(api: GitHubApi, keys: tuple[Path, Path]) -> None:
    one, digest = _bundle(keys)
    two, _ = _bundle(keys)
    ids = submit_attestations(_target(api), [("provenance", one), ("sbom", two)])
    assert api.rejected == []
    assert ids == {"provenance": 1000, "sbom": 1001}
    assert [s.subject_digests for s in api.stored] == [(digest,), (digest,)]
    assert api.stored[0].bundle == json.loads(one)
    assert api.token not in repr(_target(api))


def test_5xx_and_429_are_tried_again_up_to_a_cap(api: GitHubApi, keys: tuple[Path, Path]) -> None:
    bundle, _ = _bundle(keys)
    waits: list[float] = []
    api.answer_next(429, "API rate limit exceeded", headers={"Retry-After": "999"})
    api.answer_next(502, "Server Error")
    assert submit_attestations(_target(api), [("provenance", bundle)], sleep=waits.append) == {
        "provenance": 1000
    }
    assert api.requests == 3 and waits == [10.0, 4.0]  # Retry-After capped; else 2**attempt
    api.requests = 0
    api.answer_next(500, "Server Error", times=5)
    with pytest.raises(PublishError) as e:
        submit_attestations(_target(api), [("provenance", bundle)], sleep=waits.append)
    assert api.requests == 3
    assert "answered HTTP 500 after 3 tries: Server Error" in e.value.message


def test_a_4xx_is_not_tried_again_and_its_message_is_escaped(
    api: GitHubApi, keys: tuple[Path, Path]
) -> None:
    bundle, _ = _bundle(keys)
    api.answer_next(422, "Validation Failed\n::error::forged \x1b[31mred")
    with pytest.raises(PublishError) as e:
        submit_attestations(_target(api), [("provenance", bundle)], sleep=pytest.fail)
    assert api.requests == 1
    text = e.value.diagnostics()
    assert "HTTP 422: Validation Failed\\x0a::error::forged \\x1b[31mred" in text
    assert "\n::error::" not in text and "\x1b" not in text


def test_a_wrong_token_is_refused_by_the_stand_in(api: GitHubApi, keys: tuple[Path, Path]) -> None:
    bundle, _ = _bundle(keys)
    env = {**api.env(), "GITHUB_TOKEN": "ghs_wrong"}
    with pytest.raises(PublishError) as e:
        submit_attestations(github_target(env), [("provenance", bundle)])
    assert "HTTP 401: Bad credentials" in e.value.message
    assert "attestations: write" in (e.value.hint or "")


def test_a_partial_submission_names_what_is_already_stored(
    api: GitHubApi, keys: tuple[Path, Path]
) -> None:
    """The second of three bundles is refused: the first one's id is in the error (it stays in
    GitHub's store), and the third is not sent."""
    good, _ = _bundle(keys)
    bundles = [("provenance", good), ("sbom", b'{"not": "a bundle"}'), ("scan-report", good)]
    with pytest.raises(PublishError) as e:
        submit_attestations(_target(api), bundles)
    assert "answered HTTP 422" in e.value.message
    assert "Already stored in GitHub's attestation store before it: provenance (id 1000)." in (
        e.value.message
    )
    assert [s.id for s in api.stored] == [1000] and api.requests == 2


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:80@evil.example/",
        "http://127.0.0.1@evil.example",
        "https://user:pw@api.github.com",
        "http://127.0.0.1:1 @x",
    ],
)
def test_the_token_goes_to_a_loopback_or_https_host_only(url: str) -> None:
    job = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/models", "GITHUB_TOKEN": "t"}
    with pytest.raises(ConfigError, match="only over HTTPS"):
        github_target({**job, "GITHUB_API_URL": url})
    assert github_target({**job, "GITHUB_API_URL": "http://[::1]:8080"}).api_url.startswith(
        "http://[::1]"
    )


def test_a_url_that_cannot_be_requested_is_a_publish_error(keys: tuple[Path, Path]) -> None:
    """http.client refuses a port that is no number (InvalidURL): exit 3, not a traceback."""
    job = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/models", "GITHUB_TOKEN": "t"}
    target = github_target({**job, "GITHUB_API_URL": "http://127.0.0.1:port"})
    bundle, _ = _bundle(keys)
    with pytest.raises(PublishError, match="could not reach"):
        submit_attestations(target, [("provenance", bundle)])


def test_where_the_attestations_go_is_checked_first() -> None:
    job = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/models"}
    with pytest.raises(ConfigError, match="not one"):
        github_target({"GITHUB_TOKEN": "t"})
    with pytest.raises(ConfigError, match="needs the job's token"):
        github_target(job)
    with pytest.raises(ConfigError, match="only over HTTPS"):
        github_target({**job, "GITHUB_TOKEN": "t", "GITHUB_API_URL": "http://api.example"})
    # The Action's github-token input wins over GITHUB_TOKEN; the default API is GitHub's.
    target = github_target({**job, "GITHUB_TOKEN": "a", "MODELSEAL_GITHUB_TOKEN": "b"})
    assert target.token == "b"
    assert target.endpoint == "https://api.github.com/repos/acme/models/attestations"


# --- private repositories and the public log -------------------------------------------------


def test_visibility_comes_from_the_event_payload(tmp_path: Path) -> None:
    job = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/models"}
    private = _event(tmp_path, private=True)
    assert repository_visibility({**job, "GITHUB_EVENT_PATH": str(private)}) == "private"
    internal = _event(tmp_path, private=True, visibility="internal")
    assert repository_visibility({**job, "GITHUB_EVENT_PATH": str(internal)}) == "internal"
    public = _event(tmp_path, private=False)
    assert repository_visibility({**job, "GITHUB_EVENT_PATH": str(public)}) == "public"
    assert repository_visibility({**job, "GITHUB_REPOSITORY_VISIBILITY": "private"}) == "private"
    assert repository_visibility(job) is None
    assert repository_visibility({"GITHUB_EVENT_PATH": str(private)}) is None  # not a job
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):  # fail closed, never "public"
        repository_visibility({**job, "GITHUB_EVENT_PATH": str(tmp_path / "bad.json")})


def test_public_keyless_signing_of_a_private_repository_needs_an_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/models")
    monkeypatch.delenv("GITHUB_REPOSITORY_VISIBILITY", raising=False)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, private=True)))
    with pytest.raises(ConfigError) as e:
        make_signer(SignOptions(mode="keyless"))
    text = e.value.diagnostics()
    assert "acme/models is a private repository" in text and "public Rekor" in text
    assert "GitHub's private Sigstore instance" in text
    assert "trust-config" in text and "sign.trust_config" in text
    assert "public_transparency_log: true" in text
    # Opted in: the public instance's signer (nothing is contacted until it signs).
    assert isinstance(
        make_signer(SignOptions("keyless", public_transparency_log=True)), KeylessSigner
    )
    check_public_log(public_transparency_log=True)
    # A public repository is not affected.
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, private=False)))
    assert isinstance(make_signer(SignOptions(mode="keyless")), KeylessSigner)


@pytest.mark.parametrize("payload", [None, {"schedule": "0 3 * * *"}, {"repository": {}}])
def test_unknown_visibility_in_a_job_is_not_public(
    tmp_path: Path, payload: dict[str, Any] | None
) -> None:
    """A schedule event's payload names no repository: unknown must not pass as public."""
    job = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/models"}
    if payload is not None:
        path = tmp_path / "event.json"
        path.write_text(json.dumps(payload))
        job["GITHUB_EVENT_PATH"] = str(path)
    with pytest.raises(ConfigError) as e:
        check_public_log(public_transparency_log=False, env=job)
    text = e.value.diagnostics()
    assert "cannot tell whether acme/models is public" in text
    assert "public_transparency_log: true" in text and "trust-config" in text
    assert "GITHUB_REPOSITORY_VISIBILITY: public" in text
    check_public_log(public_transparency_log=True, env=job)
    check_public_log(
        public_transparency_log=False, env={**job, "GITHUB_REPOSITORY_VISIBILITY": "public"}
    )
    check_public_log(public_transparency_log=False, env={})  # not a job: nothing to check


# --- modelseal run --push, end to end ---------------------------------------------------------


def _context(root: Path, policy_text: str = POLICY) -> tuple[Path, Path]:
    ctx = root / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text("FROM base\nCOPY hello.txt /srv/\n")
    policy = root / "modelseal.yml"
    policy.write_text(policy_text)
    return ctx, policy


def _all_text(directory: Path) -> str:
    return written_text(directory)


@pytest.mark.engine
def test_run_push_submits_the_signed_attestations(
    registry: str,
    busybox_base: str,
    github_ambient: dict[str, Any],
    trust_config_path: Path,
    api: GitHubApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _job(monkeypatch, api, _event(tmp_path, private=False))
    ctx, policy = _context(tmp_path)
    out = tmp_path / "out"
    image = f"{registry}/seal/gh-att"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(out), "--gate", "build", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "keyless",
        "--trust-config", str(trust_config_path),
    ])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert api.rejected == []
    record = json.loads((out / "publish.json").read_text())
    digest = record["digest"]
    # Every signed attestation, each about the published image; the ids GitHub gave are kept.
    kinds = {s.predicate_type: s for s in api.stored}
    assert set(kinds) == {
        "https://slsa.dev/provenance/v1",
        "https://cyclonedx.org/bom",
        "https://modelseal.dev/attestations/scan-report/v1",
    }, set(kinds)
    assert all(s.subject_digests == (digest,) for s in api.stored)
    assert record["github_attestations"] == {"provenance": 1000, "sbom": 1001, "scan-report": 1002}
    for name, ident in record["github_attestations"].items():
        stored = next(s for s in api.stored if s.id == ident)
        assert stored.bundle == json.loads((out / "bundles" / f"{name}.sigstore.json").read_text())
    assert RegistryClient(registry, "seal/gh-att").get_manifest("stable")[2] == digest
    assert "  github    provenance: attestation 1000" in printed.out
    # The token reached the Authorization header only.
    for text in (printed.out, printed.err, _all_text(out)):
        assert api.token not in text


@pytest.mark.engine
def test_a_refused_submission_fails_the_publish_and_moves_no_tag(
    registry: str,
    busybox_base: str,
    github_ambient: dict[str, Any],
    trust_config_path: Path,
    api: GitHubApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _job(monkeypatch, api)
    ctx, policy = _context(tmp_path)
    image = f"{registry}/seal/gh-att-refused"
    api.answer_next(422, "Validation Failed: <bundle> is not accepted")
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(tmp_path / "out"), "--gate", "build", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "keyless",
        "--trust-config", str(trust_config_path),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    flat = " ".join(err.split())
    assert "is pushed with its signature and attestations" in flat
    assert "answered HTTP 422: Validation Failed: <bundle> is not accepted" in flat
    assert "No tag was moved (1.0, stable still point where they did)" in flat
    assert api.token not in err
    for tag in ("1.0", "stable"):
        with pytest.raises(RegistryError) as e:
            RegistryClient(registry, "seal/gh-att-refused").get_manifest(tag)
        assert e.value.status == 404


def test_usage_errors_come_before_the_build(
    api: GitHubApi,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx, policy = _context(tmp_path)
    out = tmp_path / "out"
    base = [
        "run",
        str(ctx),
        "--policy",
        str(policy),
        "-o",
        str(out),
        "--push",
        f"{api.url[7:]}/x/y:1",
    ]
    keyed = [*base, "--sign", "key", "--key", str(keys[0])]
    # Not a GitHub Actions job.
    for name in ("GITHUB_ACTIONS", "GITHUB_REPOSITORY", "GITHUB_EVENT_PATH", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(keyed) == 2
    assert "GITHUB_ACTIONS and GITHUB_REPOSITORY are not set" in capsys.readouterr().err
    # A job without a token.
    _job(monkeypatch, api)
    monkeypatch.delenv("GITHUB_TOKEN")
    assert main(keyed) == 2
    assert "needs the job's token" in capsys.readouterr().err
    # Unsigned: nothing to submit.
    monkeypatch.setenv("GITHUB_TOKEN", api.token)
    assert main([*base, "--sign", "none"]) == 2
    assert "sign mode is none" in capsys.readouterr().err
    # A key signature: GitHub's store and `gh attestation verify` want a certificate.
    assert main(keyed) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "needs keyless signing" in err and "modelseal verify --key" in err
    # A private repository, keyless with the public Sigstore, not opted in.
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, private=True)))
    assert main([*base, "--sign", "keyless"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "GitHub's private Sigstore instance" in err and "trust-config" in err
    assert not out.exists()  # nothing was built, judged or written
    assert api.requests == 0
