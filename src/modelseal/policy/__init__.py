"""The policy file (``modelseal.yml``): its model, loader, JSON Schema and reference docs."""

# First: pydantic's plugin loader is replaced before pydantic is imported.
import modelseal.policy._noplugins  # noqa: F401
from modelseal.policy.loader import (
    LoadedPolicy,
    PolicyFileError,
    default_policy,
    load_policy,
    load_policy_text,
)
from modelseal.policy.model import BuildPolicy, Policy
from modelseal.policy.schema import policy_json_schema

__all__ = [
    "BuildPolicy",
    "LoadedPolicy",
    "Policy",
    "PolicyFileError",
    "default_policy",
    "load_policy",
    "load_policy_text",
    "policy_json_schema",
]
