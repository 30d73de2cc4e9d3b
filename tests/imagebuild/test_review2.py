"""Second review of issue 16's build-side work (stand-ins, the finalizer's zstd pipe, the
model-only layers the finalizer marks). Each test pins one defect the review found (each
failed before its fix): the claim each checks is stated in its docstring.

Engine tests build the same context with and without stand-ins with real BuildKit and want
the same outcome (both pass, one digest)."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.layers import weights
from tests.support.standins import build, passwd_bytes, run_build, write_lock

from modelseal.errors import ConfigError, GateError
from modelseal.imagebuild import finalize, standins
from modelseal.imagebuild.dockerfile import parse_dockerfile
from modelseal.imagebuild.engine import PrivateEngine
from modelseal.imagebuild.finalize import LayerStats, clamp_tar

MIB = 1 << 20


def _context(tmp_path: Path, dockerfile: str, *, locked: bytes | None = None) -> Path:
    """A context with one 2 MiB model file, pinned by models.lock (as ``locked`` when given:
    other bytes of the same size)."""
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    data = weights(1, 2 * MIB + 3, b"review2-")
    (ctx / "model" / "big.bin").write_bytes(data)
    (ctx / "Dockerfile").write_text(dockerfile)
    write_lock(ctx, ["model/big.bin"], pinned=None if locked is None else {"model/big.bin": locked})
    return ctx


# --- a model that is not the locked one ---------------------------------------------------------


@pytest.mark.engine
def test_review2_a_model_unlike_its_lock_gives_the_outcome_of_a_build_without_stand_ins(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Without stand-ins the build passes and the models gate reports the mismatch (a policy
    finding, exit 1 in a run). With stand-ins the finalizer's hash check makes the build gate
    ERRORED (exit 3: "could not run"), telling the user the file changed while the image was
    built — it never changed; and a file of another size than the lock says gets no stand-in
    and passes: the outcome depends on the size and on build.stand_ins."""
    ctx = _context(tmp_path, "FROM base\nCOPY model/ /app/model/\n",
                   locked=weights(2, 2 * MIB + 3, b"review2-"))  # fmt: skip
    off_code, off, off_out = build(ctx, tmp_path / "off", busybox_base, False, capsys)
    assert off_code == 0, off_out
    on_code, on, on_out = build(ctx, tmp_path / "on", busybox_base, True, capsys)
    assert (on_code, on.get("image.digest")) == (off_code, off["image.digest"]), on.get(
        "error", on_out[-600:]
    )


