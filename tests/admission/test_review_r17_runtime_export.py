"""Review r17: the Kyverno ``validate.cel`` rule of ``policy export --runtime-profile``
(modelseal.admission.runtime) run by celpy on pods that pull the sealed image under another
spelling of its reference: the runtime rule did not select the container, so a privileged pod
of the sealed image was admitted. Each test was a strict xfail until fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.admission.test_runtime_profile_export import _admitted

from modelseal.admission import ExportSpec
from modelseal.admission.export import export_yaml
from modelseal.admission.runtime import RuntimeRule
from modelseal.sign.key import generate_ephemeral_key

SC = {
    "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 2000, "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}  # fmt: skip


def _doc(tmp_path: Path, pattern: str) -> dict[str, Any]:
    _, public = generate_ephemeral_key(tmp_path / "keys")
    spec = ExportSpec(
        name="modelseal-review", image_patterns=(pattern,), public_key_pem=public.read_text(),
        runtime=RuntimeRule(non_root=True, uid=1000, gid=2000),
    )  # fmt: skip
    return yaml.safe_load(export_yaml(spec, "kyverno"))  # type: ignore[no-any-return]


def _pod(image: str, sc: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "server", "image": image, "securityContext": sc}]}}  # fmt: skip


def test_review_control_the_canonical_spelling_is_refused(tmp_path: Path) -> None:
    doc = _doc(tmp_path, "docker.io/org/model*")
    assert _admitted(doc, _pod("docker.io/org/model:1", SC))
    assert not _admitted(doc, _pod("docker.io/org/model:1", SC | {"privileged": True}))


@pytest.mark.parametrize(
    "pattern,image",
    [("docker.io/org/model*", "index.docker.io/org/model:1"),
     ("docker.io/library/model*", "docker.io/model:1"),
     ("docker.io/library/model*", "index.docker.io/model:1"),
     ("docker.io/org/model*", "registry-1.docker.io/org/model:1"),
     ("docker.io/org/model*", "Docker.IO/org/model:1"),
     ("docker.io/org/model*", "org/model:1"),
     ("model*", "index.docker.io/library/model:1")],
)  # fmt: skip
def test_review_docker_hub_spellings_are_matched(tmp_path: Path, pattern: str, image: str) -> None:
    doc = _doc(tmp_path, pattern)
    assert not _admitted(doc, _pod(image, SC | {"privileged": True}))


def test_review_upper_case_registry_host_is_matched(tmp_path: Path) -> None:
    doc = _doc(tmp_path, "ghcr.io/org/model*")
    assert not _admitted(doc, _pod("GHCR.IO/org/model:1", SC | {"privileged": True}))


@pytest.mark.parametrize(
    "pattern,image",
    [("docker.io/org/model*", "ghcr.io/org/model:1"), ("ghcr.io/org/model*", "ghcr.io/org/other:1"),
     ("docker.io/library/model*", "docker.io/org/model:1")],
)  # fmt: skip
def test_other_images_are_not_selected(tmp_path: Path, pattern: str, image: str) -> None:
    doc = _doc(tmp_path, pattern)
    assert _admitted(doc, _pod(image, SC | {"privileged": True}))
