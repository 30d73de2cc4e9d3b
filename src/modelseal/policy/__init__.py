"""The policy file (``modelseal.yml``): its model, loader, JSON Schema and reference docs."""

import os

# Third-party pydantic plugins (found through entry points) would observe every policy
# validation; a security tool's policy check has no use for them, and the entry-point scan
# costs ~20 ms of every start. Set before pydantic looks at it (on the first model class).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

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
