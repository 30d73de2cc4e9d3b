"""The Kyverno ImageValidatingPolicy export (:mod:`modelseal.admission`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelseal.admission import ExportSpec
from modelseal.errors import ConfigError


def render(spec: ExportSpec) -> Mapping[str, Any]:
    """The Kyverno ImageValidatingPolicy enforcing ``spec``."""
    raise ConfigError("not written yet")
