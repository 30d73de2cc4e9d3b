"""CVSS v3.0 / v3.1 base scores from vector strings, as the FIRST specification defines them.

Only the base metrics count; temporal and environmental metrics in a vector are accepted and
ignored (a base score is what advisories publish). The two versions share the formulas and
differ only in ``Roundup``: v3.1 made it exact in floating point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelseal.findings import Severity

_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}
_BASE = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")
_ALLOWED = {
    "AV": _AV.keys(), "AC": _AC.keys(), "PR": _PR_UNCHANGED.keys(), "UI": _UI.keys(),
    "S": {"U", "C"}, "C": _CIA.keys(), "I": _CIA.keys(), "A": _CIA.keys(),
}  # fmt: skip


class CvssError(ValueError):
    """A vector that is not a valid CVSS v3 vector."""


@dataclass(frozen=True)
class CvssScore:
    """A parsed vector and its base score."""

    version: str  # "3.0" or "3.1"
    vector: str
    base_score: float


def _roundup_31(value: float) -> float:
    """CVSS v3.1 Appendix A: the smallest number, to one decimal, >= value."""
    int_input = round(value * 100000)
    if int_input % 10000 == 0:
        return int_input / 100000.0
    return (math.floor(int_input / 10000) + 1) / 10.0


def _roundup_30(value: float) -> float:
    return math.ceil(value * 10) / 10


def parse_vector(vector: str) -> tuple[str, dict[str, str]]:
    """Split ``CVSS:3.x/AV:N/…`` into its version and base metrics; raises :class:`CvssError`."""
    parts = vector.strip().split("/")
    head = parts[0]
    if head not in ("CVSS:3.0", "CVSS:3.1"):
        raise CvssError(f"{vector!r} is not a CVSS v3.0/v3.1 vector (it must start CVSS:3.x/).")
    metrics: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition(":")
        if not sep or not key or not value:
            raise CvssError(f"{vector!r}: {part!r} is not METRIC:VALUE.")
        if key in metrics:
            raise CvssError(f"{vector!r}: metric {key} appears twice.")
        metrics[key] = value
    missing = [k for k in _BASE if k not in metrics]
    if missing:
        raise CvssError(f"{vector!r} lacks the base metric(s) {', '.join(missing)}.")
    for k in _BASE:
        if metrics[k] not in _ALLOWED[k]:
            raise CvssError(f"{vector!r}: {k}:{metrics[k]} is not a valid value.")
    return head.removeprefix("CVSS:"), {k: metrics[k] for k in _BASE}


def base_score(vector: str) -> CvssScore:
    """The base score of a CVSS v3.0/v3.1 vector."""
    version, m = parse_vector(vector)
    changed = m["S"] == "C"
    iss = 1 - (1 - _CIA[m["C"]]) * (1 - _CIA[m["I"]]) * (1 - _CIA[m["A"]])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    pr = (_PR_CHANGED if changed else _PR_UNCHANGED)[m["PR"]]
    exploitability = 8.22 * _AV[m["AV"]] * _AC[m["AC"]] * pr * _UI[m["UI"]]
    roundup = _roundup_31 if version == "3.1" else _roundup_30
    if impact <= 0:
        score = 0.0
    elif changed:
        score = roundup(min(1.08 * (impact + exploitability), 10))
    else:
        score = roundup(min(impact + exploitability, 10))
    return CvssScore(version, vector.strip(), score)


def severity_from_score(score: float) -> Severity:
    """The qualitative rating of a base score: 0.1–3.9 LOW, 4.0–6.9 MEDIUM, 7.0–8.9 HIGH,
    9.0–10.0 CRITICAL. CVSS calls 0.0 "None"; it is reported as LOW (a known advisory with no
    impact is still not UNKNOWN)."""
    if not 0.0 <= score <= 10.0 or math.isnan(score):
        raise ValueError(f"{score} is not a CVSS score (0.0–10.0).")
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW
