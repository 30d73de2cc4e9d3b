"""The one way text we did not write reaches a terminal or a CI log.

File names (of models, context files, policies), finding titles from advisory databases, tool
output, registry answers and error messages quoting any of them are hostile: a ``\\x1b]…``
escape rewrites the terminal, a ``\\r`` hides what came before it, a line starting with ``::``
(or ``##[``) is a GitHub workflow command the runner executes, and ``[/red]`` is Rich markup
that crashes the print. :func:`untrusted` makes such text inert.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["untrusted"]

#: A line the Actions runner would take for a workflow command (it strips leading whitespace
#: first): ``::name …::`` and the legacy ``##[name …]`` form.
_COMMAND_START: Final = re.compile(r"^([ \t]*)(:(?=:)|#(?=#\[))")


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8, kept by surrogateescape (file names from the file system).
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _line(text: str) -> str:
    if not text.isprintable():
        # isprintable is False for C0/C1 controls (ESC, CSI \x9b, \r, \n), DEL, bidi overrides
        # and other format characters, line/paragraph separators and non-space whitespace.
        text = "".join(c if c.isprintable() or c == "\t" else _escape_char(c) for c in text)
    # Only the first character changes, so the text still reads the same: "\x3a:error::…".
    return _COMMAND_START.sub(lambda m: m.group(1) + _escape_char(m.group(2)), text, count=1)


def untrusted(
    text: object, *, markup: bool = True, multiline: bool = False, limit: int | None = None
) -> str:
    """``text`` made safe to print: every unprintable character (``\\r``, ``\\n``, ``\\x1b``,
    ``\\x9b``, U+202E …) written as a ``\\x``/``\\u`` escape, a workflow command at the start
    of a line neutralised, and — with ``markup`` (for a Rich console) — Rich markup escaped.

    ``multiline`` keeps ``\\n`` as a line break (for a message made of lines) and treats each
    line as its own; ``limit`` clips the result to about that many characters.
    """
    raw = str(text)
    if limit is not None and len(raw) > limit:
        raw = raw[: max(limit - 1, 0)] + "…"
    lines = raw.split("\n") if multiline else [raw]
    safe = "\n".join(_line(part) for part in lines)
    if markup:
        from rich.markup import escape

        safe = escape(safe)
    return safe
