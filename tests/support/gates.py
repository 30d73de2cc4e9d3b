"""Stand-in gates for pipeline tests."""

from __future__ import annotations

from pathlib import Path

from modelseal.findings import GateResult, Status
from modelseal.pipeline import Context
from modelseal.policy import LoadedPolicy


class StubBuild:
    """Stands in for the build gate: hands over an already built layout."""

    name = "build"
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()

    def __init__(self, layout: Path, manifest: str) -> None:
        self.layout, self.manifest = layout, manifest

    def enabled(self, policy: LoadedPolicy) -> bool:
        return True

    def run(self, ctx: Context) -> GateResult:
        return GateResult(
            "build", Status.PASSED, artifacts={"oci_layout": self.layout},
            facts={"image.digest": self.manifest, "image.manifest.linux/amd64": self.manifest},
        )  # fmt: skip
