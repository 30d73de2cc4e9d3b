"""What modelseal needs to know about a Dockerfile: its instructions with their original lines,
its base images and how each is pinned, and a copy that passes ``SOURCE_DATE_EPOCH`` to every
stage.

The splitting into instructions follows BuildKit's Dockerfile parser (parser directives, the
escape token, line continuations, comments and empty lines inside them, heredocs), so line
numbers agree with the ones BuildKit prints. Unknown instructions are kept, not refused:
BuildKit reports them, and :meth:`Injected.map_message` maps its line numbers back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Literal

from modelseal.errors import ConfigError
from modelseal.imagebuild.context import GO_SPACE
from modelseal.oci import DIGEST_RE

__all__ = [
    "BaseKind",
    "BaseRef",
    "Dockerfile",
    "FromLine",
    "Injected",
    "Instruction",
    "classify_bases",
    "inject_source_date_epoch",
    "parse_dockerfile",
]

_TOKEN_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z")
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC_WORD = re.compile(r"^([0-9]*)<<(-?)([^<]*)\Z")
_HEREDOC_COMMANDS = frozenset({"run", "copy", "add"})
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*\Z")

# Set by BuildKit from --platform and the builder, usable in FROM without an ARG. modelseal
# cannot know their values, so references to them are left as written.
_AUTOMATIC_ARGS = frozenset(
    {
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETARCH",
        "TARGETVARIANT",
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDARCH",
        "BUILDVARIANT",
    }
)

SOURCE_DATE_EPOCH_ARG = "ARG SOURCE_DATE_EPOCH"
"""The line :func:`inject_source_date_epoch` adds to each stage."""

BaseKind = Literal["scratch", "stage", "context", "digest", "unpinned"]


@dataclass(frozen=True)
class Instruction:
    """One logical instruction. ``args`` is everything after the keyword, flags included,
    continuations joined; heredoc bodies are not part of it."""

    keyword: str
    args: str
    start_line: int
    end_line: int


@dataclass(frozen=True)
class FromLine:
    """A ``FROM`` instruction.

    ``image`` has ``$VAR`` references replaced with global ARG values (build args win over
    defaults); references to the platform ARGs BuildKit sets itself are left as written.
    ``stage`` is the lower-cased ``AS`` name, ``platform`` the ``--platform`` value as
    written, ``index`` the stage's position (0-based).
    """

    line: int
    image: str
    raw_image: str
    stage: str | None
    platform: str | None
    index: int


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile. ``global_args`` maps each ARG declared before the first FROM to
    its default (expanded, without build args applied), or ``None`` when it has none;
    ``escape`` is the escape token in force (a backslash, or a backtick by directive)."""

    name: str
    instructions: tuple[Instruction, ...]
    froms: tuple[FromLine, ...]
    global_args: Mapping[str, str | None]
    escape: str = "\\"

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_args", MappingProxyType(dict(self.global_args)))


@dataclass(frozen=True)
class BaseRef:
    """How one stage's base is supplied.

    ``kind``: ``scratch``; ``stage`` (an earlier stage, ``ref`` its name); ``context`` (a
    named build context replaces it, ``ref`` is that context's key as given); ``digest``
    (pinned ``@sha256:``, ``ref`` the image); ``unpinned`` (a tag or nothing, ``ref`` the
    image).
    """

    from_line: FromLine
    kind: BaseKind
    ref: str


class _ShellError(ValueError):
    pass


class _Keep:
    """Marks a variable whose value only BuildKit knows: the reference stays as written."""


_KEEP = _Keep()
_Env = Mapping[str, "str | _Keep"]


def _strip_go(text: str) -> str:
    return text.strip(GO_SPACE)


# ---------------------------------------------------------------------------------------
# Shell-style word processing (BuildKit's shell.Lex), for FROM names and ARG defaults.
# ---------------------------------------------------------------------------------------


