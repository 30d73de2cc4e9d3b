"""Hugging Face Hub sources: ``hf://ORG/NAME@COMMIT`` fetched pinned, checked, and re-checked.

The download itself is ``huggingface_hub``'s (the client the Hub documents), held inside a few
fences modelseal owns:

* One HTTP client for the whole fetch (:func:`huggingface_hub.set_client_factory`) whose
  transport enforces the fetch's wall-clock deadline (also while a server dribbles bytes), a
  byte budget (the sum of the sizes the Hub listed plus room for its JSON), bounded per-read
  timeouts, no compressed answers (a small gzip answer is how a download becomes a disk-full),
  capped ``Retry-After`` waits, and never an ``Authorization`` header to a host other than the
  endpoint's (a CDN redirect, a ``Link`` to another host).
* Xet transfers are off (``HF_HUB_DISABLE_XET``): they talk to further hosts through a native
  client this transport cannot fence. The Hub serves every file over plain HTTP as well. So is
  telemetry (``HF_HUB_DISABLE_TELEMETRY``), which fetches an agent registry from the default
  endpoint, whatever ``HF_ENDPOINT`` says.
* File names come from the Hub and are hostile: each selected name is checked
  (:func:`name_problem`) before anything is requested for it; files land in a private temporary
  directory next to the destination and are moved into place only once every one matched the
  Hub's own digest (the LFS SHA-256, or the git blob SHA-1 of a small file) and the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from modelseal import __version__
from modelseal.bounded import MIB, size_text
from modelseal.errors import ConfigError, GateError
from modelseal.untrusted import untrusted

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "DEFAULT_ENDPOINT",
    "FetchLimits",
    "HubError",
    "HubFile",
    "HubNotFound",
    "HubRef",
    "HubSession",
    "HubUnreadable",
    "git_blob_sha1",
    "is_commit",
    "name_problem",
    "parse_hf_uri",
    "public_endpoint",
]

SCHEME: Final = "hf://"
DEFAULT_ENDPOINT: Final = "https://huggingface.co"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The Hub's repository names: letters, digits, "-", "_", "."; at most 96; no "--" or "..".
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REF = re.compile(r"[A-Za-z0-9._/-]{1,255}")

#: Room for the Hub's JSON answers (model info, tree pages, paths-info) on top of the files.
METADATA_BYTES: Final = 64 * MIB
MAX_NAME_BYTES: Final = 1024
MAX_COMPONENT_BYTES: Final = 255
#: huggingface_hub keeps its download state under this directory of ``local_dir``.
_RESERVED = (".cache", "huggingface")
_RETRY_AFTER_CAP: Final = 5
_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")
_TIMEOUTS: Final = {"connect": 30.0, "read": 120.0, "write": 120.0, "pool": 120.0}


class HubError(GateError):
    """The Hub could not be asked, or answered outside a limit (exit 3)."""


class HubNotFound(ConfigError):
    """The Hub has no such repository or revision (or will not show it): exit 2 for a fetch;
    for a lock's source, the pinned revision has gone."""


class HubUnreadable(HubNotFound):
    """The Hub shows no such repository to a request without a token: it may be private or
    gated rather than gone, so a lock's source cannot be checked (exit 3 there)."""


def is_commit(revision: str | None) -> bool:
    """Whether ``revision`` is a full commit id (40 lower-case hex digits)."""
    return revision is not None and _COMMIT.fullmatch(revision) is not None


@dataclass(frozen=True)
class HubRef:
    """``hf://ORG/NAME[@REVISION]``: a model repository and, maybe, a revision."""

    repo_id: str
    revision: str | None = None

    @property
    def uri(self) -> str:
        """The repository's URI, without the revision (as the lock records it)."""
        return f"{SCHEME}{self.repo_id}"

    def __str__(self) -> str:
        return self.uri + (f"@{self.revision}" if self.revision else "")


