"""The gates modelseal knows, in pipeline order: each declared once, by a :class:`GateSpec`.

Everything else about a gate is derived from its spec: the registry (:data:`GATES`), the policy
switches (:data:`SWITCHES`, also the section the Action points a finding at), the gate's
``requires``/``uses``/``enabled()`` (:class:`RegisteredGate`), the rules the judge applies to its
findings (:func:`modelseal.judge.rules_of`) and the policy model that validates its section
(:func:`modelseal.policy.sections.policy_model`).

Gate modules are imported only when selected: `modelseal build` should not pay for syft's,
Trivy's and pip-audit's machinery (cyclonedx's schema validator alone costs a tenth of a
second to import). So a spec names its gate, rules and section model by ``"module:attribute"``
and this module imports none of them up front.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, cast

from modelseal.errors import ConfigError

if TYPE_CHECKING:
    # Types only, and none of the policy package: the policy loader reads this module.
    from pydantic import BaseModel

    from modelseal.pipeline import Gate


@dataclass(frozen=True)
class GateSpec:
    """One gate, declared once.

    ``gate``, ``rules`` and ``section_model`` are ``"module:attribute"`` references, imported
    only when needed. ``section`` is the policy section holding the gate's settings: its
    ``enabled`` switches the gate on and off, and a finding without a better place is pointed at
    it. ``rules`` is a :class:`modelseal.judge.Rules` (None: every finding of the gate fails).
    ``requires``: gates whose results it cannot do without (if one errors or is skipped, this
    gate does not run). ``uses``: gates it waits for when they are selected and reads when they
    collected evidence, but runs without.
    """

    name: str
    gate: str
    section: str
    section_model: str
    rules: str | None = None
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()


_SPECS: dict[str, GateSpec] = {
    s.name: s
    for s in (
        GateSpec(
            "models",
            gate="modelseal.models.gate:ModelsGate",
            section="models",
            section_model="modelseal.policy.model:ModelsPolicy",
            rules="modelseal.models.rules:RULES",
        ),
        GateSpec(
            "build",
            gate="modelseal.imagebuild.gate:BuildGate",
            section="build",
            section_model="modelseal.policy.model:BuildPolicy",
            rules="modelseal.imagebuild.rules:RULES",
        ),
        GateSpec(
            "models-image",
            gate="modelseal.models.gate:ModelsImageGate",
            section="models",
            section_model="modelseal.policy.model:ModelsPolicy",
            rules="modelseal.models.rules:RULES",
            requires=("build",),
        ),
        GateSpec(
            "image",
            gate="modelseal.imagegate.gate:ImageGate",
            section="image",
            section_model="modelseal.policy.model:ImagePolicy",
            rules="modelseal.imagegate.rules:RULES",
            requires=("build",),
        ),
        GateSpec(
            "sbom",
            gate="modelseal.sbom.gate:SbomGate",
            section="sbom",
            section_model="modelseal.policy.model:SbomPolicy",
            requires=("build",),
            # The SBOM adds the models when the models gate ran.
            uses=("models",),
        ),
        GateSpec(
            "trivy",
            gate="modelseal.vuln.trivy:TrivyGate",
            section="trivy",
            section_model="modelseal.policy.model:TrivyPolicy",
            rules="modelseal.vuln.rules:RULES",
            requires=("build",),
        ),
        GateSpec(
            "pip-audit",
            gate="modelseal.vuln.pip_audit:PipAuditGate",
            section="pip_audit",
            section_model="modelseal.policy.model:PipAuditPolicy",
            rules="modelseal.vuln.rules:RULES",
            requires=("build",),
        ),
    )
}

#: name → spec, in pipeline order (a live view: registering a gate shows here).
GATES: Mapping[str, GateSpec] = MappingProxyType(_SPECS)


class _Sections(Mapping[str, str]):
    """name → the gate's policy section, derived from the specs on every read."""

    def __getitem__(self, name: str) -> str:
        return _SPECS[name].section

    def __iter__(self) -> Iterator[str]:
        return iter(_SPECS)

    def __len__(self) -> int:
        return len(_SPECS)


#: name → the policy section whose ``enabled`` switches the gate. Lets the policy say which
#: gates it wants without importing them; the Action points a finding of the gate at it.
SWITCHES: Mapping[str, str] = _Sections()


#: Sections added to the policy model by :func:`register`, by gate.
_ADDED_SECTIONS: dict[str, str] = {}


def register(spec: GateSpec) -> None:
    """Add a gate after the known ones (a gate in its own folder declares itself here). Its
    policy section, unless the policy model declares it, is added to the model the policy
    loader validates with (:func:`modelseal.policy.sections.policy_model`)."""
    from modelseal.policy.sections import add_section

    if spec.name in _SPECS:
        raise ValueError(f"gate {spec.name} is registered already")
    model = cast("type[BaseModel]", resolve(spec.section_model))  # before anything changes
    if add_section(spec.section, model, f"Settings of the {spec.name} gate."):
        _ADDED_SECTIONS[spec.name] = spec.section
    _SPECS[spec.name] = spec


def unregister(name: str) -> None:
    """Remove a gate :func:`register` added, and the section it added (tests)."""
    from modelseal.policy.sections import remove_section

    del _SPECS[name]
    if name in _ADDED_SECTIONS:
        remove_section(_ADDED_SECTIONS.pop(name))


def resolve(ref: str) -> object:
    """What a ``"module:attribute"`` reference of a spec names (the module is imported)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def enabled_gates(policy: BaseModel) -> list[str]:
    """The gates ``policy`` switches on, in pipeline order (no gate module is imported)."""
    return [name for name in _SPECS if switched_on(policy, name)]


def switched_on(policy: BaseModel, name: str) -> bool:
    """Whether ``policy`` switches the gate on: its section's ``enabled``."""
    return bool(getattr(policy, _SPECS[name].section).enabled)


def section_model(name: str) -> type[BaseModel]:
    """The pydantic model of a gate's policy section."""
    return cast("type[BaseModel]", resolve(_SPECS[name].section_model))


def _load(name: str) -> Gate:
    return cast("Gate", cast("type", resolve(_SPECS[name].gate))())


def all_gates() -> list[Gate]:
    """Every gate, fresh instances."""
    return [_load(n) for n in _SPECS]


def select_gates(names: tuple[str, ...]) -> list[Gate]:
    """The gates named (all when ``names`` is empty); unknown names are a usage error."""
    if not names:
        return all_gates()
    unknown = [n for n in names if n not in _SPECS]
    if unknown:
        raise ConfigError(f"unknown gate {', '.join(unknown)} (known: {', '.join(_SPECS)}).")
    return [_load(n) for n in _SPECS if n in names]


class _Loaded(Protocol):
    """What a gate's switch reads of a :class:`modelseal.policy.LoadedPolicy`."""

    @property
    def policy(self) -> BaseModel:
        """The validated policy."""
        ...


class RegisteredGate:
    """Base of a registered gate: a subclass names itself and implements ``run``; what it
    requires and uses, and whether the policy switches it on, come from its :class:`GateSpec`."""

    name: str

    @property
    def requires(self) -> tuple[str, ...]:
        """The spec's ``requires``."""
        return _SPECS[self.name].requires

    @property
    def uses(self) -> tuple[str, ...]:
        """The spec's ``uses``."""
        return _SPECS[self.name].uses

    def enabled(self, policy: _Loaded) -> bool:
        """Switched by the ``enabled`` of the spec's policy section."""
        return switched_on(policy.policy, self.name)
