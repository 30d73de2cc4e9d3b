"""Shell-style word processing of a Dockerfile, as BuildKit's ``shell.Lex`` does it: quotes, the
escape token and ``$VAR`` / ``${VAR:-word}``-style expansion, for FROM names, ARG defaults and
heredoc terminators (:mod:`modelseal.imagebuild.dockerfile`). A variable only BuildKit knows (:data:`KEEP`) is left
as written."""

from __future__ import annotations

import re
from collections.abc import Mapping


class ShellError(ValueError):
    """A word BuildKit would refuse to expand (unmatched quote, bad substitution, …)."""


class Keep:
    """Marks a variable whose value only BuildKit knows: the reference stays as written."""


KEEP = Keep()
Env = Mapping[str, "str | Keep"]


class Lexer:
    """A cursor over ``text`` reading shell-style words, quotes and ``$`` expansions;
    ``keep_unset`` leaves unknown variables as written."""

    def __init__(self, text: str, escape: str, env: Env, *, keep_unset: bool = False) -> None:
        self.text = text
        self.pos = 0
        self.escape = escape
        self.env = env
        self.keep_unset = keep_unset

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def word(self, stop: str = "") -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted())
            elif ch == "$":
                out.append(self.dollar())
            else:
                self.pos += 1
                if ch == self.escape:
                    if self.pos >= len(self.text):
                        break
                    ch = self.next()
                out.append(ch)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quoted(self) -> str:
        self.pos += 1
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ShellError("unexpected end of statement while looking for matching single-quote")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ShellError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape:
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch.isdecimal():
            while self.peek().isdecimal():
                self.pos += 1
            return self.text[start : self.pos]
        if ch and ch in "@*#?-$!":
            self.pos += 1
            return ch
        while (c := self.peek()) and (c.isalpha() or c.isdecimal() or c == "_"):
            self.pos += 1
        return self.text[start : self.pos]

    def lookup(self, name: str) -> str | Keep | None:
        value = self.env.get(name)
        return KEEP if value is None and self.keep_unset else value

    def dollar(self) -> str:
        start = self.pos
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if isinstance(value, Keep):
                return self.text[start : self.pos]
            return value or ""
        self.pos += 1
        if not self.peek():
            raise ShellError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        value = self.lookup(name)
        op = self.next()
        if op == "}":
            if isinstance(value, Keep):
                return self.text[start : self.pos]
            return value or ""
        if op == ":":
            op += self.next()
        if op not in (":-", ":+", ":?", "-", "+", "?", "#", "%"):
            if op.startswith(":"):
                raise ShellError(f"unsupported modifier ({op[1:]}) in substitution")
            raise ShellError("missing ':' in substitution")
        longest = op in ("#", "%") and self.peek() == op
        if longest:
            self.pos += 1
        word = self.word("}")
        if isinstance(value, Keep):
            return self.text[start : self.pos]
        return _apply_modifier(name, value, op, word, longest)


def _apply_modifier(name: str, value: str | None, op: str, word: str, longest: bool) -> str:
    if op == ":-":
        return value or word
    if op == "-":
        return word if value is None else value
    if op == ":+":
        return word if value else ""
    if op == "+":
        return "" if value is None else word
    if op in (":?", "?"):
        if value is None:
            raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
        if op == ":?" and value == "":
            raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
        return value
    return _trim_pattern(value or "", word, prefix=op == "#", longest=longest)


def _trim_pattern(value: str, pattern: str, *, prefix: bool, longest: bool) -> str:
    try:
        regex = re.compile(_glob_to_regex(pattern), re.DOTALL)
    except re.error as e:
        raise ShellError(f"bad pattern {pattern!r}: {e}") from None
    cuts = range(len(value) + 1)
    order = reversed(cuts) if longest else cuts
    for cut in order:
        if prefix and regex.fullmatch(value[:cut]):
            return value[cut:]
        if not prefix and regex.fullmatch(value[len(value) - cut :]):
            return value[: len(value) - cut]
    return value


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            members = body[1:] if negate else body
            if members:
                members = re.escape(members).replace("\\-", "-")
                out.append(f"[{'^' if negate else ''}{members}]")
                i = end
            else:
                out.append(re.escape(ch))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def expand(text: str, escape: str, env: Env) -> str:
    """``text`` as one word, its variables expanded from ``env``; :class:`ShellError` if it
    cannot be."""
    return Lexer(text, escape, env).word()
