"""Read a policy file: YAML text → plain data with positions → validated :class:`Policy`.

Every problem is reported as one line ``<file>:<line>:<col>: <dotted.field.path>: <message>``
(1-based line and column), and all of them are raised together in one
:class:`PolicyFileError` (a :class:`~modelseal.errors.ConfigError`).

The YAML is parsed in two passes with ruamel.yaml's round-trip loader:

1. ``compose`` builds the node graph, which is checked for what a policy file must not contain:
   duplicate keys, keys that are not strings, anchors/aliases (they would let a small file
   expand into a huge one) and tags other than the standard ones. Scalars with a typed tag
   (int, float, bool, timestamp) are constructed one by one, so a malformed one (``2024-13-45``,
   ``!!int abc``) is reported at its position instead of failing the whole load.
2. ``load`` builds ``CommentedMap``/``CommentedSeq`` values whose ``lc`` line/column data gives
   the position of every key and value; they are converted to plain Python and validated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from modelseal.bounded import MAX_INPUT_BYTES, read_input, shown_path
from modelseal.errors import ConfigError
from modelseal.policy.model import PATTERN_MESSAGES, POLICY_VERSION, Policy
from modelseal.policy.sections import policy_model
from modelseal.untrusted import untrusted

__all__ = [
    "DEFAULTS_SOURCE",
    "MAX_POLICY_BYTES",
    "LoadedPolicy",
    "PolicyFileError",
    "default_policy",
    "load_policy",
    "load_policy_text",
    "parse_yaml",
]

DEFAULTS_SOURCE: Final = "<defaults>"
MAX_POLICY_BYTES: Final = MAX_INPUT_BYTES
"""A larger policy file is refused (exit 2) before it is parsed."""
MAX_PROBLEMS: Final = 50
"""At most this many problems are listed; the last line counts the rest."""
_MAX_QUOTED: Final = 64
"""Quoted keys and values are clipped to this many characters: a message shows where the problem
is, not the file's content (which, from a symlink or a wrong path, may be someone's secret)."""
"""``LoadedPolicy.source`` when no policy file was given."""

FieldPath = tuple[str | int, ...]
"""Where a value sits in the document: mapping keys and sequence indexes from the top."""

Position = tuple[int, int]
"""1-based (line, column)."""

_TOP: Final[Position] = (1, 1)
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_YAML_TAG: Final = "tag:yaml.org,2002:"
_STR_TAG: Final = _YAML_TAG + "str"
_MERGE_TAG: Final = _YAML_TAG + "merge"
_TYPED_SCALAR_TAGS: Final = frozenset(_YAML_TAG + t for t in ("int", "float", "bool", "timestamp"))
_STANDARD_TAGS: Final = _TYPED_SCALAR_TAGS | {_YAML_TAG + t for t in ("str", "null", "map", "seq")}

_TYPE_MESSAGES: Final[dict[str, str]] = {
    "bool_type": "expected a boolean (true or false)",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "dict_type": "expected a mapping (key: value pairs)",
    "model_type": "expected a mapping (key: value pairs)",
}


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and where it came from (recorded in reports and attestations)."""

    policy: Policy
    source: str
    """The policy file name as given, or ``"<defaults>"``."""
    sha256: str
    """Hex SHA-256 of the file's exact bytes (for the defaults: of their canonical JSON)."""
    ref: str | None = None
    """The git ref the file was read from (``--policy-ref``); None: the working tree."""
    commit: str | None = None
    """The commit ``ref`` resolved to."""


