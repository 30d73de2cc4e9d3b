"""The policy reference in Markdown, generated from the policy's JSON Schema.

Nothing here knows which sections the policy has: every table comes from walking
:func:`~modelseal.policy.schema.policy_json_schema` — nested models (``$ref``), optional ones
(``anyOf`` with ``null``), lists of them (``vulnerabilities.ignore[]``) and mappings of them —
so a section added to :class:`~modelseal.policy.model.Policy` shows up without touching this
module. README.md carries the reference between two markers; a test checks it is current.

Usage::

    python -m modelseal.policy.reference                    # print the reference
    python -m modelseal.policy.reference --write README.md  # replace the block between markers
    python -m modelseal.policy.reference --check README.md  # exit 1 when the block is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from modelseal import fsio
from modelseal.policy.schema import policy_json_schema

__all__ = [
    "END_MARKER",
    "START_MARKER",
    "ReferenceBlockError",
    "readme_block",
    "render_reference",
    "replace_block",
]

START_MARKER: Final = "<!-- policy-reference:start -->"
END_MARKER: Final = "<!-- policy-reference:end -->"

_REF_PREFIX: Final = "#/$defs/"
_GENERATED: Final = (
    "<!-- Generated from the policy's JSON Schema by `python -m modelseal.policy.reference` "
    "(`make docs`); do not edit by hand. -->"
)
_TYPE_NAMES: Final = {
    "boolean": "boolean",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "object": "mapping",
    "null": "null",
}

Schema = Mapping[str, Any]


class ReferenceBlockError(ValueError):
    """A document does not hold exactly one well-formed pair of reference markers."""


@dataclass(frozen=True)
class _Section:
    """One table: an object schema and the key path that leads to it."""

    path: tuple[str, ...]
    schema: Schema


def render_reference(*, heading_level: int = 3, schema: Schema | None = None) -> str:
    """Every section of the policy as Markdown: a heading, the section's description and a table
    (key, type, default, description), parents before their nested sections.

    ``schema`` defaults to the policy's; another JSON Schema of the same shape (pydantic's
    ``$defs``/``$ref``) renders the same way."""
    if schema is None:
        schema = policy_json_schema()
    defs: Schema = schema.get("$defs", {})
    hashes = "#" * heading_level
    lines: list[str] = []
    for section in _sections(schema, defs):
        heading = f"`{'.'.join(section.path)}`" if section.path else "Top level"
        lines += [f"{hashes} {heading}", ""]
        if section.schema.get("description"):
            lines += [_text(section.schema["description"]), ""]
        lines += ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
        required = set(section.schema.get("required", []))
        for key, prop in section.schema.get("properties", {}).items():
            row = [
                f"`{'.'.join((*section.path, key))}`",
                _type(prop, defs),
                "required" if key in required else _default(prop, defs),
                _text(prop.get("description", "")),
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_block() -> str:
    """What README.md holds between the markers (the markers excluded)."""
    return f"{_GENERATED}\n\n{render_reference(heading_level=3)}"


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the start and end markers replaced by ``block``."""
    if text.count(START_MARKER) != 1 or text.count(END_MARKER) != 1:
        raise ReferenceBlockError(f"expected exactly one {START_MARKER} and one {END_MARKER} line")
    head, _, rest = text.partition(START_MARKER)
    _, _, tail = rest.partition(END_MARKER)
    if END_MARKER in head:
        raise ReferenceBlockError(f"{END_MARKER} comes before {START_MARKER}")
    return f"{head}{START_MARKER}\n{block.rstrip()}\n{END_MARKER}{tail}"


def _sections(schema: Schema, defs: Schema) -> list[_Section]:
    found: list[_Section] = []

    def visit(section: Schema, path: tuple[str, ...], seen: frozenset[str]) -> None:
        found.append(_Section(path, section))
        for key, prop in section.get("properties", {}).items():
            for sub_path, name, sub in _objects(prop, (*path, key), defs):
                # A model that contains itself would recurse forever; its table is shown once.
                if name not in seen:
                    visit(sub, sub_path, seen | {name})

    visit(schema, (), frozenset({str(schema.get("title", ""))}))
    return found


