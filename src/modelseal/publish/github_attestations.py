"""GitHub's attestation store: the already-signed attestation bundles of a publish, submitted to
``POST {GITHUB_API_URL}/repos/{GITHUB_REPOSITORY}/attestations`` (``publish.github_attestations``,
the Action's ``github-attestations`` input), so ``gh attestation verify oci://IMAGE --owner ORG``
and the repository's Attestations page find them by the image digest they name.

What is submitted: each DSSE bundle of an in-toto statement the publish signed (provenance,
SBOM, scan report — the policy's ``publish.attestations``; GitHub's store takes any predicate
type). Not the image's own message-signature bundles: the API takes an attestation (a bundle
with a ``dsseEnvelope``), not a bare signature.

The job's token (the Action's ``github-token`` input as ``MODELSEAL_GITHUB_TOKEN``, else
``GITHUB_TOKEN``) goes in the Authorization header to ``GITHUB_API_URL`` only — over HTTPS, or
plain HTTP to a loopback address (tests) — never into argv, a log or a report. The job needs
``attestations: write`` (and ``id-token: write`` for keyless signing).

Private repositories: GitHub's own attest actions sign a private (or internal) repository's
attestations with GitHub's private Sigstore instance, never the public Rekor, whose entries
everyone can read (they name the repository and workflow). :func:`check_public_log` refuses
keyless signing with the public Sigstore in such a repository unless the policy says
``sign.public_transparency_log: true`` — and, inside GitHub Actions, in a repository whose
visibility nothing says (an event payload without ``repository``, e.g. ``schedule``): unknown is
not public.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from modelseal.errors import ConfigError, PublishError

__all__ = [
    "API_VERSION",
    "GitHubTarget",
    "check_public_log",
    "github_target",
    "repository_visibility",
    "submit_attestations",
]

#: The REST API version the request is written against (``X-GitHub-Api-Version``).
API_VERSION: Final = "2022-11-28"
_DEFAULT_API_URL: Final = "https://api.github.com"
#: GitHub answers ``{"id": N}`` or a short JSON error; anything bigger is not its answer.
MAX_ANSWER_BYTES: Final = 64 * 1024
#: Wall-clock budget of one request (connect, send a bundle of up to a few MiB, answer).
REQUEST_SECONDS: Final = 60.0
#: Tries per bundle; only a 5xx or 429 answer is tried again.
ATTEMPTS: Final = 3
#: The longest wait between tries, whatever ``Retry-After`` asks for.
MAX_BACKOFF_SECONDS: Final = 10.0
#: The event payload is read for ``repository.visibility``/``private`` only.
_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
_ERROR_CHARS: Final = 300
#: What a host[:port] of the API URL may hold (no userinfo, no spaces or control characters).
_NETLOC_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:[]"
)


@dataclass(frozen=True)
class GitHubTarget:
    """Where the attestations go: the API's base URL, ``OWNER/REPO``, and the job's token
    (never shown: excluded from ``repr``)."""

    api_url: str
    repository: str
    token: str = field(repr=False)

    @property
    def endpoint(self) -> str:
        """``{api_url}/repos/{owner}/{repo}/attestations``."""
        owner, _, repo = self.repository.partition("/")
        quote = urllib.parse.quote
        return f"{self.api_url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/attestations"


def github_target(env: Mapping[str, str] | None = None) -> GitHubTarget:
    """The attestation store of the GitHub Actions job this runs in; a :class:`ConfigError`
    (exit 2, before anything is built) outside such a job or without a token."""
    env = os.environ if env is None else env
    why = "publish.github_attestations (the Action's github-attestations input)"
    if env.get("GITHUB_ACTIONS") != "true" or not env.get("GITHUB_REPOSITORY"):
        raise ConfigError(
            f"{why} submits the attestations to the repository of a GitHub Actions job, but "
            "this is not one (GITHUB_ACTIONS and GITHUB_REPOSITORY are not set).",
            hint="Turn it off outside GitHub Actions; `gh attestation verify` needs them in "
            "GitHub's store, which only a workflow run of the repository can write to.",
        )
    repository = env["GITHUB_REPOSITORY"].strip()
    owner, slash, repo = repository.partition("/")
    if not slash or not owner or not repo or "/" in repo:
        raise ConfigError(f"GITHUB_REPOSITORY {repository!r} is not OWNER/REPO.")
    api_url = (env.get("GITHUB_API_URL") or _DEFAULT_API_URL).strip().rstrip("/")
    parts = urllib.parse.urlsplit(api_url)
    # The host the request goes to is parts.hostname: "http://localhost:80@evil.example/"
    # has the netloc "localhost:80@evil.example" and the host evil.example.
    hostname = parts.hostname or ""
    loopback = parts.scheme == "http" and hostname in ("127.0.0.1", "localhost", "::1")
    if (
        not hostname
        or "@" in parts.netloc
        or not (parts.scheme == "https" or loopback)
        or not set(parts.netloc) <= _NETLOC_CHARS
    ):
        raise ConfigError(
            f"GITHUB_API_URL {api_url[:100]!r}: the job's token is sent only over HTTPS "
            "(plain HTTP to a loopback address only), to a host without user information."
        )
    token = (env.get("MODELSEAL_GITHUB_TOKEN") or "").strip() or (
        env.get("GITHUB_TOKEN") or ""
    ).strip()
    if not token:
        raise ConfigError(
            f"{why} needs the job's token: the Action passes its github-token input (default "
            "github.token); the command line reads GITHUB_TOKEN (env: GITHUB_TOKEN: "
            "${{ github.token }}). The job needs `permissions: attestations: write`.",
        )
    if any(c in token for c in "\r\n") or not token.isprintable():
        raise ConfigError("the GitHub token contains a control character.")  # never shown
    return GitHubTarget(api_url=api_url, repository=repository, token=token)


def repository_visibility(env: Mapping[str, str] | None = None) -> str | None:
    """``public``, ``private`` or ``internal`` for the repository of this GitHub Actions job;
    None outside one, or when nothing says.

    Read from ``GITHUB_REPOSITORY_VISIBILITY`` when a workflow sets it (runners do not), else
    from the event payload (``GITHUB_EVENT_PATH``): ``repository.visibility``, else
    ``repository.private``. A payload that is named but cannot be read is a ConfigError —
    failing closed rather than guessing ``public``."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    given = (env.get("GITHUB_REPOSITORY_VISIBILITY") or "").strip().lower()
    if given:
        if given not in ("public", "private", "internal"):
            raise ConfigError(
                f"GITHUB_REPOSITORY_VISIBILITY {given[:40]!r}: expected public, private or "
                "internal."
            )
        return given
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    from modelseal.bounded import read_input

    data = read_input(Path(path), what="event payload", limit=_MAX_EVENT_BYTES, contained=False)
    try:
        event = json.loads(data)
    except ValueError:
        raise ConfigError(f"event payload {path}: not JSON.") from None
    repo = event.get("repository") if isinstance(event, dict) else None
    if not isinstance(repo, dict):
        return None
    visibility = repo.get("visibility")
    if isinstance(visibility, str) and visibility in ("public", "private", "internal"):
        return visibility
    private = repo.get("private")
    if isinstance(private, bool):
        return "private" if private else "public"
    return None


