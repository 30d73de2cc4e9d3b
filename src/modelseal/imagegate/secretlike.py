"""What looks like a secret in text the image carries in the clear (environment variables,
labels, the history's ``created_by``), and how such text is shown without it."""

from __future__ import annotations

import re

#: Names that say they hold a secret (matched on the upper-cased name's ``_``-separated words).
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|ACCESS_?TOKEN|AUTH_?TOKEN|PASSWORD|PASSWD|PASSPHRASE|SECRET|SECRET_?KEY|"
    r"API_?KEY|APIKEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?|CLIENT_?SECRET)(?:$|_)"
)
#: Names that only point at a secret (Docker's ``*_FILE`` convention) or describe one.
_POINTER_NAME = re.compile(r"_(?:FILE|PATH|DIR|NAME|USER|USERNAME|ID|URL_TEMPLATE)$")
#: Values in a well-known credential format.
_SECRET_VALUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("OpenAI-style key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}")),
    ("Stripe key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}")),
    ("private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    (
        "JSON web token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    ("URL with a password", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
)


def secret_kind(name: str, value: str) -> str:
    """Why ``name=value`` looks like a secret ("" if it does not): a value in a known format,
    or a secret-like name with a non-empty value."""
    for kind, pattern in _SECRET_VALUES:
        if pattern.search(value):
            return kind
    upper = name.upper().replace("-", "_").replace(".", "_")
    if value.strip() and _SECRET_NAME.search(upper) and not _POINTER_NAME.search(upper):
        return "secret-like name"
    return ""


#: ``NAME=value`` words (ENV, ARG and build arguments in ``created_by``).
_ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>\S*)")
#: BuildKit's ``RUN |N A=1 B=2 cmd``: the build arguments in force, N of them.
_RUN_ARGS = re.compile(r"^RUN \|(?P<n>\d+) ")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every value in a known credential format, every value of a secret-like
    ``NAME=value`` and the build arguments BuildKit lists after ``RUN |N`` replaced by
    :data:`REDACTED` (what a report may show of a history entry)."""
    m = _RUN_ARGS.match(text)
    if m is not None:
        words = text[m.end() :].split(" ")
        n = int(m.group("n"))
        text = f"RUN |{n} {REDACTED} " + " ".join(words[n:])
    for _, pattern in _SECRET_VALUES:
        text = pattern.sub(REDACTED, text)
    return _ASSIGNMENT.sub(
        lambda a: (
            f"{a.group('name')}={REDACTED}"
            if a.group("value") and secret_kind(a.group("name"), a.group("value"))
            else a.group(0)
        ),
        text,
    )