def _objects(
    prop: Schema, path: tuple[str, ...], defs: Schema
) -> Iterator[tuple[tuple[str, ...], str, Schema]]:
    """The object schemas (with properties) a property holds, each with the key path it is
    documented under: ``a.b`` for a nested or optional section, ``a.b[]`` for a list of them,
    ``a.b.<name>`` for a mapping of them. Yields (path, schema name, schema)."""
    target, name = _deref(prop, defs)
    if target.get("properties"):
        yield path, name, target
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for option in target.get(key, []):
            yield from _objects(option, path, defs)
    items = target.get("items")
    if isinstance(items, Mapping):
        yield from _objects(items, (*path[:-1], f"{path[-1]}[]"), defs)
    values = target.get("additionalProperties")
    if isinstance(values, Mapping):
        yield from _objects(values, (*path, "<name>"), defs)


def _deref(prop: Schema, defs: Schema) -> tuple[Schema, str]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        name = ref.removeprefix(_REF_PREFIX)
        target = defs.get(name)
        if isinstance(target, Mapping):
            return target, name
    return prop, str(prop.get("title", ""))


def _type(prop: Schema, defs: Schema) -> str:
    target, _ = _deref(prop, defs)
    if "const" in target:
        return f"`{json.dumps(target['const'])}`"
    if "enum" in target:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in target["enum"])
    if target.get("properties"):
        return "mapping"
    for key in ("anyOf", "oneOf"):
        if key in target:
            return " or ".join(_type(option, defs) for option in target[key])
    if "allOf" in target and len(target["allOf"]) == 1:
        return _type(target["allOf"][0], defs)
    kind = target.get("type")
    if kind == "array":
        items = target.get("items")
        return f"list of {_type(items, defs)}" if isinstance(items, Mapping) else "list"
    if kind == "object":
        values = target.get("additionalProperties")
        if isinstance(values, Mapping):
            return f"mapping of string to {_type(values, defs)}"
        return "mapping"
    text = _TYPE_NAMES.get(str(kind), str(kind)) if kind else "any"
    if "format" in target:
        text += f" ({target['format']})"
    if "pattern" in target:
        text += f" matching `{target['pattern']}`"
    return text + _bounds(target)


def _bounds(target: Schema) -> str:
    low = target.get("minimum", target.get("exclusiveMinimum"))
    high = target.get("maximum", target.get("exclusiveMaximum"))
    low_op = "≥" if "minimum" in target else ">"
    high_op = "≤" if "maximum" in target else "<"
    parts = []
    if low is not None:
        parts.append(f"{low_op} {low}")
    if high is not None:
        parts.append(f"{high_op} {high}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(prop: Schema, defs: Schema) -> str:
    if "default" not in prop:
        return ""
    default = prop["default"]
    if isinstance(default, dict) and default and any(True for _ in _objects(prop, ("x",), defs)):
        # A nested section's default is the defaults of its keys, listed in its own table.
        return "see below"
    return f"`{json.dumps(default, ensure_ascii=False)}`"


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Escape a table cell: a ``|`` would end the cell, even inside backticks."""
    return text.replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the reference, or write/check it in a Markdown file between the markers."""
    parser = argparse.ArgumentParser(
        prog="python -m modelseal.policy.reference",
        description="The policy reference (Markdown), generated from the policy's JSON Schema.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", type=Path, help="replace FILE's marked block")
    group.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if FILE's block is stale")
    args = parser.parse_args(argv)
    path: Path | None = args.write or args.check
    if path is None:
        sys.stdout.write(readme_block())
        return 0
    try:
        text = path.read_text(encoding="utf-8")
        updated = replace_block(text, readme_block())
    except (OSError, ReferenceBlockError) as e:
        print(f"modelseal.policy.reference: {path}: {e}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(f"{path}: the policy reference is out of date; run `make docs`.", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        fsio.write_text_atomic(path, updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
