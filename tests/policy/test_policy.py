"""The policy package: model defaults, loader error messages, JSON Schema, Markdown reference."""

from __future__ import annotations

import contextlib
import hashlib
import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelseal.errors import ConfigError, ExitCode
from modelseal.policy import (
    BuildPolicy,
    LoadedPolicy,
    Policy,
    PolicyFileError,
    default_policy,
    load_policy,
    load_policy_text,
    policy_json_schema,
)
from modelseal.policy.reference import render_reference
from modelseal.policy.schema import schema_text

NAME = "modelseal.yml"

FULL = """\
# Security team policy.
version: 1
build:
  enabled: true
  rebuild_check: false
  require_pinned_base: true
  allow_network: true
  platforms:
    - linux/amd64
    - linux/arm64
    - linux/arm/v7
"""


def problems(text: str) -> list[str]:
    """The problem lines of the error that loading ``text`` raises."""
    with pytest.raises(PolicyFileError) as info:
        load_policy_text(text, NAME)
    message = str(info.value)
    head, *lines = message.splitlines()
    assert head == f"invalid policy file {NAME}:"
    assert list(info.value.problems) == lines
    return lines


def problem(text: str) -> str:
    """The one problem line of the error that loading ``text`` raises."""
    lines = problems(text)
    assert len(lines) == 1, lines
    return lines[0]


# --- valid files ----------------------------------------------------------------------------


def test_minimal_file_gives_the_fail_closed_defaults() -> None:
    loaded = load_policy_text("version: 1\n", NAME)
    assert loaded.source == NAME
    assert loaded.sha256 == hashlib.sha256(b"version: 1\n").hexdigest()
    assert loaded.policy == Policy(version=1)
    build = loaded.policy.build
    assert build == BuildPolicy()
    assert build.enabled is True
    assert build.rebuild_check == "always"
    assert build.require_pinned_base is True
    assert build.allow_network is False
    assert build.platforms == []


def test_full_file() -> None:
    policy = load_policy_text(FULL, NAME).policy
    assert policy.version == 1
    assert policy.build == BuildPolicy(
        enabled=True,
        rebuild_check="never",
        require_pinned_base=True,
        allow_network=True,
        platforms=["linux/amd64", "linux/arm64", "linux/arm/v7"],
    )


def test_flow_style_and_quoted_strings_are_fine() -> None:
    text = '{version: 1, build: {enabled: false, platforms: ["linux/amd64"]}}'
    build = load_policy_text(text, NAME).policy.build
    assert build.enabled is False
    assert build.platforms == ["linux/amd64"]


