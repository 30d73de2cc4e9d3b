"""What looks like a secret in text the image carries in the clear (environment variables,
labels, the history's ``created_by``), and how such text is shown without it."""

from __future__ import annotations

import re

#: Names that say they hold a secret, matched on the upper-cased name (camelCase words split
#: by ``_``): a keyword that ends a word, glued to what comes before or not (``PGPASSWORD``,
#: ``MYSQL_PWD``, ``dbPassword``, ``githubToken``, ``HF_TOKEN_VALUE``), but not one that only
#: starts a longer word (``TOKENIZERS_PARALLELISM``, ``MAX_TOKENS``, ``SECRETARY``).
_SECRET_NAME = re.compile(
    r"(?:TOKEN|PASSWORD|PASSWD|PWD|PASSPHRASE|SECRET|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIALS?)(?:$|_)"
)
#: The shell's working directories, not passwords.
_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
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
    upper = _CAMEL.sub("_", name).upper().replace("-", "_").replace(".", "_")
    if upper in _NOT_SECRET_NAMES:
        return ""
    if value.strip() and _SECRET_NAME.search(upper) and not _POINTER_NAME.search(upper):
        return "secret-like name"
    return ""


#: ``NAME=value`` words (ENV, ARG and build arguments in ``created_by``).
_ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>\S*)")
#: BuildKit's ``RUN |N A=1 B=2 cmd`` and the classic builder's ``|N A=1 B=2 cmd``: the build
#: arguments in force, N of them, their values written unquoted.
_RUN_ARGS = re.compile(r"^(?P<run>RUN )?\|(?P<n>\d+) ")
#: Words after a shell in a command that may come before its ``-c`` (``/bin/bash -o pipefail
#: -c``).
_SHELL_OPTION_WORDS = 4
REDACTED = "[redacted]"


def _command_start(words: list[str], n: int) -> int | None:
    """The index of the word that starts the command after ``n`` build arguments: the last
    absolute path to a shell (``/bin/sh``, ``/bin/bash`` …) that a ``-c`` follows. A value may
    hold spaces, so the words are not counted; the last such shell is taken (a value holding
    one comes before the command), which may hide part of the command, never show a value.
    None when there is none (an exec-form ``RUN``)."""
    for i in range(len(words) - 1, n - 1, -1):
        w = words[i]
        if (
            w.startswith("/")
            and w.endswith("sh")
            and "-c" in words[i + 1 : i + 2 + _SHELL_OPTION_WORDS]
        ):
            return i
    return None


def redact(text: str) -> str:
    """``text`` with every value in a known credential format, every value of a secret-like
    ``NAME=value`` and the build arguments listed after ``RUN |N`` (BuildKit) or ``|N`` (the
    classic builder) replaced by :data:`REDACTED` (what a report may show of a history entry).
    Where the command after the build arguments cannot be told from them, everything after
    ``|N`` is redacted."""
    m = _RUN_ARGS.match(text)
    if m is not None and int(m.group("n")):
        n = int(m.group("n"))
        head = f"{m.group('run') or ''}|{n} {REDACTED}"
        words = text[m.end() :].split(" ")
        start = _command_start(words, n)
        text = head if start is None else f"{head} " + " ".join(words[start:])
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
