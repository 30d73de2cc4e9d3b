"""CVSS v3 base scores against published vectors and scores."""

from __future__ import annotations

import pytest

from modelseal.findings import Severity
from modelseal.vuln.cvss import CvssError, base_score, severity_from_score


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),  # GHSA-x84v-xcm2-53pg
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),  # the classic reflected XSS
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H", 5.9),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        # temporal metrics are accepted and do not change the base score
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C", 9.8),
    ],
)
def test_base_scores(vector: str, score: float) -> None:
    assert base_score(vector).base_score == score


def test_roundup_31_ignores_float_noise_and_30_does_not() -> None:
    from modelseal.vuln.cvss import _roundup_30, _roundup_31

    assert _roundup_31(4.02) == 4.1
    assert _roundup_31(4.0) == 4.0
    assert _roundup_31(4.000000000000001) == 4.0  # the spec's reason for the v3.1 change
    assert _roundup_30(4.000000000000001) == 4.1
    assert base_score("CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:N").base_score == 3.4


@pytest.mark.parametrize(
    "bad",
    [
        "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AVN/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    ],
)
def test_invalid_vectors_are_rejected(bad: str) -> None:
    with pytest.raises(CvssError):
        base_score(bad)


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (0.0, Severity.LOW),
        (0.1, Severity.LOW),
        (3.9, Severity.LOW),
        (4.0, Severity.MEDIUM),
        (6.9, Severity.MEDIUM),
        (7.0, Severity.HIGH),
        (8.9, Severity.HIGH),
        (9.0, Severity.CRITICAL),
        (10.0, Severity.CRITICAL),
    ],
)
def test_severity_bands(score: float, severity: Severity) -> None:
    assert severity_from_score(score) is severity


@pytest.mark.parametrize("score", [-0.1, 10.1, float("nan")])
def test_out_of_range_scores_are_errors(score: float) -> None:
    with pytest.raises(ValueError):
        severity_from_score(score)
