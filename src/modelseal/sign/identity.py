"""Checking a signer identity regexp before it is trusted to say who may sign.

The textual check "starts with ``^`` and ends with ``$``" is not enough: ``^a|.*$`` passes it
and, being ``(^a)|(.*$)``, accepts every identity. And Python's backtracking matcher takes
seconds (or forever) on ``^(a+)+$`` against an identity an attacker chose. So a pattern is
parsed and refused unless

* the ``^`` and ``$`` anchor the whole pattern: no alternation at the top level (write
  ``^(?:a|b)$``);
* no repetition contains another repetition or an alternation (``(a+)+``, ``(a|a)*``), the
  shapes whose backtracking grows exponentially with the identity's length;
* it has at most :data:`MAX_OPEN_REPEATS` open-ended repetitions (``*``, ``+``, ``{n,}`` or a
  bound above 16): ``^.*.*.*.*b$`` backtracks polynomially, ~40 s on a 1000-character identity;
* its backtracking budget holds: bounded repetitions multiply the ways to split an identity too
  (eight ``[ab]{0,16}`` in a row took 24 s on 2000 characters), so every variable-width
  repetition counts — an open-ended one as the longest identity matched
  (:data:`MAX_MATCHED_IDENTITY`), a bounded one as its number of choices (``{0,16}``: 17, ``?``:
  2) — and their product may not exceed :data:`MAX_BACKTRACKING` (three ``.*``, or six
  ``{0,16}``: well under a second in the worst case);
* it compiles.

And an identity longer than :data:`MAX_MATCHED_IDENTITY` characters never matches a regexp.

Matching is then ``fullmatch`` of ``^(?:pattern)$``: anchored whatever the pattern says, and
held to :data:`MATCH_SECONDS` (the structural checks are a cheap estimate, not a proof: a
pattern within them can still backtrack for seconds on a crafted identity).
"""

from __future__ import annotations

import importlib
import re
import signal
import threading
import time
from typing import Any, Final

__all__ = [
    "MAX_IDENTITY_REGEXP",
    "MAX_MATCHED_IDENTITY",
    "MAX_OPEN_REPEATS",
    "IdentityRegexpError",
    "compile_identity_regexp",
    "identity_matches",
]

# The standard library's own parser (what re.compile runs first); private but stable since
# Python 3.11, and typeshed does not describe it.
_sre_parse: Any = importlib.import_module("re._parser")
_sre_constants: Any = importlib.import_module("re._constants")

MAX_IDENTITY_REGEXP: Final = 1024
"""Longer patterns are refused: an identity is a URL or an e-mail address."""

MAX_OPEN_REPEATS: Final = 3
"""An identity regexp may hold at most this many open-ended repetitions."""
MAX_MATCHED_IDENTITY: Final = 1024
"""Longer identities are not matched against a regexp (they fail it): bounds matching time.
Certificate identities are workflow URLs and e-mail addresses, a few hundred characters."""
MATCH_SECONDS: Final = 0.5
"""One identity match may take this long (main thread); longer is no match."""
MAX_BACKTRACKING: Final = MAX_MATCHED_IDENTITY**3
"""The product over variable-width repetitions of their choices (see the module docstring)."""
_OPEN_REPEAT_MIN: Final = 16

_REPEATS: Final = (
    _sre_constants.MAX_REPEAT,
    _sre_constants.MIN_REPEAT,
    _sre_constants.POSSESSIVE_REPEAT,
)


class IdentityRegexpError(ValueError):
    """The pattern is not a safe, anchored identity regexp; the message says why."""


def _items(pattern: Any) -> list[tuple[Any, Any]]:
    return list(pattern.data if hasattr(pattern, "data") else pattern)


def _children(op: Any, arg: Any) -> list[Any]:
    """The sub-patterns of one parsed item."""
    if op in _REPEATS:
        return [arg[2]]
    if op is _sre_constants.SUBPATTERN:
        return [arg[3]]
    if op is _sre_constants.BRANCH:
        return list(arg[1])
    if op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
        return [arg[1]]
    if op is _sre_constants.GROUPREF_EXISTS:
        return [a for a in arg[1:] if a is not None]
    if op is _sre_constants.ATOMIC_GROUP:
        return [arg]
    return []


def _has_repeat_or_branch(pattern: Any) -> bool:
    for op, arg in _items(pattern):
        if op in _REPEATS and arg[1] > 1:
            return True
        if op is _sre_constants.BRANCH:
            return True
        if any(_has_repeat_or_branch(child) for child in _children(op, arg)):
            return True
    return False


