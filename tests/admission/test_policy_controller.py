"""``modelseal policy export --format policy-controller``: the ClusterImagePolicy validates
against policy-controller's own CRD schema, and its Rego policies — run by a real Rego engine
(regopy, rego-cpp) on the statements a real ``modelseal run --push`` attached — admit the sealed
image and refuse each kind of broken one."""

from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from regopy import Interpreter
from ruamel.yaml import YAML
from tests.admission.conftest import SCHEMAS, SOURCE_REPOSITORY, Sealed

from modelseal._cli import main
from modelseal.admission import ExportSpec
from modelseal.admission.export import export_yaml
from modelseal.admission.policy_controller import (
    ATTESTATION_AUTHORITY,
    PROVENANCE,
    SBOM,
    SCAN_REPORT,
    SIGNATURE_AUTHORITY,
    rego_string,
)
from modelseal.errors import ConfigError
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import CYCLONEDX_PREDICATE, SCAN_REPORT_PREDICATE

CRD = SCHEMAS / "policy-controller_clusterimagepolicy.yaml"
PATTERN = "127.0.0.1:*/admission/**"
ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY_RE = (
    r"^https://github\.com/org/model-server/\.github/workflows/release\.yml@refs/tags/v[0-9.]+$"
)
DAY_S = 86_400