def parse_hf_uri(text: str, *, where: str = "source") -> HubRef:
    """Parse ``hf://ORG/NAME[@REVISION]``; anything else is a ConfigError naming ``where``."""
    if not text.startswith(SCHEME):
        raise ConfigError(
            f"{where}: {untrusted(text, markup=False)!r} is not an hf://ORG/NAME URI."
        )
    body = text[len(SCHEME) :]
    repo, at, revision = body.partition("@")
    parts = repo.split("/")
    ok = len(parts) == 2 and all(
        _REPO_PART.fullmatch(p) and "--" not in p and ".." not in p for p in parts
    )
    if not ok:
        raise ConfigError(
            f"{where}: {untrusted(text, limit=200, markup=False)!r} does not name a model "
            "repository: expected hf://ORG/NAME (letters, digits, '-', '_', '.'; at most 96 "
            "each), optionally @REVISION."
        )
    if at and not (_REF.fullmatch(revision) and ".." not in revision):
        raise ConfigError(
            f"{where}: revision {untrusted(revision, limit=80, markup=False)!r} is neither a "
            "commit (40 hex digits) nor a branch or tag name."
        )
    if at and re.fullmatch(r"[0-9a-fA-F]{40}", revision):
        revision = revision.lower()  # the Hub's commit ids are lower-case
    return HubRef(repo, revision if at else None)


def name_problem(name: object) -> str | None:
    """Why the repository file name ``name`` (from the Hub) cannot be written under a directory,
    or ``None``. Refused: empty, absolute, ``.``/``..``/empty components, backslashes, control and
    format characters (escapes, bidi overrides), over-long names and components, and
    huggingface_hub's own state directory (``.cache/huggingface``)."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if name.startswith("/"):
        return "is absolute"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name):
        return "holds control or invisible characters"
    if "\\" in name:
        return "holds a backslash"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component"
    if any(len(p.encode("utf-8")) > MAX_COMPONENT_BYTES for p in parts):
        return f"has a component longer than {MAX_COMPONENT_BYTES} bytes"
    if tuple(parts[:2]) == _RESERVED:
        return "is under .cache/huggingface, where huggingface_hub keeps its download state"
    return None


def git_blob_sha1(path: Path, *, chunk: int = 1 << 20) -> str:
    """The git blob id of the file at ``path`` (``sha1("blob SIZE\\0" + bytes)``): what the Hub
    reports for a file kept in git rather than LFS."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        h = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        while data := os.read(fd, chunk):
            h.update(data)
    finally:
        os.close(fd)
    return h.hexdigest()


@dataclass(frozen=True)
class FetchLimits:
    """``models.fetch``'s limits (:class:`~modelseal.policy.model.ModelFetchPolicy`)."""

    max_files: int = 10_000
    max_bytes: int = 256 << 30
    max_seconds: int = 6 * 3600


@dataclass(frozen=True)
class HubFile:
    """One file as the Hub lists it at a commit."""

    path: str
    size: int
    blob_id: str  # the git blob SHA-1 (of the LFS pointer, for an LFS file)
    lfs_sha256: str | None = None  # the content's SHA-256, for an LFS file

    @property
    def expected(self) -> tuple[str, str]:
        """``(algorithm, digest)`` the downloaded bytes must have, by the Hub's own account."""
        if self.lfs_sha256 is not None:
            return "sha256", self.lfs_sha256
        return "git-sha1", self.blob_id


def public_endpoint(url: str) -> str:
    """``url`` without credentials (``user:password@``) and without a trailing ``/``: the
    endpoint as messages show it and the lock records it."""
    parts = urlsplit(url.rstrip("/"))
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return parts.geturl()


