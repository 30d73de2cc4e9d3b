"""The rebuild's report: ``OUT/rebuild.json`` and the rebuild attestation's predicate.

``rebuild.json`` (``schema_version`` 1), keys in this order:

* ``target`` — the TARGET as given (an image reference or a bundle file);
* ``image`` — the provenance subject's name; ``expected_digest`` — its digest;
* ``rebuilt_digest`` — the digest the rebuild gave (a manifest, or the index for several
  platforms);
* ``verdict`` — ``reproduced`` (the two digests are equal) or ``differs``;
* ``exit_code`` — 0 reproduced, 1 differs;
* ``platforms`` — ``{platform: {"expected": digest | null, "rebuilt": digest | null}}``;
* ``differences`` — ``[{"platform", "part", "detail"}]`` (at most 50): the config keys, the
  layers and the file paths that differ (empty when reproduced, or when the published image
  could not be fetched: a note says so);
* ``provenance`` — ``{"sha256": hex of the statement's canonical bytes, "signer", "source",
  "builder_id", "recorded_builder": {…}}``;
* ``source`` — ``{"repository"?, "commit", "checkout": "clean clone", "path"}`` (``path``: the
  ``--source`` work tree the clone was made from);
* ``rebuilder`` — ``{"modelseal", "builder": {"name", "driver", "image"?}, "engine"?,
  "buildx"?, "buildkit"?, "engine_kind"}``: as in the attestation (``engine``: the engine's
  version), and ``engine_kind`` ``"fresh private engine"`` or ``"builder NAME"``;
* ``notes`` — lines a reader should know (a model file copied from ``--source``, missing or
  different; a fresh engine without the recorded network; a comparison that could not run);
* ``timings`` — ``{"verify_s", "build_s", "compare_s", "total_s"}``;
* ``started_at``, ``finished_at`` — UTC RFC 3339;
* ``attestation`` — with ``--attest``: ``{"bundle": path, "referrer": digest | null}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelseal import __version__
from modelseal.rebuild.plan import RebuildPlan
from modelseal.rebuild.runner import MAX_DIFFERENCES, Built, Comparison

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild found (written as ``rebuild.json``)."""

    target: str
    plan: RebuildPlan
    built: Built
    comparison: Comparison
    signer: str
    provenance_source: str
    checkout: Mapping[str, str]
    notes: tuple[str, ...]
    timings: Mapping[str, float]
    started_at: str
    finished_at: str
    attestation: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reproduced(self) -> bool:
        """Whether the rebuilt digest is the provenance subject's."""
        return self.built.digest == self.plan.expected_digest

    @property
    def verdict(self) -> str:
        """``reproduced`` or ``differs``."""
        return "reproduced" if self.reproduced else "differs"

    @property
    def exit_code(self) -> int:
        """0 reproduced, 1 differs."""
        return 0 if self.reproduced else 1

    def rebuilder(self) -> dict[str, Any]:
        """The tool and builder that rebuilt (for the report and the attestation)."""
        facts = self.built.facts
        builder = {
            k: facts[f"builder.{k}"] for k in ("name", "driver", "image") if f"builder.{k}" in facts
        }
        out: dict[str, Any] = {"modelseal": __version__, "builder": builder}
        for key, fact in (
            ("engine", "engine.version"), ("buildx", "buildx.version"),
            ("buildkit", "buildkit.version"),
        ):  # fmt: skip
            if facts.get(fact):
                out[key] = facts[fact]
        return out

    def predicate(self) -> dict[str, Any]:
        """The rebuild attestation's predicate, keys in the order
        :data:`modelseal.publish.statements.REBUILD_PREDICATE` documents."""
        predicate: dict[str, Any] = {
            "verdict": self.verdict,
            "rebuiltDigest": self.built.digest,
            "platforms": {p: dict(v) for p, v in sorted(self.comparison.platforms.items())},
            "provenance": {
                "digest": {"sha256": self.plan.provenance_sha256},
                "builderId": self.plan.builder_id,
            },
            "source": {
                **({"repository": self.plan.repository} if self.plan.repository else {}),
                "commit": self.plan.commit,
            },
            "rebuilder": self.rebuilder(),
            "rebuiltOn": self.finished_at,
        }
        if not self.reproduced:
            predicate["differences"] = [dict(d) for d in self.comparison.differences][
                :MAX_DIFFERENCES
            ]
        return predicate

    def to_json(self) -> dict[str, Any]:
        """The ``rebuild.json`` object (the module docstring is its schema)."""
        rebuilder = self.rebuilder()
        rebuilder["engine_kind"] = self.built.engine
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "image": self.plan.image_name,
            "expected_digest": self.plan.expected_digest,
            "rebuilt_digest": self.built.digest,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "platforms": {p: dict(v) for p, v in sorted(self.comparison.platforms.items())},
            "differences": [dict(d) for d in self.comparison.differences],
            "provenance": {
                "sha256": self.plan.provenance_sha256,
                "signer": self.signer,
                "source": self.provenance_source,
                "builder_id": self.plan.builder_id,
                "recorded_builder": dict(self.plan.recorded_builder),
            },
            "source": {
                **({"repository": self.plan.repository} if self.plan.repository else {}),
                "commit": self.plan.commit,
                **dict(self.checkout),
            },
            "rebuilder": rebuilder,
            "notes": list(self.notes),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **({"attestation": dict(self.attestation)} if self.attestation else {}),
        }


def summary_lines(report: RebuildReport, *, limit: int = 10) -> Sequence[str]:
    """A short human summary (untrusted text escaped by the printer)."""
    lines = [
        f"{report.plan.image_name}@{report.plan.expected_digest}",
        f"  rebuilt {report.built.digest} on a {report.built.engine}"
        if report.built.engine.startswith("fresh")
        else f"  rebuilt {report.built.digest} with {report.built.engine}",
        f"  built from a {report.checkout.get('checkout', 'clean clone')} of {report.plan.commit}",
    ]
    if report.reproduced:
        lines.append("reproduced: the same digest")
    else:
        lines.append("DIFFERS: the rebuild gave another image")
        for d in report.comparison.differences[:limit]:
            lines.append(f"  {d['platform']} {d['part']}: {d['detail']}")
        more = len(report.comparison.differences) - limit
        if more > 0:
            lines.append(f"  … {more} more in rebuild.json")
    for note in report.notes:
        lines.append(f"note: {note}")
    return lines
