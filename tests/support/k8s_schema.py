"""Validating a resource against a CRD's structural OpenAPI v3 schema with ``jsonschema``, as
the Kubernetes API server would with strict field validation (``kubectl apply``'s default).

Kubernetes' dialect differs from JSON Schema in a few places, converted here:

* an object schema with ``properties`` and no ``additionalProperties`` *prunes* (or, strictly,
  refuses) unknown fields: it becomes ``additionalProperties: false``, unless it says
  ``x-kubernetes-preserve-unknown-fields: true``; a schema with neither properties nor
  additionalProperties (``metadata``, preserved fields) accepts anything;
* ``nullable: true`` admits ``null`` besides the declared type;
* ``x-kubernetes-int-or-string: true`` is an integer or a string;
* ``x-kubernetes-embedded-resource: true`` objects carry ``apiVersion``, ``kind``, ``metadata``;
* the other ``x-kubernetes-*`` keys (list and map types) are about merging, not validity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml


def crd_schema(crd: Path, api_version: str) -> dict[str, Any]:
    """The JSON Schema of ``api_version`` (``group/version``) in the CRD file ``crd``."""
    doc = yaml.safe_load(crd.read_text())
    group, version = api_version.rsplit("/", 1)
    assert doc["spec"]["group"] == group, (doc["spec"]["group"], group)
    for v in doc["spec"]["versions"]:
        if v["name"] == version:
            assert v["served"], f"{api_version} is not served by {crd.name}"
            return to_json_schema(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{crd.name} has no version {version}")


def to_json_schema(node: Any) -> Any:
    """The JSON Schema equivalent of one Kubernetes structural schema node (recursively)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_json_schema(value) if isinstance(value, (dict, list)) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "example"):
            continue
        else:
            out[key] = value
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def validation_errors(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every violation of ``schema`` in ``document`` (``path: message``), in a stable order."""
    validator = jsonschema.Draft7Validator(schema)
    return sorted(
        "/".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in validator.iter_errors(document)
    )
