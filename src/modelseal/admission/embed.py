"""Embedding untrusted strings in exported admission policies (shared by the renderers of
:mod:`modelseal.admission`).

Every string taken from the policy file or the command line reaches an exported document only
as a YAML string value (the YAML dumper quotes it) and, inside an expression (JMESPath, CEL, a
regular expression), only through one of the quoting helpers below, which escape every
character outside a small safe set: whatever the value holds (quotes, backticks, braces,
backslashes, newlines), it stays one literal and cannot end the literal or the expression.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from modelseal.errors import ConfigError

if TYPE_CHECKING:
    from modelseal.admission import ExportSpec

#: Characters left as they are inside a quoted literal; every other one is escaped.
_LITERAL_SAFE: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:/+=,~ "
)
#: Longest string embedded from the policy file (identities, builder ids, repositories, keys).
MAX_EMBEDDED: Final = 8192
#: Longest image pattern.
MAX_PATTERN: Final = 255
_PATTERN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:/@*?"
)


def check_text(value: str, what: str) -> str:
    """``value`` if it may be embedded in an exported document: at most :data:`MAX_EMBEDDED`
    characters, no control characters (a newline in an identity is an attack, not a name) and
    no lone surrogates; ConfigError (exit 2) naming ``what`` otherwise."""
    if len(value) > MAX_EMBEDDED:
        raise ConfigError(f"{what} is longer than {MAX_EMBEDDED} characters.")
    for ch in value:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or 0xD800 <= o < 0xE000:
            raise ConfigError(
                f"{what} holds the control character U+{o:04X}; it cannot be exported."
            )
    return value


def check_image_pattern(pattern: str) -> str:
    """``pattern`` if it is an image-reference glob every format reads the same way: the
    characters of an image reference and the wildcards ``*`` and ``?`` only (no ``[``, ``{``
    or ``\\``, which some controllers' glob dialects give a meaning); ConfigError otherwise.

    Kyverno matches the glob against the whole reference as the pod names it, tag or digest
    included (``…/model:1.0``, ``…/model@sha256:…``), and ``*`` crosses ``/``. So the glob
    must end with ``*`` after a last path component that names no tag or digest: ``…/model``
    would match no reference at all, ``…/model:*`` no digest reference, and a pod naming the
    image by digest would not be checked."""
    if not pattern or len(pattern) > MAX_PATTERN or not set(pattern) <= _PATTERN_CHARS:
        raise ConfigError(
            f"--image-pattern {pattern!r}: expected an image reference glob of at most "
            f"{MAX_PATTERN} characters: letters, digits, '-._:/@' and the wildcards '*' and "
            "'?' (e.g. 'ghcr.io/org/*')."
        )
    last = pattern.rpartition("/")[2]
    if not pattern.endswith("*") or ":" in last or "@" in last:
        raise ConfigError(
            f"--image-pattern {pattern!r} would leave images unchecked: Kyverno matches it "
            "against the reference with its tag or digest (ghcr.io/org/model:1.0, "
            "ghcr.io/org/model@sha256:…), so a pattern without a trailing '*', or naming a tag "
            "or digest, misses the other forms.",
            hint="End the pattern with '*' after the repository name: 'ghcr.io/org/model*' "
            "(that repository, any tag or digest) or 'ghcr.io/org/*'.",
        )
    return pattern


def quote_jmespath(value: str) -> str:
    """``value`` as a JMESPath JSON literal (`` `"…"` ``) in which every character outside a
    small safe set is a ``\\uXXXX`` escape: no quote, backtick, backslash, brace, ``$``, ``@``
    or control character appears in it, so it can neither end the literal nor be taken for a
    Kyverno variable (``{{…}}``) or reference (``$(…)``)."""
    return "`" + '"' + _escape(value, json_style=True) + '"' + "`"


def quote_cel(value: str) -> str:
    """``value`` as a CEL double-quoted string literal, every character outside a small safe
    set escaped (``\\uXXXX``, or ``\\UXXXXXXXX`` beyond the Basic Multilingual Plane)."""
    return '"' + _escape(value, json_style=False) + '"'


def _escape(value: str, *, json_style: bool) -> str:
    out = []
    for ch in check_text(value, "a value"):
        o = ord(ch)
        if ch in _LITERAL_SAFE:
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        elif json_style:  # JSON spells a code point beyond U+FFFF as a surrogate pair
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def quote_re2(value: str) -> str:
    """``value`` as a regular expression matching exactly it, valid alike for RE2 (Go, the
    controllers) and Python: every ASCII punctuation character is backslash-escaped (both read
    ``\\`` before punctuation as that character), everything else stays literal."""
    return "".join(
        "\\" + ch if ch.isascii() and not ch.isalnum() and ch != " " else ch
        for ch in check_text(value, "a value")
    )


def glob_re2(pattern: str) -> str:
    """The anchored regular expression of an image glob (``*``: any run of characters,
    ``?``: one character), as Kyverno's wildcard matching reads it."""
    check_image_pattern(pattern)
    body = "".join(".*" if c == "*" else "." if c == "?" else quote_re2(c) for c in pattern)
    return f"^{body}$"


def re2_problem(pattern: str) -> str | None:
    """Why the identity regexp ``pattern`` (already accepted by modelseal) would not mean the
    same to a Go controller (RE2), or None: RE2 has no look-around, backreferences, atomic
    groups or possessive repetitions, and a controller that cannot compile the pattern either
    refuses every image or, worse, is configured to ignore the policy."""
    import importlib
    import re

    parser: Any = importlib.import_module("re._parser")
    constants: Any = importlib.import_module("re._constants")
    unsupported = {
        "ASSERT": "a look-ahead or look-behind",
        "ASSERT_NOT": "a negative look-ahead or look-behind",
        "GROUPREF": "a backreference",
        "GROUPREF_EXISTS": "a conditional group",
        "ATOMIC_GROUP": "an atomic group",
        "POSSESSIVE_REPEAT": "a possessive repetition",
    }
    if "\\Z" in pattern:
        return "\\Z (RE2 spells the end of text \\z)"
    try:
        parsed = parser.parse(pattern)
    except (re.error, RecursionError, ValueError, OverflowError):
        return "it does not parse"
    stack: list[Any] = [parsed]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > 100_000:
            return "it is too complex"
        if isinstance(node, (list, tuple)) or type(node).__name__ == "SubPattern":
            stack.extend(list(node))
            continue
        name = str(node)
        if name in unsupported and getattr(constants, name, None) is node:
            return unsupported[name]
    return None


def check_public_key_pem(pem: str) -> str:
    """The PEM public key ``pem`` normalised (``\\n`` line ends, one trailing newline) if it
    is one ``PUBLIC KEY`` block of base64 lines and nothing else; ConfigError otherwise (a key
    file is embedded whole in the exported document)."""
    import re

    text = pem.replace("\r\n", "\n").strip()
    if len(text) > MAX_EMBEDDED or not re.fullmatch(
        r"-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PUBLIC KEY-----", text
    ):
        raise ConfigError(
            "verify.public_key: expected one PEM 'PUBLIC KEY' block (as `modelseal keygen` or "
            "cosign writes it)."
        )
    return text + "\n"


def checked_regexp(pattern: str, controller: str) -> str:
    """``verify.identity_regexp`` as ``controller`` (which compiles it with Go's RE2) can
    read it; ConfigError (exit 2) for control characters or what RE2 lacks."""
    pattern = check_text(pattern, "verify.identity_regexp")
    problem = re2_problem(pattern)
    if problem is not None:
        raise ConfigError(
            f"verify.identity_regexp uses {problem}, which {controller}'s regular expressions "
            "(RE2) do not support; write it without."
        )
    return pattern


def keyless_identity(spec: ExportSpec, controller: str) -> dict[str, str]:
    """``{"issuer", "subject" | "subjectRegExp"}`` of a keyless signer, each value checked
    (:func:`check_text`, :func:`checked_regexp`); ConfigError when the spec names no keyless
    signer."""
    if spec.issuer is None or (spec.identity is None) == (spec.identity_regexp is None):
        raise ConfigError(
            "the verify section names no signer (public_key, or issuer with exactly one of "
            "identity and identity_regexp); an admission policy without one would admit any "
            "image."
        )
    identity = {"issuer": check_text(spec.issuer, "verify.issuer")}
    if spec.identity is not None:
        identity["subject"] = check_text(spec.identity, "verify.identity")
    else:
        identity["subjectRegExp"] = checked_regexp(spec.identity_regexp or "", controller)
    return identity