def _nested_repeat(pattern: Any) -> bool:
    for op, arg in _items(pattern):
        if op in _REPEATS and arg[1] > 1 and _has_repeat_or_branch(arg[2]):
            return True
        if any(_nested_repeat(child) for child in _children(op, arg)):
            return True
    return False


def _open_repeats(pattern: Any) -> int:
    count = 0
    for op, arg in _items(pattern):
        if op in _REPEATS and arg[1] > _OPEN_REPEAT_MIN:
            count += 1
        count += sum(_open_repeats(child) for child in _children(op, arg))
    return count


def _backtracking(pattern: Any) -> int:
    """The product of the choices of every variable-width repetition (see the docstring)."""
    product = 1
    for op, arg in _items(pattern):
        if op in _REPEATS and arg[0] != arg[1]:
            open_ended = arg[1] > _OPEN_REPEAT_MIN
            product *= MAX_MATCHED_IDENTITY if open_ended else arg[1] - arg[0] + 1
        for child in _children(op, arg):
            product *= _backtracking(child)
        if product > MAX_BACKTRACKING:
            return product
    return product


class _MatchTimeout(Exception):
    pass


def _raise_timeout(signum: int, frame: Any) -> None:
    raise _MatchTimeout


def identity_matches(compiled: re.Pattern[str], identity: str) -> bool:
    """Whether ``identity`` matches a pattern from :func:`compile_identity_regexp` (never for
    one longer than :data:`MAX_MATCHED_IDENTITY`, nor one whose matching takes longer than
    :data:`MATCH_SECONDS`: a pattern that passed the structural checks can still backtrack for
    seconds on a crafted identity, and a timed-out match is a failed one).

    The time bound is a real-time interval timer (the regex engine checks for signals as it
    goes), so it applies in the main thread; elsewhere only the structural checks bound it. A
    timer already running (a test timeout, say) is restored with what is left of it."""
    if len(identity) > MAX_MATCHED_IDENTITY:
        return False
    if threading.current_thread() is not threading.main_thread():
        return compiled.fullmatch(identity) is not None
    outer_handler = signal.signal(signal.SIGALRM, _raise_timeout)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, MATCH_SECONDS)
    started = time.monotonic()
    try:
        return compiled.fullmatch(identity) is not None
    except _MatchTimeout:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_delay:
            left = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), outer_interval)


def compile_identity_regexp(pattern: str) -> re.Pattern[str]:
    """The compiled, structurally anchored form of ``pattern`` (use ``fullmatch``); raises
    :class:`IdentityRegexpError` saying what is wrong with it."""
    if len(pattern) > MAX_IDENTITY_REGEXP:
        raise IdentityRegexpError(f"too long: longer than {MAX_IDENTITY_REGEXP} characters")
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        raise IdentityRegexpError(
            "not anchored: it must be anchored as ^…$ so that it matches the whole certificate "
            "identity"
        )
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error as e:
        raise IdentityRegexpError(f"invalid: {e}") from None
    except RecursionError:
        raise IdentityRegexpError("nested too deeply") from None
    items = _items(parsed)
    if any(op is _sre_constants.BRANCH for op, _ in items):
        raise IdentityRegexpError(
            "not anchored as a whole: the ^ and $ do not anchor the whole pattern, as an "
            "alternation (|) at the top level leaves each side anchored at one end only; write "
            "^(?:a|b)$"
        )
    if _nested_repeat(parsed):
        raise IdentityRegexpError(
            "unsafe: a repeated group contains another repetition or an alternation (like (a+)+ or "
            "(a|b)*); matching such a pattern can take exponential time"
        )
    if _open_repeats(parsed) > MAX_OPEN_REPEATS:
        raise IdentityRegexpError(
            f"unsafe: more than {MAX_OPEN_REPEATS} open-ended repetitions (*, +, {{n,}}); matching such "
            "a pattern can take polynomial time in the identity's length"
        )
    if _backtracking(parsed) > MAX_BACKTRACKING:
        raise IdentityRegexpError(
            "unsafe: too many variable-width repetitions ({m,n}, ?, *, +) together; matching "
            "such a pattern can take seconds on a hostile identity — use fewer, or fixed counts"
        )
    return re.compile(f"^(?:{pattern})$")
