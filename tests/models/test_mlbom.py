"""Model files as CycloneDX machine-learning-model components, valid against CycloneDX 1.6."""

from __future__ import annotations

import json
from pathlib import Path

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelseal.models.mlbom import model_records, read_models_json, to_components, write_models_json

RECORDS = [
    {"path": "model/b.gguf", "size": 10, "sha256": "b" * 64, "format": "gguf", "source": None},
    {
        "path": "model/a.safetensors",
        "size": 740,
        "sha256": "a" * 64,
        "format": "safetensors",
        "source": {"uri": "https://huggingface.co/acme/tiny", "revision": "0123abc"},
    },
]


def test_records_round_trip_sorted(tmp_path: Path) -> None:
    records = model_records(RECORDS)
    assert [r["path"] for r in records] == ["model/a.safetensors", "model/b.gguf"]
    assert "source" not in records[1]
    write_models_json(tmp_path / "models.json", records)
    assert read_models_json(tmp_path / "models.json") == records


def test_components_validate_against_cyclonedx_1_6() -> None:
    components = to_components(model_records(RECORDS))
    assert {c.type for c in components} == {ComponentType.MACHINE_LEARNING_MODEL}
    bom = Bom(components=components)
    text = JsonV1Dot6(bom).output_as_string()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error
    data = json.loads(text)
    a = next(c for c in data["components"] if c["name"] == "a.safetensors")
    assert a["type"] == "machine-learning-model"
    assert a["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    assert a["version"] == "0123abc"
    assert a["externalReferences"][0]["url"] == "https://huggingface.co/acme/tiny"
    props = {p["name"]: p["value"] for p in a["properties"]}
    assert props == {
        "modelseal:format": "safetensors",
        "modelseal:size": "740",
        "modelseal:path": "model/a.safetensors",
    }
