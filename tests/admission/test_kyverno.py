"""``modelseal policy export --format kyverno``: the Kyverno ClusterPolicy.

The exported document is validated against the real ClusterPolicy CRD schema, and its
attestation conditions are evaluated with the real ``jmespath`` package (Kyverno's time and
regex functions from tests/support/kyverno_jmespath.py) against the statements a real
``modelseal run --push`` published: the sealed image is admitted, each kind of broken one
refused.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml
from tests.admission.conftest import SCHEMAS, SOURCE_REPOSITORY, Sealed
from tests.support.k8s_schema import crd_schema, validation_errors
from tests.support.kyverno_jmespath import _VARIABLE, admits, query, signed

from modelseal._cli import main
from modelseal.admission import ExportSpec
from modelseal.admission.embed import glob_re2, quote_jmespath, quote_re2, re2_problem
from modelseal.admission.export import export_yaml
from modelseal.admission.kyverno import render
from modelseal.errors import ConfigError
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import CYCLONEDX_PREDICATE, SCAN_REPORT_PREDICATE

CRD = SCHEMAS / "kyverno.io_clusterpolicies.yaml"
ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/org/model-server/.github/workflows/release.yml@refs/tags/v1.0"


def _spec(sealed: Sealed, **changes: Any) -> ExportSpec:
    scan = sealed.statements[SCAN_REPORT_PREDICATE]["predicate"]
    base: dict[str, Any] = {
        "name": "modelseal-test",
        "image_patterns": (sealed.image + "*",),
        "public_key_pem": sealed.public_key_pem,
        "builder_id": sealed.builder_id,
        "source_repository": SOURCE_REPOSITORY + "/",  # a trailing '/' does not count
        "max_scan_age_days": 30,
        "require_sbom": True,
        "policy_sha256": scan["policy"]["sha256"],
    }
    base.update(changes)
    return ExportSpec(**base)


def _document(spec: ExportSpec) -> dict[str, Any]:
    """The document as kubectl reads it: the YAML text export_yaml writes, parsed."""
    doc = yaml.safe_load(export_yaml(spec, "kyverno"))
    assert doc == json.loads(json.dumps(render(spec)))  # the YAML text says what render built
    return doc  # type: ignore[no-any-return]


def _statements(sealed: Sealed, signer: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The sealed image's statements, each signed by ``signer`` (default: its key)."""
    by = signer if signer is not None else {"key": sealed.public_key_pem}
    return [signed(copy.deepcopy(s), by) for s in sealed.statements.values()]


#: A keyless signer that is not the policy's (another workflow of another repository).
OTHER_SIGNER = {
    "issuer": "https://token.actions.githubusercontent.com",
    "subject": "https://github.com/evil/fork/.github/workflows/release.yml@refs/heads/main",
}


# --- (a) the CRD schema ---------------------------------------------------------------------


KEYLESS = [
    {"public_key_pem": None, "issuer": ISSUER, "identity": IDENTITY},
    {"public_key_pem": None, "issuer": ISSUER, "identity_regexp": r"^https://github\.com/org/.*$"},
]


@pytest.mark.parametrize("signer", [{}, *KEYLESS], ids=["key", "identity", "identity-regexp"])
def test_clusterpolicy_validates_against_the_crd(sealed: Sealed, signer: dict[str, Any]) -> None:
    doc = _document(_spec(sealed, **signer))
    assert doc["apiVersion"] == "kyverno.io/v1"
    assert validation_errors(doc, crd_schema(CRD, doc["apiVersion"])) == []
    verify = doc["spec"]["rules"][0]["verifyImages"][0]
    assert doc["spec"]["validationFailureAction"] == "Enforce"
    assert verify["failureAction"] == "Enforce"
    assert doc["spec"]["background"] is False
    assert doc["spec"]["webhookConfiguration"] == {"failurePolicy": "Fail", "timeoutSeconds": 30}
    assert (verify["required"], verify["verifyDigest"], verify["mutateDigest"]) == (True,) * 3
    # every attestation is checked against the same signer as the image (without attestors,
    # Kyverno would accept an attestation from any keyless signer)
    for attestation in verify["attestations"]:
        assert attestation["attestors"] == verify["attestors"]


