"""How the registry client talks: one bounded HTTP exchange, with retries, redirects and auth.

:class:`RegistryTransport` sends each request of
:class:`~modelseal.publish.registry.RegistryClient` (which adds the distribution API on top):
plain HTTP only for loopback hosts (or when asked to), HTTPS everywhere else; retries (5xx,
429, connection errors) with backoff, never past the deadline; at most ``max_redirects``
redirects, never from HTTPS to plain HTTP; each hop under a watchdog that shuts its socket
when the request's wall-clock budget runs out (a per-read socket timeout cannot stop a server
that sends one byte every few seconds); every body capped by what it is
(:class:`~modelseal.publish.registry_limits.RegistryLimits`). A 401 is answered once, with
Basic credentials or a Bearer token (:mod:`~modelseal.publish.registry_auth` decides where
credentials may go); the ``Authorization`` header goes only to the origin it is for.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Any

from modelseal._http import HttpLimitError, _Current, _opener, _Watchdog, read_body
from modelseal.publish.registry_auth import (
    Credentials,
    bearer_token,
    may_send_credentials,
    parse_challenge,
    same_origin,
    token_url,
)
from modelseal.publish.registry_limits import (
    BodyKind,
    RegistryError,
    RegistryLimitError,
    RegistryLimits,
    RegistryUnavailable,
)
from modelseal.untrusted import untrusted

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def is_local_host(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) is a loopback registry, spoken to over plain HTTP."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return hostname in _LOCAL_HOSTS


@dataclass
class _Response:
    status: int
    headers: Message
    body: bytes


class RegistryTransport:
    """Requests to one repository on one registry, bounded by its limits; the base of
    :class:`~modelseal.publish.registry.RegistryClient`."""

    def __init__(
        self,
        host: str,
        repository: str,
        *,
        insecure: bool | None = None,
        auth: Credentials | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        limits: RegistryLimits | None = None,
        token_hosts: Collection[str] = (),
    ) -> None:
        self.host = host
        self.repository = repository
        local = is_local_host(host)
        plain = local if insecure is None else insecure
        self.base = f"{'http' if plain else 'https'}://{host}"
        self._auth = auth
        self._authorization: str | None = None
        self.retries = max(0, retries)
        self.backoff = backoff
        self.limits = limits or RegistryLimits()
        self._token_hosts = frozenset(token_hosts)
        self._retries_left = self.limits.max_retries
        self._deadline: float | None = None
        self._deadline_name = ""
        self._current = _Current()
        self._opener = _opener(self._current, direct=local)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base}/{self.repository})"

    def set_deadline(self, seconds: float, name: str) -> None:
        """Every request from now on must finish within ``seconds`` in all; ``name`` is the
        limit named when it runs out (e.g. the flag that set it)."""
        self._deadline = time.monotonic() + seconds
        self._deadline_name = f"{name} ({seconds:g} s)"

    def check_deadline(self, what: str = "") -> None:
        """Raise :class:`RegistryLimitError` when the deadline has passed."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise RegistryLimitError(
                f"{what or 'talking to ' + self.host}: out of time, the limit "
                f"{self._deadline_name} ran out.",
                limit=self._deadline_name,
            )

    def _url(self, path: str) -> str:
        return path if "://" in path else self.base + path

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Path | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        quiet: tuple[int, ...] = (),
        kind: BodyKind = "error",
    ) -> _Response:
        """Send with retries (5xx, 429, connection errors) and auth; statuses in ``quiet``
        are returned instead of raised. A body of an ``ok`` answer is capped by ``kind``."""
        url = self._url(path)
        shown = urllib.parse.urlsplit(url).path
        authenticated = False
        attempt = 0
        while True:
            try:
                result = self._send(
                    method,
                    url,
                    body=body,
                    headers=headers or {},
                    ok=ok,
                    kind=kind,
                    authorization=(self._authorization, self.base),
                )
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                if self._may_retry(attempt, method, shown):
                    attempt += 1
                    continue
                raise RegistryUnavailable(
                    f"registry {method} {shown} failed{self._tries(attempt)}: "
                    f"{_transport_failure(e, self.host)}.",
                    method=method,
                    path=shown,
                ) from None
            status = result.status
            if status in ok or status in quiet:
                return result
            if status == 401 and not authenticated:
                authenticated = True
                if self._authenticate(result.headers.get("WWW-Authenticate", "")):
                    continue
            if status >= 500 or status == 429:
                if self._may_retry(attempt, method, shown):
                    attempt += 1
                    continue
                raise RegistryUnavailable(
                    f"registry {method} {shown} answered {status}{_error_code(result.body)}"
                    f"{self._tries(attempt)}.",
                    method=method,
                    path=shown,
                    status=status,
                )
            raise RegistryError(
                f"registry {method} {shown} answered {status}{_error_code(result.body)}.",
                method=method,
                path=shown,
                status=status,
            )

    def _tries(self, attempt: int) -> str:
        said = f" after {attempt} retries" if attempt else ""
        if self._retries_left > 0:
            return said
        return f"{said} (the limit max_retries, {self.limits.max_retries} retries in all, is spent)"

    def _may_retry(self, attempt: int, method: str, shown: str) -> bool:
        """Whether to try again, after the backoff; never past the deadline."""
        if attempt >= self.retries or self._retries_left <= 0:
            return False
        self._retries_left -= 1
        delay = self.backoff * (2**attempt)
        if self._deadline is not None and time.monotonic() + delay >= self._deadline:
            self.check_deadline(f"registry {method} {shown}")
            raise RegistryLimitError(
                f"registry {method} {shown}: no time left to retry, the limit "
                f"{self._deadline_name} would run out.",
                limit=self._deadline_name,
                method=method,
                path=shown,
            )
        self._sleep(attempt)
        return True

    def _sleep(self, attempt: int) -> None:
        time.sleep(self.backoff * (2**attempt))

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | Path | None,
        headers: Mapping[str, str],
        ok: tuple[int, ...],
        kind: BodyKind,
        authorization: tuple[str | None, str],
    ) -> _Response:
        """One request, following at most ``max_redirects`` redirects (GET and HEAD only),
        each hop under its watchdog; ``authorization`` (header value, origin) is sent only to
        that origin. Raises :class:`RegistryLimitError` on any breach."""
        shown = urllib.parse.urlsplit(url).path
        for _hop in range(self.limits.max_redirects + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise RegistryLimitError(
                    f"registry {method} {shown}: refused to follow a {_plain(parts.scheme)[:20]}: "
                    "URL (limit: http(s) only).",
                    limit="http(s) only",
                    method=method,
                    path=shown,
                )
            seconds, name = self._budget(body)
            if seconds <= 0:
                self.check_deadline(f"registry {method} {shown}")
            with _Watchdog(seconds) as dog:
                self._current.watchdog = dog
                try:
                    result = self._exchange(
                        method, url, body, headers, ok, kind, authorization, min(seconds, 60)
                    )
                except (urllib.error.URLError, http.client.HTTPException, OSError):
                    if dog.fired:
                        raise self._timed_out(method, shown, name) from None
                    raise
                finally:
                    self._current.watchdog = None
                if dog.fired:
                    raise self._timed_out(method, shown, name)
            if result.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return result
            location = result.headers.get("Location")
            if not location:
                return result
            target = urllib.parse.urljoin(url, location)
            if parts.scheme == "https" and urllib.parse.urlsplit(target).scheme != "https":
                raise RegistryLimitError(
                    f"registry {method} {shown}: refused a redirect from https to plain http "
                    "(limit: no https downgrade).",
                    limit="no https downgrade",
                    method=method,
                    path=shown,
                )
            url = target
        raise RegistryLimitError(
            f"registry {method} {shown}: more than {self.limits.max_redirects} redirects "
            "(the limit max_redirects).",
            limit="max_redirects",
            method=method,
            path=shown,
        )

    def _budget(self, body: bytes | Path | None) -> tuple[float, str]:
        """Seconds this request may take, and the limit that sets it."""
        seconds = self.limits.request_seconds
        if isinstance(body, Path):
            seconds += body.stat().st_size / self.limits.upload_rate
        elif body:
            seconds += len(body) / self.limits.upload_rate
        name = f"request_seconds ({seconds:g} s for one request)"
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left < seconds:
                return left, self._deadline_name
        return seconds, name

    def _timed_out(self, method: str, shown: str, name: str) -> RegistryLimitError:
        return RegistryLimitError(
            f"registry {method} {shown}: the answer took too long, the limit {name} ran out "
            "(a server sending slowly is cut off by the wall clock).",
            limit=name,
            method=method,
            path=shown,
        )

    def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | Path | None,
        headers: Mapping[str, str],
        ok: tuple[int, ...],
        kind: BodyKind,
        authorization: tuple[str | None, str],
        timeout: float,
    ) -> _Response:
        stream: IO[bytes] | None = None
        data: bytes | IO[bytes] | None
        if isinstance(body, Path):
            stream = body.open("rb")
            data = stream
        else:
            data = body
        try:
            req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            for k, v in headers.items():
                req.add_header(k, v)
            if isinstance(body, Path):
                req.add_header("Content-Length", str(body.stat().st_size))
            # Only to the origin it is for: an upload Location or a redirect may point at
            # another host (storage backends), which must not see the registry's credentials.
            value, origin = authorization
            if value and same_origin(url, origin):
                req.add_unredirected_header("Authorization", value)
            shown = f"{method} {urllib.parse.urlsplit(url).path}"
            try:
                resp = self._opener.open(req, timeout=max(timeout, 0.001))
            except urllib.error.HTTPError as e:
                with e:
                    cap = self.limits.cap(kind if e.code in ok else "error")
                    return _Response(e.code, e.headers, _read_capped(e, e.headers, cap, shown))
            with resp:
                cap = self.limits.cap(kind if resp.status in ok else "error")
                return _Response(
                    resp.status, resp.headers, _read_capped(resp, resp.headers, cap, shown)
                )
        finally:
            if stream is not None:
                stream.close()

    def _authenticate(self, challenge: str) -> bool:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self._auth is None:
                return False
            self._authorization = self._auth.basic()
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        realm = params["realm"]
        url = token_url(params, self.repository)
        where = urllib.parse.urlsplit(realm)
        # The credentials go to the token service only when it is the registry itself or an
        # allowlisted host over HTTPS; anywhere else the token is asked for anonymously.
        basic = (
            self._auth.basic()
            if self._auth is not None and self.may_send_credentials(realm)
            else None
        )
        try:
            res = self._send(
                "GET", url, body=None, headers={}, ok=(200,), kind="token",
                authorization=(basic, f"{where.scheme}://{where.netloc}"),
            )  # fmt: skip
        except RegistryLimitError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            raise RegistryUnavailable(
                f"token request to {where.netloc}{where.path} failed.",
                method="GET",
                path=where.path,
            ) from None
        if res.status != 200:
            raise RegistryError(
                f"token request to {where.netloc}{where.path} answered {res.status}.",
                method="GET",
                path=where.path,
                status=res.status,
            )
        token = bearer_token(res.body)
        if token is None:
            return False
        self._authorization = f"Bearer {token}"
        return True

    def may_send_credentials(self, url: str) -> bool:
        """Whether the registry's credentials may go to ``url`` (a Bearer realm): the
        registry's own origin, or an HTTPS URL on an allowlisted ``host[:port]``."""
        return may_send_credentials(url, self.base, self._token_hosts)