_USERINFO = re.compile(r"(?<=//)[^/\s@]*@")


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _Guard:
    """The fetch's shared budget: deadline, bytes, requests."""

    def __init__(self, endpoint: str, limits: FetchLimits) -> None:
        self.origin = _origin(endpoint)
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.budget = METADATA_BYTES
        self.received = 0
        self.requests = 0
        self.max_requests = 4 * limits.max_files + 1000
        self.expired = False
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.expired or time.monotonic() > self.deadline:
            self.expired = True
            raise HubError(
                f"the fetch took longer than models.fetch.max_seconds = "
                f"{self.limits.max_seconds} s; nothing was written."
            )

    def request(self) -> None:
        self.check()
        with self._lock:
            self.requests += 1
            if self.requests > self.max_requests:
                raise HubError(
                    f"the Hub needed more than {self.max_requests} requests for "
                    f"{self.limits.max_files} file(s) (models.fetch.max_files × 4 + 1000); "
                    "nothing was written."
                )

    def allow(self, n: int) -> None:
        """Let the downloads use ``n`` more bytes (the selected files' listed sizes)."""
        with self._lock:
            self.budget += n

    def take(self, n: int, *, declared: bool = False) -> None:
        """Count ``n`` bytes received; with ``declared``, only check that a body of ``n`` bytes
        (a ``Content-Length``) would still fit, before any of it is read."""
        self.check()
        with self._lock:
            if self.received + n > self.budget:
                raise HubError(
                    f"the Hub {'announced' if declared else 'sent'} more than "
                    f"{size_text(self.budget)}: the files' listed sizes plus "
                    f"{size_text(METADATA_BYTES)} for its answers; nothing was written."
                )
            if not declared:
                self.received += n


def proxy_for(url: str, proxies: Mapping[str, str | None]) -> str | None:
    """The proxy a request to ``url`` goes through, by ``proxies`` (httpx's mounts from the
    environment: ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), matched the way
    an httpx client without a transport of its own matches them; ``None``: directly."""
    import httpx2
    from httpx2._utils import URLPattern

    for pattern, proxy in sorted((URLPattern(k), v) for k, v in proxies.items()):
        if pattern.matches(httpx2.URL(url)):
            return proxy
    return None