def test_schema_validation_catches_a_wrong_document(sealed: Sealed) -> None:
    doc = _document(_spec(sealed))
    schema = crd_schema(CRD, "kyverno.io/v1")
    misspelled = copy.deepcopy(doc)
    verify = misspelled["spec"]["rules"][0]["verifyImages"][0]
    verify["imageReference"] = verify.pop("imageReferences")
    assert any("imageReference" in e for e in validation_errors(misspelled, schema))
    nested = copy.deepcopy(doc)
    nested["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["keys"][
        "publicKey"
    ] = "x"
    assert any("publicKey" in e for e in validation_errors(nested, schema))
    wrong_enum = copy.deepcopy(doc)
    wrong_enum["spec"]["rules"][0]["verifyImages"][0]["failureAction"] = "Block"
    assert validation_errors(wrong_enum, schema)


# --- (b) the conditions against the real statements ------------------------------------------


def test_a_sealed_image_is_admitted(sealed: Sealed) -> None:
    doc = _document(_spec(sealed))
    assert admits(doc, _statements(sealed))


def _failed(statements: list[dict[str, Any]]) -> None:
    _scan(statements)["verdict"] = "FAILED"


def _stale(statements: list[dict[str, Any]]) -> None:
    then = datetime.now(UTC) - timedelta(days=31)
    _scan(statements)["finished_at"] = then.strftime("%Y-%m-%dT%H:%M:%SZ")


def _future(statements: list[dict[str, Any]]) -> None:
    then = datetime.now(UTC) + timedelta(hours=1)
    _scan(statements)["finished_at"] = then.strftime("%Y-%m-%dT%H:%M:%SZ")


def _wrong_builder(statements: list[dict[str, Any]]) -> None:
    _of(statements, SLSA_PROVENANCE_V1)["runDetails"]["builder"]["id"] = "https://evil.example/b"


def _wrong_source(statements: list[dict[str, Any]]) -> None:
    source = _of(statements, SLSA_PROVENANCE_V1)["buildDefinition"]["externalParameters"]
    source["source"]["repository"] = SOURCE_REPOSITORY + "-fork"


def _no_source(statements: list[dict[str, Any]]) -> None:
    del _of(statements, SLSA_PROVENANCE_V1)["buildDefinition"]["externalParameters"]["source"]


def _no_sbom(statements: list[dict[str, Any]]) -> None:
    statements[:] = [s for s in statements if s["predicateType"] != CYCLONEDX_PREDICATE]


def _no_provenance(statements: list[dict[str, Any]]) -> None:
    statements[:] = [s for s in statements if s["predicateType"] != SLSA_PROVENANCE_V1]


def _other_policy(statements: list[dict[str, Any]]) -> None:
    _scan(statements)["policy"]["sha256"] = "0" * 64


def _provenance_of_other_policy(statements: list[dict[str, Any]]) -> None:
    external = _of(statements, SLSA_PROVENANCE_V1)["buildDefinition"]["externalParameters"]
    external["policy"]["sha256"] = "0" * 64


def _report_by_another_signer(statements: list[dict[str, Any]]) -> None:
    """The scan report is a correct, PASSED one — but signed by someone else."""
    for i, s in enumerate(statements):
        if s["predicateType"] == SCAN_REPORT_PREDICATE:
            statements[i] = signed(s, OTHER_SIGNER)


def _provenance_by_another_signer(statements: list[dict[str, Any]]) -> None:
    for i, s in enumerate(statements):
        if s["predicateType"] == SLSA_PROVENANCE_V1:
            statements[i] = signed(s, OTHER_SIGNER)


def _also_a_failed_report(statements: list[dict[str, Any]]) -> None:
    bad = copy.deepcopy(next(s for s in statements if s["predicateType"] == SCAN_REPORT_PREDICATE))
    bad["predicate"]["verdict"] = "FAILED"
    statements.append(bad)


def _of(statements: list[dict[str, Any]], predicate_type: str) -> dict[str, Any]:
    return next(s for s in statements if s["predicateType"] == predicate_type)["predicate"]  # type: ignore[no-any-return]


