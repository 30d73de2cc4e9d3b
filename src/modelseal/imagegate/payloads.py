"""Model payloads anywhere in the image: unsafe pickles wherever models-image does not look.

``models-image`` checks the files under ``models.image_paths`` against ``models.lock``; a
malicious pickle elsewhere — in a base layer, in a pip package's data files, in a cached hub
download — was never looked at. Here every regular file of every layer is looked at once, in
the shared post-build pass (:mod:`modelseal.postbuild`): :class:`PayloadTap` sees the first bytes
of each member as the layer streams (no extra read) and asks the models gate's detector
(:func:`~modelseal.models.formats.detect_prefix`) what it is. A file that is or may be
pickle-bearing (pickle, joblib, legacy torch, an object ``.npy``, every zip or tar archive,
whose members decide, and whatever the first bytes leave undecided) is copied whole to the
run's private spool; a larger file keeps a rolling tail as it streams by (:class:`_TailWatch`),
and one that ends a zip is copied from its layer before the scan (zipfile opens a zip with
data before its first local header). All within :data:`MAX_CANDIDATES` files,
:data:`MAX_CANDIDATE_BYTES` bytes and, per file, ``models.limits.max_inflated_bytes``; :func:`collect` then scans each (once per content) with
the models gate's allowlist scanner (:func:`~modelseal.models.scan.scan_payload`: archive
members too) within ``models.limits``, and all of them within :data:`MAX_SCAN_SECONDS`. A
file past any bound is an ``image.payload-unscanned`` finding, which fails: nothing is skipped
silently.

Files a later layer deletes or replaces are scanned too: their bytes ship in the image's blobs
and anyone can extract them (``docker save``, a registry pull). Their findings say so
(``hidden: yes``), naming the layer that holds them.

The model paths (``models.image_paths``) are left to ``models-image`` only while it runs in
this run (:func:`modelseal.postbuild.models_image_runs`), and only what it checks: the visible
files there, each of which must be pinned in the lock. The tap records the model-path members
without copying them (the pass hashes them); :func:`collect` reads again, from the layer
holding it, each one models-image cannot see — a copy a later layer deleted or replaced (unless
the same bytes show at the same path), one visible through a hardlink outside the model paths,
one ``models.ignore`` leaves out — and scans it like any other (evidence ``model_paths`` says
why it is reported here).

Findings (:func:`payload_rule` judges them):

- ``image.model-file``: a file in a model or serialization format outside the lock; judged by
  ``image.model_files_outside_lock``, accepted by a ``image.model_files_ignore`` glob;
- ``image.payload.<kind>``: what the scanner found in it (``unsafe-global``, ``unparsable``,
  ``scan-limit`` …), judged as the models gate judges ``models.<kind>`` under
  ``models.pickle: scan`` (``models.allowed_globals`` and ``models.allow`` apply;
  ``models.pickle`` is about the locked model, so its ``allow`` does not turn an unsafe pickle
  here into a warning): an unsafe pickle fails whatever ``model_files_outside_lock``, the
  globs and ``models.pickle`` say. ``trailing-data`` (how the
  file is formed, not what loading it runs) is judged as the file itself;
- ``image.payload-unscanned``: a candidate past a bound, never scanned; fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Final

from modelseal.errors import GateError
from modelseal.findings import Finding, Severity
from modelseal.imagefs import MemberSink, printable
from modelseal.judge import Decision, Outcome
from modelseal.models.allowlist import Allowlist
from modelseal.models.formats import ZIP_TAIL, Detected, detect_prefix, may_carry_pickle, zip_tail
from modelseal.models.hashing import hash_file
from modelseal.models.issues import Format, ModelIssue
from modelseal.models.limits import CUTOFF, scan_limits
from modelseal.models.lock import is_ignored
from modelseal.models.rules import models_rule
from modelseal.models.scan import ARCHIVE_BOUND, FileScan, scan_payload
from modelseal.policy import Policy

if TYPE_CHECKING:
    from modelseal.imagegate.view import ImageView

GATE: Final = "image"
#: Files one image may copy to the spool to be scanned (pickle-bearing ones and archives).
MAX_CANDIDATES: Final = 10_000
#: Bytes of all the files one image may copy to the spool.
MAX_CANDIDATE_BYTES: Final = 4 << 30
#: Wall time for scanning all the candidates of one image (each file also has
#: ``models.limits.max_seconds``).
MAX_SCAN_SECONDS: Final = 900.0

MODEL_FILE: Final = "image.model-file"
UNSCANNED: Final = "image.payload-unscanned"
PAYLOAD: Final = "image.payload."


#: What a member found to be a zip by its end record is, until the full detector reads it.
_ZIP_BY_TAIL: Final = Detected(Format.UNKNOWN, {"container": "zip", "found": "end record"})


@dataclass(frozen=True)
class Member:
    """One regular member of a layer in a model or serialization format (or an archive)."""

    layer: int  # the layer's index, bottom first
    ordinal: int  # the member's ordinal in its layer
    path: str  # as the layer writes it, without the leading "/"
    size: int
    detected: Detected  # from the first bytes
    spool: Path | None  # the whole content, when it is to be scanned
    unscanned: str  # why it is to be scanned but was not copied ("" otherwise)
    # Under the model paths while models-image runs: not copied in the pass (models-image
    # checks what it shows); collect() reads it again only when models-image cannot see it.
    model_path: bool = False


#: What the tap keeps of the end of a member too large for its head, to find a zip's end
#: record (a zip with data before its first local header, which zipfile opens all the same).
_TAIL: Final = ZIP_TAIL


class _TailWatch:
    """Sees a large member stream by (it is not copied) and keeps its last :data:`_TAIL`
    bytes; at the end, a zip by its end record is recorded to be read again from its layer
    (:meth:`PayloadTap.later`). Costs a slice per 1 MiB chunk."""

    def __init__(self, tap: PayloadTap, layer: int, ordinal: int, path: str, size: int) -> None:
        self.tap, self.key, self.path, self.size = tap, (layer, ordinal), path, size
        self.tail = b""
        self.seen = 0

    def write(self, data: bytes) -> int:
        """Keep the end of what streamed so far."""
        self.seen += len(data)
        self.tail = data[-_TAIL:] if len(data) >= _TAIL else (self.tail + data)[-_TAIL:]
        return len(data)

    def close(self) -> None:
        """Record the member when its tail ends a zip (and it streamed to its end)."""
        if self.seen == self.size and zip_tail(self.tail):
            self.tap.later(*self.key, self.path, self.size)


class PayloadTap:
    """The :class:`modelseal.imagefs.MemberTap` of the post-build pass: records the members in
    a model format and copies the candidates for the scan (see the module doc)."""

    def __init__(self, spool: Path, skip: Callable[[str], bool], max_file_bytes: int) -> None:
        self.spool = spool  # private, made fresh by the caller
        self.skip = skip  # the model paths, when models-image runs (postbuild.models_image_runs)
        self.max_file_bytes = max_file_bytes
        self.members: dict[tuple[int, int], Member] = {}
        self.copied = (0, 0)  # files, bytes
        self.digests: dict[tuple[int, int], str] = {}  # model-path members, hashed in the pass
        #: Members to copy from their layers before the scan (zips found by their tail).
        self.pending: dict[tuple[int, int], Path] = {}

    def admit(self, size: int) -> str:
        """Count a candidate of ``size`` bytes for the spool: "" when it fits the bounds, or
        why not."""
        files, total = self.copied
        if size > self.max_file_bytes:
            return (f"{size} bytes, more than models.limits.max_inflated_bytes "
                    f"({self.max_file_bytes})")  # fmt: skip
        if files >= MAX_CANDIDATES:
            return f"more than {MAX_CANDIDATES} candidate files in the image"
        if total + size > MAX_CANDIDATE_BYTES:
            return f"more than {MAX_CANDIDATE_BYTES} bytes of candidate files in the image"
        self.copied = (files + 1, total + size)
        return ""

    def member(
        self, layer: int, ordinal: int, path: str, size: int, head: bytes
    ) -> MemberSink | None:
        """Detect ``path`` from ``head``; return a fresh spool file for a candidate."""
        detected = detect_prefix(head, size)
        if self.skip(path):
            # models-image's, unless it cannot see it (collect decides, once the layers are
            # applied); the pass hashes it (hashed()), nothing is copied.
            if detected.format is not Format.UNKNOWN or may_carry_pickle(detected):
                self.members[layer, ordinal] = Member(
                    layer, ordinal, path, size, detected, None, "", model_path=True
                )
            return None
        if not may_carry_pickle(detected):
            if detected.format is not Format.UNKNOWN:
                self.members[layer, ordinal] = Member(
                    layer, ordinal, path, size, detected, None, ""
                )
            if size > len(head):
                return _TailWatch(self, layer, ordinal, path, size)
            if not zip_tail(head[-_TAIL:]):
                return None
            detected = _ZIP_BY_TAIL
        return self._take(layer, ordinal, path, size, detected)

    def later(self, layer: int, ordinal: int, path: str, size: int) -> None:
        """A member found to be a zip only at its end: its content is copied from its layer
        before the scan (:func:`collect`), within the same bounds."""
        self._take(layer, ordinal, path, size, _ZIP_BY_TAIL, later=True)

    def _take(
        self, layer: int, ordinal: int, path: str, size: int, detected: Detected, *,
        later: bool = False,
    ) -> IO[bytes] | None:  # fmt: skip
        why = self.admit(size)
        if why:
            self.members[layer, ordinal] = Member(layer, ordinal, path, size, detected, None, why)
            return None
        dest = self.spool / f"payload-{layer}-{ordinal}"
        self.members[layer, ordinal] = Member(layer, ordinal, path, size, detected, dest, "")
        if later:
            self.pending[layer, ordinal] = dest
            return None
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "wb")

    def hashed(self, layer: int, ordinal: int, sha256: str) -> None:
        """Keep the digest of a model-path member (to tell a hidden copy from what shows)."""
        m = self.members.get((layer, ordinal))
        if m is not None and m.model_path:
            self.digests[layer, ordinal] = sha256


def collect(view: ImageView) -> list[Finding]:
    """The payload findings of one platform image (see the module doc)."""
    fs = view.fs
    tap = fs.tap
    if not isinstance(tap, PayloadTap):
        raise GateError(
            "the image's layers were read without the payload scan (image.enabled was off when "
            "the post-build pass ran), so model payloads outside the lock were not checked."
        )
    if tap.pending:
        # Zips found by their end record once their member had streamed by: one more read of
        # the layers holding one (rare: a self-extractor, a zipapp with a shebang line).
        fs.extract_members(tap.pending)
        tap.pending = {}
    models = view.ctx.policy.policy.models
    limits = scan_limits(models.limits)
    allow = Allowlist.default()
    visible = fs.visible_members()
    deadline = time.monotonic() + MAX_SCAN_SECONDS
    scans: dict[str, FileScan] = {}  # content sha256 → its scan
    digests: dict[tuple[int, int], str] = dict(tap.digests)
    members = sorted(tap.members.values(), key=lambda m: (m.layer, m.ordinal))
    for m in members:
        if m.spool is not None:
            digests[m.layer, m.ordinal] = hash_file(m.spool).sha256
    # What each visible path shows, to leave out a hidden copy identical to it (a later
    # layer's chmod or touch copies the whole file up).
    shown = {
        p: (m.size, m.detected.format, digests.get((m.layer, m.ordinal)))
        for m in members
        for p in visible.get((m.layer, m.ordinal), [])
    }
    # The model-path members models-image cannot vouch for, read again (see _unseen).
    unseen = _unseen(view, tap, members, visible, shown, digests)
    findings: list[Finding] = []
    for m in members:
        key = (m.layer, m.ordinal)
        paths = visible.get(key)
        note = ""
        if m.model_path:
            if key not in unseen:
                continue  # models-image's: it checks this file against the lock
            m, paths, note = unseen[key]
        sha = digests.get(key)
        if paths is None and not m.model_path and shown.get(m.path) == (
            m.size, m.detected.format, sha
        ):  # fmt: skip
            continue
        at = _Where(view, m, paths, note)
        if m.unscanned:
            findings.append(at.unscanned(m.unscanned))
            continue
        if m.spool is None or sha is None:
            findings.append(at.model_file(m.detected.format.value, m.detected, pickle=False))
            continue
        scan = scans.get(sha)
        if scan is None:
            late = f"the payload scan took more than {MAX_SCAN_SECONDS:g} s"
            if time.monotonic() > deadline:
                findings.append(at.unscanned(late))
                continue
            # The deadline bounds every scan, archive members included; a scan it cut off is
            # not kept (another copy of the content is unscanned too, not half-scanned).
            scan = scan_payload(m.spool, allow, limits=limits, cutoff=deadline)
            if any(i.detail.get("limit") == CUTOFF for i in scan.issues):
                findings.append(at.unscanned(late))
                continue
            scans[sha] = scan
        det = scan.detected
        issues = [i for i in scan.issues if i.detail.get("limit") != ARCHIVE_BOUND]
        findings += [at.unscanned(i.title) for i in scan.issues if i not in issues]
        if scan.format is Format.UNKNOWN:
            if not det.zip_pickle_members and not issues:
                continue  # an archive holding no pickle (a jar, a wheel of code): not a model
            # An archive in no model format holding pickles (a wheel's package data, a zip or
            # tar of pickles, an archive in an archive): its members are scanned all the same.
            what = det.detail.get("container") or "archive"
            findings.append(at.model_file(what, det, pickle=True, sha256=sha))
            findings += [at.issue(i) for i in issues]
            continue
        findings.append(at.model_file(scan.format.value, det, pickle=scan.carries_pickle,
                                      sha256=sha))  # fmt: skip
        findings += [at.issue(i) for i in issues]
    return findings


_Unseen = dict[tuple[int, int], tuple[Member, list[str] | None, str]]


def _unseen(
    view: ImageView,
    tap: PayloadTap,
    members: list[Member],
    visible: dict[tuple[int, int], list[str]],
    shown: dict[str, tuple[int, Format, str | None]],
    digests: dict[tuple[int, int], str],
) -> _Unseen:
    """The members under the model paths that models-image, which walks only the visible
    model directories and leaves out what ``models.ignore`` matches, never checks: a copy a
    later layer deleted or replaced (unless identical to what shows), one visible through a
    hardlink outside the model paths, one ``models.ignore`` leaves out. Each maps to itself
    (its spool filled by reading its layer again, within the tap's bounds), the paths to
    report it under, and why it is reported here."""
    models = view.ctx.policy.policy.models
    # models.ignore is matched against the build-context path a file stands for (as
    # models-image matches it); the image path and the path inside each model directory are
    # tried too: one match more means one file more scanned, never one less.
    dirs = [
        (image.strip("/") + "/", PurePosixPath(local).as_posix().strip("/"))
        for local, image in models.image_paths.items()
    ]

    def ignored(path: str) -> bool:
        forms = [path]
        for prefix, local in dirs:
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                forms += [rest, rest if local in ("", ".") else f"{local}/{rest}"]
        return any(is_ignored(f, models.ignore) for f in forms)

    out: _Unseen = {}
    for m in members:
        if not m.model_path:
            continue
        key = (m.layer, m.ordinal)
        paths = visible.get(key)
        sha = digests.get(key)
        if paths is None:
            if sha is not None and shown.get(m.path) == (m.size, m.detected.format, sha):
                continue  # the same bytes show at the same path: models-image checks them
            out[key] = (m, None, "under models.image_paths, where models-image sees only what "
                        "is visible")  # fmt: skip
        elif outside := [p for p in paths if not tap.skip(p)]:
            out[key] = (m, outside, "a hardlink to a file under models.image_paths, outside "
                        "them")  # fmt: skip
        elif left_out := [p for p in paths if ignored(p)]:
            out[key] = (m, left_out, "under models.image_paths, but left out of models-image "
                        "by models.ignore")  # fmt: skip
    wanted: dict[tuple[int, int], Path] = {}
    for key, (m, paths, note) in out.items():
        if not may_carry_pickle(m.detected):
            continue
        why = tap.admit(m.size)
        if why:
            out[key] = (replace(m, unscanned=why), paths, note)
            continue
        wanted[key] = tap.spool / f"payload-{key[0]}-{key[1]}"
        out[key] = (replace(m, spool=wanted[key]), paths, note)
    if wanted:
        view.fs.extract_members(wanted)
        for key, dest in wanted.items():
            digests[key] = hash_file(dest).sha256
    return out


class _Where:
    """Where one member is, for its findings: path, platform, layer, hidden or not."""

    def __init__(self, view: ImageView, m: Member, paths: list[str] | None, note: str) -> None:
        self.m = m
        self.note = note  # why a file under the model paths is reported here ("" otherwise)
        self.hidden = paths is None
        path = printable(m.path if paths is None else sorted(paths)[0])
        self.subject = f"/{path}"
        digest = view.fs.layers[m.layer][0]
        self.layer = f"layer {m.layer + 1} ({digest[:19]}…)"
        self.named = f"/{path} ({self.layer}" + (
            ", deleted or replaced by a later layer: not visible at runtime, but shipped in the "
            "image's blobs)"
            if self.hidden
            else ")"
        )
        self.evidence = {
            "platform": view.platform, "path": path, "layer": str(m.layer + 1),
            "layer_digest": digest, "hidden": "yes" if self.hidden else "no", "size": str(m.size),
        }  # fmt: skip
        if paths and len(paths) > 1:
            self.evidence["hardlinks"] = ", ".join(f"/{printable(p)}" for p in sorted(paths)[1:6])
        if note:
            self.evidence["model_paths"] = note
        self.location = f"/{path} ({view.platform}, {self.layer})"

    def _finding(self, fid: str, severity: Severity, title: str, **evidence: str) -> Finding:
        return Finding(
            gate=GATE, id=fid, severity=severity, title=title, subject=self.subject,
            location=self.location, evidence=self.evidence | evidence,
        )  # fmt: skip

    def model_file(
        self, fmt: str, det: Detected, *, pickle: bool, sha256: str | None = None
    ) -> Finding:
        what = f"{fmt} (carries pickle data)" if pickle else fmt
        extra = {f"detail.{k}": str(v) for k, v in det.detail.items()}
        if sha256:
            extra["sha256"] = sha256
        return self._finding(
            MODEL_FILE, Severity.MEDIUM if pickle else Severity.LOW,
            f"{self.named} is {what}, "
            + (self.note if self.note else "outside the locked model paths"),
            format=fmt, pickle="yes" if pickle else "no", **extra,
        )  # fmt: skip

    def issue(self, i: ModelIssue) -> Finding:
        extra = dict(i.detail)
        if i.member:
            extra["member"] = i.member
        if i.offset is not None:
            extra["offset"] = str(i.offset)
        where = f" ({i.where()})" if i.where() else ""
        return self._finding(f"{PAYLOAD}{i.kind}", i.severity, f"{self.named}{where}: {i.title}",
                             **extra)  # fmt: skip

    def unscanned(self, why: str) -> Finding:
        det = self.m.detected
        container = det.detail.get("container")
        what = f"a {container} archive" if container else det.format.value
        return self._finding(
            UNSCANNED, Severity.HIGH,
            f"{self.named} may carry pickle data ({what}) but was not scanned: {why}",
            reason=why,
        )  # fmt: skip


#: Scanner findings about how a file is formed rather than what loading it runs: outside the
#: lock they are judged as the file itself (``model_files_outside_lock``, the globs). A text
#: file that happens to start with a complete text pickle (``C`` + a length byte + ``.``: a
#: ``changelog.gz`` in Debian's docs) is a joblib file with trailing data to the detector.
_FORM_KINDS: Final = frozenset({"trailing-data"})


def _outside_lock(policy: Policy, f: Finding, what: str) -> Decision:
    path = f.evidence.get("path", "")
    glob = next((g for g in policy.image.model_files_ignore if is_ignored(path, [g])), None)
    if glob is not None:
        return Decision(f, Outcome.IGNORED, f"{what} accepted by image.model_files_ignore {glob!r}")
    mode = policy.image.model_files_outside_lock
    outcome = {"fail": Outcome.FAIL, "warn": Outcome.WARN, "allow": Outcome.IGNORED}[mode]
    return Decision(f, outcome, f"{what}: image.model_files_outside_lock is {mode}")


def payload_rule(policy: Policy, f: Finding) -> Decision | None:
    """The policy's word on a payload finding; None for a finding that is not one."""
    if f.id == MODEL_FILE:
        return _outside_lock(policy, f, "a model file outside the lock")
    if f.id == UNSCANNED:
        return Decision(f, Outcome.FAIL, "a file that may carry pickle data was not scanned")
    if f.id.startswith(PAYLOAD):
        kind = f.id[len(PAYLOAD) :]
        if kind in _FORM_KINDS:
            return _outside_lock(policy, f, f"{kind} in a model file outside the lock")
        # Judged as the models gate judges the same scanner finding (models.* allowlist), but
        # models.pickle is about the locked model: "allow" does not make an unsafe or
        # unparsable pickle elsewhere in the image a warning.
        locked = policy.models
        strict = policy.model_copy(update={"models": locked.model_copy(update={"pickle": "scan"})})
        d = models_rule(strict, replace(f, id=f"models.{kind}"))
        return Decision(f, d.outcome, d.reason)
    return None
