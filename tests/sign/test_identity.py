"""Identity regexps: anchored by structure, not by their first and last character, and never
a pattern whose matching time explodes with the identity's length."""

from __future__ import annotations

import time

import pytest

from modelseal.errors import ConfigError
from modelseal.sign.identity import (
    MAX_MATCHED_IDENTITY,
    IdentityRegexpError,
    compile_identity_regexp,
    identity_matches,
)
from modelseal.sign.verify import ExpectedSigner

ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = r"^https://github\.com/org/repo/\.github/workflows/release\.yml@refs/tags/v.*$"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^a|.*$", "do not anchor the whole pattern"),
        ("^https://github\\.com/org/repo/|.*$", "do not anchor the whole pattern"),
        ("^(a+)+$", "repeated group contains another repetition"),
        ("^(a|aa)*$", "repeated group contains another repetition or an alternation"),
        ("^([a-z]*)*@x$", "repeated group contains another repetition"),
        ("^.*.*.*.*b$", "more than 3 open-ended repetitions"),
        ("^" + "[ab]{0,16}" * 8 + "x$", "too many variable-width repetitions"),
        ("^.*.*" + "a?" * 12 + "b$", "too many variable-width repetitions"),
        ("^" + "a?" * 40 + "b$", "too many variable-width repetitions"),
        ("^(a$", "invalid"),
        ("^" + "a" * 2000 + "$", "longer than 1024"),
    ],
)
def test_unsafe_patterns_are_refused(pattern: str, why: str) -> None:
    with pytest.raises(IdentityRegexpError, match=why):
        compile_identity_regexp(pattern)
    with pytest.raises(ConfigError, match=why):
        ExpectedSigner(issuer=ISSUER, identity_regexp=pattern)


def test_a_top_level_alternation_cannot_match_everyone() -> None:
    # The textual check alone accepted this; as (^a)|(.*$) it matches any identity.
    with pytest.raises(ConfigError, match="anchor the whole pattern"):
        ExpectedSigner(issuer=ISSUER, identity_regexp="^a|.*$")
    grouped = compile_identity_regexp("^(?:a|b)$")
    assert identity_matches(grouped, "a")
    assert not identity_matches(grouped, "https://github.com/evil/repo")


@pytest.mark.parametrize(
    ("identity", "ok"),
    [
        ("https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.2", True),
        ("https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main", False),
        ("https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1\n", False),
        ("xhttps://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1", False),
    ],
)
def test_matching_is_whole_identity(identity: str, ok: bool) -> None:
    assert identity_matches(compile_identity_regexp(WORKFLOW), identity) is ok


def test_matching_time_is_bounded() -> None:
    pattern = compile_identity_regexp("^.*.*.*b$")  # the most the checks let through
    started = time.monotonic()
    assert not identity_matches(pattern, "a" * MAX_MATCHED_IDENTITY)
    assert not identity_matches(pattern, "a" * (MAX_MATCHED_IDENTITY * 100) + "b")
    assert time.monotonic() - started < 10


def test_a_pattern_within_the_checks_is_still_held_to_the_match_time() -> None:
    """The structural checks are an estimate: this one passes them (1024² × 2¹⁰ choices) yet
    backtracks for tens of seconds on a crafted identity; the match is cut off and fails."""
    from modelseal.sign.identity import MATCH_SECONDS

    pattern = compile_identity_regexp("^.*.*" + "a?" * 10 + "b$")
    started = time.monotonic()
    assert not identity_matches(pattern, "a" * MAX_MATCHED_IDENTITY)
    assert time.monotonic() - started < MATCH_SECONDS + 2
    # an identity that matches quickly still does
    assert identity_matches(pattern, "xb")


def test_an_outer_timer_survives_a_match() -> None:
    """A timer already running (pytest-timeout's, say) is re-armed with what was left."""
    import signal

    fired: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        identity_matches(compile_identity_regexp(WORKFLOW), "x")
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 1.5
        time.sleep(1.7)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
