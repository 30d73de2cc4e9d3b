"""Evaluating a Kyverno ClusterPolicy's ``verifyImages`` attestation conditions with the real
``jmespath`` package, the way Kyverno does once the attestations' signatures verified.

What Kyverno does (pkg/engine/internal/imageverifier.go, pkg/engine/variables/vars.go and
pkg/engine/jmespath/time.go of kyverno/kyverno), reproduced here:

* the statements of the attestation's ``type`` (its ``predicateType``) *signed by a signer the
  attestation's ``attestors`` accept* are selected (the test says who signed each statement:
  :data:`SIGNED_BY`); an attestation without attestors accepts any signer; none selected is a
  failure; **every** selected one must pass the conditions;
* for each, the statement's ``predicate`` is merged into the JSON context, and each condition's
  ``key`` and ``value`` go through variable substitution: a string that is exactly one
  ``{{ … }}`` variable becomes the (typed) result of that JMESPath query; a query that fails (an
  unknown function, a wrong argument type) fails the attestation;
* ``all`` conditions must all hold, ``any`` at least one; the ``Equals`` operator with a boolean
  key compares to a boolean value (the only operator the export uses).

Kyverno's custom JMESPath functions are not in the ``jmespath`` package: the ones the export
uses are implemented below, following Kyverno's Go code (``time.Parse(time.RFC3339, …)``,
``time.ParseDuration``, ``Time.Format(time.RFC3339)``, ``regexp.ReplaceAll``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath import functions

#: The key under which a test's statement names who signed it (removed before evaluation): a
#: signer is ``{"key": PEM}`` or ``{"issuer": …, "subject": …}`` (a Fulcio certificate's).
SIGNED_BY = "x-test-signed-by"

#: Kyverno's variable pattern (pkg/engine/variables/vars.go RegexVariables).
_VARIABLE = re.compile(r"(^|[^\\])(\{\{(?:\{[^{}]*\}|[^{}])*\}\})")
_GO_DURATION_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_rfc3339(text: str) -> datetime:
    """Go's ``time.Parse(time.RFC3339, text)``: a date, ``T``, a time with optional fraction,
    and ``Z`` or a ``±hh:mm`` offset; ValueError otherwise."""
    m = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})", text
    )
    if m is None:
        raise ValueError(f"cannot parse {text!r} as RFC3339")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_rfc3339(t: datetime) -> str:
    """Go's ``Time.Format(time.RFC3339)`` (whole seconds; ``Z`` for UTC)."""
    t = t.replace(microsecond=0)
    if t.utcoffset() == timedelta(0):
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.isoformat()