def _transport(guard: _Guard) -> httpx2.BaseTransport:
    import httpx2
    from httpx2._utils import get_environment_proxies

    # huggingface_hub's own client honours the proxy settings of the environment; a client
    # given a transport does not, so the guarded transport picks one per request itself.
    proxies = get_environment_proxies()

    class CountedStream(httpx2.SyncByteStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                guard.take(len(chunk))
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class GuardedTransport(httpx2.BaseTransport):
        def __init__(self) -> None:
            self.direct = httpx2.HTTPTransport(retries=0)
            self.proxied = {
                p: httpx2.HTTPTransport(retries=0, proxy=p) for p in set(proxies.values()) if p
            }

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            guard.request()
            if request.url.scheme not in ("http", "https"):
                raise HubError(f"the Hub pointed at a {request.url.scheme!r} URL; refused.")
            if _origin(str(request.url)) != guard.origin:
                # A token is for the Hub alone: never a CDN's, never a redirect's target.
                request.headers.pop("authorization", None)
            request.headers["Accept-Encoding"] = "identity"
            given = request.extensions.get("timeout") or {}
            request.extensions["timeout"] = {
                k: min(float(given.get(k) or cap), cap) for k, cap in _TIMEOUTS.items()
            }
            proxy = proxy_for(str(request.url), proxies)
            if proxy and request.url.scheme == "http" and "authorization" in request.headers:
                raise HubError(
                    "a proxy from the environment would carry HF_TOKEN in clear text to "
                    f"{untrusted(public_endpoint(proxy), limit=200, markup=False)}; set NO_PROXY "
                    "for the Hub's host, or use an https endpoint."
                )
            response = (self.proxied[proxy] if proxy else self.direct).handle_request(request)
            length = response.headers.get("content-length", "")
            if length.isdigit():
                try:
                    guard.take(int(length), declared=True)
                except HubError:
                    response.close()
                    raise
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                response.close()
                raise HubError(
                    f"the Hub answered {untrusted(request.url.path, limit=200, markup=False)} "
                    "compressed "
                    f"({untrusted(encoding, limit=40, markup=False)}) though asked not to; refused."
                )
            for key in ("ratelimit", "ratelimit-policy"):
                response.headers.pop(key, None)
            if "retry-after" in response.headers:
                # huggingface_hub sleeps what a server says; a hostile one could say a year.
                response.headers["retry-after"] = str(_RETRY_AFTER_CAP)
            response.stream = CountedStream(response.stream)
            return response

        def close(self) -> None:
            for transport in (self.direct, *self.proxied.values()):
                transport.close()

    return GuardedTransport()


class _ScrubbingHandler(logging.Handler):
    """huggingface_hub's records, scrubbed of the token and escaped, handed to the root
    logger's handlers (modelseal's, or a test's)."""

    def __init__(self, scrub: Callable[[object], str]) -> None:
        super().__init__()
        self._scrub = scrub

    def emit(self, record: logging.LogRecord) -> None:
        clean = logging.makeLogRecord(record.__dict__)
        clean.msg, clean.args = self._scrub(record.getMessage()), None
        clean.exc_info = clean.exc_text = None
        logging.getLogger().handle(clean)


class HubSession:
    """The fetch's huggingface_hub client: endpoint, token, fences (see the module)."""

    def __init__(self, endpoint: str, limits: FetchLimits) -> None:
        if urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname:
            raise ConfigError(
                f"HF_ENDPOINT {untrusted(public_endpoint(endpoint), limit=200, markup=False)!r} "
                "is not an http(s) URL."
            )
        self.endpoint = endpoint.rstrip("/")
        self.limits = limits
        self.guard = _Guard(self.endpoint, limits)
        self._token: str | None = None
        self._timer: threading.Timer | None = None
        self._previous: tuple[bool, bool] | None = None
        self._logging: tuple[list[logging.Handler], bool] | None = None
        self._log_handler = _ScrubbingHandler(self.scrub)

    @classmethod
    def from_env(cls, limits: FetchLimits, env: Mapping[str, str] | None = None) -> HubSession:
        """A session for ``HF_ENDPOINT`` (default: the Hub)."""
        env = os.environ if env is None else env
        return cls(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT, limits)

    def __enter__(self) -> HubSession:
        import httpx2
        from huggingface_hub import constants, get_token, set_client_factory
        from huggingface_hub.utils._http import hf_request_event_hook
        from huggingface_hub.utils.tqdm import disable_progress_bars

        # HF_TOKEN (or the token `hf auth login` stored): read here, sent only to the endpoint,
        # never printed (messages are scrubbed of it).
        self._token = get_token()
        parts = urlsplit(self.endpoint)
        if self._token and parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ConfigError(
                f"HF_ENDPOINT {self.scrub(self.endpoint)} is plain http and HF_TOKEN is set: the "
                "token would cross the network in clear text; use https."
            )
        self._previous = (constants.HF_HUB_DISABLE_XET, constants.HF_HUB_DISABLE_TELEMETRY)
        constants.HF_HUB_DISABLE_XET = True
        # Telemetry builds the user agent from a registry it fetches from the *default*
        # endpoint (and caches under HF_HOME): a request nobody asked for, to another host.
        constants.HF_HUB_DISABLE_TELEMETRY = True
        disable_progress_bars()  # they print the Hub's file names unescaped
        transport = _transport(self.guard)

        def factory() -> httpx2.Client:
            return httpx2.Client(
                transport=transport,
                event_hooks={"request": [hf_request_event_hook]},
                follow_redirects=True,
                max_redirects=10,
                timeout=httpx2.Timeout(**_TIMEOUTS),
            )

        set_client_factory(factory)
        # huggingface_hub prints its warnings through a handler of its own, raw: the Hub's file
        # names and URLs would reach the terminal unescaped. Its records go to modelseal's
        # handlers instead, escaped and without the token.
        hf_logger = logging.getLogger("huggingface_hub")
        self._logging = (list(hf_logger.handlers), hf_logger.propagate)
        for handler in self._logging[0]:
            hf_logger.removeHandler(handler)
        hf_logger.propagate = False
        hf_logger.addHandler(self._log_handler)

        def expire() -> None:
            # A server that holds a request open past the deadline: close the sockets under it.
            self.guard.expired = True
            transport.close()

        self._timer = threading.Timer(self.limits.max_seconds, expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from huggingface_hub import constants, set_client_factory
        from huggingface_hub.utils._http import default_client_factory

        if self._timer is not None:
            self._timer.cancel()
        set_client_factory(default_client_factory)
        hf_logger = logging.getLogger("huggingface_hub")
        hf_logger.removeHandler(self._log_handler)
        if self._logging is not None:
            for handler in self._logging[0]:
                hf_logger.addHandler(handler)
            hf_logger.propagate = self._logging[1]
        if self._previous is not None:
            constants.HF_HUB_DISABLE_XET, constants.HF_HUB_DISABLE_TELEMETRY = self._previous

    # -- errors -------------------------------------------------------------------------------

    def scrub(self, text: object) -> str:
        """``text`` without the token, escaped and clipped for a message."""
        raw = _USERINFO.sub("", str(text))  # credentials in HF_ENDPOINT's URL
        if self._token:
            raw = raw.replace(self._token, "[HF_TOKEN]")
        return untrusted(raw, limit=400, markup=False)

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """huggingface_hub's and httpx's errors as modelseal's: a repository or revision that
        does not exist is bad input (exit 2); anything else the Hub did is exit 3."""
        import httpx2
        from huggingface_hub.errors import (
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            yield
        except (HubError, ConfigError):
            raise
        except RepositoryNotFoundError:
            raise (HubNotFound if self._token else HubUnreadable)(
                f"{what}: the Hub at {self.scrub(self.endpoint)} has no such model repository, "
                "or it is private or gated (set HF_TOKEN to a token that may read it).",
            ) from None
        except RevisionNotFoundError:
            raise HubNotFound(f"{what}: the Hub has no such revision.") from None
        except (httpx2.HTTPError, HfHubHTTPError, OSError, ValueError, KeyError, TypeError) as e:
            self.guard.check()  # the deadline's message when it was the deadline
            raise HubError(
                f"{what}: could not get an answer from the Hub at {self.scrub(self.endpoint)}: "
                f"{type(e).__name__}: {self.scrub(e)}"
            ) from None

    # -- calls --------------------------------------------------------------------------------

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(
            endpoint=self.endpoint,
            token=self._token or False,
            library_name="modelseal",
            library_version=__version__,
        )

    def resolve(self, ref: HubRef) -> str:
        """The commit ``ref``'s revision is (``main`` when it names none)."""
        revision = ref.revision or "main"
        with self.errors(f"{ref}"):
            info = self._api().model_info(ref.repo_id, revision=revision, timeout=_TIMEOUTS["read"])
        sha = getattr(info, "sha", None)
        if not isinstance(sha, str) or not is_commit(sha):
            raise HubError(f"{ref}: the Hub's model info names no commit ({self.scrub(sha)!r}).")
        if is_commit(revision) and sha != revision:
            raise HubError(f"{ref}: the Hub answered for commit {sha} instead.")
        return sha

    def list_files(self, ref: HubRef, commit: str) -> list[HubFile]:
        """Every file of the repository at ``commit``, as the Hub lists it; more than
        ``max_files`` files (or directories) is a ConfigError naming the limit."""
        from huggingface_hub.hf_api import RepoFile

        files: list[HubFile] = []
        dirs = 0
        limit = self.limits.max_files
        with self.errors(f"{ref.uri}@{commit}"):
            for entry in self._api().list_repo_tree(ref.repo_id, recursive=True, revision=commit):
                if not isinstance(entry, RepoFile):
                    dirs += 1
                    if dirs > limit:
                        raise _too_many(ref, commit, "directories", limit)
                    continue
                files.append(self._file(entry))
                if len(files) > limit:
                    raise _too_many(ref, commit, "files", limit)
        return files

    def paths_info(self, ref: HubRef, commit: str, paths: Sequence[str]) -> dict[str, HubFile]:
        """The files among ``paths`` that exist at ``commit`` (absent ones are left out)."""
        from huggingface_hub.hf_api import RepoFile

        found: dict[str, HubFile] = {}
        api = self._api()
        with self.errors(f"{ref.uri}@{commit}"):
            for i in range(0, len(paths), 500):
                for entry in api.get_paths_info(
                    ref.repo_id, list(paths[i : i + 500]), revision=commit
                ):
                    if isinstance(entry, RepoFile):
                        f = self._file(entry)
                        found[f.path] = f
        return found

    def _file(self, entry: Any) -> HubFile:
        path, size, blob_id, lfs = entry.path, entry.size, entry.blob_id, entry.lfs
        if not isinstance(size, int) or size < 0 or not isinstance(blob_id, str):
            raise HubError(f"the Hub listed {self.scrub(path)!r} without a size or blob id.")
        digest = None
        if lfs is not None:
            digest = lfs.get("sha256")
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise HubError(f"the Hub listed {self.scrub(path)!r} with a malformed LFS sha256.")
            if lfs.get("size") != size:
                raise HubError(f"the Hub listed {self.scrub(path)!r} with two different sizes.")
        elif not _COMMIT.fullmatch(blob_id):
            raise HubError(f"the Hub listed {self.scrub(path)!r} with a malformed blob id.")
        return HubFile(path if isinstance(path, str) else "", size, blob_id, digest)

    def download(self, ref: HubRef, commit: str, f: HubFile, local_dir: Path, cache: Path) -> None:
        """Download ``f`` at ``commit`` into ``local_dir`` (huggingface_hub's layout), then
        check that the Hub served that commit and the digest it listed."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub._local_folder import read_download_metadata

        shown = self.scrub(f.path)
        with self.errors(f"{ref.uri}@{commit}: {shown}"):
            hf_hub_download(
                ref.repo_id, f.path, revision=commit, local_dir=local_dir, cache_dir=cache,
                force_download=True, token=self._token or False, endpoint=self.endpoint,
                etag_timeout=_TIMEOUTS["read"], library_name="modelseal",
                library_version=__version__,
            )  # fmt: skip
            meta = read_download_metadata(local_dir, f.path)
        if meta is None:
            raise HubError(f"{shown}: huggingface_hub recorded no download for it.")
        if meta.commit_hash != commit:
            raise HubError(
                f"{shown}: the Hub served it from commit {self.scrub(meta.commit_hash)}, not "
                f"{commit}."
            )
        if meta.etag != f.expected[1]:
            raise HubError(
                f"{shown}: the Hub's download names {f.expected[0]} {self.scrub(meta.etag)}, its "
                f"listing {f.expected[1]}."
            )


def _too_many(ref: HubRef, commit: str, what: str, limit: int) -> ConfigError:
    return ConfigError(
        f"{ref.uri}@{commit} holds more than {limit} {what}: the limit is "
        f"models.fetch.max_files = {limit}.",
        hint="Select fewer with --include GLOB, or raise models.fetch.max_files in the policy.",
    )


def select(files: Sequence[HubFile], includes: Sequence[str]) -> list[HubFile]:
    """The files matching one of the ``includes`` globs (all when there are none), matched
    against the whole path or its file name (as ``models.ignore`` is)."""
    from modelseal.models.lock import is_ignored

    return [f for f in files if not includes or is_ignored(f.path, includes)]


def check_selection(
    ref: HubRef, commit: str, files: Sequence[HubFile], limits: FetchLimits
) -> None:
    """Refuse hostile names, duplicates, a file that is also a directory, and a selection over
    the limits, before anything is downloaded (ConfigError naming the file or the limit)."""
    where = f"{ref.uri}@{commit}"
    seen: set[str] = set()
    for f in files:
        why = name_problem(f.path)
        if why:
            raise ConfigError(
                f"{where}: the file name {untrusted(f.path, limit=200, markup=False)!r} {why}; "
                "refused (nothing was downloaded)."
            )
        if f.path in seen:
            raise ConfigError(f"{where}: {untrusted(f.path, markup=False)!r} is listed twice.")
        seen.add(f.path)
    for f in files:
        parents = PurePosixPath(f.path).parents
        clash = next((str(p) for p in parents if str(p) in seen), None)
        if clash:
            raise ConfigError(
                f"{where}: {untrusted(clash, markup=False)!r} is listed both as a file and as "
                "a directory; refused."
            )
    if len(files) > limits.max_files:
        raise _too_many(ref, commit, "files", limits.max_files)
    total = sum(f.size for f in files)
    if total > limits.max_bytes:
        raise ConfigError(
            f"{where}: the selected files hold {total} bytes; the limit is "
            f"models.fetch.max_bytes = {limits.max_bytes} ({size_text(limits.max_bytes)}).",
            hint="Select fewer with --include GLOB, or raise models.fetch.max_bytes.",
        )