def test_load_policy_reads_the_file_and_hashes_its_exact_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = FULL.replace("\n", "\r\n").encode()
    (tmp_path / NAME).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    loaded = load_policy(Path(NAME))
    assert loaded == LoadedPolicy(
        policy=load_policy_text(FULL, NAME).policy,
        source=NAME,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_default_policy() -> None:
    loaded = default_policy()
    assert loaded.source == "<defaults>"
    assert loaded.policy == Policy(version=1)
    canonical = json.dumps(
        loaded.policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    assert loaded.sha256 == hashlib.sha256(canonical.encode()).hexdigest()
    assert default_policy() == loaded


def test_policy_is_frozen() -> None:
    policy = load_policy_text("version: 1\n", NAME).policy
    with pytest.raises(ValueError, match="frozen"):
        policy.build.enabled = False  # type: ignore[misc]


# --- error messages -------------------------------------------------------------------------


def test_error_is_a_config_error_with_the_usage_exit_code() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy_text("version: 2\n", NAME)
    assert info.value.exit_code is ExitCode.USAGE
    assert str(info.value) == (
        "invalid policy file modelseal.yml:\n"
        "modelseal.yml:1:10: version: unsupported policy version 2 (this modelseal reads version 1)"
    )


def test_unknown_nested_key_suggests_the_close_match_and_points_at_the_key() -> None:
    text = "version: 1\nbuild:\n  enabled: true\n  rebuild_chek: false\n"
    assert problem(text) == (
        "modelseal.yml:4:3: build.rebuild_chek: unknown key (did you mean rebuild_check?)"
    )


def test_unknown_top_level_key_with_a_close_match() -> None:
    assert problem("version: 1\nbiuld: {}\n") == (
        "modelseal.yml:2:1: biuld: unknown key (did you mean build?)"
    )


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    assert problem("version: 1\nmystery:\n  allow: []\n") == (
        "modelseal.yml:2:1: mystery: unknown key (allowed keys: version, build, models, image, sbom, vulnerabilities, trivy, pip_audit, sign, publish, verify)"
    )
    assert problem("version: 1\nbuild:\n  mystery: false\n") == (
        "modelseal.yml:3:3: build.mystery: unknown key (allowed keys: enabled, rebuild_check, "
        "rebuild_on, require_pinned_base, allow_network, platforms, builder, buildkit_image, "
        "compression, compression_level, force_compression, stand_ins, cache_from, cache_to)"
    )


@pytest.mark.parametrize("value", ['"yes"', "yes", "1", "on", "'true'", "null"])
def test_boolean_is_strict_and_the_error_points_at_the_value(value: str) -> None:
    text = f"version: 1\nbuild:\n  allow_network: {value}\n"
    assert problem(text) == (
        "modelseal.yml:3:18: build.allow_network: expected a boolean (true or false)"
    )


@pytest.mark.parametrize(
    ("value", "mode"), [("true", "always"), ("false", "never"), ("always", "always"),
                        ("publish", "publish"), ("never", "never")],
)  # fmt: skip
def test_rebuild_check_modes_and_the_old_booleans(value: str, mode: str) -> None:
    text = f"version: 1\nbuild:\n  rebuild_check: {value}\n"
    assert load_policy_text(text, NAME).policy.build.rebuild_check == mode


@pytest.mark.parametrize("value", ["sometimes", '"true"', "1", "null", "[always]"])
def test_rebuild_check_refuses_anything_else(value: str) -> None:
    text = f"version: 1\nbuild:\n  rebuild_check: {value}\n"
    assert problem(text) == (
        "modelseal.yml:3:18: build.rebuild_check: expected always, publish or never "
        "(true and false still mean always and never)"
    )


def test_builder_keys() -> None:
    image = "mirror.example:5000/moby/buildkit:v0.31.2@sha256:" + "2f" * 32
    build = load_policy_text(
        "version: 1\nbuild:\n  builder: ci-builder\n"
        f"  buildkit_image: {image}\n"
        '  cache_from: ["type=gha,scope=a", "type=local,src=/c"]\n'
        "  cache_to:\n    - type=registry,ref=r.example/c:cache,mode=max\n",
        NAME,
    ).policy.build
    assert (build.builder, build.buildkit_image) == ("ci-builder", image)
    assert build.cache_from == ["type=gha,scope=a", "type=local,src=/c"]
    assert build.cache_to == ["type=registry,ref=r.example/c:cache,mode=max"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("buildkit_image: moby/buildkit:v0.31.2", "expected a BuildKit image pinned by digest"),
        ("buildkit_image: moby/buildkit@sha256:abc", "expected a BuildKit image pinned by digest"),
        ("builder: '-x'", "expected a buildx builder name"),
        ("cache_from: [type=s3]", "type=s3: type must be one of gha, registry, local"),
        ("cache_from: ['type=local,dest=/x']", "type=local needs src="),
        ("cache_to: ['type=gha,token=t']", "token= would put a credential on the command line"),
        ("cache_to: ['type=gha, mode=max']", "without spaces or quotes"),
        ("cache_to: ['type=gha,mode']", "'mode' is not KEY=VALUE"),
        ("cache_to: ['ref=r.example/c,type=registry,ref=x']", "ref is given twice"),
    ],
)
def test_bad_builder_keys(line: str, message: str) -> None:
    (got,) = problems(f"version: 1\nbuild:\n  {line}\n")
    assert got.startswith("modelseal.yml:3:") and message in got, got


def test_wrong_types() -> None:
    assert problem("version: 1\nbuild:\n  platforms: linux/amd64\n") == (
        "modelseal.yml:3:14: build.platforms: expected a list"
    )
    assert problem("version: 1\nbuild:\n  platforms: [linux/amd64, 7]\n") == (
        "modelseal.yml:3:28: build.platforms[1]: expected a string"
    )


def test_bad_platform_string() -> None:
    text = "version: 1\nbuild:\n  platforms:\n    - linux/amd64\n    - amd64\n"
    assert problem(text) == (
        "modelseal.yml:5:7: build.platforms[1]: expected a platform "
        '"os/arch" or "os/arch/variant" in lower case, e.g. "linux/amd64" or "linux/arm/v7"'
    )


@pytest.mark.parametrize("platform", ["linux/AMD64", "linux/arm/v7/x", "linux/", "/amd64"])
def test_more_bad_platforms(platform: str) -> None:
    text = f'version: 1\nbuild:\n  platforms: ["{platform}"]\n'
    assert problem(text).startswith("modelseal.yml:3:15: build.platforms[0]: expected a platform")


def test_bad_yaml() -> None:
    assert problem("version: 1\nbuild: enabled: true\n") == (
        "modelseal.yml:2:15: invalid YAML: mapping values are not allowed here"
    )
    assert problem("version: 1\nbuild:\n\tenabled: true\n") == (
        "modelseal.yml:3:1: invalid YAML: found character '\\t' that cannot start any token"
    )
    assert problem("version: 1\nbuild:\n  platforms: [linux/amd64\n") == (
        "modelseal.yml:4:1: invalid YAML: expected ',' or ']', but got '<stream end>'"
    )


def test_several_documents_are_invalid_yaml() -> None:
    assert problem("version: 1\n---\nversion: 1\n") == (
        "modelseal.yml:2:1: invalid YAML: "
        "expected a single document in the stream but found another document"
    )


def test_control_character_is_invalid_yaml() -> None:
    assert problem("version: 1\nbuild: {}\x07\n") == (
        "modelseal.yml:2:10: invalid YAML: unacceptable character U+0007: "
        "special characters are not allowed"
    )


def test_missing_version() -> None:
    assert problem("build:\n  enabled: true\n") == (
        'modelseal.yml:1:1: version: required (add "version: 1" at the top of the file)'
    )


def test_unsupported_version() -> None:
    assert problem("version: 2\n") == (
        "modelseal.yml:1:10: version: unsupported policy version 2 (this modelseal reads version 1)"
    )


@pytest.mark.parametrize(
    ("value", "kind"), [("'1'", "a string"), ("true", "a boolean"), ("1.0", "a number")]
)
def test_version_must_be_the_integer_one(value: str, kind: str) -> None:
    assert problem(f"version: {value}\n") == (
        f"modelseal.yml:1:10: version: expected the number 1, got {kind}"
    )


def test_duplicate_key() -> None:
    text = "version: 1\nbuild:\n  enabled: true\n  allow_network: false\n  enabled: false\n"
    assert problem(text) == (
        "modelseal.yml:5:3: build.enabled: duplicate key (first defined at line 3)"
    )
    assert problem("version: 1\nversion: 1\n") == (
        "modelseal.yml:2:1: version: duplicate key (first defined at line 1)"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file(text: str) -> None:
    assert problem(text) == (
        'modelseal.yml:1:1: version: required (add "version: 1" at the top of the file)'
    )


def test_list_where_a_mapping_is_expected() -> None:
    assert problem("- version: 1\n") == (
        "modelseal.yml:1:1: top level: expected a mapping (key: value pairs)"
    )
    assert problem("version: 1\nbuild:\n  - enabled: true\n") == (
        "modelseal.yml:3:3: build: expected a mapping (key: value pairs)"
    )


def test_scalar_top_level() -> None:
    assert problem("# policy\nversion 1\n") == (
        "modelseal.yml:2:1: top level: expected a mapping (key: value pairs)"
    )


def test_empty_value_points_at_its_key() -> None:
    assert problem("version: 1\nbuild:\n# nothing here\n") == (
        "modelseal.yml:2:1: build: expected a mapping (key: value pairs)"
    )


def test_anchors_and_aliases_are_rejected() -> None:
    text = "version: 1\nbuild: &b\n  enabled: true\nother: *b\n"
    assert problem(text) == (
        "modelseal.yml:2:8: build: YAML anchors and aliases (&name, *name) are not supported "
        "in policy files; write the value out in full"
    )


def test_recursive_alias_is_rejected_not_expanded() -> None:
    assert problem("version: 1\nbuild: &a [*a]\n").startswith(
        "modelseal.yml:2:8: build: YAML anchors and aliases"
    )


def test_alias_bomb_is_rejected_quickly() -> None:
    lines = ["version: 1", 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for index in range(1, 12):
        prev = chr(ord("a") + index - 1)
        name = chr(ord("a") + index)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    found = problems("\n".join(lines) + "\n")
    assert len(found) == 12
    assert all("YAML anchors and aliases" in line for line in found)


def test_custom_tags_are_rejected() -> None:
    assert problem("version: 1\nbuild: !custom\n  enabled: true\n") == (
        "modelseal.yml:2:8: build: unsupported YAML tag !custom "
        "(policy files use plain YAML values without tags)"
    )
    assert problem("version: !!python/object/apply:os.system ['true']\n") == (
        "modelseal.yml:1:10: version: unsupported YAML tag !!python/object/apply:os.system "
        "(policy files use plain YAML values without tags)"
    )


def test_standard_tags_are_accepted() -> None:
    text = "version: !!int 1\nbuild:\n  enabled: !!bool false\n  platforms: [!!str linux/amd64]\n"
    build = load_policy_text(text, NAME).policy.build
    assert build.enabled is False
    assert build.platforms == ["linux/amd64"]


def test_malformed_typed_scalar_is_reported_at_its_position() -> None:
    assert problem("version: 1\nbuild:\n  platforms: [2024-13-45]\n") == (
        'modelseal.yml:3:15: build.platforms[0]: invalid YAML: "2024-13-45" is not a valid '
        "timestamp (month must be in 1..12)"
    )


def test_keys_must_be_strings() -> None:
    assert problem("version: 1\ntrue: 1\n") == (
        'modelseal.yml:2:1: top level: keys must be strings (write the key "true" in quotes)'
    )


def test_multiple_errors_are_reported_together_in_file_order() -> None:
    text = (
        "version: 2\n"
        "build:\n"
        "  enabled: 1\n"
        "  network: true\n"
        "  platforms: [linux/amd64, amd64]\n"
        "mystery: {}\n"
    )
    assert problems(text) == [
        "modelseal.yml:1:10: version: unsupported policy version 2 "
        "(this modelseal reads version 1)",
        "modelseal.yml:3:12: build.enabled: expected a boolean (true or false)",
        "modelseal.yml:4:3: build.network: unknown key (did you mean allow_network?)",
        "modelseal.yml:5:28: build.platforms[1]: expected a platform "
        '"os/arch" or "os/arch/variant" in lower case, e.g. "linux/amd64" or "linux/arm/v7"',
        "modelseal.yml:6:1: mystery: unknown key (allowed keys: version, build, models, image, sbom, vulnerabilities, trivy, pip_audit, sign, publish, verify)",
    ]


def test_missing_version_is_listed_with_the_other_errors() -> None:
    assert problems("build:\n  enabled: no\n") == [
        'modelseal.yml:1:1: version: required (add "version: 1" at the top of the file)',
        "modelseal.yml:2:12: build.enabled: expected a boolean (true or false)",
    ]


def test_errors_use_the_file_name_as_given(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nbuild:\n  enabeld: true\n")
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    assert str(info.value) == (
        f"invalid policy file {path}:\n"
        f"{path}:3:3: build.enabeld: unknown key (did you mean enabled?)"
    )


def test_missing_file_names_the_file_and_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value) == f"cannot read policy file {path}: No such file or directory"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^policy file .* is a directory, not a regular file\.$"):
        load_policy(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"version: 1\nbuild: \xff\n")
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    assert info.value.problems == (f"{path}:2:8: invalid YAML: not UTF-8 text (byte 0xff)",)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_only_ever_raises_config_error(text: str) -> None:
    try:
        loaded = load_policy_text(text, NAME)
    except ConfigError as error:
        assert str(error).startswith(f"invalid policy file {NAME}:\n")
        for line in str(error).splitlines()[1:]:
            assert line.startswith(f"{NAME}:")
    else:
        assert loaded.policy.version == 1


_YAMLISH = st.lists(
    st.sampled_from(
        [
            "version: 1\n",
            "version: 2\n",
            "build:\n",
            "  enabled: true\n",
            "  enabled: yes\n",
            "  platforms: [linux/amd64\n",
            "  platforms:\n",
            "    - linux/arm/v7\n",
            "    - 3\n",
            "  - x\n",
            "&a\n",
            "*a\n",
            "!tag x\n",
            "? [a]\n",
            ": b\n",
            "---\n",
            "'\n",
            '"\\x\n',
            "{\n",
            "}\n",
            "\t\n",
            "#\n",
            "%YAML 1.1\n",
            "<<: {}\n",
            "2001-02-30\n",
        ]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_YAMLISH)
def test_yaml_like_text_only_ever_raises_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        load_policy_text(text, NAME)


# --- schema and reference -------------------------------------------------------------------


def test_committed_schema_is_up_to_date() -> None:
    committed = resources.files("modelseal.policy").joinpath("policy.schema.json")
    assert committed.read_text(encoding="utf-8") == schema_text(), (
        "src/modelseal/policy/policy.schema.json is stale; regenerate it with: "
        "python -c \"import modelseal.policy.schema as s; print(s.schema_text(), end='')\" "
        "> src/modelseal/policy/policy.schema.json"
    )


def test_schema_header() -> None:
    schema = policy_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://modelseal.dev/schemas/policy-v1.json"
    assert schema["title"]
    assert schema["required"] == ["version"]
    assert schema_text().endswith("}\n")
    assert json.loads(schema_text()) == schema


def test_schema_validates_a_policy_and_rejects_an_unknown_key() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "version": 1,
        "build": {
            "enabled": True,
            "rebuild_check": False,
            "require_pinned_base": True,
            "allow_network": False,
            "platforms": ["linux/amd64", "linux/arm/v7"],
        },
    }
    validator.validate(good)
    validator.validate({"version": 1})
    validator.validate(load_policy_text(FULL, NAME).policy.model_dump(mode="json"))
    with pytest.raises(jsonschema.ValidationError, match="rebuild_chek"):
        validator.validate({"version": 1, "build": {"rebuild_chek": True}})
    with pytest.raises(jsonschema.ValidationError, match="mystery"):
        validator.validate({"version": 1, "mystery": {}})
    for bad in (
        {},
        {"version": 2},
        {"version": 1, "build": {"enabled": "yes"}},
        {"version": 1, "build": {"platforms": ["amd64"]}},
    ):
        assert not validator.is_valid(bad), bad


def test_every_field_has_a_description() -> None:
    schema = policy_json_schema()
    sections = [schema, *schema["$defs"].values()]
    for section in sections:
        assert section.get("description"), section.get("title")
        for key, prop in section["properties"].items():
            assert prop.get("description"), key


def test_reference_markdown_has_a_table_per_section() -> None:
    markdown = render_reference(heading_level=2)
    assert markdown.endswith("|\n")
    assert "## Top level" in markdown
    assert "## `build`" in markdown
    assert "| `version` | `1` | required |" in markdown
    assert "| `build.enabled` | boolean | `true` | Run the build gate." in markdown
    assert "| `build.allow_network` | boolean | `false` |" in markdown
    assert "| `build.platforms` | list of string matching" in markdown
    for key in BuildPolicy.model_fields:
        assert f"| `build.{key}` |" in markdown
    assert render_reference(heading_level=2) == markdown


def test_verify_identity_regexp_must_be_anchored(tmp_path: Path) -> None:
    path = tmp_path / "modelseal.yml"
    path.write_text("version: 1\nverify:\n  identity_regexp: 'https://github.com/org/.*'\n")
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert (
        "modelseal.yml:3:20: verify.identity_regexp: the identity regexp is not anchored: it must "
        "be anchored" in str(err.value)
    )
    path.write_text("version: 1\nverify:\n  identity_regexp: '^https://github.com/org/.*$'\n")
    assert load_policy(path).policy.verify.identity_regexp == "^https://github.com/org/.*$"


def test_publish_tags_follow_the_oci_grammar(tmp_path: Path) -> None:
    path = tmp_path / "modelseal.yml"
    path.write_text("version: 1\npublish:\n  tags: [ok-1.0, 'no:colon']\n")
    with pytest.raises(ConfigError, match=r"publish\.tags\[1\]: expected an image tag"):
        load_policy(path)