def parse_go_duration(text: str) -> timedelta:
    """Go's ``time.ParseDuration``: an optional sign and decimal numbers with units
    ``ns us µs ms s m h`` (``"-720h"``, ``"1h30m"``, ``"0"``)."""
    m = re.fullmatch(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+|[+-]?0", text)
    if m is None:
        raise ValueError(f"invalid duration {text!r}")
    sign = -1 if text.startswith("-") else 1
    total = sum(
        float(num) * _GO_DURATION_UNIT[unit]
        for num, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    )
    return timedelta(seconds=sign * total)


class KyvernoFunctions(functions.Functions):
    """The Kyverno JMESPath functions the export uses, with Kyverno's semantics. ``now`` is
    the time ``time_now_utc`` reports (the real clock unless a test sets it)."""

    now: datetime | None = None

    @functions.signature()
    def _func_time_now_utc(self) -> str:
        """``time_now_utc()``: the current UTC time, RFC 3339."""
        return format_rfc3339(self.now or datetime.now(UTC))

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_time_add(self, ts: str, duration: str) -> str:
        """``time_add(time, duration)``: ``time`` plus a Go duration, RFC 3339."""
        return format_rfc3339(parse_rfc3339(ts) + parse_go_duration(duration))

    @functions.signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_time_between(self, ts: str, start: str, end: str) -> bool:
        """``time_between(t, start, end)``: ``t.After(start) && t.Before(end)`` (strict)."""
        t = parse_rfc3339(ts)
        return parse_rfc3339(start) < t < parse_rfc3339(end)

    @functions.signature(
        {"types": ["string"]}, {"types": ["string", "number"]}, {"types": ["string", "number"]}
    )
    def _func_regex_replace_all(self, regex: str, src: Any, repl: Any) -> str:
        """``regex_replace_all(regex, src, repl)``: Go ``regexp.ReplaceAll``. Only the fixed
        patterns the export writes are accepted (their meaning is the same in Go and Python):
        a pattern from a policy file never reaches this function."""
        if regex != "/+$":
            raise ValueError(f"regex_replace_all: pattern {regex!r} is not one the export writes")
        # Go's '$' (no multi-line flag) is the end of the text; Python's \Z is.
        return re.sub(r"/+\Z", str(repl), str(src))


def query(expression: str, context: dict[str, Any], now: datetime | None = None) -> Any:
    """The value of the JMESPath ``expression`` over ``context`` with Kyverno's functions."""
    funcs = KyvernoFunctions()
    funcs.now = now
    return jmespath.search(expression, context, options=jmespath.Options(custom_functions=funcs))


def substitute(value: Any, context: dict[str, Any], now: datetime | None = None) -> Any:
    """Kyverno's substitution of one condition field: a string that is exactly one variable
    becomes the variable's typed value; other values are returned unchanged (the export writes
    no other form, and a string with text around a variable is refused here)."""
    if not isinstance(value, str):
        return value
    found = _VARIABLE.findall(value)
    if not found:
        return value
    if len(found) != 1 or found[0][1] != value:
        raise AssertionError(f"not a single variable: {value!r}")
    inner = value.replace("{{", "").replace("}}", "").strip()
    return query(inner, context, now)


def condition_holds(
    condition: dict[str, Any], context: dict[str, Any], now: datetime | None
) -> bool:
    """One condition, substituted and compared (``Equals`` only: the export writes no other)."""
    assert condition["operator"] == "Equals", condition
    key = substitute(condition["key"], context, now)
    value = substitute(condition["value"], context, now)
    return type(key) is type(value) and key == value


def signed(statement: dict[str, Any], signer: dict[str, str]) -> dict[str, Any]:
    """``statement`` marked as signed by ``signer`` (a copy)."""
    return {**statement, SIGNED_BY: dict(signer)}


def signer_of(statement: dict[str, Any]) -> dict[str, str]:
    """Who signed ``statement``: a test must say (AssertionError otherwise)."""
    signer = statement.get(SIGNED_BY)
    assert isinstance(signer, dict), "the test gives no signer for a statement"
    return signer


def _pem(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _matches(exact: str | None, pattern: str | None, value: str | None) -> bool:
    """Kyverno's exact-or-RE2 comparison of a certificate field (the export writes only fixed
    strings without wildcards, or regexps whose meaning Python's re shares)."""
    if value is None:
        return False
    if exact is not None:
        return value == exact
    return pattern is not None and re.search(pattern, value) is not None


def entry_accepts(entry: dict[str, Any], signer: dict[str, str]) -> bool:
    """Whether one ClusterPolicy attestor entry (``keys`` or ``keyless``) verifies a signature
    by ``signer``."""
    if "keys" in entry:
        return "key" in signer and _pem(signer["key"]) == _pem(entry["keys"]["publicKeys"])
    if "keyless" in entry:
        k = entry["keyless"]
        return _matches(k.get("issuer"), k.get("issuerRegExp"), signer.get("issuer")) and (
            _matches(k.get("subject"), k.get("subjectRegExp"), signer.get("subject"))
        )
    raise AssertionError(f"an attestor entry the emulator does not know: {sorted(entry)}")


def attestors_accept(attestors: list[dict[str, Any]], signer: dict[str, str]) -> bool:
    """Every attestor set accepts ``signer`` through at least ``count`` (default: all) of its
    entries; no attestors accept anyone."""
    for attestor in attestors:
        entries = attestor.get("entries", [])
        need = attestor.get("count", len(entries))
        if sum(entry_accepts(e, signer) for e in entries) < need:
            return False
    return True


def attestation_passes(
    attestation: dict[str, Any], statements: list[dict[str, Any]], now: datetime | None = None
) -> bool:
    """Whether Kyverno would pass the ``attestation`` of a verifyImages rule, given the in-toto
    statements attached to the image (any predicate type, each naming its signer)."""
    attestors = attestation.get("attestors", [])
    mine = [
        s
        for s in statements
        if s.get("predicateType") == attestation["type"]
        and attestors_accept(attestors, signer_of(s))
    ]
    if not mine:
        return False
    for statement in mine:
        predicate = statement.get("predicate")
        if not isinstance(predicate, dict):
            return False
        for block in attestation.get("conditions", []):
            try:
                all_ok = all(condition_holds(c, predicate, now) for c in block.get("all", []))
                any_list = block.get("any", [])
                any_ok = not any_list or any(condition_holds(c, predicate, now) for c in any_list)
            except (jmespath.exceptions.JMESPathError, ValueError, TypeError):
                return False  # Kyverno: a failed substitution fails the attestation check
            if not (all_ok and any_ok):
                return False
    return True


def admits(
    policy: dict[str, Any], statements: list[dict[str, Any]], now: datetime | None = None
) -> bool:
    """Whether every attestation of every verifyImages rule of the ClusterPolicy passes."""
    for rule in policy["spec"]["rules"]:
        for verify in rule.get("verifyImages", []):
            for attestation in verify.get("attestations", []):
                if not attestation_passes(attestation, statements, now):
                    return False
    return True
