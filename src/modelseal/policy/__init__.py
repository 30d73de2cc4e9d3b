"""The policy file (``modelseal.yml``): its model, loader, JSON Schema and reference docs."""

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
