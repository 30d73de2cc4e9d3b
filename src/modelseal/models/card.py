"""What a model's own metadata files say about it, for the ML-BOM: the model card's YAML front
matter (``README.md`` as the Hugging Face Hub writes it: ``license``, ``datasets``,
``pipeline_tag``) and ``config.json`` (``model_type``, ``architectures``).

Only what the files say, never a guess, and every file hostile: each is size-limited and read
without following links; the YAML is composed (never constructed) with ruamel.yaml's safe
loader, and a card with anchors/aliases, tags, too deep or too many nodes is not read at all;
every value kept must match a narrow pattern (hub ids, SPDX-like license names, Python class
names) and is bounded in length and count. A file that cannot be used leaves its fields out and
adds a *note* saying why — never an error: the card is description, not evidence the gate
judges.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from modelseal.bounded import KIB, MIB, size_text

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "MAX_CARD_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_FRONT_MATTER_BYTES",
    "ModelCard",
    "parse_card",
    "parse_config",
    "read_model_card",
]

CARD_FILE: Final = "README.md"
CONFIG_FILE: Final = "config.json"
#: Hub model cards are a few KiB to a few hundred KiB of prose.
MAX_CARD_BYTES: Final = 1 * MIB
#: The metadata block at the top of a card (model-index evaluation results make it long).
MAX_FRONT_MATTER_BYTES: Final = 256 * KIB
#: config.json (an id2label of ImageNet-21k is about 0.5 MiB).
MAX_CONFIG_BYTES: Final = 4 * MIB
#: YAML nodes composed from a front matter, and their nesting depth.
MAX_YAML_NODES: Final = 50_000
MAX_YAML_DEPTH: Final = 32
#: Values kept per list.
MAX_LICENSES: Final = 8
MAX_DATASETS: Final = 64
MAX_ARCHITECTURES: Final = 8

_STR_TAG: Final = "tag:yaml.org,2002:str"
_STANDARD_TAGS: Final = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                       "timestamp")
)  # fmt: skip

#: A license identifier or short name as cards write them (``apache-2.0``, ``llama3.1``,
#: ``openrail++``, ``CC-BY-NC-4.0``).
_LICENSE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,99}")
#: A hub repository id: ``NAME`` or ``ORG/NAME``.
_REPO_PART: Final = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_DATASET_RE: Final = re.compile(rf"{_REPO_PART}(?:/{_REPO_PART})?")
_TASK_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_MODEL_TYPE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ARCHITECTURE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class ModelCard:
    """The ML-BOM facts read from a model directory's card and config."""

    licenses: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    task: str | None = None
    model_type: str | None = None
    architectures: tuple[str, ...] = ()
    #: Why something was not read (file names and limits only, never the files' text).
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The non-empty fields, as ``models.json`` stores them."""
        data: dict[str, Any] = {
            "licenses": list(self.licenses),
            "datasets": list(self.datasets),
            "task": self.task,
            "model_type": self.model_type,
            "architectures": list(self.architectures),
            "notes": list(self.notes),
        }
        return {k: v for k, v in data.items() if v}

    def __bool__(self) -> bool:
        return bool(self.to_json())


class _Unreadable(Exception):
    """A card or config that is not used; the message is the note."""


def read_model_card(
    directory: Path, present: Collection[str], *, sha256: Mapping[str, str] | None = None
) -> ModelCard:
    """The card and config in ``directory`` — read only when their names are in ``present``
    (the files the models gate checked there, or that the lock pins and the lock check
    verified, so only verified files describe a model). ``sha256`` (name → hex digest the
    gate verified) is checked against the bytes read: a file swapped since the check records
    nothing."""
    card: Mapping[str, Any] = {}
    config: Mapping[str, Any] = {}
    notes: list[str] = []
    if CARD_FILE in present:
        try:
            card = parse_card(_read_verified(directory, CARD_FILE, MAX_CARD_BYTES, sha256))
        except _Unreadable as e:
            notes.append(f"{CARD_FILE}: {e}; its license and datasets are not recorded")
    if CONFIG_FILE in present:
        try:
            config = parse_config(_read_verified(directory, CONFIG_FILE, MAX_CONFIG_BYTES, sha256))
        except _Unreadable as e:
            notes.append(f"{CONFIG_FILE}: {e}; the architecture is not recorded")
    licenses = _strings(card.get("license"), _LICENSE_RE, MAX_LICENSES, "license", notes)
    if licenses == ["other"]:
        # The Hub's form for a license without an SPDX id: "license: other" + license_name.
        named = _strings(card.get("license_name"), _LICENSE_RE, 1, "license_name", notes)
        licenses = named or licenses
    datasets = _strings(card.get("datasets"), _DATASET_RE, MAX_DATASETS, "datasets", notes)
    tasks = _strings(card.get("pipeline_tag"), _TASK_RE, 1, "pipeline_tag", notes)
    model_types = _strings(config.get("model_type"), _MODEL_TYPE_RE, 1, "model_type", notes)
    archs = _strings(
        config.get("architectures"), _ARCHITECTURE_RE, MAX_ARCHITECTURES, "architectures", notes
    )
    return ModelCard(
        licenses=tuple(licenses),
        datasets=tuple(datasets),
        task=tasks[0] if tasks else None,
        model_type=model_types[0] if model_types else None,
        architectures=tuple(archs),
        notes=tuple(notes),
    )


def _read_verified(
    directory: Path, name: str, limit: int, sha256: Mapping[str, str] | None
) -> bytes:
    data = _read(directory / name, limit)
    want = (sha256 or {}).get(name)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise _Unreadable("not read (changed since the models gate verified it)")
    return data


def _read(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``, opened without following a link
    (the models gate's walk refused links above it; this refuses one swapped in since)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        raise _Unreadable("not read (not a regular file, or unreadable)") from None
    chunks: list[bytes] = []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unreadable("not read (not a regular file)")
        if st.st_size > limit:
            raise _Unreadable(f"not read (larger than {size_text(limit)})")
        left = limit + 1  # one byte more than allowed tells "at the limit" from "over"
        while left > 0:
            chunk = os.read(fd, min(left, MIB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        raise _Unreadable("not read (unreadable)") from None
    finally:
        os.close(fd)
    if left <= 0:  # st_size can lie (a file that grows while read)
        raise _Unreadable(f"not read (larger than {size_text(limit)})")
    return b"".join(chunks)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise _Unreadable(f"not UTF-8 (offset {e.start})") from None


def parse_config(data: bytes) -> Mapping[str, Any]:
    """``config.json``'s top-level object (raises _Unreadable with the note otherwise)."""
    try:
        value = json.loads(_text(data))
    except RecursionError:
        raise _Unreadable("nested too deeply") from None
    except ValueError:  # JSONDecodeError is a ValueError; so is an int of too many digits
        raise _Unreadable("not valid JSON") from None
    if not isinstance(value, dict):
        raise _Unreadable("not a JSON object")
    return value


