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
* it compiles.

And an identity longer than :data:`MAX_MATCHED_IDENTITY` characters never matches a regexp.

Matching is then ``fullmatch`` of ``^(?:pattern)$``: anchored whatever the pattern says.
"""

from __future__ import annotations

import importlib
import re
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
MAX_MATCHED_IDENTITY: Final = 2048
"""Longer identities are not matched against a regexp (they fail it): bounds matching time."""
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


def identity_matches(compiled: re.Pattern[str], identity: str) -> bool:
    """Whether ``identity`` matches a pattern from :func:`compile_identity_regexp` (never for
    one longer than :data:`MAX_MATCHED_IDENTITY`)."""
    return len(identity) <= MAX_MATCHED_IDENTITY and compiled.fullmatch(identity) is not None


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
    return re.compile(f"^(?:{pattern})$")
