"""Rendering an :class:`~modelseal.admission.ExportSpec` in one of the :data:`FORMATS`: the
renderer of each format and the YAML document (its own module, so that the format modules can
import the spec without an import cycle)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelseal.admission import FORMATS, ExportFormat, ExportSpec
from modelseal.errors import ConfigError

#: One renderer per format: the spec → the resource (a mapping dumped as YAML).
Renderer = Callable[[ExportSpec], Mapping[str, Any]]


def renderer(fmt: ExportFormat) -> Renderer:
    """The renderer of ``fmt``."""
    if fmt == "kyverno":
        from modelseal.admission.kyverno import render
    elif fmt == "kyverno-ivp":
        from modelseal.admission.kyverno_ivp import render
    elif fmt == "policy-controller":
        from modelseal.admission.policy_controller import render
    else:
        raise ConfigError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)}).")
    return render


def export_yaml(spec: ExportSpec, fmt: ExportFormat) -> str:
    """The exported resource of ``fmt`` as one YAML document, keys in the renderer's order."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(dict(renderer(fmt)(spec)), out)
    return out.getvalue()
