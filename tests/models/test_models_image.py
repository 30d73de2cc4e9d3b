"""What was verified is what ships: the model files inside the built image against the lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.model_files import safetensors_bytes
from tests.support.reports import read_report, report_gates

from modelseal._cli import main

pytestmark = pytest.mark.engine

POLICY = """version: 1
build:
  rebuild_check: false
models:
  image_paths:
    model: /app/model
"""


def _ctx(tmp_path: Path, run_step: str = "") -> Path:
    root = tmp_path / "ctx"
    (root / "model").mkdir(parents=True)
    (root / "model" / "a.safetensors").write_bytes(safetensors_bytes([1.0, 2.0]))
    (root / "model" / "b.safetensors").write_bytes(safetensors_bytes([3.0]))
    (root / "Dockerfile").write_text(f"FROM base\nCOPY model/ /app/model/\n{run_step}")
    (root / "policy.yml").write_text(POLICY)
    assert main(["models", "lock", str(root / "model"), "--lock", str(root / "models.lock")]) == 0
    return root


def _run(root: Path, base: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict]]:
    out = root.parent / "out"
    code = main(["run", str(root), "--policy", str(root / "policy.yml"), "-o", str(out),
                 "--gate", "models", "--gate", "build", "--gate", "models-image",
                 "--build-context", f"base={base}", "--source-date-epoch", str(EPOCH)])  # fmt: skip
    capsys.readouterr()
    return code, report_gates(read_report(out / "report.json"))


def test_image_matches_the_lock(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, gates = _run(_ctx(tmp_path), busybox_base, capsys)
    assert code == 0, {g: v["findings"] for g, v in gates.items()}
    assert list(gates) == ["models", "build", "models-image"]
    assert gates["models-image"]["status"] == "PASSED"
    assert gates["models-image"]["facts"]["checked"] == "2"


def test_a_run_step_that_alters_a_model_is_caught(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = (
        "RUN echo tampered >> /app/model/a.safetensors && rm /app/model/b.safetensors"
        " && echo x > /app/model/c.bin"
        " && mkdir /app/model/sub && echo n > /app/model/sub/notes.md\n"
    )
    root = _ctx(tmp_path, step)
    # Matched like on disk: against model/sub/notes.md (the build-context path), not only
    # against the file name.
    (root / "policy.yml").write_text(POLICY + "  ignore: ['model/sub/*.md']\n")
    code, gates = _run(root, busybox_base, capsys)
    assert code == 1
    img = gates["models-image"]
    ids = sorted((f["id"], f["subject"]) for f in img["findings"])
    assert ids == [
        ("models.image-changed", "/app/model/a.safetensors"),
        ("models.image-extra", "/app/model/c.bin"),
        ("models.image-missing", "/app/model/b.safetensors"),
    ]
    changed = next(f for f in img["findings"] if f["id"] == "models.image-changed")
    assert changed["evidence"]["pinned_sha256"] != changed["evidence"]["image_sha256"]
    # The local files were fine: only the image gate fails.
    assert gates["models"]["status"] == "PASSED"


def test_no_image_paths_is_not_a_silent_pass(
    busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _ctx(tmp_path)
    (root / "policy.yml").write_text("version: 1\nbuild:\n  rebuild_check: false\n")
    code, gates = _run(root, busybox_base, capsys)
    assert code == 1
    assert [f["id"] for f in gates["models-image"]["findings"]] == ["models.image-unchecked"]


# A RUN step swapping the model for a symlink: BuildKit writes the new layer as a bare symlink
# (no whiteout), so only the image's resolved filesystem shows what the container reads.
_ALTERED = (
    "RUN mkdir -p /srv/weights && cp /app/model/* /srv/weights/"
    " && echo tampered >> /srv/weights/a.safetensors"
)


@pytest.mark.parametrize(
    ("step", "link", "target"),
    [
        # the model directory itself
        (f"{_ALTERED} && rm -rf /app/model && busybox ln -s /srv/weights /app/model\n",
         "/app/model", "/srv/weights"),
        # a parent directory, with a relative link
        (f"{_ALTERED} && mkdir -p /opt/app && mv /srv/weights /opt/app/model"
         " && rm -rf /app && busybox ln -s opt/app /app\n", "/app", "opt/app"),
    ],
)  # fmt: skip
def test_a_run_step_that_swaps_the_model_for_a_symlink_is_caught(
    busybox_base: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    step: str,
    link: str,
    target: str,
) -> None:
    code, gates = _run(_ctx(tmp_path, step), busybox_base, capsys)
    assert code == 1
    img = gates["models-image"]
    assert img["status"] == "FAILED"
    ids = sorted((f["id"], f["subject"]) for f in img["findings"])
    assert ids == [
        ("models.image-changed", "/app/model/a.safetensors"),
        ("models.image-symlink", link),
    ]
    symlink = next(f for f in img["findings"] if f["id"] == "models.image-symlink")
    assert symlink["evidence"]["target"] == target
    assert symlink["decision"] == "fail"
    assert gates["models"]["status"] == "PASSED"


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # the same bytes, read through a link nobody reviewed
        ("RUN mkdir /srv && mv /app/model /srv/model && busybox ln -s /srv/model /app/model\n",
         [("models.image-symlink", "/app/model")]),
        # a symlink and a fifo next to the pinned files
        ("RUN busybox ln -s /etc/passwd /app/model/extra.json && busybox mkfifo /app/model/p\n",
         [("models.image-extra", "/app/model/p"),
          ("models.image-symlink", "/app/model/extra.json")]),
    ],
)  # fmt: skip
def test_unchanged_models_with_symlinks_or_fifos_still_fail(
    busybox_base: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    step: str,
    expected: list[tuple[str, str]],
) -> None:
    code, gates = _run(_ctx(tmp_path, step), busybox_base, capsys)
    assert code == 1
    findings = gates["models-image"]["findings"]
    assert sorted((f["id"], f["subject"]) for f in findings) == expected
    assert all(f["decision"] == "fail" for f in findings)
