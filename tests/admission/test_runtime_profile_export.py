"""``modelseal policy export --runtime-profile``: the runtime profile a real ``modelseal run
--push`` wrote and attested, in each format. Every document validates against its CRD; the
Kyverno ClusterPolicy's ``validate.cel`` rule, run by the real ``celpy`` on Pods, admits a pod
with the profile's securityContext and refuses each kind of extra privilege; the attested
profile is checked in JMESPath (Kyverno), CEL (ImageValidatingPolicy) and Rego
(policy-controller, regopy)."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes
from tests.admission.conftest import SCHEMAS
from tests.admission.test_policy_controller import _validator, compliant, controller_input
from tests.support.k8s_schema import crd_schema, validation_errors
from tests.support.kyverno_cel import Pod
from tests.support.kyverno_cel import admits as ivp_admits
from tests.support.kyverno_jmespath import admits, signed

from modelseal._cli import main
from modelseal.admission import ExportSpec
from modelseal.admission.export import export_yaml
from modelseal.admission.runtime import RuntimeRule, load_runtime_rule
from modelseal.errors import ConfigError
from modelseal.publish.statements import RUNTIME_PROFILE_PREDICATE

ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/org/model-server/.github/workflows/release.yml@refs/tags/v1.0"
KEYLESS_SIGNER = {"issuer": ISSUER, "subject": IDENTITY}


@dataclass(frozen=True)
class Profiled:
    image: str
    digest: str
    public_key_pem: str
    profile_path: Path
    profile: dict[str, Any]
    statements: list[dict[str, Any]]
    """Every statement the run attached (the runtime profile's among them)."""


@pytest.fixture(scope="module")
def profiled(
    registry: str, busybox_base: str, tmp_path_factory: pytest.TempPathFactory
) -> Profiled:
    """``modelseal run --push`` of an image with USER 1000:2000, the image gate on and the
    runtime profile attested (key-signed)."""
    from modelseal.sign.key import generate_ephemeral_key

    root = tmp_path_factory.mktemp("profiled")
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nEXPOSE 8080\nUSER 1000:2000\n")
    policy = root / "modelseal.yml"
    policy.write_text(
        "version: 1\nbuild:\n  rebuild_check: never\n"
        "image:\n  runtime:\n    add_capabilities: [NET_RAW]\n"
        "publish:\n  attestations: [provenance, sbom, scan-report, runtime-profile]\n"
    )
    private, public = generate_ephemeral_key(root / "keys")
    out = root / "out"
    image = f"{registry}/admission/profiled"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(out), "--gate", "build", "--gate", "image", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(private),
    ])  # fmt: skip
    assert code == 0
    record = json.loads((out / "publish.json").read_text())
    statements = [json.loads((out / "provenance.intoto.json").read_text())]
    for name in ("sbom", "scan-report", "runtime-profile"):
        bundle = json.loads(Path(record["bundles"][name]).read_text())
        statements.append(json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"])))
    return Profiled(
        image=image, digest=record["digest"], public_key_pem=public.read_text(),
        profile_path=out / "runtime-profile.json",
        profile=json.loads((out / "runtime-profile.json").read_text()), statements=statements,
    )  # fmt: skip


def _spec(p: Profiled, **changes: Any) -> ExportSpec:
    fields: dict[str, Any] = {
        "name": "modelseal-test",
        "image_patterns": (p.image + "*",),
        "public_key_pem": p.public_key_pem,
        "runtime": load_runtime_rule(p.profile_path),
    }
    return ExportSpec(**(fields | changes))


def _doc(spec: ExportSpec, fmt: str) -> dict[str, Any]:
    return yaml.safe_load(export_yaml(spec, fmt))  # type: ignore[no-any-return]


def _signed(statements: list[dict[str, Any]], by: dict[str, str]) -> list[dict[str, Any]]:
    return [signed(copy.deepcopy(s), by) for s in statements]


def _with_profile(statements: list[dict[str, Any]], edit: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(statements)
    for s in out:
        if s["predicateType"] == RUNTIME_PROFILE_PREDICATE:
            edit(s["predicate"])
    return out


# --- the rule read from the profile ----------------------------------------------------------


def test_the_rule_comes_from_the_written_profile_or_verify_json(
    profiled: Profiled, tmp_path: Path
) -> None:
    rule = load_runtime_rule(profiled.profile_path)
    assert rule == RuntimeRule(non_root=True, uid=1000, gid=2000, add_capabilities=("NET_RAW",))
    verify_json = tmp_path / "verify.json"
    verify_json.write_text(json.dumps({"verified": True, "runtime_profile": profiled.profile}))
    assert load_runtime_rule(verify_json) == rule
    lying = copy.deepcopy(profiled.profile)
    lying["kubernetes"]["securityContext"]["runAsUser"] = 0
    (tmp_path / "lying.json").write_text(json.dumps(lying))
    with pytest.raises(ConfigError, match="nonRoot but its securityContext"):
        load_runtime_rule(tmp_path / "lying.json")
    (tmp_path / "caps.json").write_text(json.dumps(
        profiled.profile | {"kubernetes": {"securityContext": {
            **profiled.profile["kubernetes"]["securityContext"],
            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN'] || true || ['"]}}}}
    ))  # fmt: skip
    with pytest.raises(ConfigError, match=r"capabilities\.add is not a list of names"):
        load_runtime_rule(tmp_path / "caps.json")


# --- Kyverno ClusterPolicy: the CRD, the attested profile, the pod -------------------------


def test_the_kyverno_export_validates_against_the_crd(profiled: Profiled) -> None:
    doc = _doc(_spec(profiled), "kyverno")
    crd = SCHEMAS / "kyverno.io_clusterpolicies.yaml"
    assert validation_errors(doc, crd_schema(crd, doc["apiVersion"])) == []
    names = [r["name"] for r in doc["spec"]["rules"]]
    assert names == ["modelseal-sealed-images", "modelseal-runtime-profile"]
    rule = doc["spec"]["rules"][1]
    assert rule["match"] == doc["spec"]["rules"][0]["match"]  # Pods and ephemeral containers
    assert rule["validate"]["failureAction"] == "Enforce"


def test_kyverno_requires_the_signed_profile_stating_the_same_user(profiled: Profiled) -> None:
    doc = _doc(_spec(profiled), "kyverno")
    by = {"key": profiled.public_key_pem}
    assert admits(doc, _signed(profiled.statements, by))
    other_user = _with_profile(
        profiled.statements,
        lambda p: p["kubernetes"]["securityContext"].update(runAsUser=4242),
    )
    assert not admits(doc, _signed(other_user, by))
    more_caps = _with_profile(
        profiled.statements,
        lambda p: p["kubernetes"]["securityContext"]["capabilities"].update(
            add=["NET_RAW", "SYS_ADMIN"]
        ),
    )
    assert not admits(doc, _signed(more_caps, by))
    without = [s for s in profiled.statements if s["predicateType"] != RUNTIME_PROFILE_PREDICATE]
    assert not admits(doc, _signed(without, by))
    assert not admits(doc, _signed(profiled.statements, KEYLESS_SIGNER))  # another signer's


def _cel_results(doc: dict[str, Any], pod: dict[str, Any]) -> list[Any]:
    """Each ``validate.cel`` expression of the runtime-profile rule on ``pod`` (as Kyverno
    runs them: the variables in order, then every expression; an error refuses)."""
    (rule,) = [r for r in doc["spec"]["rules"] if "validate" in r]
    cel = rule["validate"]["cel"]
    env = celpy.Environment()
    activation: dict[str, Any] = {"object": celpy.json_to_cel(pod)}
    variables: dict[str, Any] = {}

    def run(expression: str) -> Any:
        activation["variables"] = celtypes.MapType(
            {celtypes.StringType(k): v for k, v in variables.items()}
        )
        try:
            return env.program(env.compile(expression)).evaluate(activation)
        except (celpy.CELEvalError, ValueError, TypeError, KeyError) as e:
            return e

    for v in cel["variables"]:
        variables[v["name"]] = run(v["expression"])
    return [run(e["expression"]) for e in cel["expressions"]]


def _admitted(doc: dict[str, Any], pod: dict[str, Any]) -> bool:
    return all(isinstance(r, celtypes.BoolType) and bool(r) for r in _cel_results(doc, pod))


def _pod(p: Profiled, sc: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": f"{p.image}:1.0@{p.digest}"}
    if sc is not None:
        container["securityContext"] = sc
    sidecar = {"name": "sidecar", "image": "registry.example/other/sidecar:2"}  # not sealed
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [container, sidecar], **spec}}  # fmt: skip


def _sc(p: Profiled) -> dict[str, Any]:
    return copy.deepcopy(p.profile["kubernetes"]["securityContext"])  # type: ignore[no-any-return]


def test_a_pod_with_the_profile_security_context_is_admitted(profiled: Profiled) -> None:
    doc = _doc(_spec(profiled), "kyverno")
    results = _cel_results(doc, _pod(profiled, _sc(profiled)))
    assert results == [True] * len(results), results
    # runAsNonRoot, runAsUser and seccomp inherited from the pod, the rest on the container
    sc = _sc(profiled)
    pod_level = {k: sc.pop(k) for k in ("runAsNonRoot", "runAsUser", "seccompProfile")}
    assert _admitted(doc, _pod(profiled, sc, securityContext=pod_level))
    # no runAsUser at all: the image's own user (the profile's) runs
    sc = _sc(profiled)
    del sc["runAsUser"], sc["runAsGroup"]
    assert _admitted(doc, _pod(profiled, sc))
    # fewer capabilities than the profile is less privilege
    sc = _sc(profiled)
    sc["capabilities"] = {"drop": ["ALL"]}
    assert _admitted(doc, _pod(profiled, sc))
    # a pod without the sealed image is none of this rule's business
    other = _pod(profiled, None)
    other["spec"]["containers"] = other["spec"]["containers"][1:]
    assert _admitted(doc, other)


def _edit(sc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = sc
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return sc


_DELETE = object()

MORE_PRIVILEGE = {
    "privileged": ("privileged", True),
    "added SYS_ADMIN": ("capabilities.add", ["NET_RAW", "SYS_ADMIN"]),
    "runAsUser 0": ("runAsUser", 0),
    "another user": ("runAsUser", 1001),
    "runAsGroup 0": ("runAsGroup", 0),
    "allowPrivilegeEscalation true": ("allowPrivilegeEscalation", True),
    "allowPrivilegeEscalation missing": ("allowPrivilegeEscalation", _DELETE),
    "readOnlyRootFilesystem missing": ("readOnlyRootFilesystem", _DELETE),
    "readOnlyRootFilesystem false": ("readOnlyRootFilesystem", False),
    "runAsNonRoot false": ("runAsNonRoot", False),
    "runAsNonRoot missing": ("runAsNonRoot", _DELETE),
    "drop ALL missing": ("capabilities.drop", ["NET_RAW"]),
    "seccomp Unconfined": ("seccompProfile.type", "Unconfined"),
    "seccomp missing": ("seccompProfile", _DELETE),
    "procMount Unmasked": ("procMount", "Unmasked"),
}


@pytest.mark.parametrize("path,value", MORE_PRIVILEGE.values(), ids=list(MORE_PRIVILEGE))
def test_a_pod_with_more_privilege_is_refused(profiled: Profiled, path: str, value: Any) -> None:
    doc = _doc(_spec(profiled), "kyverno")
    results = _cel_results(doc, _pod(profiled, _edit(_sc(profiled), path, value)))
    # refused by a check that says no, not by an expression that cannot be evaluated
    assert all(isinstance(r, celtypes.BoolType) for r in results), results
    assert sum(not r for r in results) == 1, results


def test_pod_level_privilege_and_every_container_kind_are_checked(profiled: Profiled) -> None:
    doc = _doc(_spec(profiled), "kyverno")
    good = _sc(profiled)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not _admitted(doc, _pod(profiled, good, **{key: True})), key
    assert _admitted(doc, _pod(profiled, good, hostNetwork=False))
    # the pod's runAsUser 0 reaches a container that sets none
    sc = _sc(profiled)
    del sc["runAsUser"]
    assert not _admitted(doc, _pod(profiled, sc, securityContext={"runAsUser": 0}))
    # a container's own value wins over the pod's
    assert _admitted(doc, _pod(profiled, good, securityContext={"runAsUser": 0}))
    # no securityContext at all
    assert not _admitted(doc, _pod(profiled, None))
    sealed = {
        "name": "x",
        "image": f"{profiled.image}:1.0",
        "securityContext": {"privileged": True},
    }
    for kind in ("initContainers", "ephemeralContainers"):
        assert not _admitted(doc, _pod(profiled, good, **{kind: [sealed]})), kind


@pytest.mark.parametrize(
    "pattern,image",
    [("docker.io/org/model*", "org/model:1"), ("docker.io/library/model*", "model:1"),
     ("docker.io/org/model*", "docker.io/org/model@sha256:" + "a" * 64)],
)  # fmt: skip
def test_a_short_docker_hub_name_is_matched_as_kyverno_normalizes_it(
    profiled: Profiled, pattern: str, image: str
) -> None:
    doc = _doc(_spec(profiled, image_patterns=(pattern,)), "kyverno")
    pod = _pod(profiled, _sc(profiled) | {"privileged": True})
    pod["spec"]["containers"][0]["image"] = image
    assert not _admitted(doc, pod)
    pod["spec"]["containers"][0]["image"] = "ghcr.io/org/model:1"  # not this policy's image
    assert _admitted(doc, pod)


def test_a_root_profile_does_not_demand_non_root(profiled: Profiled) -> None:
    root = RuntimeRule(non_root=False, uid=0, gid=0)
    doc = _doc(_spec(profiled, runtime=root), "kyverno")
    sc = _sc(profiled)
    sc |= {"runAsNonRoot": False, "runAsUser": 0, "capabilities": {"drop": ["ALL"]}}
    assert _admitted(doc, _pod(profiled, sc))
    assert not _admitted(doc, _pod(profiled, sc | {"privileged": True}))
    sc["capabilities"] = {"drop": ["ALL"], "add": ["NET_RAW"]}  # the root profile adds none
    assert not _admitted(doc, _pod(profiled, sc))


# --- Kyverno ImageValidatingPolicy and policy-controller: the attestation only --------------


def test_ivp_requires_the_signed_profile(profiled: Profiled) -> None:
    spec = _spec(profiled, public_key_pem=None, issuer=ISSUER, identity=IDENTITY)
    doc = _doc(spec, "kyverno-ivp")
    crd = SCHEMAS / "policies.kyverno.io_imagevalidatingpolicies.yaml"
    assert validation_errors(doc, crd_schema(crd, doc["apiVersion"])) == []
    image = f"{profiled.image}:1.0@{profiled.digest}"

    def pod(statements: list[dict[str, Any]]) -> Pod:
        return Pod([image], signed=[image], statements={image: _signed(statements, KEYLESS_SIGNER)})

    assert ivp_admits(doc, pod(profiled.statements), now=None)
    other = _with_profile(profiled.statements, lambda p: p.update(nonRoot=False))
    assert not ivp_admits(doc, pod(other))
    without = [s for s in profiled.statements if s["predicateType"] != RUNTIME_PROFILE_PREDICATE]
    assert not ivp_admits(doc, pod(without))


def test_policy_controller_requires_the_signed_profile(profiled: Profiled) -> None:
    doc = _doc(_spec(profiled), "policy-controller")
    assert list(_validator(doc["apiVersion"]).iter_errors(doc)) == []
    (authority,) = [a for a in doc["spec"]["authorities"] if a.get("attestations")]
    rego = {a["name"]: a["policy"]["data"] for a in authority["attestations"]}["runtime-profile"]
    (statement,) = [
        s for s in profiled.statements if s["predicateType"] == RUNTIME_PROFILE_PREDICATE
    ]
    assert compliant(rego, controller_input(statement))
    for edit in (
        lambda p: p.update(nonRoot=False),
        lambda p: p["kubernetes"]["securityContext"].update(runAsUser=0),
        lambda p: p["kubernetes"]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    ):
        (changed,) = _with_profile([statement], edit)
        assert not compliant(rego, controller_input(changed))
    assert '"runtime-profile"' in doc["spec"]["policy"]["data"]  # the image policy needs it


# --- the command ---------------------------------------------------------------------------


def test_cli_exports_the_profile_rules_and_says_what_a_format_cannot_check(
    profiled: Profiled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "modelseal.yml"
    key = tmp_path / "signer.pub"
    key.write_text(profiled.public_key_pem)
    policy.write_text("version: 1\nverify:\n  public_key: signer.pub\n")
    args = ["policy", "export", "--policy", str(policy), "--image-pattern", profiled.image + "*",
            "--runtime-profile", str(profiled.profile_path)]  # fmt: skip
    assert main([*args, "--format", "kyverno", "-o", str(tmp_path / "k.yaml")]) == 0
    assert "cannot see the pod" not in "".join(capsys.readouterr())
    doc = yaml.safe_load((tmp_path / "k.yaml").read_text())
    assert doc["spec"]["rules"][1]["name"] == "modelseal-runtime-profile"
    assert main([*args, "--format", "policy-controller", "-o", str(tmp_path / "p.yaml")]) == 0
    assert "cannot see the pod" in "".join(capsys.readouterr())
    (tmp_path / "bad.json").write_text('{"version": 2}')
    bad = [*args[:-1], str(tmp_path / "bad.json"), "--format", "kyverno"]
    assert main([*bad, "-o", str(tmp_path / "bad.yaml")]) == 2
    assert not (tmp_path / "bad.yaml").exists()
