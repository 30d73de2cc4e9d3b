"""The shape every vulnerability scanner's findings share, so one policy can judge them and the
same advisory reported by two scanners becomes one finding with two sources.

A vulnerability :class:`~modelseal.findings.Finding` has:

* ``gate``: the scanner's gate (``trivy``, ``pip-audit``); ``id``: the advisory id as the
  scanner reports it (``CVE-…``, ``GHSA-…``, ``PYSEC-…``);
* ``subject``: ``name@version``; ``fixed_in``: the lowest fixed version, or ``None``;
* ``location``: where the package was found in the image (a file path, or the OS package DB);
* ``evidence`` keys (all strings): ``package``, ``version``, ``ecosystem`` (``pypi``, ``debian``,
  …, lower case), ``aliases`` (comma-separated, sorted, without ``id``), ``cvss`` (base score,
  e.g. ``"7.5"``, when known), ``cvss_vector``, ``type`` = ``"vulnerability"``, ``url``
  (advisory link) and ``severity_source`` (where the severity came from).
"""

from __future__ import annotations

from collections.abc import Iterable

from modelseal.findings import Finding, Severity

VULN_TYPE = "vulnerability"


def vuln_finding(
    *,
    gate: str,
    id: str,
    package: str,
    version: str,
    ecosystem: str,
    severity: Severity,
    title: str,
    fixed_in: str | None,
    location: str | None,
    aliases: Iterable[str] = (),
    cvss: float | None = None,
    cvss_vector: str | None = None,
    url: str | None = None,
    severity_source: str = "",
) -> Finding:
    """Build a vulnerability finding in the shared shape."""
    evidence = {
        "package": package,
        "version": version,
        "ecosystem": ecosystem.lower(),
        "aliases": ",".join(sorted({a for a in aliases if a and a != id})),
        "type": VULN_TYPE,
        "severity_source": severity_source,
    }
    if cvss is not None:
        evidence["cvss"] = f"{cvss:.1f}"
    if cvss_vector:
        evidence["cvss_vector"] = cvss_vector
    if url:
        evidence["url"] = url
    return Finding(
        gate=gate,
        id=id,
        severity=severity,
        title=title,
        subject=f"{package}@{version}",
        fixed_in=fixed_in or None,
        location=location,
        evidence=evidence,
    )
