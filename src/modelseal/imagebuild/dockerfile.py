"""What modelseal needs to know about a Dockerfile: its instructions with their original lines
and its stages' FROM lines (base image names expanded with the global ARGs).

The splitting into instructions follows BuildKit's Dockerfile parser (parser directives, the
escape token, line continuations, comments and empty lines inside them, heredocs), so line
numbers agree with the ones BuildKit prints. Unknown instructions are kept, not refused:
BuildKit reports them, and :meth:`~modelseal.imagebuild.source_date_epoch.Injected.map_message`
maps its line numbers back.

Built on this: :mod:`modelseal.imagebuild.bases` (how each base is pinned) and
:mod:`modelseal.imagebuild.source_date_epoch` (the copy that passes ``SOURCE_DATE_EPOCH`` to
every stage); the shell-style expansion of FROM names and ARG defaults is
:mod:`modelseal.imagebuild.dockerfile_shell`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from modelseal.errors import ConfigError
from modelseal.imagebuild.context import GO_SPACE
from modelseal.imagebuild.dockerfile_shell import KEEP, Env, Keep, Lexer, ShellError, expand

__all__ = [
    "Dockerfile",
    "FromLine",
    "Instruction",
    "arg_pairs",
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
    #: The ``# syntax=`` parser directive's value (a frontend image), when there is one.
    syntax: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_args", MappingProxyType(dict(self.global_args)))


def _strip_go(text: str) -> str:
    return text.strip(GO_SPACE)


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
        lexer = Lexer(rest, "\\", {}, keep_unset=True)
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
    except ShellError:
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
        self.syntax: str | None = None
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
        if key == "syntax":
            self.syntax = value


def _logical_lines(text: str, name: str) -> tuple[list[_Logical], _Directives]:
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
    return out, directives


def _trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    match = continuation.search(line)
    if match is None:
        return line, True
    return line[: match.start()] + (match.group(1) or ""), False


# ---------------------------------------------------------------------------------------
# Dockerfile semantics.
# ---------------------------------------------------------------------------------------


def arg_pairs(args: str, escape: str) -> list[tuple[str, str | None]]:
    """The ``NAME[=VALUE]`` words of an ARG instruction's arguments, ``None`` without ``=``."""
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
    logical, directives = _logical_lines(text, name)
    escape = directives.escape
    instructions = tuple(
        Instruction(item.command.upper(), _strip_go(item.rest), item.start, item.end)
        for item in logical
    )
    first_from = next((k for k, item in enumerate(logical) if item.command == "from"), None)
    if first_from is None:
        raise ConfigError(f"{name}: no FROM instruction; a Dockerfile must start a stage.")

    defaults: dict[str, str | Keep] = dict.fromkeys(_AUTOMATIC_ARGS, KEEP)
    effective: dict[str, str | Keep] = dict(defaults)
    global_args: dict[str, str | None] = {}
    for item in logical[:first_from]:
        if item.command != "arg":
            continue
        for key, raw in arg_pairs(item.args, escape):
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
    syntax = directives.syntax or _other_syntax(text)
    return Dockerfile(name, instructions, tuple(froms), global_args, escape, syntax)


_SYNTAX_ANYWHERE = re.compile(r"^\s*(?:#|//)\s*syntax\s*=\s*(\S.*?)\s*$", re.IGNORECASE)


def _other_syntax(text: str) -> str | None:
    """A frontend BuildKit's ``DetectSyntax`` would find where the ``#`` directive parser above
    does not: after a ``#!`` line, in a ``// syntax=`` comment, or in a JSON document. Any
    ``syntax=`` in the comment lines before the first instruction counts (more than BuildKit
    reads: a caller that must not miss a frontend errs this way)."""
    body = text.removeprefix("\ufeff")
    if body.lstrip().startswith("{"):
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and isinstance(value.get("syntax"), str):
            return str(value["syntax"])
    for line in body.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(("#", "//")):
            break
        m = _SYNTAX_ANYWHERE.match(stripped)
        if m:
            return m.group(1)
    return None


def _expand_at(raw: str, escape: str, env: Env, name: str, item: _Logical) -> str:
    try:
        return expand(raw, escape, env)
    except ShellError as e:
        raise ConfigError(f"{name}:{item.start}: cannot expand {raw!r}: {e}.") from None


def _from_line(item: _Logical, index: int, escape: str, env: Env, name: str) -> FromLine:
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