def _scan(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return _of(statements, SCAN_REPORT_PREDICATE)


BROKEN = [
    _failed,
    _stale,
    _future,
    _wrong_builder,
    _wrong_source,
    _no_source,
    _no_sbom,
    _no_provenance,
    _other_policy,
    _provenance_of_other_policy,
    _report_by_another_signer,
    _provenance_by_another_signer,
    _also_a_failed_report,  # Kyverno: every attestation of the type must pass
]


@pytest.mark.parametrize("breakage", BROKEN, ids=[f.__name__.strip("_") for f in BROKEN])
def test_a_broken_image_is_refused(sealed: Sealed, breakage: Any) -> None:
    doc = _document(_spec(sealed))
    statements = _statements(sealed)
    breakage(statements)
    assert not admits(doc, statements)


def test_the_age_limit_is_the_policy_s(sealed: Sealed) -> None:
    statements = _statements(sealed)
    then = datetime.now(UTC) - timedelta(days=3)
    _scan(statements)["finished_at"] = then.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert admits(_document(_spec(sealed, max_scan_age_days=4)), statements)
    assert not admits(_document(_spec(sealed, max_scan_age_days=2)), statements)


def test_trailing_slashes_of_the_recorded_repository_do_not_count(sealed: Sealed) -> None:
    statements = _statements(sealed)
    source = _of(statements, SLSA_PROVENANCE_V1)["buildDefinition"]["externalParameters"]
    source["source"]["repository"] = SOURCE_REPOSITORY + "//"
    assert admits(_document(_spec(sealed, source_repository=SOURCE_REPOSITORY)), statements)


def test_without_expectations_the_conditions_check_the_scan_report_only(sealed: Sealed) -> None:
    doc = _document(_spec(sealed, builder_id=None, source_repository=None, policy_sha256=None))
    attestations = doc["spec"]["rules"][0]["verifyImages"][0]["attestations"]
    assert "conditions" not in attestations[0]  # provenance: presence and signer only
    statements = _statements(sealed)
    _wrong_builder(statements)
    assert admits(doc, statements)
    _failed(statements)
    assert not admits(doc, statements)


# --- untrusted strings ------------------------------------------------------------------------

HOSTILE = [
    '`"] || `true` || ["',
    "a' || 'x' == 'x",
    "{{ request.object.metadata.name }}",
    "$(./../../x)",
    "x}}{{y",
    "back\\slash",
    "at@sign and é and 😀",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_stays_one_literal(sealed: Sealed, value: str) -> None:
    literal = quote_jmespath(value)
    assert jmespath.search(literal, {}) == value
    for forbidden in "{}$@'\\\n":
        assert forbidden not in literal.replace("\\u", "")
    doc = render(_spec(sealed, builder_id=value))
    key = doc["spec"]["rules"][0]["verifyImages"][0]["attestations"][0]["conditions"][0]["all"][0][
        "key"
    ]
    # still exactly one Kyverno variable, comparing the builder id to the value and nothing else
    assert [m[1] for m in _VARIABLE.findall(key)] == [key]
    inner = key[2:-2].strip()
    assert query(inner, {"runDetails": {"builder": {"id": value}}}) is True
    assert query(inner, {"runDetails": {"builder": {"id": value + "x"}}}) is False
    assert query(inner, {"runDetails": {"builder": {"id": None}}}) is False


def test_values_kyverno_would_substitute_are_refused(sealed: Sealed) -> None:
    for field in ("identity", "issuer", "identity_regexp"):
        signer = {"public_key_pem": None, "issuer": ISSUER, "identity": IDENTITY}
        if field == "identity_regexp":
            signer = {"public_key_pem": None, "issuer": ISSUER, "identity_regexp": "^a{{b}}$"}
        else:
            signer[field] = "https://x/{{request.object.metadata.name}}"
        with pytest.raises(ConfigError, match="variable"):
            render(_spec(sealed, **signer))
    with pytest.raises(ConfigError, match="--image-pattern"):
        render(_spec(sealed, image_patterns=("ghcr.io/{{x}}/*",)))
    with pytest.raises(ConfigError, match="control character"):
        render(_spec(sealed, builder_id="a\nb"))


def test_an_exact_identity_with_wildcards_is_matched_exactly(sealed: Sealed) -> None:
    identity = "https://x/a*b?c@refs/heads/main"
    doc = render(_spec(sealed, public_key_pem=None, issuer=ISSUER, identity=identity))
    keyless = doc["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["keyless"]
    assert "subject" not in keyless  # Kyverno would read '*' and '?' as wildcards there
    pattern = keyless["subjectRegExp"]
    assert pattern == f"^{quote_re2(identity)}$"
    assert re.search(pattern, identity)
    assert not re.search(pattern, "https://x/aXXXbYc@refs/heads/main")


def test_a_regexp_kyverno_cannot_compile_is_refused(sealed: Sealed) -> None:
    with pytest.raises(ConfigError, match="RE2"):
        render(_spec(sealed, public_key_pem=None, issuer=ISSUER, identity_regexp=r"^(?!evil).*$"))


# --- (c) the command --------------------------------------------------------------------------


def _policy_file(tmp_path: Path, sealed: Sealed, verify: str) -> Path:
    (tmp_path / "signer.pub").write_text(sealed.public_key_pem)
    path = tmp_path / "modelseal.yml"
    path.write_text(f"version: 1\nverify:\n{verify}")
    return path


def test_the_command_writes_the_policy(sealed: Sealed, tmp_path: Path) -> None:
    policy = _policy_file(
        tmp_path,
        sealed,
        f"  public_key: signer.pub\n  builder_id: {json.dumps(sealed.builder_id)}\n"
        f"  source_repository: {SOURCE_REPOSITORY}\n  max_scan_age_days: 7\n",
    )
    out = tmp_path / "out" / "kyverno.yaml"
    out.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    out.symlink_to(victim)  # created fresh: the link is replaced, never written through
    code = main(
        ["policy", "export", "--format", "kyverno", "--policy", str(policy),
         "--image-pattern", sealed.image + "*", "--require-sbom", "-o", str(out)]
    )  # fmt: skip
    assert code == 0
    assert victim.read_text() == "keep me\n"
    assert not out.is_symlink()
    doc = yaml.safe_load(out.read_text())
    assert validation_errors(doc, crd_schema(CRD, doc["apiVersion"])) == []
    assert doc["metadata"]["name"].startswith("modelseal-")
    verify = doc["spec"]["rules"][0]["verifyImages"][0]
    assert verify["imageReferences"] == [sealed.image + "*"]
    assert verify["attestors"][0]["entries"][0]["keys"]["publicKeys"] == sealed.public_key_pem
    assert admits(doc, _statements(sealed))
    statements = _statements(sealed)
    _stale(statements)
    assert not admits(doc, statements)


def _sbom_required(doc: dict[str, Any]) -> bool:
    attestations = doc["spec"]["rules"][0]["verifyImages"][0]["attestations"]
    return any(a["type"] == CYCLONEDX_PREDICATE for a in attestations)


def test_the_sbom_is_required_unless_no_sbom(
    sealed: Sealed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """modelseal verify always requires the SBOM attestation: so does the export, by default."""
    policy = _policy_file(tmp_path, sealed, "  public_key: signer.pub\n")
    out = tmp_path / "k.yaml"
    base = ["policy", "export", "--format", "kyverno", "--policy", str(policy),
            "--image-pattern", "ghcr.io/org/*", "-o", str(out)]  # fmt: skip
    assert main(base) == 0
    assert _sbom_required(yaml.safe_load(out.read_text()))
    statements = _statements(sealed)
    _no_sbom(statements)
    assert not admits(yaml.safe_load(out.read_text()), statements)
    assert main([*base, "--require-sbom"]) == 0  # the default, accepted
    assert _sbom_required(yaml.safe_load(out.read_text()))
    assert main([*base, "--no-sbom"]) == 0
    assert not _sbom_required(yaml.safe_load(out.read_text()))
    assert main([*base, "--no-sbom", "--require-sbom"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_an_unenforced_rebuild_requirement_is_noticed(
    sealed: Sealed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy_file(
        tmp_path, sealed, "  public_key: signer.pub\n  require_rebuild_by:\n    - key: signer.pub\n"
    )
    out = tmp_path / "k.yaml"
    code = main(["policy", "export", "--format", "kyverno", "--policy", str(policy),
                 "--image-pattern", "ghcr.io/org/*", "-o", str(out)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "require_rebuild_by" in err and "not enforced at admission" in err
    assert out.exists()
    plain = _policy_file(tmp_path, sealed, "  public_key: signer.pub\n")
    assert main(["policy", "export", "--format", "kyverno", "--policy", str(plain),
                 "--image-pattern", "ghcr.io/org/*", "-o", str(out)]) == 0  # fmt: skip
    assert "not enforced" not in capsys.readouterr().err


def test_the_command_refuses_a_policy_without_signer(
    tmp_path: Path, sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy_file(tmp_path, sealed, "  max_scan_age_days: 7\n")
    out = tmp_path / "k.yaml"
    code = main(["policy", "export", "--format", "kyverno", "--policy", str(policy),
                 "--image-pattern", "ghcr.io/org/*", "-o", str(out)])  # fmt: skip
    assert code == 2
    assert "names no signer" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_needs_an_image_pattern(
    tmp_path: Path, sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy_file(tmp_path, sealed, "  public_key: signer.pub\n")
    out = tmp_path / "k.yaml"
    code = main(
        ["policy", "export", "--format", "kyverno", "--policy", str(policy), "-o", str(out)]
    )
    assert code == 2
    assert "--image-pattern" in capsys.readouterr().err
    assert not out.exists()


def test_the_export_is_deterministic(sealed: Sealed) -> None:
    for fmt in ("kyverno", "kyverno-ivp"):
        spec = _spec(sealed, **KEYLESS[0])
        assert export_yaml(spec, fmt) == export_yaml(_spec(sealed, **KEYLESS[0]), fmt)  # type: ignore[arg-type]


def test_a_report_by_another_signer_neither_counts_nor_refuses(sealed: Sealed) -> None:
    """Only attestations the attestors verify are judged: a FAILED report by someone else
    beside the signer's PASSED one does not refuse; a PASSED one by someone else alone does
    not admit (BROKEN: report_by_another_signer)."""
    doc = _document(_spec(sealed))
    statements = _statements(sealed)
    foreign = copy.deepcopy(
        next(s for s in statements if s["predicateType"] == SCAN_REPORT_PREDICATE)
    )
    foreign["predicate"]["verdict"] = "FAILED"
    statements.append(signed(foreign, OTHER_SIGNER))
    assert admits(doc, statements)
    keyless = _document(_spec(sealed, **KEYLESS[0]))
    by_identity = {"issuer": ISSUER, "subject": IDENTITY}
    assert admits(keyless, _statements(sealed, by_identity))
    assert not admits(keyless, _statements(sealed, OTHER_SIGNER))
    assert not admits(keyless, _statements(sealed))  # signed by the key, not the identity


def test_ephemeral_containers_are_matched(sealed: Sealed) -> None:
    """`kubectl debug` adds a container through the pods/ephemeralcontainers subresource, which
    a rule matching only Pod never sees; each kind is its own match entry (a list of both in
    one entry would stop Kyverno generating the pod-controller rules)."""
    doc = _document(_spec(sealed))
    assert doc["spec"]["rules"][0]["match"] == {
        "any": [
            {"resources": {"kinds": ["Pod"]}},
            {"resources": {"kinds": ["Pod/ephemeralcontainers"]}},
        ]
    }
    assert validation_errors(doc, crd_schema(CRD, doc["apiVersion"])) == []


@pytest.mark.parametrize(
    "pattern",
    ["ghcr.io/org/model", "ghcr.io/org/model:*", "ghcr.io/org/model:1.0", "ghcr.io/org/m@sha256:*",
     "localhost:5000/model", "ghcr.io/org/*/model"],
)  # fmt: skip
def test_a_pattern_that_misses_tag_or_digest_references_is_refused(
    sealed: Sealed, pattern: str
) -> None:
    for fmt in ("kyverno", "kyverno-ivp"):
        with pytest.raises(ConfigError, match="would leave images unchecked") as e:
            export_yaml(_spec(sealed, **KEYLESS[0], image_patterns=(pattern,)), fmt)  # type: ignore[arg-type]
        assert e.value.hint is not None and "model*" in e.value.hint
    for ok in ("ghcr.io/org/model*", "ghcr.io/org/*", "localhost:5000/*"):
        export_yaml(_spec(sealed, image_patterns=(ok,)), "kyverno")


@pytest.mark.parametrize("value", [*HOSTILE, "a.b*c?d[e](f)|g^h$i+j{k}", "_#%&~=!<>,;`\"'"])
def test_quoted_regexps_match_exactly_the_literal(value: str) -> None:
    pattern = f"^{quote_re2(value)}$"
    assert re.fullmatch(pattern, value)
    assert not re.fullmatch(pattern, value + "x")
    other = ("y" if value[0] == "x" else "x") + value[1:]
    assert not re.fullmatch(pattern, other)
    assert re2_problem(pattern) is None


def test_image_globs_read_as_kyverno_reads_them() -> None:
    pattern = glob_re2("ghcr.io/org/model-?/*")
    assert re.fullmatch(pattern, "ghcr.io/org/model-a/server:1.0@sha256:ab")
    assert not re.fullmatch(pattern, "ghcr.io/org/model-ab/server:1.0")
    assert not re.fullmatch(pattern, "ghcrxio/org/model-a/server")