def check_public_log(
    *, public_transparency_log: bool, env: Mapping[str, str] | None = None
) -> None:
    """Refuse (ConfigError, exit 2) keyless signing with the public Sigstore in a private or
    internal repository's job, or in a job whose repository's visibility nothing says, unless
    the policy opted in: the public Rekor would publish the repository's and workflow's names,
    for good. Outside GitHub Actions there is nothing to check."""
    env = os.environ if env is None else env
    if public_transparency_log or env.get("GITHUB_ACTIONS") != "true":
        return
    visibility = repository_visibility(env)
    if visibility == "public":
        return
    if visibility is None:
        # Inside Actions, "nothing says" is not "public": a schedule or workflow_dispatch
        # payload may carry no repository. Failing closed; the workflow can say.
        raise ConfigError(
            f"cannot tell whether {env.get('GITHUB_REPOSITORY', 'this repository')[:140]} is "
            "public: the event payload (GITHUB_EVENT_PATH) names no repository visibility, and "
            "keyless signing with the public Sigstore would write a private repository's name, "
            "workflow and commit into the public Rekor transparency log, for good.",
            hint="For a public repository set `env: GITHUB_REPOSITORY_VISIBILITY: public` on "
            "the step, or accept the public log with `sign: {public_transparency_log: true}` "
            "in the policy. For a private one, sign with GitHub's private Sigstore instance "
            "(its ClientTrustConfig as the Action's trust-config input or sign.trust_config), "
            "or with a key.",
        )
    raise ConfigError(
        f"{env.get('GITHUB_REPOSITORY', 'this repository')[:140]} is a {visibility} "
        "repository, and keyless signing with the public Sigstore writes its name, workflow and "
        "commit into the public Rekor transparency log, readable by anyone, for good.",
        hint="Sign with GitHub's private Sigstore instance instead (the one "
        "actions/attest-build-provenance uses for private repositories; `gh attestation "
        "trusted-root` prints its trusted root): give its ClientTrustConfig as the Action's "
        "trust-config input or the policy's sign.trust_config. Or sign with a key (sign: "
        "key), or accept the public log with `sign: {public_transparency_log: true}` in the "
        "policy.",
    )


