"""Review of stand-ins (build.stand_ins): builds where the claim "the image is the one a build of
the real files gives, byte for byte, and a stand-in never reaches an image" does not hold yet.

Each engine test builds the same context with and without stand-ins with real BuildKit and
wants the same outcome: both builds pass and give the same image digest. Each Dockerfile here
lets a build step see a stand-in in a way :func:`modelseal.imagebuild.standins.blocker` does not
recognize (the step prints the file's SHA-256 into the image, so a stand-in changes the
digest)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.layers import weights
from tests.support.reports import read_report, report_gates
from tests.support.standins import build, finalized, passwd_bytes, pins_of, write_lock

from modelseal._cli import main
from modelseal.errors import GateError
from modelseal.imagebuild import standins
from modelseal.imagebuild.dockerfile import parse_dockerfile
from modelseal.imagebuild.engine import PrivateEngine

MIB = 1 << 20


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "big.bin").write_bytes(weights(1, 2 * MIB + 3, b"review-"))
    (ctx / "small.txt").write_text("small\n")
    (ctx / "rootfs" / "etc").mkdir(parents=True)
    (ctx / "rootfs" / "etc" / "passwd").write_bytes(passwd_bytes(MIB + 1))
    # 128 bytes that look like a stand-in (a modelseal test fixture, a file documenting the
    # format): an ordinary file of the project, sent to BuildKit as it is.
    lookalike = b"modelseal-stand-in:" + b"0" * 32 + b":00000000\n"
    (ctx / "lookalike.bin").write_bytes(lookalike.ljust(standins.SIZE, b"#"))
    (ctx / "Dockerfile").write_text(dockerfile)
    _lock_big_files(ctx)
    return ctx


def _lock_big_files(ctx: Path) -> None:
    """A models.lock pinning every file of 1 MiB or more in ``ctx`` (stand-ins are only ever
    given to files the lock pins)."""
    big = [p for p in sorted(ctx.rglob("*")) if p.is_file() and p.stat().st_size >= MIB]
    write_lock(ctx, [p.relative_to(ctx).as_posix() for p in big])


_SUM = "busybox sha256sum"


def _case(name: str, dockerfile: str, reason: str) -> object:
    # Each was a defect the review found (``reason``); fixed, each is a regression test.
    return pytest.param(dockerfile, id=name)


#: Dockerfiles in which a RUN (or BuildKit itself) reads a file that gets a stand-in, so the
#: image differs from a build without stand-ins.
READERS = [
    # BuildKit's COPY takes heredocs and context paths in one instruction (parseSourcesAndDest
    # sorts them into SourceContents and SourcePaths); the blocker stops at the leading "<<".
    _case(
        "copy-heredoc-and-a-path",
        "FROM base\n"
        "COPY <<EOF model/big.bin /app/\n"
        "hello\n"
        "EOF\n"
        f"RUN {_SUM} /app/big.bin > /app/sum.txt\n",
        "COPY <<EOF model/big.bin /dst is taken for a heredoc only; a RUN then reads a stand-in",
    ),
    # "COPY --from=" (empty) copies from the build context, as no --from does; the blocker
    # takes any --from for a stage or image and does not look at the sources.
    _case(
        "copy-empty-from",
        "FROM base\n"
        "COPY --from= model/ /app/\n"
        f"RUN {_SUM} /app/big.bin > /app/sum.txt\n",
        "COPY --from= (empty: the build context) is taken for a stage; its sources are not looked at",
    ),
    # With "# escape=`" the backtick escapes in COPY sources: "mo`del" is "model" to BuildKit,
    # a missing path to _may_hold (which treats only a backslash as an escape).
    _case(
        "escape-directive-in-a-source",
        "# escape=`\n"
        "FROM base\n"
        "COPY mo`del/ /app/\n"
        f"RUN {_SUM} /app/big.bin > /app/sum.txt\n",
        "a COPY source escaped with the escape directive (mo`del) is taken for a missing path",
    ),
    # BuildKit lower-cases the mount type (parseMount: m.Type = strings.ToLower(value));
    # _mount_blocker compares it as written and takes "BIND" for a tmpfs/secret/ssh mount.
    _case(
        "mount-type-in-upper-case",
        "FROM base\n"
        f"RUN --mount=type=BIND,target=/ctx {_SUM} /ctx/model/big.bin > /sum.txt\n",
        "RUN --mount=type=BIND (BuildKit lower-cases the type) is taken for no context mount",
    ),
    # parseMount reads its value as CSV: '"from=w"' is the field from=w. _mount_blocker splits
    # on commas and sees a key '"from', so the cache mount is taken as an empty cache.
    _case(
        "mount-csv-quoted-from",
        "FROM scratch AS w\n"
        "COPY model/ /w/\n"
        "FROM base\n"
        "RUN --mount=type=cache,'\"from=w\"',target=/m " + _SUM + " /m/w/big.bin > /sum.txt\n",
        "a CSV-quoted mount field (\"from=w\") is not parsed as BuildKit's CSV reader does",
    ),
    # parseMount takes "from=" (empty) as no stage: the build context. _mount_blocker takes a
    # present from= for a stage name, finds no tainted stage called "", and lets it through.
    _case(
        "mount-empty-from",
        "FROM base\n"
        f"RUN --mount=type=bind,from=,target=/ctx {_SUM} /ctx/model/big.bin > /sum.txt\n",
        "RUN --mount=from=, (empty: the build context to BuildKit) is taken for a stage",
    ),
    # parseMount applies the fields in order (the last of source/src wins); _mount_blocker
    # prefers "source" whatever the order, so "source=small.txt,src=model" mounts model/.
    _case(
        "mount-src-after-source",
        "FROM base\n"
        f"RUN --mount=type=bind,source=small.txt,src=model,target=/m {_SUM} /m/big.bin > /sum.txt\n",
        "RUN --mount=source=A,src=B mounts B (the last wins); the blocker looks at A",
    ),
    # BuildKit reads the stage's /etc/passwd to resolve --chown=NAME (and USER NAME for WORKDIR
    # and COPY): a big /etc/passwd copied from the context is a stand-in by then, "app" is not
    # found, and BuildKit silently makes the file root's (uid 0 instead of 1234).
    _case(
        "chown-by-name-reads-etc-passwd",
        "FROM base\n"
        "COPY rootfs/ /\n"
        "COPY --chown=app small.txt /app/small.txt\n",
        "COPY --chown=NAME reads /etc/passwd, a stand-in by then: the file is silently root's",
    ),
    # A 128-byte file that merely looks like a stand-in (no RUN, no big file read): the
    # finalizer refuses it as "a stand-in of another run" (blaming a build cache), so the
    # build is ERRORED with stand-ins on and passes with them off.
    _case(
        "a-file-that-looks-like-a-stand-in",
        "FROM base\n"
        "COPY lookalike.bin /app/lookalike.bin\n",
        "a project file that looks like another run's stand-in makes the build ERRORED",
    ),
]  # fmt: skip


@pytest.mark.engine
@pytest.mark.parametrize("dockerfile", READERS)
def test_review_stand_ins_leave_the_image_as_a_build_without_them(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], dockerfile: str,
) -> None:  # fmt: skip
    ctx = _context(tmp_path, dockerfile)
    off_code, off, off_out = build(ctx, tmp_path / "off", busybox_base, False, capsys, "zstd")
    # Without stand-ins each of these builds passes (the Dockerfiles are valid BuildKit input).
    assert off_code == 0, off_out
    on_code, on, on_out = build(ctx, tmp_path / "on", busybox_base, True, capsys, "zstd")
    assert on_code == 0, on_out
    # The lock pins the big files: stand-ins were used, or refused for a reader in the build.
    assert on["stand_ins"] != "0" or "Dockerfile:" in on["stand_ins.not_used"], on
    assert on["image.digest"] == off["image.digest"], (
        on.get("stand_ins"),
        on.get("stand_ins.not_used"),
    )


@pytest.mark.engine
def test_review_a_stand_in_never_reaches_the_image(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Any gap in the blocker (here the upper-case mount type) lets a RUN copy a stand-in into a
    # file that is not exactly one stand-in; the finalizer only replaces whole 128-byte files.
    ctx = _context(
        tmp_path,
        "FROM base\n"
        "RUN --mount=type=BIND,target=/ctx cat /ctx/model/big.bin /ctx/model/big.bin > /twice\n",
    )
    code, facts, out = build(ctx, tmp_path / "on", busybox_base, True, capsys, "uncompressed")
    assert code == 0, out
    blobs = (tmp_path / "on" / "oci" / "blobs" / "sha256").iterdir()
    assert not [p.name for p in blobs if b"modelseal-stand-in:" in p.read_bytes()], facts


def _put(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def _two_platform_archive(path: Path, name: str, onbuild_arm64: list[str]) -> str:
    """An OCI archive for ``docker load``: an index of linux/amd64 (no ONBUILD triggers) and
    linux/arm64 (``onbuild_arm64``), each one empty layer; returns the index digest."""
    blobs: dict[str, bytes] = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
        tar.addfile(info)
    import gzip

    diff_id = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    gz = gzip.compress(buf.getvalue(), mtime=0)
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_put(blobs, gz)}
    manifests = []
    for arch, onbuild in (("amd64", None), ("arm64", onbuild_arm64)):
        inner: dict[str, object] = {"Cmd": ["sh"], **({"OnBuild": onbuild} if onbuild else {})}
        config = {"architecture": arch, "os": "linux", "config": inner,
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}}  # fmt: skip
        cdesc = _put(blobs, json.dumps(config).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
                    "layers": [layer]}  # fmt: skip
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          **_put(blobs, json.dumps(manifest).encode()),
                          "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": manifests}  # fmt: skip
    idesc = _put(blobs, json.dumps(index).encode())
    top = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", **idesc,
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rpartition(":")[2]}}]}  # fmt: skip
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                 "index.json": json.dumps(top).encode(),
                 **{"blobs/sha256/" + d.removeprefix("sha256:"): b for d, b in blobs.items()}}  # fmt: skip
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(data), EPOCH
            tar.addfile(info, io.BytesIO(data))
    return str(idesc["digest"])


@pytest.mark.engine
def test_review_onbuild_triggers_of_the_platform_built_block_them(
    engine: PrivateEngine, registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A multi-platform base pinned by digest whose amd64 config (the engine's own platform,
    what ``docker image inspect`` shows) has no triggers, but whose arm64 config has
    ``ONBUILD ADD model/archive.tar /x/``; BuildKit (which resolves the base from its registry,
    not from the image store, even with --pull=false) builds ``--platform linux/arm64`` from
    the arm64 config and unpacks the archive — or, with stand-ins, would copy a 128-byte
    stand-in that the finalizer turns into the archive file: /x/archive.tar instead of
    /x/payload/… (no emulator needed: ADD runs nothing). Every platform's config is read from
    the registry (standins.BaseConfigs), so the arm64 triggers block stand-ins."""
    import subprocess

    name = f"{registry}/review-onbuild:1"
    digest = _two_platform_archive(tmp_path / "base.tar", name, ["ADD model/archive.tar /x/"])
    # The base is in the engine's image store (what _onbuild inspects) and in the registry it
    # names (what BuildKit resolves it from): the same index, the same digest.
    load = subprocess.run(["docker", "load", "-i", str(tmp_path / "base.tar")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert load.returncode == 0, load.stderr
    push = subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                           f"oci-archive:{tmp_path / 'base.tar'}", f"docker://{name}"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert push.returncode == 0, push.stderr
    inspect = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.OnBuild}}",
                              f"{name}@{digest}"], capture_output=True, text=True, check=False)  # fmt: skip
    assert inspect.stdout.strip() == "null", inspect  # the engine's own platform: no triggers
    ctx = _context(tmp_path, f"FROM {name}@{digest}\nCOPY small.txt /app/small.txt\n")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = weights(7, 2 * MIB, b"review-")
        info = tarfile.TarInfo("payload/weights.bin")
        info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
        tar.addfile(info, io.BytesIO(data))
    (ctx / "model" / "archive.tar").write_bytes(archive.getvalue())
    _lock_big_files(ctx)
    digests = {}
    for on in (False, True):
        out = tmp_path / ("on" if on else "off")
        policy = tmp_path / f"{out.name}.yml"
        policy.write_text(
            "version: 1\nbuild:\n  rebuild_check: never\n"
            f"  stand_ins: {'true' if on else 'false'}\n"
        )
        code = main(["build", str(ctx), "--policy", str(policy), "-o", str(out),
                     "--source-date-epoch", str(EPOCH), "--platform", "linux/arm64"])  # fmt: skip
        printed = capsys.readouterr()
        assert code == 0, printed.out + printed.err
        (gate,) = report_gates(read_report(out / "report.json")).values()
        digests[on] = (gate["facts"]["image.digest"], gate["facts"].get("stand_ins"))
        if on:
            # Every platform's config is read from the registry, the arm64 one's triggers too.
            assert "has ONBUILD triggers" in gate["facts"]["stand_ins.not_used"], gate["facts"]
    assert digests[True][0] == digests[False][0], digests


