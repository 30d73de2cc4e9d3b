"""The ML-BOM says what the model is: a Hub-style model directory (card front matter, config.json,
a lock with an hf:// source at a commit) through the real models gate and the SBOM gate's
enrichment → purl, declared license, modelCard and dataset components, schema-valid and
byte-identical run to run; hostile cards and configs → nothing recorded, a note, no crash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from tests.support import EPOCH
from tests.support.model_files import safetensors_bytes
from tests.support.reports import read_report, report_gates

from modelseal._cli import main
from modelseal.models.card import MAX_CARD_BYTES, MAX_YAML_DEPTH, read_model_card
from modelseal.models.mlbom import hf_purl
from modelseal.sbom.gate import dump, enrich, model_component_dicts, validate

COMMIT = "0123456789ABCDEF0123456789abcdef01234567"
DIGEST = "sha256:" + "0" * 64
CARD = """---
language: en
license: apache-2.0
datasets:
- acme/instructions
- wikitext
pipeline_tag: text-generation
tags: [llama, tiny]
model-index:
- name: tiny
  results: []
---
# Tiny

A tiny model.
"""
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8}


def _model_dir(root: Path, card: str | bytes | None = CARD, config: object = CONFIG) -> Path:
    ctx = root / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "model.safetensors").write_bytes(safetensors_bytes([0.5, -1.0, 2.0]))
    if card is not None:
        path = ctx / "model" / "README.md"
        path.write_bytes(card if isinstance(card, bytes) else card.encode())
    if config is not None:
        (ctx / "model" / "config.json").write_text(json.dumps(config))
    return ctx


def _lock(ctx: Path, monkeypatch: pytest.MonkeyPatch, uri: str, revision: str | None) -> None:
    monkeypatch.chdir(ctx)
    argv = ["models", "lock", "model", "--source-uri", uri]
    if revision is not None:
        argv += ["--source-revision", revision]
    assert main(argv) == 0


def _models_json(
    ctx: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the real models gate; its models.json records and its report entry."""
    (ctx / "policy.yml").write_text("version: 1\n")
    main(["run", str(ctx), "--gate", "models", "--policy", str(ctx / "policy.yml"), "-o", str(out)])
    capsys.readouterr()
    (gate,) = report_gates(read_report(out / "report.json")).values()
    assert gate["collected"] == "PASSED", gate  # evidence; the verdict is the policy's
    data = json.loads(Path(gate["artifacts"]["models_json"]).read_text())
    return data["models"], gate


def _sbom(records: list[dict[str, Any]], raw_components: list[dict[str, Any]] | None = None) -> str:
    """The SBOM gate's document for these records around an (empty) syft document."""
    raw = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "metadata": {"component": {"bom-ref": "syft-root", "type": "file", "name": "/layout"}},
        "components": raw_components or [],
    }
    doc = enrich(
        raw, digest=DIGEST, image_name="ghcr.io/acme/app:1", platform=None, epoch=EPOCH,
        models=model_component_dicts(records),
    )  # fmt: skip
    text = dump(doc)
    validate(text)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    return text


def _model(text: str, name: str = "model.safetensors") -> dict[str, Any]:
    (m,) = [c for c in json.loads(text)["components"] if c["name"] == name]
    return m


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in component.get("properties", []):
        out.setdefault(p["name"], []).append(p["value"])
    return out


