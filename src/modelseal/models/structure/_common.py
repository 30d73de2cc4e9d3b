"""What the structure checks share: the capped issue collector, the issue kinds, the JSON
complexity bound and the exception that ends a walk with one issue.
"""

from __future__ import annotations

import re
from typing import Final

from modelseal.findings import Severity
from modelseal.models.issues import ModelIssue

#: Issues listed per file; the rest are counted in one closing issue.
MAX_ISSUES: Final = 100

BAD_HEADER: Final = "bad-header"
PATH_ESCAPE: Final = "path-escape"
CUSTOM_CODE: Final = "custom-code"
UNVERIFIABLE: Final = "unverifiable"


class Issues:
    """Collects issues up to :data:`MAX_ISSUES`, then counts the rest."""

    def __init__(self) -> None:
        self.items: list[ModelIssue] = []
        self._dropped = 0
        self._dropped_severity = Severity.UNKNOWN

    def add(
        self,
        kind: str,
        severity: Severity,
        title: str,
        *,
        member: str | None = None,
        offset: int | None = None,
        **detail: str,
    ) -> None:
        """Record one issue, or only count it once :data:`MAX_ISSUES` are listed."""
        if len(self.items) < MAX_ISSUES:
            self.items.append(ModelIssue(kind, severity, title, member, offset, detail))
        else:
            self._dropped += 1
            self._dropped_severity = max(self._dropped_severity, severity)

    def result(self) -> tuple[ModelIssue, ...]:
        """The issues in the order added, plus one closing issue counting those dropped."""
        items = list(self.items)
        if self._dropped:
            items.append(
                ModelIssue(
                    items[-1].kind,
                    self._dropped_severity,
                    f"{self._dropped} more problem(s) in this file, not listed",
                )
            )
        return tuple(items)


#: JSON values parsed per document at most (counted as ',' and ':' bytes, in C, before
#: parsing): json.loads builds Python objects ~50x the size of the text, so a legal 100 MB
#: safetensors header could otherwise cost gigabytes. 2M is ~250k tensors in one header.
MAX_JSON_TOKENS: Final = 2_000_000


def json_too_complex(raw: bytes) -> bool:
    """Whether ``raw`` may hold more than :data:`MAX_JSON_TOKENS` values (checked unparsed)."""
    return raw.count(b",") + raw.count(b":") > MAX_JSON_TOKENS


#: A Windows drive prefix (``C:``): absolute where the model may be served.
WINDOWS_DRIVE: Final = re.compile(r"[A-Za-z]:")


class Stop(Exception):
    """Ends a walk with an issue: (kind, severity, message, offset)."""

    def __init__(self, kind: str, severity: Severity, message: str, offset: int) -> None:
        super().__init__(message)
        self.kind, self.severity, self.message, self.offset = kind, severity, message, offset