def _read_capped(fp: Any, headers: Message, cap: tuple[int, str], shown: str) -> bytes:
    """The body, refused when it is (or says it is) larger than ``cap`` or is encoded."""
    if shown.startswith("HEAD "):
        return b""  # its Content-Length is the resource's; there is no body
    limit, name = cap
    try:
        return read_body(fp, headers, limit, f"registry {shown}", name)
    except HttpLimitError as e:
        raise RegistryLimitError(e.message, limit=e.limit) from None


def _transport_failure(e: BaseException, host: str) -> str:
    if isinstance(e, http.client.IncompleteRead):
        return f"{host} sent a broken answer (it ended before its Content-Length)"
    if isinstance(e, http.client.HTTPException) and not isinstance(e, ConnectionError):
        return f"{host} sent a broken answer ({type(e).__name__})"
    return f"cannot reach {host} ({_plain(str(getattr(e, 'reason', e)))[:200]})"


def _plain(text: str) -> str:
    # Registry text inside a message: printed escaped, markup escaping left to the printer.
    return untrusted(text, markup=False)


def _error_code(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors")
        code = errors[0]["code"]
    except (ValueError, AttributeError, LookupError, TypeError, RecursionError):
        return ""
    return f" ({code})" if isinstance(code, str) and code.isupper() else ""