def test_hub_model_gets_purl_license_model_card_and_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _model_dir(tmp_path)
    _lock(ctx, monkeypatch, "hf://Acme-Labs/Tiny.Llama", COMMIT)
    records, gate = _models_json(ctx, tmp_path / "out", capsys)
    assert gate["facts"]["models.cards"] == "1"
    assert gate["facts"]["models.card_notes"] == "0"
    text = _sbom(records)
    m = _model(text)
    # The purl-spec's huggingface type: namespace and name as written, the commit lower-cased.
    assert m["purl"] == f"pkg:huggingface/Acme-Labs/Tiny.Llama@{COMMIT.lower()}"
    assert m["licenses"] == [{"license": {"id": "Apache-2.0", "acknowledgement": "declared"}}]
    assert [h["alg"] for h in m["hashes"]] == ["SHA-256"]
    params = m["modelCard"]["modelParameters"]
    assert params == {
        "task": "text-generation",
        "architectureFamily": "llama",
        "modelArchitecture": "LlamaForCausalLM",
        "datasets": [
            {"ref": "modelseal:dataset:acme/instructions"},
            {"ref": "modelseal:dataset:wikitext"},
        ],
    }
    assert m["modelCard"]["properties"] == [{"name": "modelseal:format", "value": "safetensors"}]
    # Every dataset reference names a data component of the document.
    data = {c["bom-ref"]: c for c in json.loads(text)["components"] if c["type"] == "data"}
    assert set(data) == {d["ref"] for d in params["datasets"]}
    assert data["modelseal:dataset:wikitext"]["data"] == [{"type": "dataset", "name": "wikitext"}]
    # The card and config themselves are described by nothing but their hashes.
    for name in ("README.md", "config.json"):
        other = _model(text, name)
        assert "modelCard" not in other and "licenses" not in other
        assert other["purl"] == m["purl"]  # same hub repository at the same commit


def test_two_runs_are_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _model_dir(tmp_path)
    _lock(ctx, monkeypatch, "hf://acme/tiny", COMMIT)
    first, _ = _models_json(ctx, tmp_path / "out1", capsys)
    second, _ = _models_json(ctx, tmp_path / "out2", capsys)
    assert (tmp_path / "out1/models.json").read_bytes() == (
        tmp_path / "out2/models.json"
    ).read_bytes()
    assert _sbom(first).encode() == _sbom(second).encode()


