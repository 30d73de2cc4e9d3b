"""``modelseal policy export --format kyverno-ivp``: the Kyverno ImageValidatingPolicy.

The exported document is validated against the real ImageValidatingPolicy CRD schema, and its
CEL validations are evaluated with the real ``celpy`` interpreter (Kyverno's image-verification
and time functions from tests/support/kyverno_cel.py) against the statements a real
``modelseal run --push`` published.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from tests.admission.conftest import SCHEMAS, SOURCE_REPOSITORY, Sealed
from tests.admission.test_kyverno import (
    BROKEN,
    HOSTILE,
    IDENTITY,
    ISSUER,
    KEYLESS,
    _policy_file,
    _stale,
)
from tests.admission.test_kyverno import _spec as _any_spec
from tests.admission.test_kyverno import _statements as _key_statements
from tests.support.k8s_schema import crd_schema, validation_errors
from tests.support.kyverno_cel import Pod, admits, evaluate

from modelseal._cli import main
from modelseal.admission import ExportSpec
from modelseal.admission.embed import quote_cel
from modelseal.admission.export import export_yaml
from modelseal.admission.kyverno_ivp import render
from modelseal.errors import ConfigError
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import SCAN_REPORT_PREDICATE

CRD = SCHEMAS / "policies.kyverno.io_imagevalidatingpolicies.yaml"


def _document(spec: ExportSpec) -> dict[str, Any]:
    doc = yaml.safe_load(export_yaml(spec, "kyverno-ivp"))
    assert doc == json.loads(json.dumps(render(spec)))
    return doc  # type: ignore[no-any-return]


#: The keyless signer of the exported policies (an ImageValidatingPolicy takes no key).
SIGNER = {"issuer": ISSUER, "subject": IDENTITY}


def _spec(sealed: Sealed, **changes: Any) -> ExportSpec:
    signer = {} if "identity_regexp" in changes else KEYLESS[0]
    return _any_spec(sealed, **{**signer, **changes})


def _statements(sealed: Sealed) -> list[dict[str, Any]]:
    return _key_statements(sealed, SIGNER)


def _image(sealed: Sealed) -> str:
    """The sealed image as the pod names it at validation (mutateDigest pinned the tag)."""
    return f"{sealed.image}:1.0@{sealed.digest}"


def _pod(sealed: Sealed, statements: list[dict[str, Any]], *, signed: bool = True) -> Pod:
    image = _image(sealed)
    sidecar = "registry.example/other/sidecar:2"  # not matched: not checked
    return Pod(
        [image, sidecar],
        signed=[image] if signed else [],
        statements={image: statements},
    )


# --- (a) the CRD schema ---------------------------------------------------------------------


@pytest.mark.parametrize("signer", KEYLESS, ids=["identity", "identity-regexp"])
def test_ivp_validates_against_the_crd(sealed: Sealed, signer: dict[str, Any]) -> None:
    doc = _document(_spec(sealed, **signer))
    assert doc["apiVersion"] == "policies.kyverno.io/v1"
    assert validation_errors(doc, crd_schema(CRD, doc["apiVersion"])) == []
    spec = doc["spec"]
    assert spec["validationActions"] == ["Deny"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["evaluation"] == {"background": {"enabled": False}}
    assert spec["validationConfigurations"] == {
        "required": True,
        "verifyDigest": True,
        "mutateDigest": True,
    }


def test_schema_validation_catches_a_wrong_document(sealed: Sealed) -> None:
    doc = _document(_spec(sealed))
    schema = crd_schema(CRD, "policies.kyverno.io/v1")
    misspelled = copy.deepcopy(doc)
    misspelled["spec"]["attestors"][0]["cosign"]["keyless"]["identity"] = "x"
    assert any("identity" in e for e in validation_errors(misspelled, schema))
    no_type = copy.deepcopy(doc)
    del no_type["spec"]["attestations"][0]["intoto"]["type"]
    assert validation_errors(no_type, schema)
    wrong_action = copy.deepcopy(doc)
    wrong_action["spec"]["validationActions"] = ["Refuse"]
    assert validation_errors(wrong_action, schema)


# --- (b) the CEL against the real statements ---------------------------------------------------


@pytest.mark.parametrize("signer", KEYLESS, ids=["identity", "identity-regexp"])
def test_a_sealed_image_is_admitted(sealed: Sealed, signer: dict[str, Any]) -> None:
    doc = _document(_spec(sealed, **signer))
    results = evaluate(doc, _pod(sealed, _statements(sealed)))
    assert results == [True] * len(doc["spec"]["validations"]), results
    assert admits(doc, _pod(sealed, _statements(sealed)))


def test_an_unsigned_image_is_refused(sealed: Sealed) -> None:
    doc = _document(_spec(sealed))
    assert not admits(doc, _pod(sealed, _statements(sealed), signed=False))


def _report_of_another_image(statements: list[dict[str, Any]]) -> None:
    """A PASSED report, signed by the signer, about another image (its subject digest)."""
    for s in statements:
        if s["predicateType"] == SCAN_REPORT_PREDICATE:
            for subject in s["subject"]:
                subject["digest"]["sha256"] = "e" * 64


def _provenance_without_subject(statements: list[dict[str, Any]]) -> None:
    for s in statements:
        if s["predicateType"] == SLSA_PROVENANCE_V1:
            s["subject"] = []


# The ImageValidatingPolicy checks the one report Kyverno keeps (the last): a FAILED one there
# refuses (also_a_failed_report).
IVP_BROKEN = [*BROKEN, _report_of_another_image, _provenance_without_subject]


@pytest.mark.parametrize("breakage", IVP_BROKEN, ids=[f.__name__.strip("_") for f in IVP_BROKEN])
def test_a_broken_image_is_refused(sealed: Sealed, breakage: Any) -> None:
    doc = _document(_spec(sealed))
    statements = _statements(sealed)
    breakage(statements)
    assert not admits(doc, _pod(sealed, statements))


def test_a_key_signer_is_refused(sealed: Sealed, tmp_path: Path) -> None:
    """Kyverno's ImageValidatingPolicy refuses key-signed attestations (no log entry): the
    export says so instead of writing a policy that refuses every sealed image."""
    with pytest.raises(ConfigError, match="kyverno-ivp cannot check a key signer") as e:
        render(_any_spec(sealed))
    assert e.value.hint is not None and "--format kyverno" in e.value.hint
    policy = _policy_file(tmp_path, sealed, "  public_key: signer.pub\n")
    out = tmp_path / "ivp.yaml"
    code = main(["policy", "export", "--format", "kyverno-ivp", "--policy", str(policy),
                 "--image-pattern", "ghcr.io/org/*", "-o", str(out)])  # fmt: skip
    assert code == 2
    assert not out.exists()


def test_ephemeral_containers_are_checked(sealed: Sealed) -> None:
    doc = _document(_spec(sealed, image_patterns=("ghcr.io/org/*",)))
    (rule,) = doc["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"]
    image = "ghcr.io/org/debugger:1"
    pod = Pod(["busybox"], signed=[], statements={}, ephemeral_containers=[image])
    assert not admits(doc, pod)


def test_a_reference_without_digest_is_refused(sealed: Sealed) -> None:
    """The subject check needs the digest in the reference (mutateDigest puts it there)."""
    doc = _document(_spec(sealed))
    image = f"{sealed.image}:1.0"
    statements = _statements(sealed)
    assert not admits(doc, Pod([image], signed=[image], statements={image: statements}))
    assert admits(doc, _pod(sealed, statements))


def test_an_image_outside_the_patterns_is_not_checked(sealed: Sealed) -> None:
    doc = _document(_spec(sealed, image_patterns=("ghcr.io/org/*",)))
    assert admits(doc, _pod(sealed, [], signed=False))
    # the init containers are checked like the others
    image = "ghcr.io/org/app:1"
    pod = Pod(["busybox"], signed=[], statements={}, init_containers=[image])
    assert not admits(doc, pod)


def test_the_age_limit_is_the_policy_s(sealed: Sealed) -> None:
    statements = _statements(sealed)
    then = datetime.now(UTC) - timedelta(days=3)
    for s in statements:
        if "verdict" in s["predicate"]:
            s["predicate"]["finished_at"] = then.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert admits(_document(_spec(sealed, max_scan_age_days=4)), _pod(sealed, statements))
    assert not admits(_document(_spec(sealed, max_scan_age_days=2)), _pod(sealed, statements))


def test_trailing_slashes_of_the_recorded_repository_do_not_count(sealed: Sealed) -> None:
    statements = _statements(sealed)
    for s in statements:
        if s["predicateType"] == SLSA_PROVENANCE_V1:
            s["predicate"]["buildDefinition"]["externalParameters"]["source"]["repository"] = (
                SOURCE_REPOSITORY + "//"
            )
    doc = _document(_spec(sealed, source_repository=SOURCE_REPOSITORY))
    assert admits(doc, _pod(sealed, statements))


# --- untrusted strings ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [*HOSTILE, 'a" || true || "b', "new\\nline"])
def test_a_hostile_value_stays_one_literal(sealed: Sealed, value: str) -> None:
    literal = quote_cel(value)
    env = celpy.Environment()
    assert env.program(env.compile(literal)).evaluate({}) == celpy.celtypes.StringType(value)
    doc = _document(_spec(sealed, builder_id=value, source_repository=value))
    statements = _statements(sealed)
    for s in statements:
        if s["predicateType"] == SLSA_PROVENANCE_V1:
            s["predicate"]["runDetails"]["builder"]["id"] = value
            s["predicate"]["buildDefinition"]["externalParameters"]["source"]["repository"] = value
    assert admits(doc, _pod(sealed, statements))
    for s in statements:
        if s["predicateType"] == SLSA_PROVENANCE_V1:
            s["predicate"]["runDetails"]["builder"]["id"] = value + "x"
    assert not admits(doc, _pod(sealed, statements))


def test_identities_are_exact_and_regexps_re2(sealed: Sealed) -> None:
    doc = render(
        _spec(sealed, public_key_pem=None, issuer=ISSUER, identity="https://x/a*b@refs/heads/m")
    )
    assert doc["spec"]["attestors"][0]["cosign"]["keyless"]["identities"] == [
        {"issuer": ISSUER, "subject": "https://x/a*b@refs/heads/m"}
    ]
    with pytest.raises(ConfigError, match="RE2"):
        render(_spec(sealed, public_key_pem=None, issuer=ISSUER, identity_regexp=r"^(a)\1$"))
    with pytest.raises(ConfigError, match="--image-pattern"):
        render(_spec(sealed, image_patterns=("ghcr.io/[ab]/*",)))


# --- (c) the command --------------------------------------------------------------------------


def test_the_command_writes_the_policy(sealed: Sealed, tmp_path: Path) -> None:
    policy = _policy_file(
        tmp_path,
        sealed,
        f"  issuer: {ISSUER}\n  identity: {IDENTITY}\n"
        f"  builder_id: {json.dumps(sealed.builder_id)}\n"
        f"  source_repository: {SOURCE_REPOSITORY}\n",
    )
    out = tmp_path / "ivp.yaml"
    out.write_text("previous\n")
    code = main(
        ["policy", "export", "--format", "kyverno-ivp", "--policy", str(policy),
         "--image-pattern", sealed.image + "*", "--name", "sealed-only", "-o", str(out)]
    )  # fmt: skip
    assert code == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["metadata"]["name"] == "sealed-only"
    assert validation_errors(doc, crd_schema(CRD, doc["apiVersion"])) == []
    assert admits(doc, _pod(sealed, _statements(sealed)))
    statements = _statements(sealed)
    _stale(statements)
    assert not admits(doc, _pod(sealed, statements))


def test_the_command_refuses_a_policy_without_signer(sealed: Sealed, tmp_path: Path) -> None:
    policy = _policy_file(tmp_path, sealed, "  max_scan_age_days: 7\n")
    code = main(["policy", "export", "--format", "kyverno-ivp", "--policy", str(policy),
                 "--image-pattern", "ghcr.io/org/*"])  # fmt: skip
    assert code == 2
