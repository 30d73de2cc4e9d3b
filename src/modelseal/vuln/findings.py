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
  (advisory link) and ``severity_source`` (where the severity came from); Trivy adds
  ``platform``, ``status`` (its fix status), ``purl`` (its ``PkgIdentifier.PURL``),
  ``notices`` (the vendor notices of its ``VendorIDs``: see :func:`is_alias_id`) and, for the
  distribution's packages, ``os``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final

from modelseal.findings import Finding, Severity

VULN_TYPE = "vulnerability"

#: Advisory databases whose every id names one vulnerability (OSV's per-vulnerability
#: databases): another id of the same vulnerability may be one of these. A vendor's notice
#: (Ubuntu USN, Debian DSA/DLA, Red Hat RHSA, Amazon ALAS, SUSE-SU …) names an update that
#: fixes several vulnerabilities at once: two CVEs one notice fixes are not the same advisory.
_ALIAS_ID: Final = re.compile(r"(CVE|GHSA|PYSEC|GO|RUSTSEC|OSV|GSD|PSF)-[A-Za-z0-9._:-]+", re.I)


def is_alias_id(advisory: str) -> bool:
    """Whether ``advisory`` can be an alias of another advisory id: an id of a database that
    names one vulnerability per id. Anything else (a vendor notice, an unknown scheme) is not
    taken for the same vulnerability — a new finding is then reported as new, not excused."""
    return _ALIAS_ID.fullmatch(advisory) is not None


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


#: Trivy's OS families (a result's ``Type`` for ``os-pkgs``) → the purl type and namespace it
#: writes for their packages (trivy pkg/purl: purlType, and the namespace is the family, SUSE
#: Linux Enterprise's spelled without spaces).
_OS_PURL: Final[Mapping[str, tuple[str, str]]] = {
    **{f: ("deb", f) for f in ("debian", "ubuntu")},
    **{f: ("apk", f) for f in ("alpine", "wolfi", "chainguard")},
    **{
        f: ("rpm", f)
        for f in (
            "redhat", "centos", "rocky", "alma", "amazon", "fedora", "oracle", "opensuse",
            "opensuse.leap", "opensuse.tumbleweed", "photon", "azurelinux", "cbl-mariner",
        )
    },
    "suse linux enterprise server": ("rpm", "sles"),
    "suse linux enterprise micro": ("rpm", "sle-micro"),
}  # fmt: skip
#: Language ecosystems (lower-cased) → purl type.
_LANG_PURL: Final[Mapping[str, str]] = {
    "pypi": "pypi", "npm": "npm", "node-pkg": "npm", "yarn": "npm", "pnpm": "npm",
    "gomod": "golang", "gobinary": "golang", "jar": "maven", "pom": "maven", "gradle": "maven",
    "gemspec": "gem", "bundler": "gem", "cargo": "cargo", "rust-binary": "cargo",
    "composer": "composer", "nuget": "nuget", "dotnet-core": "nuget",
}  # fmt: skip


def _enc(text: str) -> str:
    """A purl component percent-encoded (every character but the unreserved ones): parsers
    decode it back, so Trivy compares the same name (``@scope`` is ``%40scope``)."""
    return urllib.parse.quote(text, safe="-._~")


def package_purl(evidence: Mapping[str, str]) -> str:
    """The purl of the finding's package as Trivy writes it (its ``--vex`` matches a statement
    to a package by it): OS packages as ``pkg:deb/<distro>/…``, ``pkg:rpm/<distro>/…`` or
    ``pkg:apk/<distro>/…`` after the scanned image's OS family; PyPI names lower-cased with
    ``_`` as ``-``; npm, Go and Maven names split into namespace and name; every component
    percent-encoded. A Debian or RPM version's epoch (``1:1.2.13-1``) is the ``epoch``
    qualifier, not part of the version: with the epoch in the version Trivy never matches."""
    ecosystem = (evidence.get("ecosystem") or "").lower()
    name = evidence.get("package") or ""
    version = evidence.get("version") or ""
    namespace = ""
    qualifiers = ""
    if ecosystem in _OS_PURL:
        kind, namespace = _OS_PURL[ecosystem]
        epoch, colon, rest = version.partition(":")
        if kind in ("deb", "rpm") and colon and epoch.isdigit():
            version, qualifiers = rest, f"?epoch={int(epoch)}"
    else:
        kind = _LANG_PURL.get(ecosystem, "")
        if kind == "pypi":
            name = name.lower().replace("_", "-")
        elif kind in ("npm", "golang"):
            namespace, _, name = name.lower().rpartition("/")
        elif kind == "maven":
            namespace, _, name = name.replace(":", "/").rpartition("/")
        elif not kind:
            kind = "generic"
    path = "/".join(_enc(part) for part in namespace.split("/")) + "/" if namespace else ""
    return f"pkg:{kind}/{path}{_enc(name)}@{_enc(version)}{qualifiers}"
