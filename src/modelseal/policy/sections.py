"""The policy model the loader validates with: :class:`~modelseal.policy.model.Policy`, plus
a section for each gate registered outside the package (:func:`modelseal.gates.register`).

The built-in gates' sections are declared in ``Policy`` itself, so that the JSON Schema and the
README reference show them; without added sections the model is ``Policy``.
"""

from __future__ import annotations

import functools
from typing import cast

from pydantic import BaseModel, Field, create_model

from modelseal.policy.model import Policy

#: Section name → (model, description) of the sections added to ``Policy``.
_ADDED: dict[str, tuple[type[BaseModel], str]] = {}


def add_section(name: str, model: type[BaseModel], description: str) -> bool:
    """Add a section (True), unless ``Policy`` or an earlier gate declares it (False)."""
    if name in Policy.model_fields or name in _ADDED:
        return False
    _ADDED[name] = (model, description)
    policy_model.cache_clear()
    return True


def remove_section(name: str) -> None:
    """Remove a section :func:`add_section` added."""
    if _ADDED.pop(name, None) is not None:
        policy_model.cache_clear()


@functools.cache
def policy_model() -> type[Policy]:
    """``Policy`` with every added section (each defaults to its model's defaults)."""
    if not _ADDED:
        return Policy
    fields = {
        name: (model, Field(default=model(), description=description))
        for name, (model, description) in _ADDED.items()
    }
    return cast("type[Policy]", create_model("Policy", __base__=Policy, **fields))  # type: ignore[call-overload]