@pytest.mark.parametrize(
    ("uri", "revision"),
    [
        ("hf://acme/tiny", "main"),  # a branch pins nothing
        ("hf://acme/tiny", COMMIT[:12]),  # nor does a short hash
        ("hf://acme/tiny", None),
        ("hf://tiny", COMMIT),  # the purl type requires the namespace
        ("hf://acme/tiny/sub", COMMIT),
        ("hf://acme/ti%2Fny", COMMIT),
        ("https://example.org/acme/tiny", COMMIT),
    ],
)
def test_no_purl_without_an_hf_repository_at_a_full_commit(uri: str, revision: str | None) -> None:
    source = {"uri": uri} | ({"revision": revision} if revision else {})
    assert hf_purl(source) is None
    records = [
        {"path": "m.gguf", "size": 1, "sha256": "a" * 64, "format": "gguf", "source": source}
    ]
    assert "purl" not in _model(_sbom(records), "m.gguf")


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ("license: llama3.1\n", {"name": "llama3.1"}),
        ("license: other\nlicense_name: acme-research\n", {"name": "acme-research"}),
        ("license: other\n", {"name": "other"}),
        ("license: MIT\n", {"id": "MIT"}),
        ("license: cc-by-nc-4.0\n", {"id": "CC-BY-NC-4.0"}),
    ],
)
def test_license_is_an_spdx_id_only_when_it_is_one(
    tmp_path: Path, front: str, expected: dict[str, str]
) -> None:
    (tmp_path / "README.md").write_text(f"---\n{front}---\n")
    card = read_model_card(tmp_path, frozenset({"README.md"}))
    assert card.notes == ()
    records = [
        {"path": "m.gguf", "size": 1, "sha256": "a" * 64, "format": "gguf", "card": card.to_json()}
    ]
    m = _model(_sbom(records), "m.gguf")
    assert m["licenses"] == [{"license": expected | {"acknowledgement": "declared"}}]
    assert "modelCard" not in m  # a license alone says nothing about the architecture


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE = {
    "huge": ("---\nlicense: mit\n---\n" + "x" * MAX_CARD_BYTES, "larger than 1 MiB"),
    "alias bomb": (f"---\nlicense: mit\n{BOMB}---\n", "YAML anchors"),
    "merge key": ("---\nbase: &b {license: mit}\n<<: *b\n---\n", "YAML anchors"),
    "deep": (
        "---\nlicense: mit\nx: "
        + "[" * (MAX_YAML_DEPTH + 1)
        + "]" * (MAX_YAML_DEPTH + 1)
        + "\n---\n",
        f"nests deeper than {MAX_YAML_DEPTH}",
    ),
    "very deep": ("---\nx: " + "[" * 200_000 + "\n---\n", "front matter"),
    "python tag": ("---\nlicense: !!python/object/apply:os.system [id]\n---\n", "YAML tags"),
    "list": ("---\n- license: mit\n---\n", "not a YAML mapping"),
    "scalar": ("---\nlicense\n---\n", "not a YAML mapping"),
    "invalid yaml": ("---\nlicense: [mit\n---\n", "not valid YAML"),
    "no end": ("---\nlicense: mit\n", "no end"),
    "no front matter": ("# A card\n\nlicense: mit\n", "no YAML front matter"),
    "bad encoding": (b"---\nlicense: mit\xff\n---\n", "not UTF-8 (offset 16)"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_card_records_nothing_and_says_why(tmp_path: Path, case: str) -> None:
    content, why = HOSTILE[case]
    path = tmp_path / "README.md"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    card = read_model_card(tmp_path, frozenset({"README.md"}))
    assert card.licenses == () and card.datasets == () and card.task is None
    (note,) = card.notes
    assert note.startswith("README.md: ") and why in note, note
    records = [
        {"path": "m.gguf", "size": 1, "sha256": "a" * 64, "format": "gguf", "card": card.to_json()}
    ]
    m = _model(_sbom(records), "m.gguf")
    assert "licenses" not in m and "modelCard" not in m
    assert _props(m)["modelseal:card-note"] == [note]


@pytest.mark.parametrize(
    ("front", "field"),
    [
        ('license: "\\x1b[31mapache"\n', "license"),
        ("license: 2.0\n", "license"),
        ("datasets: [acme/ok, '../../etc', 'a b', {x: 1}]\n", "datasets"),
        ("pipeline_tag: '::error::x'\n", "pipeline_tag"),
    ],
)
def test_values_that_are_not_plain_identifiers_are_left_out(
    tmp_path: Path, front: str, field: str
) -> None:
    (tmp_path / "README.md").write_text(f"---\n{front}---\n")
    card = read_model_card(tmp_path, frozenset({"README.md"}))
    assert card.licenses == () and card.task is None
    assert card.datasets == (("acme/ok",) if field == "datasets" else ())
    assert any(n.startswith(f"{field}: ") and "left out" in n for n in card.notes), card.notes


def test_too_many_datasets_are_capped(tmp_path: Path) -> None:
    names = [f"acme/d{i}" for i in range(100)]
    (tmp_path / "README.md").write_text(
        "---\ndatasets:\n" + "".join(f"- {n}\n" for n in names) + "---\n"
    )
    card = read_model_card(tmp_path, frozenset({"README.md"}))
    assert card.datasets == tuple(names[:64])
    assert card.notes == ("datasets: only the first 64 of 100 values are recorded",)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"model_type": ' + "9" * 5000 + "}", "not valid JSON"),
        ('["llama"]', "not a JSON object"),
        ('{"model_type": "llama"', "not valid JSON"),
    ],
)
def test_hostile_config_records_no_architecture(tmp_path: Path, content: str, why: str) -> None:
    (tmp_path / "config.json").write_text(content)
    card = read_model_card(tmp_path, frozenset({"config.json"}))
    assert card.model_type is None and card.architectures == ()
    assert card.notes == (f"config.json: {why}; the architecture is not recorded",)


