"""Two builds of one image compared platform by platform, down to the files that differ: what
the build gate's rebuild check and ``modelseal rebuild`` both report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelseal.oci import ImageDifference, OciLayout, diff_images

#: How many differing paths one difference quotes.
MAX_PATHS = 20


@dataclass(frozen=True)
class PlatformMismatch:
    """One platform whose manifests differ (``actual`` None: the second build has none)."""

    platform: str
    expected: str | None
    actual: str | None
    differences: tuple[ImageDifference, ...]


def compare_platforms(
    expected_layout: OciLayout,
    expected: Mapping[str, str],
    actual_layout: OciLayout,
    actual: Mapping[str, str],
) -> list[PlatformMismatch]:
    """The platforms whose manifest digests differ between ``expected`` and ``actual``
    (platform → manifest digest in each layout), each with what differs: the config keys,
    the layers and the file paths in them (:func:`modelseal.oci.diff_images`)."""
    out: list[PlatformMismatch] = []
    for platform, digest in expected.items():
        other = actual.get(platform)
        if other == digest:
            continue
        if other is None:
            diffs = [ImageDifference("platforms", platform, "missing")]
        else:
            diffs = diff_images(expected_layout, digest, actual_layout, other)
        out.append(PlatformMismatch(platform, digest, other, tuple(diffs)))
    for platform in sorted(actual.keys() - expected.keys()):
        diffs = [ImageDifference("platforms", "missing", platform)]
        out.append(PlatformMismatch(platform, None, actual[platform], tuple(diffs)))
    return out


def describe_differences(diffs: Sequence[ImageDifference]) -> tuple[dict[str, str], list[str]]:
    """``(part → detail, summary items)``: each difference in words (the layers' digests and
    up to :data:`MAX_PATHS` paths, or the config keys), and a short item per part for a title."""
    details: dict[str, str] = {}
    summary: list[str] = []
    for d in diffs:
        if d.paths:
            shown = [f"/{p.path} ({p.what})" for p in d.paths[:MAX_PATHS]]
            more = len(d.paths) - MAX_PATHS
            details[d.part] = (
                f"{d.left} ≠ {d.right}: "
                + ", ".join(shown)
                + (f" (+{more} more)" if more > 0 else "")
            )
            summary.append(f"{d.part}: " + ", ".join(f"/{p.path}" for p in d.paths[:3]))
        elif d.config_keys:
            details[d.part] = f"{d.left} ≠ {d.right}: keys " + ", ".join(d.config_keys[:MAX_PATHS])
            summary.append(f"config: {', '.join(d.config_keys[:3])}")
        else:
            details[d.part] = f"{d.left} ≠ {d.right}"
            summary.append(d.part)
    return details, summary
