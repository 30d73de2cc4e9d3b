"""The gates modelseal knows, in pipeline order."""

from __future__ import annotations

from modelseal.build.gate import BuildGate
from modelseal.errors import ConfigError
from modelseal.models.gate import ModelsGate, ModelsImageGate
from modelseal.pipeline import Gate
from modelseal.sbom.gate import SbomGate
from modelseal.vuln.pip_audit import PipAuditGate
from modelseal.vuln.trivy import TrivyGate


def all_gates() -> list[Gate]:
    """Every gate, fresh instances."""
    return [ModelsGate(), BuildGate(), ModelsImageGate(), SbomGate(), TrivyGate(), PipAuditGate()]


def select_gates(names: tuple[str, ...]) -> list[Gate]:
    """The gates named (all when ``names`` is empty); unknown names are a usage error."""
    gates = all_gates()
    if not names:
        return gates
    known = {g.name: g for g in gates}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown gate {', '.join(unknown)} (known: {', '.join(known)}).")
    return [known[n] for n in names]
