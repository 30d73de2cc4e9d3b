"""HTTP with a size cap and a wall-clock deadline per request: the one way modelseal talks to a
server it does not control (an OCI registry, an OSV service).

A per-read socket timeout cannot stop a server that sends one byte every few seconds; a
:class:`_Watchdog` shuts the request's sockets down when its wall-clock budget runs out. Bodies
are read in chunks up to a cap, never whole, and never decoded (a compressed answer is how a
small one becomes a gigabyte). Only http(s) URLs are opened and redirects are not followed
automatically (urllib reads a redirect's whole body, unbounded).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from types import TracebackType
from typing import Any, Final

from modelseal.errors import GateError
from modelseal.untrusted import untrusted

__all__ = ["HttpLimitError", "bounded_request"]

_CHUNK: Final = 64 * 1024


class HttpLimitError(GateError):
    """A server's answer broke a limit (size, time, encoding); ``limit`` names it."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class BoundedResponse:
    """Status, headers and the (capped) body of one answer."""

    status: int
    headers: Message
    body: bytes


class _Watchdog:
    """Shuts the sockets of one request down when its time is up. A per-read socket timeout
    cannot stop a server that sends a byte every few seconds; this bounds the whole request
    (connect, TLS handshake, headers, body) by the wall clock."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        """Called with each new connection's socket; a duplicate descriptor is kept so the
        socket can still be shut down after TLS has taken the original over."""
        with self._lock:
            dup = sock.dup()
            self._sockets.append(dup)
            if self.fired:
                _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Current:
    """The watchdog of the request in flight (one client, one request at a time)."""

    watchdog: _Watchdog | None = None

    def watch(self, sock: socket.socket) -> socket.socket:
        if self.watchdog is not None:
            self.watchdog.watch(sock)
        return sock


def _watched(base: type[http.client.HTTPConnection], current: _Current) -> Callable[..., Any]:
    """A connection class of ``base`` whose sockets the current watchdog can shut down."""

    def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        conn = base(*args, **kwargs)
        create = conn._create_connection  # type: ignore[attr-defined]
        conn._create_connection = lambda *a, **k: current.watch(create(*a, **k))  # type: ignore[attr-defined]
        return conn

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, current: _Current) -> None:
        super().__init__()
        self._current = current

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self._current), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, current: _Current) -> None:
        super().__init__()
        self._current = current
        self._ssl = ssl.create_default_context()

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        make = _watched(http.client.HTTPSConnection, self._current)
        return self.do_open(functools.partial(make, context=self._ssl), req)


def _opener(current: _Current, *, direct: bool) -> urllib.request.OpenerDirector:
    """http(s) only (no file:, ftp: or data: URLs from a hostile realm or Location), no
    automatic redirects (urllib reads a redirect's whole body, unbounded), and proxies from
    the environment unless ``direct``."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler({} if direct else None),
        urllib.request.UnknownHandler(),
        _HTTPHandler(current),
        _HTTPSHandler(current),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def read_body(fp: Any, headers: Message, max_bytes: int, what: str, limit: str) -> bytes:
    """The body of one answer (the registry client's and OSV's alike): refused with an
    :class:`HttpLimitError` naming ``limit`` when it is, or says it is, larger than
    ``max_bytes``, or is encoded (never asked for: decoding is how a small answer becomes a
    gigabyte); an answer shorter than its Content-Length is an ``IncompleteRead`` (``read(amt)``
    returns a truncated body without complaint)."""
    from modelseal.bounded import size_text

    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise HttpLimitError(
            f"{what}: refused a {untrusted(encoding, markup=False)[:40]}-encoded answer (limit: "
            "identity encoding only; modelseal never asks for a compressed one).",
            limit="identity encoding only",
        )
    declared = (headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise HttpLimitError(
            f"{what}: the answer is {int(declared)} bytes, more than the limit {limit} "
            f"({size_text(max_bytes)}).",
            limit=limit,
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = fp.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            body = b"".join(chunks)
            if declared.isdigit() and total < int(declared):
                raise http.client.IncompleteRead(body, int(declared) - total)
            return body
        total += len(chunk)
        if total > max_bytes:
            raise HttpLimitError(
                f"{what}: the answer is larger than the limit {limit} ({size_text(max_bytes)}).",
                limit=limit,
            )
        chunks.append(chunk)


def bounded_request(
    req: urllib.request.Request,
    *,
    seconds: float,
    max_bytes: int,
    what: str,
    time_limit: str,
    size_limit: str,
) -> BoundedResponse:
    """Send ``req`` and read its answer (an HTTP error status included) within ``seconds`` of
    wall-clock time and ``max_bytes`` of body; a breach is an :class:`HttpLimitError` naming
    ``time_limit`` or ``size_limit``. Transport failures raise as urllib raises them."""
    current = _Current()
    opener = _opener(current, direct=False)
    with _Watchdog(seconds) as dog:
        current.watchdog = dog
        try:
            try:
                resp = opener.open(req, timeout=max(min(seconds, 60.0), 0.001))
            except urllib.error.HTTPError as e:
                with e:
                    answer = BoundedResponse(
                        e.code, e.headers, read_body(e, e.headers, max_bytes, what, size_limit)
                    )
            else:
                with resp:
                    answer = BoundedResponse(
                        resp.status,
                        resp.headers,
                        read_body(resp, resp.headers, max_bytes, what, size_limit),
                    )
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            if dog.fired:
                raise _too_slow(what, time_limit, seconds) from None
            raise
        finally:
            current.watchdog = None
        if dog.fired:
            # A body without Content-Length ends where the watchdog shut the socket: cut short.
            raise _too_slow(what, time_limit, seconds)
        return answer


def _too_slow(what: str, limit: str, seconds: float) -> HttpLimitError:
    return HttpLimitError(
        f"{what}: the answer took too long, the limit {limit} ({seconds:g} s) ran out (a "
        "server sending slowly is cut off by the wall clock).",
        limit=limit,
    )