def _load_yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it under kubectl's default strict field
    validation: an object schema with ``properties`` admits no other field (unless it says
    ``x-kubernetes-preserve-unknown-fields``)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _validator(api_version: str) -> jsonschema.Validator:
    crd = _load_yaml(CRD.read_text())
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    (version,) = [
        v for v in crd["spec"]["versions"] if f"{group}/{v['name']}" == api_version and v["served"]
    ]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    # The API server checks these itself (they are not in a CRD's schema).
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
    schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
    schema["properties"]["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    }
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return jsonschema.Draft7Validator(_strict(schema))


def _spec(sealed: Sealed, **changes: Any) -> ExportSpec:
    fields: dict[str, Any] = {
        "name": "modelseal-test",
        "image_patterns": (PATTERN,),
        "public_key_pem": sealed.public_key_pem,
        "builder_id": sealed.builder_id,
        "source_repository": SOURCE_REPOSITORY,
        "max_scan_age_days": 30,
    }
    fields.update(changes)
    return ExportSpec(**fields)


def _export(spec: ExportSpec) -> Any:
    """The exported document, read back from the YAML that the command writes."""
    return _load_yaml(export_yaml(spec, "policy-controller"))


def _policies(doc: Any) -> dict[str, str]:
    """Attestation name → its Rego module (from the attestations authority)."""
    (authority,) = [a for a in doc["spec"]["authorities"] if a.get("attestations")]
    return {a["name"]: a["policy"]["data"] for a in authority["attestations"]}


def controller_input(statement: dict[str, Any]) -> str:
    """What policy-controller hands an attestation's Rego policy (pkg/webhook/policy/
    attestation.go, AttestationToPayloadJSON): the DSSE payload decoded into in-toto-golang's
    ``in_toto.Statement`` and marshalled again — ``_type``, ``predicateType``,
    ``subject[{name, digest}]`` and the predicate as it was — as JSON text."""
    return json.dumps({
        "_type": statement["_type"],
        "predicateType": statement["predicateType"],
        "subject": [
            {"name": s.get("name", ""), "digest": s.get("digest", {})}
            for s in statement["subject"]
        ],
        "predicate": statement["predicate"],
    })  # fmt: skip


def compliant(rego: str, input_json: str) -> bool:
    """``data.sigstore.isCompliant`` of ``rego`` on ``input_json``, with the query
    policy-controller runs (pkg/webhook/policy/rego.go); an engine error fails the test."""
    interpreter = Interpreter()
    interpreter.set_input_term(input_json)
    interpreter.add_module("sigstore.rego", rego)
    output = interpreter.query("isCompliant = data.sigstore.isCompliant")
    assert output.ok(), f"the Rego engine refused the policy: {output}"
    assert len(output) == 1, str(output)
    value = output[0]["isCompliant"]
    assert isinstance(value, bool), str(output)
    return value


def _edited(statement: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(statement)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# (a) the CRD schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("keyless", [False, True], ids=["key", "keyless"])
def test_the_export_validates_against_the_crd_schema(sealed: Sealed, keyless: bool) -> None:
    signer: dict[str, Any] = (
        {"public_key_pem": None, "issuer": ISSUER, "identity_regexp": IDENTITY_RE}
        if keyless
        else {}
    )
    doc = _export(_spec(sealed, require_sbom=True, policy_sha256="ab" * 32, **signer))
    validator = _validator(doc["apiVersion"])
    errors = [e.message for e in validator.iter_errors(doc)]
    assert errors == []
    assert doc["kind"] == "ClusterImagePolicy"
    assert doc["spec"]["images"] == [{"glob": PATTERN}]
    assert doc["spec"]["mode"] == "enforce"
    assert [a["name"] for a in doc["spec"]["authorities"]] == [
        SIGNATURE_AUTHORITY,
        ATTESTATION_AUTHORITY,
    ]
    assert [
        (a["name"], a["predicateType"]) for a in doc["spec"]["authorities"][1]["attestations"]
    ] == [
        (PROVENANCE, SLSA_PROVENANCE_V1),
        (SCAN_REPORT, SCAN_REPORT_PREDICATE),
        (SBOM, CYCLONEDX_PREDICATE),
    ]


def test_the_schema_check_bites(sealed: Sealed) -> None:
    """Validation that would pass anything proves nothing: a misspelled field, a wrong type and
    a missing spec each fail it."""
    doc = _export(_spec(sealed))
    validator = _validator(doc["apiVersion"])
    misspelled = copy.deepcopy(doc)
    att = misspelled["spec"]["authorities"][1]["attestations"][0]
    att["predicateTyp"] = att.pop("predicateType")
    wrong_type = copy.deepcopy(doc)
    wrong_type["spec"]["images"] = "ghcr.io/org/*"
    nested = copy.deepcopy(doc)
    nested["spec"]["authorities"][0]["key"]["date"] = nested["spec"]["authorities"][0]["key"].pop(
        "data"
    )
    no_spec = {k: v for k, v in doc.items() if k != "spec"}
    for broken in (misspelled, wrong_type, nested, no_spec):
        assert list(validator.iter_errors(broken)), broken


def test_the_export_is_deterministic_and_canonicalises_the_key(sealed: Sealed) -> None:
    spec = _spec(sealed, require_sbom=True)
    assert export_yaml(spec, "policy-controller") == export_yaml(spec, "policy-controller")
    doc = _export(spec)
    for authority in doc["spec"]["authorities"]:
        assert authority["key"]["data"].startswith("-----BEGIN PUBLIC KEY-----\n")
        assert authority["key"]["data"].strip() == sealed.public_key_pem.strip()


# (b) the Rego policies, evaluated on the real statements -----------------------------------


def test_the_sealed_image_is_admitted(sealed: Sealed) -> None:
    scan = sealed.statements[SCAN_REPORT_PREDICATE]
    policy_sha = scan["predicate"]["policy"]["sha256"]
    spec = _spec(sealed, require_sbom=True, policy_sha256=policy_sha)
    policies = _policies(_export(spec))
    assert set(policies) == {PROVENANCE, SCAN_REPORT, SBOM}
    for name, predicate in (
        (PROVENANCE, SLSA_PROVENANCE_V1),
        (SCAN_REPORT, SCAN_REPORT_PREDICATE),
        (SBOM, CYCLONEDX_PREDICATE),
    ):
        assert compliant(policies[name], controller_input(sealed.statements[predicate])), name
    # A source repository written with a trailing "/" matches as modelseal verify's does.
    slash = _policies(_export(_spec(sealed, source_repository=SOURCE_REPOSITORY + "/")))
    assert compliant(slash[PROVENANCE], controller_input(sealed.statements[SLSA_PROVENANCE_V1]))


def test_a_failed_stale_or_future_scan_report_is_refused(sealed: Sealed) -> None:
    scan = sealed.statements[SCAN_REPORT_PREDICATE]
    rego = _policies(_export(_spec(sealed, max_scan_age_days=7)))[SCAN_REPORT]
    assert compliant(rego, controller_input(scan))
    now = time.time()
    refused = {
        "failed": _edited(scan, ("predicate", "verdict"), "FAILED"),
        "errored": _edited(scan, ("predicate", "verdict"), "ERRORED"),
        "stale": _edited(scan, ("predicate", "finished_at"), _rfc3339(now - 8 * DAY_S)),
        "future": _edited(scan, ("predicate", "finished_at"), _rfc3339(now + DAY_S)),
        "unreadable time": _edited(scan, ("predicate", "finished_at"), "yesterday"),
        "time as a number": _edited(scan, ("predicate", "finished_at"), now),
        "no verdict": _edited(scan, ("predicate", "verdict"), None),
        "another predicate": _edited(scan, ("predicateType",), CYCLONEDX_PREDICATE),
    }
    for why, statement in refused.items():
        assert not compliant(rego, controller_input(statement)), why
    # Within the age: 6 days old passes a 7-day limit.
    six_days = _edited(scan, ("predicate", "finished_at"), _rfc3339(now - 6 * DAY_S))
    assert compliant(rego, controller_input(six_days))


def test_a_wrong_builder_or_source_repository_is_refused(sealed: Sealed) -> None:
    provenance = sealed.statements[SLSA_PROVENANCE_V1]
    rego = _policies(_export(_spec(sealed)))[PROVENANCE]
    assert compliant(rego, controller_input(provenance))
    source = ("predicate", "buildDefinition", "externalParameters", "source", "repository")
    refused = {
        "builder": _edited(provenance, ("predicate", "runDetails", "builder", "id"), "evil"),
        "source": _edited(provenance, source, "https://github.com/evil/model-server"),
        "source prefix": _edited(provenance, source, SOURCE_REPOSITORY + "-fork"),
        "no source": _edited(provenance, source, None),
    }
    for why, statement in refused.items():
        assert not compliant(rego, controller_input(statement)), why
    # The policy written for another builder refuses the real provenance.
    other = _policies(_export(_spec(sealed, builder_id=sealed.builder_id + "x")))[PROVENANCE]
    assert not compliant(other, controller_input(provenance))


def test_a_wrong_policy_digest_is_refused(sealed: Sealed) -> None:
    scan = sealed.statements[SCAN_REPORT_PREDICATE]
    provenance = sealed.statements[SLSA_PROVENANCE_V1]
    real = scan["predicate"]["policy"]["sha256"]
    policies = _policies(_export(_spec(sealed, policy_sha256=real)))
    assert compliant(policies[SCAN_REPORT], controller_input(scan))
    assert compliant(policies[PROVENANCE], controller_input(provenance))
    wrong = _policies(_export(_spec(sealed, policy_sha256="0" * 64)))
    assert not compliant(wrong[SCAN_REPORT], controller_input(scan))
    assert not compliant(wrong[PROVENANCE], controller_input(provenance))
    # Without --policy-digest the digest is not asked for.
    loose = _policies(_export(_spec(sealed)))
    edited = _edited(scan, ("predicate", "policy", "sha256"), "0" * 64)
    assert compliant(loose[SCAN_REPORT], controller_input(edited))


def test_the_image_policy_needs_the_signature_and_every_attestation(sealed: Sealed) -> None:
    """The policy-level input is policy-controller's PolicyResult (pkg/webhook/
    validator_result.go): authority name → the signatures, or attestation name → the
    attestations that verified and passed their policies."""
    doc = _export(_spec(sealed, require_sbom=True))
    rego = doc["spec"]["policy"]["data"]
    attestation = {"id": "ab" * 32, "predicateType": SLSA_PROVENANCE_V1}
    signature = {SIGNATURE_AUTHORITY: {"signatures": [{"id": "cd" * 32}]}}

    def attested(*names: str) -> dict[str, Any]:
        return {ATTESTATION_AUTHORITY: {"attestations": {n: [attestation] for n in names}}}

    def result(*parts: dict[str, Any]) -> str:
        return json.dumps({"authorityMatches": {k: v for p in parts for k, v in p.items()}})

    assert compliant(rego, result(signature, attested(PROVENANCE, SCAN_REPORT, SBOM)))
    assert not compliant(rego, result(attested(PROVENANCE, SCAN_REPORT, SBOM)))
    assert not compliant(rego, result(signature))
    assert not compliant(rego, result(signature, attested(PROVENANCE, SCAN_REPORT)))
    assert not compliant(rego, json.dumps({}))
    without_sbom = _export(_spec(sealed, require_sbom=False))["spec"]["policy"]["data"]
    assert compliant(without_sbom, result(signature, attested(PROVENANCE, SCAN_REPORT)))


HOSTILE = 'evil" ; true }\nisCompliant := true\n# \\" \\\\ \t\u2028\u00e9 `raw` \x01'


def test_hostile_values_stay_one_string(sealed: Sealed) -> None:
    """A builder id or repository holding quotes, backslashes, newlines, backticks and control
    characters neither breaks the Rego nor adds to it: the policy compares against exactly that
    string, so a provenance naming it is admitted and the real one is refused."""
    literal = rego_string(HOSTILE)
    assert json.loads(literal) == HOSTILE
    assert literal.isascii() and "\n" not in literal
    provenance = sealed.statements[SLSA_PROVENANCE_V1]
    source = ("predicate", "buildDefinition", "externalParameters", "source", "repository")
    spec = _spec(sealed, builder_id=HOSTILE, source_repository=HOSTILE)
    text = export_yaml(spec, "policy-controller")
    rego = _policies(_load_yaml(text))[PROVENANCE]
    assert rego == _policies(_export(spec))[PROVENANCE]
    assert not compliant(rego, controller_input(provenance))
    matching = _edited(provenance, ("predicate", "runDetails", "builder", "id"), HOSTILE)
    matching = _edited(matching, source, HOSTILE)
    assert compliant(rego, controller_input(matching))
    assert _validator("policy.sigstore.dev/v1beta1").is_valid(_load_yaml(text))


def test_hostile_signer_values_round_trip_through_yaml(sealed: Sealed) -> None:
    # Control characters are refused (test_a_signer_policy_controller_cannot_read_is_refused);
    # quotes, YAML syntax and non-ASCII stay one string.
    issuer = 'evil" ; true } isCompliant := true # \\" \u2028\u00e9 `raw`'
    identity = "a: b - c --- {x: [y]} & *alias !tag"
    doc = _export(_spec(sealed, public_key_pem=None, issuer=issuer, identity=identity))
    for authority in doc["spec"]["authorities"]:
        assert authority["keyless"]["identities"] == [{"issuer": issuer, "subject": identity}]
    assert len(doc["spec"]["authorities"]) == 2


@pytest.mark.parametrize(
    "pattern",
    [
        "ghcr.io/org/* ",
        "ghcr.io/[org]/*",
        "ghcr.io\\org",
        "a\nb",
        "",
        "ghcr.io/org/?",
        "a@sha256:*",
    ],
)
def test_an_image_pattern_that_is_no_glob_is_refused(sealed: Sealed, pattern: str) -> None:
    with pytest.raises(ConfigError, match="image pattern"):
        export_yaml(_spec(sealed, image_patterns=(pattern,)), "policy-controller")


@pytest.mark.parametrize(
    "signer",
    [
        {"identity_regexp": r"^(?!evil).*$"},
        {"identity_regexp": r"^(a)\1$"},
        {"identity": "https://x/\nrelease"},
        {"identity": "a" * 9000},
    ],
    ids=["look-ahead", "backreference", "control-character", "too-long"],
)
def test_a_signer_policy_controller_cannot_read_is_refused(
    sealed: Sealed, signer: dict[str, str], tmp_path: Path
) -> None:
    """Vetted as for the Kyverno formats: a regexp RE2 cannot compile would make the controller
    refuse every image (or, configured to ignore failures, none)."""
    spec = _spec(sealed, public_key_pem=None, issuer=ISSUER, **signer)
    with pytest.raises(ConfigError, match=r"RE2|control character|longer than"):
        export_yaml(spec, "policy-controller")
    with pytest.raises(ConfigError, match="control character"):
        export_yaml(
            _spec(sealed, public_key_pem=None, issuer="https://x\x07", identity="a"),
            "policy-controller",
        )


def test_a_key_that_is_no_p256_public_key_is_refused(sealed: Sealed) -> None:
    with pytest.raises(ConfigError, match="public key"):
        export_yaml(
            _spec(sealed, public_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n"), "policy-controller"
        )


# (c) the command line -------------------------------------------------------------------------


def test_cli_writes_the_key_policy(sealed: Sealed, tmp_path: Path) -> None:
    (tmp_path / "key.pub").write_text(sealed.public_key_pem)
    policy = tmp_path / "modelseal.yml"
    policy.write_text(
        "version: 1\nverify:\n  public_key: key.pub\n"
        f"  builder_id: {json.dumps(sealed.builder_id)}\n"
        f"  source_repository: {SOURCE_REPOSITORY}\n  max_scan_age_days: 3\n"
    )
    out = tmp_path / "cip.yaml"
    code = main([
        "policy", "export", "--format", "policy-controller", "--policy", str(policy),
        "--image-pattern", PATTERN, "--image-pattern", "ghcr.io/org/**", "-o", str(out),
    ])  # fmt: skip
    assert code == 0
    doc = _load_yaml(out.read_text())
    assert list(_validator(doc["apiVersion"]).iter_errors(doc)) == []
    assert doc["metadata"]["name"].startswith("modelseal-")
    assert doc["spec"]["images"] == [{"glob": PATTERN}, {"glob": "ghcr.io/org/**"}]
    assert "key" in doc["spec"]["authorities"][0]
    policies = _policies(doc)
    assert set(policies) == {PROVENANCE, SCAN_REPORT, SBOM}  # the SBOM too, as verify requires
    assert f"<= {3 * DAY_S * 10**9}" in policies[SCAN_REPORT]
    for name, predicate in (
        (PROVENANCE, SLSA_PROVENANCE_V1),
        (SCAN_REPORT, SCAN_REPORT_PREDICATE),
        (SBOM, CYCLONEDX_PREDICATE),
    ):
        assert compliant(policies[name], controller_input(sealed.statements[predicate]))


def test_cli_keyless_policy_renders_subject_regexp(tmp_path: Path) -> None:
    policy = tmp_path / "modelseal.yml"
    policy.write_text(
        f"version: 1\nverify:\n  issuer: {ISSUER}\n  identity_regexp: '{IDENTITY_RE}'\n"
    )
    out = tmp_path / "cip.yaml"
    code = main([
        "policy", "export", "--format", "policy-controller", "--policy", str(policy),
        "--image-pattern", "ghcr.io/org/*", "--name", "model-server", "--require-sbom",
        "-o", str(out),
    ])  # fmt: skip
    assert code == 0
    doc = _load_yaml(out.read_text())
    assert list(_validator(doc["apiVersion"]).iter_errors(doc)) == []
    assert doc["metadata"]["name"] == "model-server"
    for authority in doc["spec"]["authorities"]:
        assert authority["keyless"] == {
            "url": "https://fulcio.sigstore.dev",
            "identities": [{"issuer": ISSUER, "subjectRegExp": IDENTITY_RE}],
        }
    assert set(_policies(doc)) == {PROVENANCE, SCAN_REPORT, SBOM}


def test_cli_bad_pattern_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "modelseal.yml"
    policy.write_text(f"version: 1\nverify:\n  issuer: {ISSUER}\n  identity: someone\n")
    out = tmp_path / "cip.yaml"
    code = main([
        "policy", "export", "--format", "policy-controller", "--policy", str(policy),
        "--image-pattern", "ghcr.io/org/[a-z]*", "-o", str(out),
    ])  # fmt: skip
    assert code == 2
    assert not out.exists()
    policy.write_text(f"version: 1\nverify:\n  issuer: {ISSUER}\n  identity_regexp: '^(?=a).*$'\n")
    code = main([
        "policy", "export", "--format", "policy-controller", "--policy", str(policy),
        "--image-pattern", "ghcr.io/org/*", "-o", str(out),
    ])  # fmt: skip
    assert code == 2
    assert not out.exists()
