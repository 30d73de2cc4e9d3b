"""Resource limits on scanning one model file: decompression bombs and slow inputs.

A 1 MB checkpoint can inflate to gigabytes (a deflated pickle member, a compressed joblib
stream, a sparse tar member), and a pickle of a billion one-byte opcodes takes minutes to walk.
Every byte the scanner inflates or extracts from one file — all members, all streams, nested
ones included — is charged to one :class:`Budget`; so is the time spent. Exceeding a limit
raises :class:`ScanLimitExceeded`, which the scanner turns into a ``scan-limit`` finding naming
the member and the limit (fail closed: the rest of the file is not scanned, so it cannot pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from modelseal.policy.model import ModelScanLimitsPolicy

#: Payloads nested one inside another (torch.storage._load_from_bytes calls torch.load on bytes
#: inside the pickle) that are descended into; deeper ones are a ``scan-limit`` issue. Their
#: bytes are charged to the file's Budget like inflated bytes.
MAX_NESTING: Final = 4

#: Inflated bytes of one stream below which its compression ratio is not judged: a small
#: member may compress extremely well (a pickle of repeated values) and costs nothing.
RATIO_GRACE_BYTES: Final = 16 << 20


@dataclass(frozen=True)
class ScanLimits:
    """Per-file scan limits (``models.limits`` in the policy).

    ``max_inflated_bytes``: bytes decompressed or extracted from the file's compressed streams
    and archive members, all together. ``max_ratio``: inflated bytes per compressed byte of one
    member or stream, judged once it has inflated :data:`RATIO_GRACE_BYTES`. ``max_seconds``:
    wall time for scanning the file.
    """

    max_inflated_bytes: int = 1 << 30
    max_ratio: int = 200
    max_seconds: float = 60.0


DEFAULT_LIMITS: Final = ScanLimits()


def scan_limits(policy: ModelScanLimitsPolicy) -> ScanLimits:
    """The limits ``models.limits`` of the policy sets."""
    return ScanLimits(
        max_inflated_bytes=policy.max_inflated_bytes,
        max_ratio=policy.max_ratio,
        max_seconds=float(policy.max_seconds),
    )


#: The ``limit`` of a :class:`ScanLimitExceeded` raised at a :class:`Budget`'s ``cutoff``.
CUTOFF: Final = "cutoff"


class ScanLimitExceeded(Exception):
    """A limit was hit while scanning ``member`` (``None``: the file itself)."""

    def __init__(self, limit: str, value: str, member: str | None, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.member = member
        self.message = message


class Budget:
    """What one file's scan may still spend; shared by every stream and member of the file."""

    def __init__(self, limits: ScanLimits = DEFAULT_LIMITS, *, cutoff: float | None = None) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        #: A deadline (``time.monotonic()``) set by the caller for many files at once (the
        #: image gate's payload scan): past it, :class:`ScanLimitExceeded` with limit
        #: :data:`CUTOFF`.
        self.cutoff = cutoff
        self.inflated = 0

    def check_time(self, member: str | None) -> None:
        """Raise when the file's scan time (or the caller's cutoff) is up."""
        now = time.monotonic()
        if self.cutoff is not None and now > self.cutoff:
            raise ScanLimitExceeded(
                CUTOFF, "", member, "was cut off by the deadline of the scan of all the files"
            )
        if now > self.deadline:
            limit = self.limits.max_seconds
            raise ScanLimitExceeded(
                "max_seconds",
                f"{limit:g}",
                member,
                f"scanning took longer than models.limits.max_seconds ({limit:g} s)",
            )

    def precheck(self, member: str | None, declared_out: int, declared_in: int) -> None:
        """Refuse, before reading anything, a member whose declared sizes already break a limit
        (the reads are charged as they happen too: declared sizes may lie)."""
        if self.inflated + declared_out > self.limits.max_inflated_bytes:
            self.charge(member, declared_out, 0, 0)
        self.charge(member, 0, declared_out, declared_in)

    def charge(self, member: str | None, produced: int, stream_out: int, stream_in: int) -> None:
        """Account ``produced`` newly inflated bytes of ``member``, whose stream has now
        inflated ``stream_out`` bytes from ``stream_in`` compressed ones (0: not compressed)."""
        self.inflated += produced
        limits = self.limits
        if self.inflated > limits.max_inflated_bytes:
            raise ScanLimitExceeded(
                "max_inflated_bytes",
                str(limits.max_inflated_bytes),
                member,
                f"inflates to more than models.limits.max_inflated_bytes "
                f"({limits.max_inflated_bytes} bytes for the whole file)",
            )
        if (
            stream_in > 0
            and stream_out > RATIO_GRACE_BYTES
            and stream_out > limits.max_ratio * stream_in
        ):
            raise ScanLimitExceeded(
                "max_ratio",
                str(limits.max_ratio),
                member,
                f"inflates more than models.limits.max_ratio ({limits.max_ratio}:1; "
                f"{stream_out} bytes from {stream_in})",
            )
        self.check_time(member)
