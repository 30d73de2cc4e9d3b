"""Gate ``image``: runs each collector (:data:`COLLECTORS`) on every platform image."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from modelseal.findings import Finding, GateResult, Status
from modelseal.gates import RegisteredGate, resolve
from modelseal.imagegate.profile import runtime_profile, write_profile
from modelseal.imagegate.view import ImageView
from modelseal.pipeline import Context
from modelseal.postbuild import built_layout

GATE = "image"

Collector = Callable[[ImageView], list[Finding]]

#: The checks, by ``"module:function"`` (each takes an :class:`ImageView`, returns findings
#: whose id starts with ``image.``).
COLLECTORS: tuple[str, ...] = (
    "modelseal.imagegate.config:collect",
    "modelseal.imagegate.files:collect",
    "modelseal.imagegate.secrets:collect",
    "modelseal.imagegate.payloads:collect",
)


#: Collectors that need nothing from the image's resolved filesystem to start (a scanner run
#: on the layout): started beside the others, so that Trivy reads the layers while the shared
#: pass over them (:func:`modelseal.postbuild.image_fs`) runs.
AHEAD: frozenset[str] = frozenset({"modelseal.imagegate.secrets:collect"})


class ImageGate(RegisteredGate):
    """Gate ``image``: least privilege and unsafe payloads in the built image."""

    name = GATE

    def run(self, ctx: Context) -> GateResult:
        """Collect the findings of every collector on every platform image."""
        layout, manifests = built_layout(ctx, "to read the image from")
        collectors = [(ref, cast("Collector", resolve(ref))) for ref in COLLECTORS]
        findings: list[Finding] = []
        profiles: dict[str, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            for platform, digest in sorted(manifests.items()):
                ctx.progress(self.name, f"checking the image ({platform})")
                view = ImageView.read(ctx, layout, platform, digest)
                ahead = {ref: pool.submit(c, view) for ref, c in collectors if ref in AHEAD}
                try:
                    # In COLLECTORS' order whatever ran first: the report does not depend on it.
                    for ref, collect in collectors:
                        findings += ahead[ref].result() if ref in ahead else collect(view)
                finally:
                    for future in ahead.values():
                        future.cancel()
                profiles[platform] = _profile(ctx, view)
        facts = {"platforms": ",".join(sorted(manifests)), "checks": str(len(collectors))}
        artifacts: dict[str, Path] = {}
        made = write_profile(ctx, profiles)
        if isinstance(made, Finding):
            findings.append(made)
        else:
            artifacts["runtime_profile"], facts["runtime_profile.sha256"] = made
        return GateResult(
            GATE, Status.PASSED, findings=tuple(findings), facts=facts, artifacts=artifacts
        )


def _profile(ctx: Context, view: ImageView) -> dict[str, Any]:
    runtime = ctx.policy.policy.image.runtime
    return runtime_profile(
        view, writable_paths=runtime.writable_paths, add_capabilities=runtime.add_capabilities
    ).to_json()
