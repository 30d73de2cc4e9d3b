"""The payload check's reach past a file's first bytes (review r17): zips found by their end
record once the member streamed by (a rolling tail, then one more read of that layer only),
what a big model file costs (no copy, no second read), and how the policy judges an unsafe
pickle outside the lock whatever ``models.pickle`` says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.layouts import M, layer
from tests.support.model_files import EVIL, safetensors_bytes, zip_bytes
from tests.support.payloads import payload_view

from modelseal.findings import Finding
from modelseal.imagegate import payloads
from modelseal.imagegate.rules import image_rule
from modelseal.judge import Outcome


def _unsafe(findings: list[Finding], subject: str) -> list[Finding]:
    return [
        f for f in findings if f.id == f"{payloads.PAYLOAD}unsafe-global" and f.subject == subject
    ]


def test_a_large_zip_behind_a_stub_is_found_by_its_tail_reading_only_its_layer_again(
    tmp_path: Path,
) -> None:
    stub = os.urandom(3 << 20)  # a self-extractor's stub: more than the tap's 1 MiB head
    big = safetensors_bytes([0.5] * 1000) + os.urandom(3 << 20)
    view = payload_view(
        tmp_path,
        layer(M("opt/w.safetensors", data=big)),
        layer(M("usr/bin/installer", data=stub + zip_bytes([("pkg/evil.pkl", EVIL)]))),
    )
    fs = view.fs
    assert dict(fs.reads) == {0: 1, 1: 1}
    findings = payloads.collect(view)
    (f,) = _unsafe(findings, "/usr/bin/installer")
    assert f.evidence["member"] == "pkg/evil.pkl"
    assert image_rule(view.ctx.policy.policy, f).outcome is Outcome.FAIL
    # Only the installer's layer is read again; the model layer neither copied nor re-read.
    assert dict(fs.reads) == {0: 1, 1: 2}
    copied = sorted(p.name for p in (tmp_path / "work").rglob("payload-*"))
    assert copied == ["payload-1-0"]


def test_large_files_without_a_zip_end_record_cost_no_copy_and_no_second_read(
    tmp_path: Path,
) -> None:
    big = safetensors_bytes([0.5] * 1000) + os.urandom(3 << 20)
    # The end record's signature, without a directory before it: not a zip.
    text = b"notes\n" + b"PK\x05\x06 is how a zip ends\n" * 100_000
    view = payload_view(
        tmp_path, layer(M("opt/w.safetensors", data=big), M("opt/notes.txt", data=text))
    )
    findings = payloads.collect(view)
    assert [(f.id, f.subject) for f in findings] == [(payloads.MODEL_FILE, "/opt/w.safetensors")]
    assert dict(view.fs.reads) == {0: 1}
    assert not list((tmp_path / "work").rglob("payload-*"))


def test_an_unsafe_pickle_outside_the_lock_fails_under_models_pickle_allow(tmp_path: Path) -> None:
    view = payload_view(
        tmp_path,
        layer(M("srv/evil.pkl", data=EVIL)),
        policy="  pickle: allow\n  formats: [pickle]\n",
    )
    findings = payloads.collect(view)
    (f,) = _unsafe(findings, "/srv/evil.pkl")
    decision = image_rule(view.ctx.policy.policy, f)
    assert decision.outcome is Outcome.FAIL, decision.reason


def test_copies_of_one_content_are_scanned_once_archive_members_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelseal.models import scan

    calls: list[str] = []
    real = scan._scan_zip_members

    def counting(*args: object, **kwargs: object) -> object:
        calls.append("zip")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scan, "_scan_zip_members", counting)
    data = zip_bytes([("pkg/evil.pkl", EVIL)])
    view = payload_view(tmp_path, layer(*(M(f"srv/copy{i}.whl", data=data) for i in range(5))))
    findings = payloads.collect(view)
    unsafe = {f.subject for f in findings if f.id == f"{payloads.PAYLOAD}unsafe-global"}
    assert unsafe == {f"/srv/copy{i}.whl" for i in range(5)}  # each copy reported ...
    assert calls == ["zip"]  # ... from one scan