@pytest.mark.engine
def test_review2_the_reason_for_no_stand_ins_is_true_when_the_models_gates_are_off(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """``_lock_pins`` returns nothing when ``models.enabled`` is false, and the build then
    records ``stand_ins.not_used: models.lock pins no file of 1 MiB or more in the build
    context`` — here the lock pins a 2 MiB file; the reason is that the models gates are off."""
    ctx = _context(tmp_path, "FROM base\nCOPY model/ /app/model/\n")
    policy = (
        "version: 1\nbuild:\n  rebuild_check: never\n  stand_ins: true\nmodels:\n  enabled: false\n"
    )
    code, gate, printed = run_build(ctx, policy, tmp_path / "out", busybox_base, capsys)
    assert code == 0 and gate is not None, printed
    facts = gate["facts"]
    assert facts["stand_ins"] == "0"
    lock = json.loads((ctx / "models.lock").read_text())
    assert lock["files"][0]["size"] >= MIB  # the lock does pin a big file in the context
    assert facts["stand_ins.not_used"] != (
        "models.lock pins no file of 1 MiB or more in the build context"
    ), facts["stand_ins.not_used"]


# --- WORKDIR under USER NAME ---------------------------------------------------------------------


@pytest.mark.engine
def test_review2_workdir_under_a_user_name_gives_the_image_of_a_build_without_stand_ins(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The blocker refuses ``COPY --chown=NAME`` where a stand-in may be (BuildKit reads the
    stage's /etc/passwd), but BuildKit makes a ``WORKDIR`` directory owned by the stage's
    ``USER`` — resolved by name from the same /etc/passwd (dispatchWorkdir: llb.WithUser). A big
    /etc/passwd copied from the context is a stand-in by then."""
    dockerfile = "FROM base\nCOPY rootfs/ /\nUSER app\nWORKDIR /srv/work\n"
    ctx = tmp_path / "ctx"
    (ctx / "rootfs" / "etc").mkdir(parents=True)
    (ctx / "rootfs" / "etc" / "passwd").write_bytes(passwd_bytes(MIB + 1))
    (ctx / "Dockerfile").write_text(dockerfile)
    write_lock(ctx, ["rootfs/etc/passwd"])
    off_code, off, off_out = build(ctx, tmp_path / "off", busybox_base, False, capsys)
    assert off_code == 0, off_out
    on_code, on, on_out = build(ctx, tmp_path / "on", busybox_base, True, capsys)
    assert on_code == 0, on_out
    assert on["image.digest"] == off["image.digest"], (
        on.get("stand_ins"),
        on.get("stand_ins.not_used"),
    )


# --- input that crashes the gate (exit 4) -------------------------------------------------------


def _nested_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_review2_a_deeply_nested_json_dockerfile_is_no_crash() -> None:
    """``_other_syntax`` (dfc3b66) json-loads a Dockerfile that starts with ``{`` and catches
    only ValueError: nesting past the recursion limit is a RecursionError, an internal error of
    every build (exit 4), not an invalid Dockerfile (exit 2)."""
    text = _nested_json(50_000) + "\nFROM scratch\n"
    try:
        df = parse_dockerfile(text, "Dockerfile")
    except ConfigError as e:  # refusing it (exit 2) is fine; crashing is not
        assert "Dockerfile" in e.message
    else:
        assert [f.image for f in df.froms] == ["scratch"]


def test_review2_a_deeply_nested_json_copy_is_a_reader_not_a_crash(tmp_path: Path) -> None:
    """``_copies_a_stand_in`` json-loads a ``COPY [...]`` and catches only ValueError; what it
    cannot read should count as a reader (the module's rule), not crash the build gate."""
    text = "FROM scratch\nCOPY " + "[" * 50_000 + "]" * 50_000 + "\nRUN x\n"
    ctx = _context(tmp_path, text)
    df = parse_dockerfile(text, "Dockerfile")
    # (Without the RUN nothing would read what the COPY may bring: no reason to refuse.)
    assert "RUN where a COPY" in (standins.blocker(df, ctx, {}) or "")


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 1, "files": 5}',
        b'{"version": 1, "roots": 5, "files": []}',
        b'{"version": 1, "files": [], "x": "\xff\xfe"}',
        ('{"version": 1, "files": [], "x": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(),
    ],
    ids=["files-not-a-list", "roots-not-a-list", "not-utf8", "deeply-nested"],
)
def test_review2_pins_of_a_lock_that_cannot_be_read_are_none(
    tmp_path: Path, content: bytes
) -> None:
    """``standins.pins`` says: "Empty when the lock cannot be read (the models gate says why)".
    ``load_lock`` lets TypeError, UnicodeDecodeError and RecursionError out, and ``pins`` only
    catches Error/OSError: the build gate now crashes (exit 4) on such a models.lock."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "models.lock").write_bytes(content)
    assert standins.pins(ctx, ctx / "models.lock") == {}


# --- the finalizer's zstd pipe ------------------------------------------------------------------


def _children(name: str) -> list[int]:
    """The pids of this process's children called ``name`` (from /proc)."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm == name:
            out.append(int(entry))
    return out


def _gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` is a zombie or gone (its pipes closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat[stat.rindex(")") + 2] in "ZX":
            return
        time.sleep(0.01)


def _random_chunks(n: int) -> Iterator[bytes]:
    for _ in range(n):
        yield os.urandom(MIB)


def test_review2_a_failing_blob_write_under_zstd_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """The drain thread records the write's error and stops reading zstd's output; zstd then
    blocks on its full stdout, stops reading its stdin, and the main thread's ``os.write``
    blocks for ever (nothing looks at ``failed`` until the input is all written). A disk that
    fills while a 2 GiB layer is finalized hangs the run until the CI job's own timeout. The
    blob here is written to /dev/full (the kernel's ENOSPC)."""
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    writer = finalize._BlobWriter(dfd)
    os.close(writer._fd)
    writer._fd = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            outcome.append(finalize._compress(_random_chunks(96), "zstd", 1, writer, "L"))
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    hung = worker.is_alive()
    try:
        assert not hung, (
            "the finalizer is still blocked writing to zstd 30 s after the disk was full"
        )
        assert outcome and isinstance(outcome[0], (OSError, GateError)), outcome
    finally:
        # Unblock a hung worker: zstd killed, the next write fails with EPIPE.
        for pid in _children("zstd"):
            os.kill(pid, signal.SIGKILL)
        worker.join(30)
        os.close(writer._fd)
        os.close(dfd)


def test_review2_zstd_dying_mid_stream_is_a_gate_error(tmp_path: Path) -> None:
    """``_compress`` checks zstd's exit code only after the input is all written; zstd killed
    (the OOM killer, a signal) while it is fed makes ``os.write`` raise BrokenPipeError, which
    is no :class:`~modelseal.errors.Error`: the pipeline reports an internal error (exit 4)
    where "layer …: zstd exited with code -9" (ERRORED, exit 3) is meant."""

    def chunks() -> Iterator[bytes]:
        yield os.urandom(MIB)
        for pid in _children("zstd"):
            os.kill(pid, signal.SIGKILL)
            _gone(pid)
        yield from _random_chunks(8)

    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    writer = finalize._BlobWriter(dfd)
    try:
        with pytest.raises(Exception) as caught:
            finalize._compress(chunks(), "zstd", 1, writer, "L")
        assert isinstance(caught.value, GateError), repr(caught.value)
    finally:
        writer.discard()
        os.close(dfd)


# --- model-only layers: the member names the finalizer reads ------------------------------------


def _header(name: bytes, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name.decode())
    info.size, info.mtime, info.mode, info.type = size, EPOCH, 0o644, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def _gnu_then_pax(gnu: bytes, pax: bytes, data: bytes) -> bytes:
    """One member named ``gnu`` by a GNU long-name header and ``pax`` by a PAX path record
    after it (Go's and Python's tar readers take the GNU name)."""
    record = b" path=" + pax + b"\n"
    n = len(record) + 1
    while len(str(n)) + len(record) != n:
        n = len(str(n)) + len(record)
    records = str(n).encode() + record
    return (
        _header(b"././@LongLink", len(gnu) + 1, tarfile.GNUTYPE_LONGNAME) + _padded(gnu + b"\0")
        + _header(b"PaxHeader", len(records), tarfile.XHDTYPE) + _padded(records)
        + _header(b"short", len(data), tarfile.REGTYPE) + _padded(data)
        + bytes(1024)
    )  # fmt: skip


def _plain(name: bytes, data: bytes) -> bytes:
    return _header(name, len(data), tarfile.REGTYPE) + _padded(data) + bytes(1024)


@pytest.mark.parametrize(
    "layer",
    [
        _plain(b"app/model/../../etc/cron.d/job", b"* * * * * root /tmp/x\n"),
        _gnu_then_pax(b"etc/cron.d/job", b"app/model/job", b"* * * * * root /tmp/x\n"),
    ],
    ids=["dot-dot", "gnu-long-name-then-pax-path"],
)
def test_review2_a_layer_is_model_only_only_if_tar_readers_see_model_paths(layer: bytes) -> None:
    """``LayerStats.note`` gets the name uncleaned (``_clean_name`` strips ``./`` and ``/``
    only) and the *last* of a GNU long name and a PAX path; Go (containerd, syft, Trivy) and
    Python's tarfile (ImageFs) clean ``..`` lexically and take the GNU long name. Such a layer
    — from a base shipped as an OCI layout with uncompressed layers, which the finalizer patches
    and marks too — is reported model-only, so syft and Trivy's vulnerability scan are given the
    image without it (modelseal.scanview) and the secret scan a slim copy of it."""
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:") as tar:
        (member,) = tar.getmembers()
    # What the tar readers see: a file outside app/model.
    assert os.path.normpath(member.name) == "etc/cron.d/job"
    stats = LayerStats(model_paths=("app/model",))
    out = b"".join(clamp_tar(io.BytesIO(layer), EPOCH, "L", stats))
    assert out == layer
    assert not stats.model_only