def test_config_values_are_checked(tmp_path: Path) -> None:
    config = {"model_type": "llama\n::warning::x", "architectures": ["Good", "os.system()", 3]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    card = read_model_card(tmp_path, frozenset({"config.json"}))
    assert card.model_type is None and card.architectures == ("Good",)
    assert len(card.notes) == 2


def test_files_the_gate_did_not_check_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _model_dir(tmp_path)
    monkeypatch.chdir(ctx)
    assert main(["models", "lock", "model", "--ignore", "README.md"]) == 0
    (ctx / "policy.yml").write_text("version: 1\nmodels:\n  ignore: [README.md]\n")
    out = tmp_path / "out"
    main(["run", str(ctx), "--gate", "models", "--policy", str(ctx / "policy.yml"), "-o", str(out)])
    capsys.readouterr()
    (gate,) = report_gates(read_report(out / "report.json")).values()
    models = json.loads(Path(gate["artifacts"]["models_json"]).read_text())["models"]
    (m,) = [r for r in models if r["path"] == "model/model.safetensors"]
    # config.json was checked, the ignored README.md was not read: no license, no datasets.
    assert m["card"] == {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}


def test_a_card_that_is_a_symlink_is_refused_by_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _model_dir(tmp_path, card=None)
    (tmp_path / "secret.md").write_text(CARD)
    (ctx / "model" / "README.md").symlink_to(tmp_path / "secret.md")
    monkeypatch.chdir(ctx)
    assert main(["models", "lock", "model"]) == 2
    assert "symlink" in capsys.readouterr().err


def test_dataset_references_follow_a_renamed_dataset_component() -> None:
    card = {"datasets": ["wikitext"]}
    records = [{"path": "m.gguf", "size": 1, "sha256": "a" * 64, "format": "gguf", "card": card}]
    clash = {"bom-ref": "modelseal:dataset:wikitext", "type": "library", "name": "wikitext"}
    text = _sbom(records, [clash])
    (data,) = [c for c in json.loads(text)["components"] if c["type"] == "data"]
    assert data["bom-ref"] == "modelseal:dataset:wikitext#2"
    params = _model(text, "m.gguf")["modelCard"]["modelParameters"]
    assert params["datasets"] == [{"ref": "modelseal:dataset:wikitext#2"}]


def test_a_card_swapped_for_a_symlink_or_fifo_after_the_walk_is_not_read(tmp_path: Path) -> None:
    # The gate's walk refuses links and fifos; a card replaced by one afterwards is refused on
    # open (O_NOFOLLOW, O_NONBLOCK), not followed to another file nor waited on.
    (tmp_path / "secret.md").write_text(CARD)
    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").symlink_to(tmp_path / "secret.md")
    os.mkfifo(model / "config.json")
    card = read_model_card(model, frozenset({"README.md", "config.json"}))
    assert card.licenses == () and card.datasets == () and card.model_type is None
    assert card.notes == (
        "README.md: not read (not a regular file, or unreadable); its license and datasets "
        "are not recorded",
        "config.json: not read (not a regular file); the architecture is not recorded",
    )


@pytest.mark.parametrize("ignore", [None, '["*.md", "*.json"]'])
def test_a_passing_run_carries_the_card_in_the_sbom(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ignore: str | None,
) -> None:
    """Issue 15 review: the card and config were read only when the gate had checked them,
    but it then failed them as `unknown` format, and ignored ones were not read at all — no
    passing run ever had a card. Pinned and lock-checked, they are read either way, and the
    verdict passes."""
    ctx = _model_dir(tmp_path)
    _lock(ctx, monkeypatch, "hf://acme/tiny", COMMIT)  # pins README.md and config.json
    policy = "version: 1\n" + (f"models:\n  ignore: {ignore}\n" if ignore else "")
    (ctx / "policy.yml").write_text(policy)
    out = tmp_path / "out"
    argv = ["run", str(ctx), "--gate", "models", "--policy", str(ctx / "policy.yml"), "-o"]
    assert main([*argv, str(out)]) == 0
    capsys.readouterr()
    report = read_report(out / "report.json")
    assert report["verdict"] == "PASSED"
    (gate,) = report_gates(report).values()
    records = json.loads(Path(gate["artifacts"]["models_json"]).read_text())["models"]
    m = _model(_sbom(records))
    assert m["licenses"] == [{"license": {"id": "Apache-2.0", "acknowledgement": "declared"}}]
    assert m["modelCard"]["modelParameters"]["architectureFamily"] == "llama"


def test_a_pickle_named_config_json_is_still_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only text in no model format is let through as the card or config."""
    ctx = _model_dir(tmp_path, config=None)
    (ctx / "model" / "config.json").write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    monkeypatch.chdir(ctx)
    assert main(["models", "lock", "model"]) == 0
    (ctx / "policy.yml").write_text("version: 1\n")
    out = tmp_path / "out"
    argv = ["run", str(ctx), "--gate", "models", "--policy", str(ctx / "policy.yml"), "-o"]
    assert main([*argv, str(out)]) == 1
    capsys.readouterr()


def test_a_pinned_card_changed_after_the_check_is_not_read(tmp_path: Path) -> None:
    """The bytes read must have the digest the gate verified."""
    (tmp_path / "README.md").write_text(CARD)
    card = read_model_card(tmp_path, frozenset({"README.md"}), sha256={"README.md": "0" * 64})
    assert card.licenses == ()
    assert "changed since the models gate verified it" in card.notes[0]


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ("license: unknown\n", None),  # the Hub's "unknown" declares nothing
        ("license: gpl-3.0\n", [{"id": "GPL-3.0-only"}]),  # not the deprecated GPL-3.0
        ("license: lgpl-2.1\n", [{"id": "LGPL-2.1-only"}]),
        ("license: agpl-3.0\n", [{"id": "AGPL-3.0-only"}]),
    ],
)
def test_license_labels_are_current_and_unknown_is_left_out(
    tmp_path: Path, front: str, expected: list[dict[str, str]] | None
) -> None:
    (tmp_path / "README.md").write_text(f"---\n{front}---\n")
    card = read_model_card(tmp_path, frozenset({"README.md"}))
    record = _record(card.to_json())
    got = _model(_sbom([record])).get("licenses")
    want = [{"license": e | {"acknowledgement": "declared"}} for e in expected or []] or None
    assert got == want


def _record(card: dict[str, Any]) -> dict[str, Any]:
    return {"path": "m/model.safetensors", "size": 1, "sha256": "a" * 64,
            "format": "safetensors", "card": card}  # fmt: skip


def test_each_files_purl_names_it_by_subpath() -> None:
    """Every file of one Hub repository had the same purl; the subpath tells them apart."""
    commit = COMMIT.lower()
    source = {"uri": "hf://acme/tiny", "revision": commit}
    records = [
        {"path": f"m/{name}", "size": 1, "sha256": digest * 64, "format": "unknown",
         "source": source | {"path": in_repo}}
        for name, in_repo, digest in (
            ("model.safetensors", "model.safetensors", "a"),
            ("weights.bin", "sub dir/weights.bin", "b"),
        )
    ]  # fmt: skip
    text = _sbom(records)
    assert _model(text)["purl"] == f"pkg:huggingface/acme/tiny@{commit}#model.safetensors"
    assert _model(text, "weights.bin")["purl"] == (
        f"pkg:huggingface/acme/tiny@{commit}#sub%20dir/weights.bin"
    )
    # A path that is not a plain relative one gets no subpath.
    assert hf_purl(source | {"path": "../x"}) == f"pkg:huggingface/acme/tiny@{commit}"