class PolicyFileError(ConfigError):
    """A policy file that cannot be used; ``problems`` holds one ``file:line:col: …`` per line."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        listed = list(problems)
        if len(listed) > MAX_PROBLEMS:
            more = len(listed) - (MAX_PROBLEMS - 1)
            listed = [*listed[: MAX_PROBLEMS - 1], f"{source}: … and {more} more problems"]
        self.problems = tuple(listed)
        super().__init__(f"invalid policy file {source}:\n" + "\n".join(self.problems))


def default_policy() -> LoadedPolicy:
    """The policy used when no policy file is given: every default, i.e. every check on."""
    policy = Policy(version=POLICY_VERSION)
    canonical = json.dumps(
        policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return LoadedPolicy(policy=policy, source=DEFAULTS_SOURCE, sha256=digest)


def load_policy(path: Path) -> LoadedPolicy:
    """Read and validate the policy file at ``path``.

    Raises :class:`~modelseal.errors.ConfigError` if the file cannot be read, and
    :class:`PolicyFileError` (a ``ConfigError``) listing every problem if it is invalid.
    """
    name = shown_path(path)
    data = read_input(path, what="policy file", limit=MAX_POLICY_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        problem = f"{name}:{line}:{col}: invalid YAML: not UTF-8 text (byte 0x{byte:02x})"
        raise PolicyFileError(name, [problem]) from None
    loaded = _load(text, name, hashlib.sha256(data).hexdigest())
    # Messages show the escaped, clipped name; the source stays the real path (relative paths
    # in the policy are resolved against it, and reports record it).
    return dataclasses.replace(loaded, source=str(path))


def load_policy_text(text: str, name: str) -> LoadedPolicy:
    """Validate policy YAML given as text; ``name`` is used in messages and as the source.

    ``sha256`` is the digest of the text's UTF-8 encoding.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, col = _offset_position(text, exc.start)
        problem = f"{name}:{line}:{col}: invalid YAML: not valid Unicode text (lone surrogate)"
        raise PolicyFileError(name, [problem]) from None
    return _load(text, name, hashlib.sha256(data).hexdigest())


def parse_yaml(text: str, name: str) -> tuple[object, dict[FieldPath, Position]]:
    """YAML text read under the policy file's rules (no anchors or aliases, standard tags only,
    no duplicate keys, nesting bounded by the interpreter's recursion limit), for other files
    users write in YAML: plain Python data and the (line, column) of every value by its path.

    Raises :class:`PolicyFileError`; its ``problems`` are ``name:line:col: …`` lines.
    """
    try:
        data, positions = _parse(text, name)
    except RecursionError:
        raise PolicyFileError(
            name, [f"{name}:1:1: invalid YAML: values are nested too deeply"]
        ) from None
    return data, {(): positions.root, **positions.values}


# --- loading ------------------------------------------------------------------------------