# --- without an engine ---------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["same-size", "grown"])
def test_review_a_file_changed_after_the_context_was_normalized_is_refused(
    tmp_path: Path, change: str
) -> None:
    # Without stand-ins BuildKit builds from the copy taken when the context was normalized;
    # with them the finalizer reads the file minutes later, as it is then. A file that changed
    # in between (another CI step, a checkout, a download still running) must stop the build
    # the way one that shrank does, not ship bytes nothing verified.
    src = tmp_path / "tokenizer.bin"
    src.write_bytes(weights(3, MIB, b"review-"))
    si = standins.StandIns(pins_of(tmp_path, "tokenizer.bin"))
    stand_in = si.add("tokenizer.bin", src)
    assert stand_in is not None
    if change == "same-size":
        src.write_bytes(weights(4, MIB, b"review-"))
    else:
        with src.open("ab") as f:
            f.write(b"appended after the build started")
    with pytest.raises(GateError, match=r"tokenizer\.bin"):
        finalized(si, ("app/tokenizer.bin", stand_in))


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM b\nRUN --mount=type=Bind,source=model,target=/m x\n",
        "FROM b AS w\nCOPY model /w\nFROM b\nRUN --mount=type=CACHE,from=w,target=/m x\n",
        "FROM b\nCOPY <<EOF model/big.bin /app/\nhi\nEOF\nRUN x\n",
        "# escape=`\nFROM b\nCOPY mo`del /m\nRUN x\n",
    ],
    ids=["bind-mixed-case", "cache-from-upper-case", "copy-heredoc-and-a-path", "escape-backtick"],
)
def test_review_blocker_sees_these_readers(tmp_path: Path, dockerfile: str) -> None:
    """Gaps of the engine test above, checked on the blocker alone (mount type in mixed case
    for a bind and a cache mount): each of these builds lets a RUN read model/big.bin."""
    ctx = _context(tmp_path, dockerfile)
    df = parse_dockerfile(dockerfile, "Dockerfile")
    assert standins.blocker(df, ctx, {}) is not None


