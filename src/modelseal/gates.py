"""The gates modelseal knows, in pipeline order.

Gate modules are imported only when selected: `modelseal build` should not pay for syft's,
Trivy's and pip-audit's machinery (cyclonedx's schema validator alone costs a tenth of a
second to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

from modelseal.errors import ConfigError

if TYPE_CHECKING:
    from modelseal.pipeline import Gate
    from modelseal.policy import Policy

#: name → (module, class), in pipeline order.
GATES: dict[str, tuple[str, str]] = {
    "models": ("modelseal.models.gate", "ModelsGate"),
    "build": ("modelseal.build.gate", "BuildGate"),
    "models-image": ("modelseal.models.gate", "ModelsImageGate"),
    "sbom": ("modelseal.sbom.gate", "SbomGate"),
    "trivy": ("modelseal.vuln.trivy", "TrivyGate"),
    "pip-audit": ("modelseal.vuln.pip_audit", "PipAuditGate"),
}


#: name → the policy section whose ``enabled`` switches the gate (what each gate's
#: ``enabled()`` reads; tests/test_pipeline.py keeps the two in step). Lets the policy say which
#: gates it wants without importing them.
SWITCHES: dict[str, str] = {
    "models": "models",
    "build": "build",
    "models-image": "models",
    "sbom": "sbom",
    "trivy": "trivy",
    "pip-audit": "pip_audit",
}


def enabled_gates(policy: Policy) -> list[str]:
    """The gates ``policy`` switches on, in pipeline order (no gate module is imported)."""
    return [name for name in GATES if getattr(policy, SWITCHES[name]).enabled]


def _load(name: str) -> Gate:
    module, cls = GATES[name]
    return cast("Gate", getattr(importlib.import_module(module), cls)())


def all_gates() -> list[Gate]:
    """Every gate, fresh instances."""
    return [_load(n) for n in GATES]


def select_gates(names: tuple[str, ...]) -> list[Gate]:
    """The gates named (all when ``names`` is empty); unknown names are a usage error."""
    if not names:
        return all_gates()
    unknown = [n for n in names if n not in GATES]
    if unknown:
        raise ConfigError(f"unknown gate {', '.join(unknown)} (known: {', '.join(GATES)}).")
    return [_load(n) for n in GATES if n in names]
