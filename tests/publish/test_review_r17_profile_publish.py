"""Review r17: the runtime profile read back for publishing (modelseal.publish.run
.runtime_profile_of): a non-JSON profile is a PublishError (it was a JSONDecodeError:
exit 4, a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelseal.errors import PublishError
from modelseal.findings import GateResult, Status
from modelseal.publish.run import runtime_profile_of


def test_review_a_profile_changed_into_non_json_is_a_publish_error(tmp_path: Path) -> None:
    path = tmp_path / "runtime-profile.json"
    path.write_text("{not json\n")
    image = GateResult(
        "image", Status.PASSED, facts={"runtime_profile.sha256": "0" * 64},
        artifacts={"runtime_profile": path},
    )  # fmt: skip
    with pytest.raises(PublishError, match="not the runtime profile the image gate wrote"):
        runtime_profile_of(image)
