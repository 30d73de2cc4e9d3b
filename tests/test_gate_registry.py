"""A gate is a one-folder change: everything the house knows of a gate derives from its spec.

The toy gate below lives in one folder written at test time (spec, gate, rules, policy section
model) and is registered with one call: no file of modelseal is touched, yet it runs in the
pipeline, is judged by its own rules, has a switch, a section the Action points at, and a
validated policy section. The built-in gates' specs are held in step with the policy model.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from modelseal import gates
from modelseal.errors import ConfigError
from modelseal.findings import Status
from modelseal.judge import Outcome, Rules, judge, judge_made_ids, rules_of
from modelseal.pipeline import RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import Policy, load_policy_text
from modelseal.policy.sections import policy_model

EPOCH = SourceDateEpoch(1700000000, "option")

#: The toy gate's folder: what a new gate consists of.
TOY_FILES = {
    "__init__.py": '''
        """The toy gate: counts *.widget files in the build context."""
        from modelseal.gates import GateSpec

        SPEC = GateSpec(
            "toy",
            gate="toygate.gate:ToyGate",
            section="toy",
            section_model="toygate.policy:ToyPolicy",
            rules="toygate.rules:RULES",
        )
    ''',
    "policy.py": '''
        from pydantic import BaseModel, ConfigDict, Field

        class ToyPolicy(BaseModel):
            """The toy section of modelseal.yml."""

            model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
            enabled: bool = Field(default=True, description="Run the toy gate.")
            max_widgets: int = Field(default=3, ge=0, description="Widgets allowed.")
    ''',
    "gate.py": """
        from modelseal.findings import Finding, GateResult, Severity, Status
        from modelseal.gates import RegisteredGate

        class ToyGate(RegisteredGate):
            name = "toy"

            def run(self, ctx):
                found = sorted(ctx.options.context.glob("*.widget"))
                findings = tuple(
                    Finding(gate=self.name, id="toy.widget", severity=Severity.LOW,
                            title="a widget", subject=p.name, evidence={"n": str(i + 1)})
                    for i, p in enumerate(found)
                )
                return GateResult(self.name, Status.PASSED, findings=findings)
    """,
    "rules.py": """
        from modelseal.judge import Decision, FindingRules, Outcome

        def toy_rule(policy, f):
            limit = policy.toy.max_widgets
            if int(f.evidence["n"]) > limit:
                return Decision(f, Outcome.FAIL, f"more than toy.max_widgets ({limit})")
            return Decision(f, Outcome.WARN, f"within toy.max_widgets ({limit})")

        RULES = FindingRules(toy_rule)
    """,
}


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[gates.GateSpec]:
    """The toy gate's folder, importable, its spec registered; all undone afterwards."""
    pkg = tmp_path / "plugins" / "toygate"
    pkg.mkdir(parents=True)
    for name, text in TOY_FILES.items():
        (pkg / name).write_text(textwrap.dedent(text).lstrip())
    sys.path.insert(0, str(pkg.parent))
    try:
        spec = importlib.import_module("toygate").SPEC
        gates.register(spec)
        try:
            yield spec
        finally:
            gates.unregister(spec.name)
    finally:
        sys.path.remove(str(pkg.parent))
        for mod in [m for m in sys.modules if m == "toygate" or m.startswith("toygate.")]:
            del sys.modules[mod]


def _run(tmp_path: Path, policy_text: str, widgets: int) -> tuple[Status, list[Outcome]]:
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    for i in range(widgets):
        (context / f"w{i}.widget").write_text("w")
    policy = load_policy_text(policy_text, "modelseal.yml")
    opts = RunOptions(context=context, out_dir=tmp_path / "out")
    result = run_pipeline(gates.select_gates(("toy",)), policy, opts, EPOCH)
    verdict = judge(result.results, policy.policy)
    (gv,) = verdict.gates
    assert gv.result.gate == "toy"
    return gv.status, [d.outcome for d in gv.decisions]