def test_review_a_syntax_directive_with_slashes_blocks_them(tmp_path: Path) -> None:
    """BuildKit's DetectSyntax looks for the syntax directive with a ``#`` comment, then in a
    JSON document, then with a ``//`` comment: a Dockerfile whose first line is
    ``//syntax=IMAGE`` is handed to that frontend (checked with this engine: buildx tries to
    resolve the image named there, and fails with "unknown instruction" for ``//nothing=1``).
    parse_dockerfile takes the line for an instruction before the first FROM, so
    ``Dockerfile.syntax`` is None and :func:`blocker` lets the build use stand-ins."""
    text = "//syntax=127.0.0.1:9/any/frontend:1\nFROM b\nCOPY model /m\n"
    ctx = _context(tmp_path, text)
    df = parse_dockerfile(text, "Dockerfile")
    assert "frontend" in (standins.blocker(df, ctx, {}) or "")


def test_review_a_directory_swapped_for_a_link_is_refused(tmp_path: Path) -> None:
    """``StandIns.open`` guards only the last path component (O_NOFOLLOW). Between normalizing
    and finalizing (the whole BuildKit build) a process that can write the workspace swaps
    ``model/`` for a symbolic link to a directory outside the context (here ``home/.docker``),
    and the finalizer copies that directory's ``config.json`` — registry credentials — into
    the layer. Without stand-ins the build uses the copy made when the context was normalized."""
    ctx = tmp_path / "ctx"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "config.json").write_bytes(weights(5, MIB, b"review-"))
    secret_dir = tmp_path / "home" / ".docker"
    secret_dir.mkdir(parents=True)
    (secret_dir / "config.json").write_bytes(b'{"auths": {"registry": {"auth": "c2VjcmV0"}}}\n')
    si = standins.StandIns(pins_of(ctx, "model/config.json"))
    stand_in = si.add("model/config.json", ctx / "model" / "config.json")
    assert stand_in is not None
    (ctx / "model").rename(tmp_path / "moved")
    (ctx / "model").symlink_to(secret_dir)
    with pytest.raises(GateError, match=r"model/config\.json"):
        finalized(si, ("app/config.json", stand_in))


@pytest.mark.parametrize(
    "dockerfile",
    [
        'FROM b\nCOPY ["mo\\u0000del", "/m"]\nRUN x\n',
        'FROM b\nCOPY ["mo\\ud800del", "/m"]\nRUN x\n',
        "FROM b\nRUN --mount=type=bind,source=a\x00b,target=/x x\n",
    ],
    ids=["json-nul", "json-lone-surrogate", "mount-source-nul"],
)
def test_review_odd_source_names_do_not_crash_the_blocker(tmp_path: Path, dockerfile: str) -> None:
    """``modelseal build`` on ``COPY ["mo\\u0000del", "/m"]`` ends "internal error: ValueError:
    embedded null byte" (exit 4): _may_hold hands the name to os.lstat unchecked. Such a name
    cannot be in the context; the blocker should answer (or raise a ConfigError naming the
    line), as it does for any other missing source."""
    from modelseal.errors import Error

    ctx = _context(tmp_path, "FROM b\n")
    df = parse_dockerfile(dockerfile, "Dockerfile")
    with contextlib.suppress(Error):
        standins.blocker(df, ctx, {})
