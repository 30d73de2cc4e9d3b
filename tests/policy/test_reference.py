"""The policy reference: generated from the JSON Schema alone, and README.md's copy is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from tests.support import REPO

from modelseal.policy.model import Policy
from modelseal.policy.reference import (
    END_MARKER,
    START_MARKER,
    ReferenceBlockError,
    main,
    readme_block,
    render_reference,
    replace_block,
)

README = REPO / "README.md"


def test_readme_holds_the_current_reference() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_block(text, readme_block()) == text, "run `make docs` and commit README.md"


def test_every_key_of_every_section_is_documented() -> None:
    """Walks the pydantic models, not the schema: a section the generator skipped would show."""
    reference = render_reference()
    for name, field in Policy.model_fields.items():
        assert f"| `{name}` |" in reference
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            assert f"### `{name}`" in reference
            for key in section.model_fields:
                assert f"| `{name}.{key}` |" in reference, f"{name}.{key}"


def test_nested_lists_and_optional_sections_get_tables() -> None:
    reference = render_reference()
    assert "### `vulnerabilities.ignore[]`" in reference
    assert "| `vulnerabilities.ignore[].expires` | string (date) | required |" in reference
    assert "| `vulnerabilities.ignore` | list of mapping | `[]` |" in reference
    assert "### `models.signature`" in reference
    assert "| `models.signature` | mapping or null | `null` |" in reference
    assert "| `models.image_paths` | mapping of string to string matching `^/.*$` | `{}` |" in (
        reference
    )
    assert "| `trivy.db` | mapping | see below |" in reference
    assert "number (≥ 0.0, ≤ 10.0) or null" in reference
    # A | inside a pattern would end the table cell.
    assert r"([A-Za-z_][A-Za-z0-9_]*\|\*\*\|\*)$`" in reference


def _synthetic_schema() -> dict[str, Any]:
    """A policy-shaped schema with sections this repository does not have (yet)."""
    return {
        "title": "Policy",
        "description": "Top.",
        "type": "object",
        "required": ["version"],
        "properties": {
            "version": {"const": 1, "description": "Version."},
            "deploy": {
                "$ref": "#/$defs/Deploy",
                "default": {"targets": {}},
                "description": "Where images go.",
            },
        },
        "$defs": {
            "Deploy": {
                "title": "Deploy",
                "description": "The deploy section.",
                "type": "object",
                "properties": {
                    "targets": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/$defs/Target"},
                        "default": {},
                        "description": "Named targets.",
                    },
                    "mode": {"$ref": "#/$defs/Mode", "default": "fast", "description": "M."},
                    "grid": {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                        "default": [],
                        "description": "Rows | columns.",
                    },
                },
            },
            "Target": {
                "title": "Target",
                "description": "One target.",
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "format": "uri", "description": "Where."},
                    "fallback": {
                        "anyOf": [{"$ref": "#/$defs/Target"}, {"type": "null"}],
                        "default": None,
                        "description": "Recursive.",
                    },
                },
            },
            "Mode": {"title": "Mode", "enum": ["fast", "safe"], "type": "string"},
        },
    }


def test_any_schema_of_the_same_shape_renders() -> None:
    reference = render_reference(heading_level=2, schema=_synthetic_schema())
    headings = [line for line in reference.splitlines() if line.startswith("## ")]
    assert headings == ["## Top level", "## `deploy`", "## `deploy.targets.<name>`"]
    assert "| `deploy` | mapping | see below | Where images go. |" in reference
    assert "| `deploy.targets` | mapping of string to mapping | `{}` |" in reference
    assert '| `deploy.mode` | one of `"fast"`, `"safe"` | `"fast"` | M. |' in reference
    assert "| `deploy.grid` | list of list of integer (≥ 1) | `[]` | Rows \\| columns. |" in (
        reference
    )
    assert "| `deploy.targets.<name>.url` | string (uri) | required | Where. |" in reference
    # The self-reference is documented as a key, not followed forever.
    assert "| `deploy.targets.<name>.fallback` | mapping or null | `null` |" in reference


def test_the_readme_block_holds_the_tables() -> None:
    assert render_reference(heading_level=3) in readme_block()


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        f"{START_MARKER}\nonly the start\n",
        f"{START_MARKER}\n{END_MARKER}\n{START_MARKER}\n{END_MARKER}\n",
        f"{END_MARKER}\nreversed\n{START_MARKER}\n",
    ],
)
def test_replace_block_needs_one_pair_of_markers(text: str) -> None:
    with pytest.raises(ReferenceBlockError):
        replace_block(text, "x")


def test_replace_block_keeps_everything_around_the_block() -> None:
    text = f"# Doc\n\nbefore\n\n{START_MARKER}\nold\n{END_MARKER}\n\nafter\n"
    assert replace_block(text, "new\n") == (
        f"# Doc\n\nbefore\n\n{START_MARKER}\nnew\n{END_MARKER}\n\nafter\n"
    )


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"intro\n{START_MARKER}\nstale\n{END_MARKER}\noutro\n")
    assert main(["--check", str(doc)]) == 1
    assert "out of date; run `make docs`" in capsys.readouterr().err
    assert main(["--write", str(doc)]) == 0
    assert main(["--check", str(doc)]) == 0
    assert doc.read_text().startswith(f"intro\n{START_MARKER}\n<!-- Generated")
    assert doc.read_text().endswith(f"|\n{END_MARKER}\noutro\n")
    (tmp_path / "bare.md").write_text("no markers\n")
    assert main(["--check", str(tmp_path / "bare.md")]) == 2


def test_module_prints_the_block() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelseal.policy.reference"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout == readme_block()