def test_a_toy_gate_in_one_folder_runs_is_judged_switched_and_validated(
    toy: gates.GateSpec, tmp_path: Path
) -> None:
    # Registry, switches and the Action's section map.
    assert list(gates.GATES)[-1] == "toy"
    assert gates.SWITCHES["toy"] == "toy"
    from modelseal.github.annotations import gate_section  # where the Action points findings

    assert gate_section("toy") == "toy"
    # Its policy section validates, with positions, like any other.
    policy = load_policy_text("version: 1\ntoy:\n  max_widgets: 1\n", "modelseal.yml")
    assert policy.policy.toy.max_widgets == 1  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"modelseal.yml:3:\d+: toy.max_widgets"):
        load_policy_text("version: 1\ntoy:\n  max_widgets: -1\n", "modelseal.yml")
    with pytest.raises(ConfigError, match=r"toy.nope"):
        load_policy_text("version: 1\ntoy:\n  nope: 1\n", "modelseal.yml")
    # The switch: on by default, off by the section's enabled.
    assert "toy" in gates.enabled_gates(load_policy_text("version: 1\n", "p").policy)
    off = "version: 1\ntoy:\n  enabled: false\n"
    assert "toy" not in gates.enabled_gates(load_policy_text(off, "p").policy)
    # It runs in the pipeline and its findings are judged by its own rules.
    assert _run(tmp_path, "version: 1\ntoy:\n  max_widgets: 2\n", 2) == (
        Status.PASSED,
        [Outcome.WARN, Outcome.WARN],
    )
    assert _run(tmp_path, "version: 1\ntoy:\n  max_widgets: 2\n", 3) == (
        Status.FAILED,
        [Outcome.WARN, Outcome.WARN, Outcome.FAIL],
    )
    assert _run(tmp_path, off, 3) == (Status.SKIPPED, [])


def test_registering_a_gate_twice_is_refused(toy: gates.GateSpec) -> None:
    with pytest.raises(ValueError, match="registered already"):
        gates.register(toy)


def test_unregistered_gate_leaves_the_policy_model_as_declared(toy: gates.GateSpec) -> None:
    assert policy_model() is not Policy
    gates.unregister(toy.name)
    try:
        assert policy_model() is Policy
        with pytest.raises(ConfigError, match="toy"):
            load_policy_text("version: 1\ntoy:\n  max_widgets: 1\n", "modelseal.yml")
    finally:
        gates.register(toy)


@pytest.mark.parametrize("name", list(gates.GATES))
def test_each_spec_is_in_step_with_the_policy_model_and_its_gate(name: str) -> None:
    spec = gates.GATES[name]
    # The section the spec names is the policy model's, of the model the spec names, with a
    # switch that is on by default.
    field = Policy.model_fields[spec.section]
    model = gates.section_model(name)
    assert field.annotation is model
    assert issubclass(model, BaseModel)
    assert model.model_fields["enabled"].annotation is bool
    assert model().enabled is True  # type: ignore[attr-defined]
    # The gate the spec names carries the spec's name, requirements and switch.
    (gate,) = gates.select_gates((name,))
    assert gate.name == name
    assert (gate.requires, gate.uses) == (spec.requires, spec.uses)
    assert set(spec.requires) | set(spec.uses) <= set(gates.GATES) - {name}
    # Its rules, when it has any, are rules.
    rules = rules_of(name)
    assert (rules is None) == (spec.rules is None)
    if rules is not None:
        assert isinstance(rules.made_ids, frozenset) and callable(rules.prepare)


def test_the_built_in_sections_need_no_derived_policy_model() -> None:
    """Every built-in section is declared in Policy (so the JSON Schema and the README show
    it): the model the loader validates with is Policy itself."""
    assert policy_model() is Policy
    assert set(gates.SWITCHES) == set(gates.GATES)
    from modelseal.github.annotations import gate_section

    assert {n: gate_section(n) for n in gates.GATES} == {
        n: s.section for n, s in gates.GATES.items()
    }


def test_the_judge_knows_the_findings_rules_make_from_the_rules() -> None:
    assert judge_made_ids() == frozenset({"vulnerabilities.expired-ignore", "vulnerabilities.stale-ignore"})
    rules: Rules | None = rules_of("trivy")
    assert rules is not None and rules is rules_of("pip-audit")  # prepared once per run
    assert rules_of("no-such-gate") is None and rules_of("sbom") is None
