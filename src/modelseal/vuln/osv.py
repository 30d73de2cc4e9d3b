"""The OSV service as the pip-audit gate uses it: the endpoint named by the policy, the advisory
records behind a finding (``GET /v1/vulns/ID``, each request bounded in time and size) and the
severity they give it — the highest CVSS v3 base score, else the database's own rating, else
UNKNOWN."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelseal._http import BoundedResponse, bounded_request
from modelseal.errors import GateError
from modelseal.findings import Severity
from modelseal.vuln.cvss import CvssError, base_score, severity_from_score
from modelseal.vuln.site_packages import InstalledPackage

#: The public OSV API (what pip-audit uses by default).
DEFAULT_OSV_URL = "https://api.osv.dev/v1/query"
#: Wall-clock seconds of one request to the OSV service, connection to last byte.
OSV_REQUEST_SECONDS = 60.0
#: Bytes of one OSV answer (an advisory record is a few KiB; the largest are well under 1 MiB).
OSV_MAX_BYTES = 4 << 20

_DB_SEVERITY = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "LOW": Severity.LOW,
}


@dataclass(frozen=True)
class OsvEndpoint:
    """The OSV service: ``query_url`` for pip-audit, ``base`` for ``/v1/vulns/ID``."""

    base: str
    query_url: str
    default: bool

    @classmethod
    def from_policy(cls, osv_url: str | None) -> OsvEndpoint:
        """Accept ``https://host[/prefix]`` or the full ``…/v1/query`` URL."""
        url = (osv_url or DEFAULT_OSV_URL).rstrip("/")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise GateError(f"pip_audit.osv_url {osv_url!r} is not an http(s) URL.")
        base = url.removesuffix("/v1/query")
        return cls(base=base, query_url=f"{base}/v1/query", default=osv_url is None)


@dataclass(frozen=True)
class AdvisorySeverity:
    """A severity and where it came from."""

    severity: Severity
    source: str
    cvss: float | None = None
    vector: str | None = None


def severity_of(records: Iterable[Mapping[str, Any]]) -> AdvisorySeverity:
    """The highest CVSS v3 base score of the records' ``severity[]``, else the highest
    ``database_specific.severity``, else UNKNOWN."""
    best: tuple[float, str] | None = None
    db: Severity | None = None
    for record in records:
        for entry in record.get("severity") or []:
            if not isinstance(entry, dict) or entry.get("type") != "CVSS_V3":
                continue
            try:
                score = base_score(str(entry.get("score", "")))
            except CvssError:
                continue
            if best is None or score.base_score > best[0]:
                best = (score.base_score, score.vector)
        specific = record.get("database_specific")
        rating = specific.get("severity") if isinstance(specific, dict) else None
        if isinstance(rating, str) and rating.upper() in _DB_SEVERITY:
            mapped = _DB_SEVERITY[rating.upper()]
            db = mapped if db is None or mapped > db else db
    if best is not None:
        return AdvisorySeverity(severity_from_score(best[0]), "osv:cvss", best[0], best[1])
    if db is not None:
        return AdvisorySeverity(db, "osv:database_specific")
    return AdvisorySeverity(Severity.UNKNOWN, "unknown")


def _osv_request(req: urllib.request.Request, what: str) -> BoundedResponse:
    """One OSV request, its answer capped at :data:`OSV_MAX_BYTES` and the whole exchange at
    :data:`OSV_REQUEST_SECONDS` of wall-clock time (a server dripping a byte at a time would
    otherwise hold the gate for as long as it likes); a breach is an :class:`HttpLimitError`
    naming the limit, which makes the gate ERRORED."""
    return bounded_request(
        req, seconds=OSV_REQUEST_SECONDS, max_bytes=OSV_MAX_BYTES, what=what,
        time_limit="OSV_REQUEST_SECONDS", size_limit="OSV_MAX_BYTES",
    )  # fmt: skip


class AdvisoryLookup:
    """``GET {base}/v1/vulns/ID`` on the configured OSV service, cached per run."""

    def __init__(self, endpoint: OsvEndpoint) -> None:
        self.endpoint = endpoint
        self._cache: dict[str, dict[str, Any] | None] = {}

    def record(self, vid: str) -> dict[str, Any] | None:
        """The record, or ``None`` when the service does not know the id (404)."""
        if vid in self._cache:
            return self._cache[vid]
        url = f"{self.endpoint.base}/v1/vulns/{urllib.parse.quote(vid, safe='')}"
        try:
            resp = _osv_request(urllib.request.Request(url), f"the OSV service ({url})")  # noqa: S310
            if resp.status == 404:
                self._cache[vid] = None
                return None
            if resp.status != 200:
                raise GateError(f"the OSV service answered HTTP {resp.status} for {url}.")
            data = json.loads(resp.body)
        except (urllib.error.URLError, OSError, ValueError, RecursionError) as e:
            reason = getattr(e, "reason", None) or e
            raise GateError(f"cannot read the advisory {vid} from {url}: {reason}.") from None
        record = data if isinstance(data, dict) else None
        self._cache[vid] = record
        return record

    def severity(self, vid: str, aliases: Iterable[str]) -> AdvisorySeverity:
        """The severity of an advisory from its record and its aliases' records."""
        records: dict[str, dict[str, Any]] = {}
        for i in (vid, *aliases):
            r = self.record(i)
            if r is not None:
                records.setdefault(str(r.get("id", i)), r)
        return severity_of(records.values())

    def failing_queries(self, packages: Iterable[InstalledPackage]) -> list[InstalledPackage]:
        """The packages whose ``/v1/query`` the service answers with an error (diagnostics)."""
        failing = []
        for p in packages:
            body = json.dumps(
                {"package": {"name": p.name, "ecosystem": "PyPI"}, "version": p.version}
            ).encode()
            req = urllib.request.Request(  # noqa: S310
                self.endpoint.query_url, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                resp = _osv_request(req, f"the OSV service ({self.endpoint.query_url})")
            except (urllib.error.URLError, OSError):
                return []
            if resp.status >= 400:
                failing.append(p)
        return failing