def _message(body: bytes) -> str:
    """GitHub's error message (``message``, and ``errors`` when given), escaped and clipped."""
    from modelseal.untrusted import untrusted

    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        text = doc["message"]
        if isinstance(doc.get("errors"), list) and doc["errors"]:
            text += f" ({json.dumps(doc['errors'])[:200]})"
    else:
        text = body.decode("utf-8", "replace") or "(no message)"
    return untrusted(text, markup=False, limit=_ERROR_CHARS)


def _retry_after(value: str | None, attempt: int) -> float:
    if value and value.strip().isdigit():
        return min(float(value.strip()), MAX_BACKOFF_SECONDS)
    return min(2.0**attempt, MAX_BACKOFF_SECONDS)


def _submit_one(
    target: GitHubTarget, name: str, bundle: bytes, sleep: Callable[[float], None]
) -> int:
    from modelseal._http import HttpLimitError, bounded_request

    body = b'{"bundle":' + bundle.strip() + b"}"
    what = f"GitHub's attestation store ({name})"
    for attempt in range(1, ATTEMPTS + 1):
        req = urllib.request.Request(  # noqa: S310 (the URL is https or loopback http)
            target.endpoint,
            data=body,
            method="POST",
            headers={
                "Accept": "application/vnd.github+json",
                "Content-Type": "application/json",
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {target.token}",
                "User-Agent": "modelseal",
            },
        )
        try:
            answer = bounded_request(
                req,
                seconds=REQUEST_SECONDS,
                max_bytes=MAX_ANSWER_BYTES,
                what=what,
                time_limit="github_attestations request time",
                size_limit="github_attestations answer size",
            )
        except HttpLimitError as e:
            raise PublishError(e.message) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            # HTTPException: e.g. InvalidURL for a port that is no number; ValueError: a URL
            # urllib cannot split. Either way the submission did not happen (exit 3).
            from modelseal.untrusted import untrusted

            reason = getattr(e, "reason", e)
            raise PublishError(
                f"{what}: could not reach {target.api_url}: "
                f"{untrusted(reason, markup=False, limit=200)}"
            ) from None
        if answer.status == 201:
            try:
                ident = json.loads(answer.body).get("id")
            except (ValueError, AttributeError):
                ident = None
            if not isinstance(ident, int) or isinstance(ident, bool):
                raise PublishError(
                    f"{what}: HTTP 201 without an attestation id: {_message(answer.body)}"
                )
            return ident
        if (answer.status >= 500 or answer.status == 429) and attempt < ATTEMPTS:
            sleep(_retry_after(answer.headers.get("Retry-After"), attempt))
            continue
        tries = f" after {attempt} tries" if attempt > 1 else ""
        raise PublishError(
            f"{what} answered HTTP {answer.status}{tries}: {_message(answer.body)}",
            hint="The job needs `permissions: attestations: write` (and id-token: write for "
            "keyless signing); artifact attestations in private repositories need GitHub "
            "Enterprise Cloud."
            if answer.status in (401, 403, 404)
            else None,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def submit_attestations(
    target: GitHubTarget,
    bundles: Sequence[tuple[str, bytes]],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """POST each ``(name, Sigstore bundle JSON)`` to ``target``; the ids GitHub returned, by
    name. A :class:`PublishError` (exit 3) names the status and GitHub's message, and the ids
    of the attestations already stored when a later one fails (they stay in the store)."""
    ids: dict[str, int] = {}
    for name, bundle in bundles:
        try:
            ids[name] = _submit_one(target, name, bundle, sleep)
        except PublishError as e:
            if not ids:
                raise
            done = ", ".join(f"{n} (id {i})" for n, i in ids.items())
            raise PublishError(
                f"{e.message} Already stored in GitHub's attestation store before it: {done}.",
                hint=e.hint,
            ) from None
    return ids