class _Lexer:
    def __init__(self, text: str, escape: str, env: _Env, *, keep_unset: bool = False) -> None:
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
            raise _ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quoted(self) -> str:
        self.pos += 1
        end = self.text.find("'", self.pos)
        if end < 0:
            raise _ShellError("unexpected end of statement while looking for matching single-quote")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise _ShellError(
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

    def lookup(self, name: str) -> str | _Keep | None:
        value = self.env.get(name)
        return _KEEP if value is None and self.keep_unset else value

    def dollar(self) -> str:
        start = self.pos
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if isinstance(value, _Keep):
                return self.text[start : self.pos]
            return value or ""
        self.pos += 1
        if not self.peek():
            raise _ShellError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise _ShellError("syntax error: bad substitution")
        name = self.name()
        value = self.lookup(name)
        op = self.next()
        if op == "}":
            if isinstance(value, _Keep):
                return self.text[start : self.pos]
            return value or ""
        if op == ":":
            op += self.next()
        if op not in (":-", ":+", ":?", "-", "+", "?", "#", "%"):
            if op.startswith(":"):
                raise _ShellError(f"unsupported modifier ({op[1:]}) in substitution")
            raise _ShellError("missing ':' in substitution")
        longest = op in ("#", "%") and self.peek() == op
        if longest:
            self.pos += 1
        word = self.word("}")
        if isinstance(value, _Keep):
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
            raise _ShellError(f"{name}: {word or 'is not allowed to be unset'}")
        if op == ":?" and value == "":
            raise _ShellError(f"{name}: {word or 'is not allowed to be empty'}")
        return value
    return _trim_pattern(value or "", word, prefix=op == "#", longest=longest)


def _trim_pattern(value: str, pattern: str, *, prefix: bool, longest: bool) -> str:
    try:
        regex = re.compile(_glob_to_regex(pattern), re.DOTALL)
    except re.error as e:
        raise _ShellError(f"bad pattern {pattern!r}: {e}") from None
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


def _expand(text: str, escape: str, env: _Env) -> str:
    return _Lexer(text, escape, env).word()


# ---------------------------------------------------------------------------------------
# Line-level parsing (BuildKit's parser.Parse).
# ---------------------------------------------------------------------------------------


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


_CONTINUATION = {e: _continuation_regex(e) for e in ("\\", "`")}


def _is_comment(line: str) -> bool:
    return line.lstrip(GO_SPACE).startswith("#")


def _split_flags(rest: str) -> tuple[list[str], str]:
    """BuildKit's extractBuilderFlags: leading ``--flag[=value]`` words, and what follows."""
    words: list[str] = []
    word: list[str] = []
    in_word = in_quote = False
    quote = ""
    blank_ok = False
    pos, n = 0, len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if not in_word and not in_quote:
            if pos == n:
                break
            if ch in GO_SPACE:
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or rest[pos + 1] != "-":
                return words, rest[pos:]
            in_word = True
        if pos == n:
            if "".join(word) != "--" and (blank_ok or word):
                words.append("".join(word))
            break
        if in_quote:
            if ch == quote or (ch == "\\" and pos + 1 == n):
                in_quote, in_word = False, True
            else:
                if ch == "\\":
                    pos += 1
                    ch = rest[pos]
                word.append(ch)
            pos += 1
            continue
        if ch in GO_SPACE:
            in_word = False
            if "".join(word) == "--":
                return words, rest[pos:]
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote, blank_ok, in_quote, in_word = ch, True, True, False
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                pos += 1
                continue
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    return words, ""


def _split_command(line: str) -> tuple[str, list[str], str, str]:
    """(lower-cased command, flags, arguments after the flags, everything after the command)."""
    parts = _TOKEN_WHITESPACE.split(_strip_go(line), maxsplit=1)
    command = parts[0].lower()
    if len(parts) < 2:
        return command, [], "", ""
    flags, args = _split_flags(parts[1])
    return command, flags, _strip_go(args), parts[1]


def _parse_words(rest: str, escape: str) -> list[str]:
    """BuildKit's parseWords (ARG, ENV): split on spaces outside quotes, keeping quotes and
    escapes for the shell processing that comes later."""
    words: list[str] = []
    word = ""
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos, n = 0, len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch in GO_SPACE:
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or word:
                words.append(word)
            break
        if phase == "word":
            if ch in GO_SPACE:
                phase = "spaces"
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            word += ch
            pos += 1
            ch = rest[pos]
        word += ch
        pos += 1
    return words


def _is_json_array(args: str) -> bool:
    text = args.lstrip(GO_SPACE)
    if not text.startswith("["):
        return False
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, list)


