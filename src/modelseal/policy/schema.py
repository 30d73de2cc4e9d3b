"""The policy's JSON Schema and Markdown reference, both generated from the pydantic models.

The committed copy ``policy.schema.json`` next to this module must equal :func:`schema_text`;
``make docs`` regenerates it (``modelseal policy schema``) together with README.md's policy
reference (:mod:`modelseal.policy.reference`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from modelseal.policy.model import POLICY_VERSION, Policy

__all__ = [
    "SCHEMA_DIALECT",
    "SCHEMA_ID",
    "policy_json_schema",
    "schema_text",
]

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID: Final = f"https://modelseal.dev/schemas/policy-v{POLICY_VERSION}.json"
SCHEMA_TITLE: Final = f"modelseal policy file (version {POLICY_VERSION})"


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a policy file."""
    schema = Policy.model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **schema,
        "title": SCHEMA_TITLE,
    }


def schema_text() -> str:
    """The exact text of the committed ``policy.schema.json``."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