@dataclass
class _Positions:
    """Where each key and each value of the document is (1-based)."""

    root: Position = _TOP
    keys: dict[FieldPath, Position] = field(default_factory=dict)
    values: dict[FieldPath, Position] = field(default_factory=dict)

    def value_at(self, path: FieldPath) -> Position:
        """The value's position, or the nearest enclosing value's."""
        for end in range(len(path), 0, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return self.root

    def key_at(self, path: FieldPath) -> Position:
        return self.keys.get(path) or self.value_at(path)


def _load(text: str, name: str, digest: str) -> LoadedPolicy:
    try:
        data, positions = _parse(text, name)
    except RecursionError:
        problem = f"{name}:1:1: invalid YAML: values are nested too deeply"
        raise PolicyFileError(name, [problem]) from None
    try:
        policy = policy_model().model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError(name, _describe_all(exc.errors(), positions, name)) from None
    return LoadedPolicy(policy=policy, source=name, sha256=digest)


def _parse(text: str, name: str) -> tuple[object, _Positions]:
    """YAML text → (plain Python data, positions). Raises PolicyFileError."""
    try:
        root = YAML(typ="rt").compose(text)
    except YAMLError as exc:
        raise PolicyFileError(name, [_yaml_problem(exc, text, name)]) from None

    if root is None:  # empty, or only comments
        return {}, _Positions()

    checker = _NodeChecker(name)
    checker.check(root, ())
    if checker.problems:
        raise PolicyFileError(name, _sorted(checker.problems))

    try:
        document = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise PolicyFileError(name, [_yaml_problem(exc, text, name)]) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # Safety net: ruamel.yaml's constructors raise plain exceptions for some bad scalars.
        # The node check above constructs those scalars first, so this is not expected.
        raise PolicyFileError(name, [f"{name}:1:1: invalid YAML: {_one_line(exc)}"]) from None

    positions = _Positions(root=_mark_position(root.start_mark))
    if document is None:  # a document that is only "~" or "null"
        return {}, positions
    return _to_plain(document, (), positions), positions


class _NodeChecker:
    """Checks the composed node graph for what a policy file must not contain."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[tuple[Position, str]] = []
        self._seen: set[int] = set()
        self._constructor = YAML(typ="rt").constructor

    def _report(self, node: Node, path: FieldPath, message: str) -> None:
        position = _mark_position(node.start_mark)
        self.problems.append((position, _format(self.name, position, path, message)))

    def check(self, node: Node, path: FieldPath) -> None:
        if id(node) in self._seen:  # an alias: its anchor has been reported already
            return
        self._seen.add(id(node))
        if getattr(node, "anchor", None):
            self._report(
                node,
                path,
                "YAML anchors and aliases (&name, *name) are not supported in policy files; "
                "write the value out in full",
            )
        tag = str(node.tag)
        if tag not in _STANDARD_TAGS:
            self._report(
                node,
                path,
                f"unsupported YAML tag {_short_tag(tag)} (policy files use plain YAML values "
                "without tags)",
            )
            return
        if isinstance(node, MappingNode):
            self._check_mapping(node, path)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.check(item, (*path, index))
        elif isinstance(node, ScalarNode) and tag in _TYPED_SCALAR_TAGS:
            self._check_scalar(node, path, tag)

    def _check_mapping(self, node: MappingNode, path: FieldPath) -> None:
        first_line: dict[str, int] = {}
        for key, value in node.value:
            if not (isinstance(key, ScalarNode) and str(key.tag) == _STR_TAG):
                self._report(key, path, _bad_key_message(key))
                continue
            key_text = str(key.value)
            key_path = (*path, key_text)
            line = _mark_position(key.start_mark)[0]
            if key_text in first_line:
                self._report(
                    key, key_path, f"duplicate key (first defined at line {first_line[key_text]})"
                )
            else:
                first_line[key_text] = line
            self.check(key, key_path)
            self.check(value, key_path)

    def _check_scalar(self, node: ScalarNode, path: FieldPath, tag: str) -> None:
        try:
            self._constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            kind = tag.removeprefix(_YAML_TAG)
            text = _quote(str(node.value))
            detail = "" if isinstance(exc, KeyError) else f" ({_one_line(exc)})"
            self._report(node, path, f"invalid YAML: {text} is not a valid {kind}{detail}")


def _bad_key_message(key: Node) -> str:
    if isinstance(key, ScalarNode):
        if str(key.tag) == _MERGE_TAG:
            return "merge keys (<<) are not supported in policy files"
        return f"keys must be strings (write the key {_quote(str(key.value))} in quotes)"
    return "keys must be strings, not a mapping or a list"


def _short_tag(tag: str) -> str:
    if tag.startswith(_YAML_TAG):
        return "!!" + tag.removeprefix(_YAML_TAG)
    return tag


def _to_plain(value: object, path: FieldPath, positions: _Positions) -> object:
    """ruamel.yaml round-trip values → plain Python, recording every key/value position."""
    if isinstance(value, CommentedMap):
        plain: dict[str, object] = {}
        for key, item in value.items():
            key_text = str(key)  # the node check allowed string keys only
            item_path = (*path, key_text)
            key_position = _lc_position(value.lc.key, key)
            value_position = _lc_position(value.lc.value, key)
            if item is None and value_position[0] != key_position[0]:
                # "key:" with nothing after it: ruamel.yaml puts the (empty) value wherever the
                # next token starts, often the next line; the key is where the user looks.
                value_position = key_position
            positions.keys[item_path] = key_position
            positions.values[item_path] = value_position
            plain[key_text] = _to_plain(item, item_path, positions)
        return plain
    if isinstance(value, CommentedSeq):
        items: list[object] = []
        for index, item in enumerate(value):
            item_path = (*path, index)
            positions.values[item_path] = _lc_position(value.lc.item, index)
            items.append(_to_plain(item, item_path, positions))
        return items
    if isinstance(value, TaggedScalar):  # an explicit "!!str"
        return str(value.value)
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dt.datetime):
        return dt.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=value.tzinfo,
        )
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v, (*path, str(k)), positions) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_to_plain(v, (*path, i), positions) for i, v in enumerate(value)]
    return value  # None, or something pydantic will reject with a type error


def _lc_position(lookup: Any, key: object) -> Position:
    try:
        line, col = lookup(key)
    except (KeyError, IndexError, TypeError, ValueError):
        return _TOP
    return int(line) + 1, int(col) + 1


def _mark_position(mark: Any) -> Position:
    if mark is None:
        return _TOP
    return int(mark.line) + 1, int(mark.column) + 1


def _offset_position(text: str, offset: int) -> Position:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _yaml_problem(exc: YAMLError, text: str, name: str) -> str:
    """``<file>:<line>:<col>: invalid YAML: <problem>`` for any ruamel.yaml error."""
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.problem and exc.problem.startswith("but "):
            # e.g. "expected a single document in the stream" + "but found another document"
            problem = f"{exc.context} {exc.problem}"
        line, col = _mark_position(mark)
        return f"{name}:{line}:{col}: invalid YAML: {_printable(_one_line(problem))}"
    if isinstance(exc, ReaderError):
        line, col = _offset_position(text, int(exc.position))
        char = exc.character
        code = ord(char) if isinstance(char, str) and len(char) == 1 else char
        where = f"U+{code:04X}" if isinstance(code, int) else repr(char)
        reason = _printable(_one_line(exc.reason))
        return f"{name}:{line}:{col}: invalid YAML: unacceptable character {where}: {reason}"
    return f"{name}:1:1: invalid YAML: {_printable(_one_line(exc))}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --- validation errors --------------------------------------------------------------------


def _describe_all(errors: Iterable[ErrorDetails], positions: _Positions, name: str) -> list[str]:
    return _sorted(_describe(error, positions, name) for error in errors)


def _sorted(problems: Iterable[tuple[Position, str]]) -> list[str]:
    """Problems in file order (stable for problems at the same position)."""
    return [text for _, text in sorted(problems, key=lambda problem: problem[0])]


def _describe(error: ErrorDetails, positions: _Positions, name: str) -> tuple[Position, str]:
    path: FieldPath = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx") or {}

    if kind == "extra_forbidden" and path:
        position = positions.key_at(path)
        message = _unknown_key_message(path)
    elif kind == "missing" and path:
        parent = path[:-1]
        position = positions.value_at(parent) if parent else _TOP
        message = "required"
        if path == ("version",):
            message += f' (add "version: {POLICY_VERSION}" at the top of the file)'
    else:
        position = positions.value_at(path) if path else positions.root
        message = _value_message(kind, path, value, context, error["msg"])
    return position, _format(name, position, path, message)


def _unknown_key_message(path: FieldPath) -> str:
    model = _model_at(path[:-1])
    allowed = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    if allowed:
        return f"unknown key (allowed keys: {', '.join(allowed)})"
    return "unknown key"


def _value_message(
    kind: str, path: FieldPath, value: object, context: Mapping[str, Any], fallback: str
) -> str:
    if kind == "literal_error" and path == ("version",):
        if isinstance(value, int) and not isinstance(value, bool):
            return (
                f"unsupported policy version {value} "
                f"(this modelseal reads version {POLICY_VERSION})"
            )
        return f"expected the number {POLICY_VERSION}, got {_kind_of(value)}"
    if kind == "literal_error" and "expected" in context:
        return f"expected {context['expected']}"
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        return PATTERN_MESSAGES.get(pattern, f"does not match the pattern {pattern}")
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    return fallback


def _model_at(path: FieldPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (None if not a model)."""
    model: type[BaseModel] = policy_model()
    for segment in path:
        if not isinstance(segment, str) or segment not in model.model_fields:
            return None
        annotation = model.model_fields[segment].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _kind_of(value: object) -> str:
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dt.date):
        return "a date"
    return f"a {type(value).__name__}"


def _format(name: str, position: Position, path: FieldPath, message: str) -> str:
    line, col = position
    return f"{name}:{line}:{col}: {_dotted(path)}: {_printable(message)}"


def _dotted(path: FieldPath) -> str:
    """``("build", "platforms", 0)`` → ``build.platforms[0]``; ``()`` → ``top level``.

    Keys other than letters, digits, ``_`` and ``-`` are quoted: ``build."my key"``.
    """
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
            continue
        plain = _PLAIN_KEY.fullmatch(segment) and len(segment) <= _MAX_QUOTED
        key = segment if plain else _quote(segment)
        text += f".{key}" if text else key
    return text or "top level"


def _quote(text: str) -> str:
    """``text`` in double quotes, with ``"``, ``\\`` and unprintable characters escaped, clipped
    to :data:`_MAX_QUOTED` characters."""
    if len(text) > _MAX_QUOTED:
        text = text[: _MAX_QUOTED - 1] + "…"
    return '"' + _printable(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _printable(text: str) -> str:
    """One problem, one line: what is not printable escaped (:func:`modelseal.untrusted.untrusted`,
    without Rich markup escaping: the CLI escapes markup where it prints)."""
    return untrusted(text, markup=False)