def _can_contain_heredoc(command: str, args: str) -> bool:
    if command == "onbuild":
        command, _, args, _ = _split_command(args)
    return command in _HEREDOC_COMMANDS and not _is_json_array(args)


def _raw_words(line: str) -> list[str]:
    """Words as BuildKit's heredoc detection sees them (quotes and escapes kept); an
    unterminated quote yields no words, as the lexer's error does there."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n and line[end] != ch:
                end += 2 if ch == '"' and line[end] == "\\" else 1
            if end >= n:
                return []
            word.append(line[i : end + 1])
            in_word = True
            i = end + 1
            continue
        if ch == "\\":
            word.append(line[i : i + 2])
            in_word = True
            i += 2
            continue
        if ch in GO_SPACE:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    return words


def _heredoc_name(rest: str) -> str | None:
    """The terminator of ``<<rest``: quotes and escapes removed; ``None`` unless one word."""
    try:
        lexer = _Lexer(rest, "\\", {}, keep_unset=True)
        names: list[str] = []
        current: list[str] = []
        pending = False
        while lexer.pos < len(rest):
            ch = lexer.peek()
            if ch in GO_SPACE:
                lexer.pos += 1
                if pending:
                    names.append("".join(current))
                    current, pending = [], False
                continue
            pending = True
            if ch == "'":
                current.append(lexer.single_quoted())
            elif ch == '"':
                current.append(lexer.double_quoted())
            else:
                lexer.pos += 1
                if ch == "\\" and lexer.pos < len(rest):
                    ch = lexer.next()
                current.append(ch)
        if pending:
            names.append("".join(current))
    except _ShellError:
        return None
    return names[0] if len(names) == 1 else None


def _heredocs(line: str) -> list[tuple[str, bool]]:
    """(terminator, strip leading tabs) for each heredoc the instruction opens, in order."""
    docs: list[tuple[str, bool]] = []
    for word in _raw_words(line):
        match = _HEREDOC_WORD.match(word)
        if match is None or not match.group(3):
            continue
        name = _heredoc_name(match.group(3))
        if name is not None:
            docs.append((name, match.group(2) == "-"))
    return docs


@dataclass(frozen=True)
class _Logical:
    command: str
    flags: tuple[str, ...]
    args: str
    rest: str
    start: int
    end: int


class _Directives:
    def __init__(self, name: str) -> None:
        self.name = name
        self.escape = "\\"
        self.done = False
        self.seen: set[str] = set()

    def feed(self, line: str, number: int) -> None:
        if self.done:
            return
        if not line.startswith("#"):
            self.done = True
            return
        match = _DIRECTIVE.match(line[1:].lstrip(GO_SPACE))
        if match is None or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.done = True
            return
        key, value = match.group(1).lower(), match.group(2)
        if key in self.seen:
            raise ConfigError(f"{self.name}:{number}: only one {key} parser directive can be used.")
        self.seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise ConfigError(
                    f"{self.name}:{number}: invalid escape token {value!r}; "
                    "the escape directive takes ` or \\."
                )
            self.escape = value


def _logical_lines(text: str, name: str) -> tuple[list[_Logical], str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    directives = _Directives(name)
    out: list[_Logical] = []
    i, n = 0, len(lines)
    while i < n:
        raw = lines[i].rstrip("\r\n").lstrip(GO_SPACE)
        i += 1
        directives.feed(raw, i)
        continuation = _CONTINUATION[directives.escape]
        start = i
        token = "" if _is_comment(raw) else raw
        buf, ended = _trim_continuation(token, continuation)
        if ended and buf == "":
            continue
        parts = [buf]
        while not ended and i < n:
            raw = lines[i].rstrip("\r\n")
            i += 1
            directives.feed(raw, i)
            if _is_comment(raw) or raw.lstrip(GO_SPACE) == "":
                continue
            piece, ended = _trim_continuation(raw, continuation)
            parts.append(piece)
        line = "".join(parts)
        command, flags, args, rest = _split_command(line)
        if "<<" in line and _can_contain_heredoc(command, args):
            for terminator, chomp in _heredocs(line):
                while i < n:
                    body = lines[i].rstrip("\r\n")
                    i += 1
                    if (body.lstrip("\t") if chomp else body) == terminator:
                        break
        out.append(_Logical(command, tuple(flags), args, rest, start, i))
    return out, directives.escape


def _trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    match = continuation.search(line)
    if match is None:
        return line, True
    return line[: match.start()] + (match.group(1) or ""), False


# ---------------------------------------------------------------------------------------
# Dockerfile semantics.
# ---------------------------------------------------------------------------------------


def _arg_pairs(args: str, escape: str) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for word in _parse_words(args, escape):
        key, sep, value = word.partition("=")
        pairs.append((key, value if sep else None))
    return pairs


_NO_ARGS: Mapping[str, str] = MappingProxyType({})


def parse_dockerfile(text: str, name: str, build_args: Mapping[str, str] = _NO_ARGS) -> Dockerfile:
    """Split ``text`` into instructions and describe its stages.

    ``name`` appears in error messages. ``build_args`` override the defaults of global ARGs
    (only of declared ones, as in BuildKit) when expanding FROM names. Raises
    :class:`ConfigError` when there is no FROM, a FROM cannot be read, a parser directive
    is invalid, or a variable expansion fails.
    """
    logical, escape = _logical_lines(text, name)
    instructions = tuple(
        Instruction(item.command.upper(), _strip_go(item.rest), item.start, item.end)
        for item in logical
    )
    first_from = next((k for k, item in enumerate(logical) if item.command == "from"), None)
    if first_from is None:
        raise ConfigError(f"{name}: no FROM instruction; a Dockerfile must start a stage.")

    defaults: dict[str, str | _Keep] = dict.fromkeys(_AUTOMATIC_ARGS, _KEEP)
    effective: dict[str, str | _Keep] = dict(defaults)
    global_args: dict[str, str | None] = {}
    for item in logical[:first_from]:
        if item.command != "arg":
            continue
        for key, raw in _arg_pairs(item.args, escape):
            default = None if raw is None else _expand_at(raw, escape, defaults, name, item)
            if default is not None:
                defaults[key] = default
                global_args[key] = default
            else:
                # A bare re-declaration keeps the value an earlier one gave.
                global_args.setdefault(key, None)
            if key in build_args:
                effective[key] = build_args[key]
            elif raw is not None:
                effective[key] = _expand_at(raw, escape, effective, name, item)

    froms: list[FromLine] = []
    for item in logical[first_from:]:
        if item.command == "from":
            froms.append(_from_line(item, len(froms), escape, effective, name))
    return Dockerfile(name, instructions, tuple(froms), global_args, escape)


def _expand_at(raw: str, escape: str, env: _Env, name: str, item: _Logical) -> str:
    try:
        return _expand(raw, escape, env)
    except _ShellError as e:
        raise ConfigError(f"{name}:{item.start}: cannot expand {raw!r}: {e}.") from None


def _from_line(item: _Logical, index: int, escape: str, env: _Env, name: str) -> FromLine:
    args = _TOKEN_WHITESPACE.split(item.args) if item.args else []
    stage: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        stage = args[2].lower()
        if not _STAGE_NAME.match(stage):
            raise ConfigError(
                f"{name}:{item.start}: invalid name for build stage: {args[2]!r}; a name "
                "starts with a letter and holds only letters, digits, '-', '_' and '.'."
            )
    elif len(args) != 1:
        raise ConfigError(
            f"{name}:{item.start}: FROM requires either one or three arguments "
            "(FROM image [AS name])."
        )
    raw_image = args[0]
    image = _expand_at(raw_image, escape, env, name, item)
    if not image:
        raise ConfigError(f"{name}:{item.start}: base name ({raw_image}) should not be blank.")
    platform = next(
        (f.partition("=")[2] for f in item.flags if f.partition("=")[0] == "--platform"), None
    )
    return FromLine(item.start, image, raw_image, stage, platform, index)


# ---------------------------------------------------------------------------------------
# Base classification.
# ---------------------------------------------------------------------------------------

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?\Z",
    re.ASCII,
)


def _familiar(name: str) -> str | None:
    """The key BuildKit looks a named context up by: ``reference.FamiliarString`` of the
    normalized name, ``:latest`` dropped. ``None`` if ``name`` is not a valid reference."""
    first, sep, remainder = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = "docker.io", name
    else:
        domain = first
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    if _REFERENCE.match(f"{domain}/{remainder}") is None:
        return None
    if domain == "docker.io":
        path_part = remainder.split("@")[0].split(":")[0]
        if path_part.startswith("library/") and "/" not in path_part[len("library/") :]:
            remainder = remainder[len("library/") :]
        familiar = remainder
    else:
        familiar = f"{domain}/{remainder}"
    return familiar.removesuffix(":latest")


def _context_key(name: str) -> str:
    familiar = _familiar(name)
    return familiar if familiar is not None else name


def classify_bases(df: Dockerfile, named_contexts: Mapping[str, str]) -> tuple[BaseRef, ...]:
    """Classify each stage's base the way BuildKit resolves it, in this order: a named
    context called like the stage (``AS name``) replaces the whole stage; an earlier stage;
    ``scratch``; a named context called like the image (names compared after Docker's
    normalization, so ``python:latest``, ``python`` and ``docker.io/library/python`` are one);
    a ``@sha256:`` digest; anything else is unpinned."""
    contexts: dict[str, str] = {}
    for key in named_contexts:
        contexts.setdefault(_context_key(key), key)
    stages: set[str] = set()
    out: list[BaseRef] = []
    for fl in df.froms:
        out.append(_classify(fl, stages, contexts))
        if fl.stage is not None:
            stages.add(fl.stage)
    return tuple(out)


def _classify(fl: FromLine, stages: set[str], contexts: Mapping[str, str]) -> BaseRef:
    reserved = ("scratch", "context")
    if fl.stage is not None and fl.stage not in reserved:
        key = contexts.get(_context_key(fl.stage))
        if key is not None:
            return BaseRef(fl, "context", key)
    if fl.image in stages:
        return BaseRef(fl, "stage", fl.image)
    if fl.image == "scratch":
        return BaseRef(fl, "scratch", "scratch")
    familiar = _familiar(fl.image)
    if familiar is not None and fl.image.lower() not in reserved:
        key = contexts.get(familiar)
        if key is not None:
            return BaseRef(fl, "context", key)
    _, at, digest = fl.image.rpartition("@")
    if at and DIGEST_RE.fullmatch(digest):
        return BaseRef(fl, "digest", fl.image)
    return BaseRef(fl, "unpinned", fl.image)


# ---------------------------------------------------------------------------------------
# SOURCE_DATE_EPOCH injection and mapping BuildKit's messages back.
# ---------------------------------------------------------------------------------------

_EXCERPT = re.compile(r"^ (?P<num> *\d+) \| (?P<mark>>>>|   ) (?P<text>.*)\Z", re.DOTALL)
_PARSE_ERROR = re.compile(r"(dockerfile parse error on line )(\d+)")
_LINE_IN_PARENS = re.compile(r"\(line (\d+)\)")


@dataclass(frozen=True)
class Injected:
    """A Dockerfile with ``ARG SOURCE_DATE_EPOCH`` added to each stage.

    ``line_map[n - 1]`` is the original line of line ``n`` of ``text`` (an added line maps to
    its stage's FROM). ``filename`` is the name BuildKit will print for ``text`` (the base
    name of the file it is written to); ``name`` is the original Dockerfile's.
    """

    text: str
    line_map: tuple[int, ...]
    name: str
    filename: str = "Dockerfile"
    added: frozenset[int] = frozenset()

    def original_line(self, new_line: int) -> int:
        """The original line number for ``new_line`` of :attr:`text`. BuildKit also shows
        the empty line after a final newline; lines past the end shift by the added count."""
        if 1 <= new_line <= len(self.line_map):
            return self.line_map[new_line - 1]
        if new_line > len(self.line_map):
            return new_line - len(self.added)
        return new_line

    def map_message(self, msg: str) -> str:
        """Rewrite the line numbers in BuildKit's output (one line or many) to the original
        Dockerfile's: ``Dockerfile:7`` headers (renamed to the original name), source
        excerpts `` 7 | >>> FOO``, ``dockerfile parse error on line 7`` and ``(line 7)``.
        Excerpt lines showing an added line are dropped."""
        header = re.compile(rf"(?<![\w.-])(/?){re.escape(self.filename)}:(\d+)\b")
        shown = PurePosixPath(self.name).name if self.name else self.filename
        out: list[str] = []
        for line in msg.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            ending = line[len(body) :]
            excerpt = _EXCERPT.match(body)
            if excerpt is not None:
                number = int(excerpt.group("num"))
                if number in self.added and excerpt.group("mark") != ">>>":
                    continue
                # BuildKit prints " %3d | %s %s".
                mapped = f"{self.original_line(number):3d}"
                out.append(f" {mapped} | {excerpt.group('mark')} {excerpt.group('text')}{ending}")
                continue
            body = header.sub(
                lambda m: (
                    (m.group(1) + self.filename if m.group(1) else shown)
                    + f":{self.original_line(int(m.group(2)))}"
                ),
                body,
            )
            body = _PARSE_ERROR.sub(
                lambda m: m.group(1) + str(self.original_line(int(m.group(2)))), body
            )
            body = _LINE_IN_PARENS.sub(
                lambda m: f"(line {self.original_line(int(m.group(1)))})", body
            )
            out.append(body + ending)
        return "".join(out)


def _declares_epoch(item: Instruction, escape: str) -> bool:
    return item.keyword == "ARG" and any(
        key == "SOURCE_DATE_EPOCH" for key, _ in _arg_pairs(item.args, escape)
    )


def inject_source_date_epoch(
    df: Dockerfile, text: str, *, filename: str = "Dockerfile"
) -> Injected:
    """Insert ``ARG SOURCE_DATE_EPOCH`` right after each FROM (after its last line), so that
    RUN steps of every stage see the build arg, unless the stage already declares it.

    ``text`` must be what ``df`` was parsed from; ``filename`` is the base name the result
    will be written under (BuildKit prints it in errors). A FROM that ends the file gets
    nothing: no step follows it.
    """
    lines = text.split("\n")
    real_count = len(lines) - 1 if lines[-1] == "" else len(lines)
    starts = [fl.line for fl in df.froms]
    insert_after: dict[int, int] = {}
    for k, fl in enumerate(df.froms):
        next_start = starts[k + 1] if k + 1 < len(starts) else None
        in_stage = [
            item
            for item in df.instructions
            if item.start_line > fl.line and (next_start is None or item.start_line < next_start)
        ]
        from_item = next(i for i in df.instructions if i.start_line == fl.line)
        if from_item.end_line >= real_count:
            continue
        if any(_declares_epoch(item, df.escape) for item in in_stage):
            continue
        insert_after[from_item.end_line] = fl.line

    new_lines: list[str] = []
    line_map: list[int] = []
    added: set[int] = set()
    for number, line in enumerate(lines, 1):
        new_lines.append(line)
        if number <= real_count:
            line_map.append(number)
        if number in insert_after:
            ending = "\r" if line.endswith("\r") else ""
            new_lines.append(SOURCE_DATE_EPOCH_ARG + ending)
            line_map.append(insert_after[number])
            added.add(len(line_map))
    return Injected("\n".join(new_lines), tuple(line_map), df.name, filename, frozenset(added))