def parse_card(data: bytes) -> Mapping[str, Any]:
    """The plain string values of a card's front matter by top-level key: a string, or a list
    whose items are strings or ``None`` (for any other value, left out unconstructed). Raises
    _Unreadable with the note when the card cannot be used at all."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    block = _front_matter(_text(data))
    try:
        root = YAML(typ="safe", pure=True).compose(block)
    except RecursionError:
        raise _Unreadable(f"the front matter nests deeper than {MAX_YAML_DEPTH} levels") from None
    except (YAMLError, ValueError):
        raise _Unreadable("the front matter is not valid YAML") from None
    if root is None:
        return {}
    if not isinstance(root, MappingNode):
        raise _Unreadable("the front matter is not a YAML mapping")
    _check_nodes(root)
    out: dict[str, Any] = {}
    for key, value in root.value:
        if not (isinstance(key, ScalarNode) and key.tag == _STR_TAG):
            continue
        if isinstance(value, ScalarNode) and value.tag == _STR_TAG:
            out.setdefault(str(key.value), str(value.value))
        elif isinstance(value, SequenceNode):
            out.setdefault(
                str(key.value),
                [
                    str(v.value) if isinstance(v, ScalarNode) and v.tag == _STR_TAG else None
                    for v in value.value
                ],
            )
        else:  # a number, a mapping: not a value kept, but noted as left out
            out.setdefault(str(key.value), [None])
    return out


def _front_matter(text: str) -> str:
    """The YAML between a first line ``---`` and the next ``---`` line, as the Hub writes it."""
    lines = text.split("\n", 1)
    if lines[0].rstrip("\r") != "---" or len(lines) < 2:
        raise _Unreadable("no YAML front matter (a first line '---')")
    rest = lines[1]
    end = re.search(r"^(?:---|\.\.\.)\r?$", rest[: MAX_FRONT_MATTER_BYTES + 8], re.MULTILINE)
    if end is None:
        raise _Unreadable(
            f"no end ('---') of the front matter within {size_text(MAX_FRONT_MATTER_BYTES)}"
        )
    return rest[: end.start()]


def _check_nodes(root: Any) -> None:
    """Refuse anchors/aliases (a few bytes of aliases are an exponential structure for whoever
    walks it later), tags that are not YAML's own, and graphs too big or too deep."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            raise _Unreadable("the front matter uses YAML aliases, which are not read")
        seen.add(id(node))
        count += 1
        if count > MAX_YAML_NODES:
            raise _Unreadable(f"the front matter has more than {MAX_YAML_NODES} YAML nodes")
        if depth > MAX_YAML_DEPTH:
            raise _Unreadable(f"the front matter nests deeper than {MAX_YAML_DEPTH} levels")
        if getattr(node, "anchor", None):
            raise _Unreadable("the front matter uses YAML anchors, which are not read")
        if str(node.tag) not in _STANDARD_TAGS:
            raise _Unreadable("the front matter uses YAML tags, which are not read")
        children: Iterator[Any]
        if isinstance(node, MappingNode):
            children = (n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            children = iter(node.value)
        else:
            continue
        stack.extend((child, depth + 1) for child in children)


def _strings(
    value: object, pattern: re.Pattern[str], limit: int, field: str, notes: list[str]
) -> list[str]:
    """``value`` (a string or a list of them) as the strings matching ``pattern``, in order,
    without repeats, at most ``limit``; what is left out is noted by field name only."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    dropped = 0
    for item in items:
        if isinstance(item, str) and pattern.fullmatch(item):
            if item not in out:
                out.append(item)
        else:
            dropped += 1
    if dropped:
        notes.append(f"{field}: {dropped} value(s) left out (not a plain identifier)")
    if len(out) > limit:
        notes.append(f"{field}: only the first {limit} of {len(out)} values are recorded")
        out = out[:limit]
    return out
