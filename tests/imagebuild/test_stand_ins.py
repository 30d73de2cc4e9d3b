"""Stand-ins (build.stand_ins, issue 16): BuildKit gets a 128-byte stand-in for each context file
of 1 MiB or more, and the layout finalizer writes the real bytes into the layer. The image must
be the one a build of the real files gives, byte for byte — checked here by building each
context twice with real BuildKit, with and without stand-ins, and comparing the digests — and a
build that could read such a file must not use them."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.layers import image_layout, ustar, weights
from tests.support.standins import build, finalized, pins_of, write_lock

from modelseal.errors import GateError
from modelseal.imagebuild import standins
from modelseal.imagebuild.dockerfile import parse_dockerfile
from modelseal.imagebuild.engine import PrivateEngine
from modelseal.imagebuild.finalize import clamp_tar
from modelseal.oci import layer_entries

MIB = 1 << 20
LONG = "d" * 70 + "/" + "e" * 60  # a path over 100 bytes: a PAX header in the layer


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "model" / LONG).mkdir(parents=True)
    (ctx / "model" / "big.bin").write_bytes(weights(1, 2 * MIB + 3))
    (ctx / "model" / "config.json").write_text('{"small": true}\n')
    (ctx / "model" / LONG / "big2.bin").write_bytes(weights(2, MIB))
    (ctx / "small.txt").write_text("small\n")
    (ctx / "requirements.txt").write_text("numpy\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    write_lock(ctx, ["model/big.bin", f"model/{LONG}/big2.bin", "model/config.json"])
    return ctx


#: Each Dockerfile uses stand-ins; the image must not depend on it.
ELIGIBLE = {
    "copy-variants": (
        "FROM scratch AS weights\n"
        "COPY model/ /w/\n"
        "FROM base\n"
        "RUN mkdir -p /app && echo built > /app/built.txt\n"
        "COPY requirements.txt /app/\n"
        "RUN cat /app/requirements.txt > /app/req-copy.txt\n"
        "COPY small.txt /etc/small.txt\n"
        "COPY --chmod=0600 --chown=1000:1000 model/big.bin /app/model/\n"
        "COPY --link model/ /app/linked/\n"
        "COPY --from=weights /w/ /app/from-stage/\n"
        "COPY --from=0 /w/big.bin /app/renamed.bin\n"
        'COPY ["model/' + LONG + '/big2.bin", "/app/' + LONG + '/"]\n'
        "WORKDIR /app\n"
        "USER 1000\n"
    ),
}


@pytest.mark.engine
@pytest.mark.parametrize("name", sorted(ELIGIBLE))
def test_stand_ins_give_the_image_a_build_of_the_real_files_gives(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:  # fmt: skip
    ctx = _context(tmp_path, ELIGIBLE[name])
    on_code, on, on_out = build(ctx, tmp_path / "on", busybox_base, True, capsys)
    assert on_code == 0, on_out
    off_code, off, off_out = build(ctx, tmp_path / "off", busybox_base, False, capsys)
    assert off_code == 0, off_out
    # Two files of 1 MiB or more got stand-ins, and each copy of them was replaced.
    assert on["stand_ins"] == "2", on
    assert int(on["stand_ins.replaced"]) >= 6, on
    assert off["stand_ins"] == "0" and off["stand_ins.not_used"] == "build.stand_ins is false"
    assert on["image.digest"] == off["image.digest"]
    # And the layers hold the real bytes, not a stand-in.
    entries = _image_files(tmp_path / "on" / "oci", on["image.digest"])
    big = hashlib.sha256(weights(1, 2 * MIB + 3)).hexdigest()
    assert entries["app/model/big.bin"] == big
    assert entries["app/renamed.bin"] == big
    assert entries[f"app/{LONG}/big2.bin"] == hashlib.sha256(weights(2, MIB)).hexdigest()
    assert all(b"stand-in" not in p.read_bytes()[:4096] for p in _blobs(tmp_path / "on" / "oci"))


def _blobs(layout: Path) -> list[Path]:
    return [p for p in (layout / "blobs" / "sha256").iterdir() if p.stat().st_size < 1 << 30]


def _image_files(layout: Path, digest: str) -> dict[str, str]:
    import json

    manifest = json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_text())
    out: dict[str, str] = {}
    for layer in manifest["layers"]:
        blob = layout / "blobs/sha256" / layer["digest"].removeprefix("sha256:")
        for path, entry in layer_entries(blob, layer["mediaType"]):
            if entry.sha256:
                out[path] = entry.sha256
    return out


#: Each Dockerfile could let a build step read a big file: no stand-ins, and why.
BLOCKED = {
    "run-after-copy": ("FROM base\nCOPY model/ /app/model/\nRUN cat /app/model/big.bin > /x\n",
                       "Dockerfile:3: RUN where a COPY"),
    "add": ("FROM base\nADD model/big.bin /app/\n", "Dockerfile:2: ADD"),
    "bind-mount": ("FROM base\nRUN --mount=type=bind,target=/ctx cat /ctx/small.txt > /x\n",
                   "(the build context)"),
    "stage-run": ("FROM base AS w\nCOPY model/ /w/\nFROM w\nRUN ls /w > /list\n",
                  "Dockerfile:4: RUN where a COPY"),
}  # fmt: skip


@pytest.mark.engine
@pytest.mark.parametrize("name", sorted(BLOCKED))
def test_a_build_that_could_read_a_big_file_gets_no_stand_ins(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:  # fmt: skip
    dockerfile, why = BLOCKED[name]
    ctx = _context(tmp_path, dockerfile)
    code, facts, printed = build(ctx, tmp_path / "out", busybox_base, True, capsys)
    assert code == 0, printed
    assert facts["stand_ins"] == "0"
    assert why in facts["stand_ins.not_used"], facts["stand_ins.not_used"]


# --- the rules, without an engine ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "blocked"),
    [
        ("FROM b\nRUN x\nCOPY model/ /m/\n", None),
        ("FROM b\nCOPY small.txt /s\nRUN x\nCOPY model /m\n", None),
        ("FROM b\nCOPY . /app\nRUN x\n", "RUN where"),
        ("FROM b\nCOPY ./model/./big.bin /m\nRUN x\n", "RUN where"),
        ("FROM b\nCOPY model/big.bin /m\nRUN x\n", "RUN where"),
        ("FROM b\nCOPY mod*/ /m\nRUN x\n", "RUN where"),
        ("FROM b\nCOPY $DIR /m\nRUN x\n", "RUN where"),
        ('FROM b\nCOPY ["model", "/m"]\nRUN x\n', "RUN where"),
        ("FROM b\nCOPY link/ /m\nRUN x\n", "RUN where"),  # a symlink to model/
        ("FROM b\nCOPY missing/ /m\nRUN x\n", None),
        ("FROM b AS one\nCOPY model /m\nFROM b\nCOPY --from=one /m /m\nRUN x\n", "RUN where"),
        ("FROM b AS one\nCOPY model /m\nFROM b\nCOPY --from=0 /m /m\nRUN x\n", "RUN where"),
        ("FROM b AS one\nCOPY model /m\nFROM b\nRUN --mount=from=one,target=/m x\n", "a stage"),
        ("FROM b AS one\nCOPY model /m\nFROM b\nRUN --mount=type=cache,from=one,target=/m x\n",
         "a stage"),
        ("FROM b\nRUN --mount=type=bind,source=small.txt,target=/s x\n", None),
        ("FROM b\nRUN --mount=type=bind,source=model,target=/s x\n", "the build context"),
        ("FROM b\nRUN --mount=type=secret,id=x x\n", None),
        ("FROM b\nRUN --mount=type=cache,target=/c x\n", None),
        ("FROM b\nONBUILD RUN x\n", "ONBUILD"),
        ("FROM b\nADD https://example.invalid/x /x\n", "ADD"),
        ("# syntax=docker/dockerfile:1\nFROM b\nCOPY model /m\n", "another Dockerfile frontend"),
        ("FROM b AS one\nRUN x\nFROM one\nCOPY model /m\nRUN y\n", "RUN where"),
        ("FROM b AS one\nCOPY model /m\nFROM ONE\nRUN y\n", "RUN where"),
    ],
)  # fmt: skip
def test_what_keeps_a_build_from_stand_ins(
    tmp_path: Path, dockerfile: str, blocked: str | None
) -> None:
    ctx = _context(tmp_path, dockerfile)
    (ctx / "link").symlink_to("model")
    df = parse_dockerfile(dockerfile, "Dockerfile")
    why = standins.blocker(df, ctx, {})
    assert (why is None) if blocked is None else (why is not None and blocked in why), why


def test_the_buildkit_syntax_build_argument_blocks_them(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM b\n")
    df = parse_dockerfile("FROM b\n", "Dockerfile")
    assert "BUILDKIT_SYNTAX" in (standins.blocker(df, ctx, {"BUILDKIT_SYNTAX": "x"}) or "")


def test_the_finalizer_puts_the_file_in_the_stand_ins_place(tmp_path: Path) -> None:
    real = weights(3, MIB + 5)
    (tmp_path / "w.bin").write_bytes(real)
    si = standins.StandIns(pins_of(tmp_path, "w.bin"))
    stand_in = si.add("w.bin", tmp_path / "w.bin")
    assert stand_in is not None and len(stand_in) == standins.SIZE
    out = finalized(si, ("a/w.bin", stand_in), ("b", b"x"))
    # (Python's writer pads the archive to 10 KiB records, Go's does not: compared without it.)
    assert out.rstrip(b"\0") == ustar(("a/w.bin", real), ("b", b"x")).rstrip(b"\0")
    assert si.replaced == [("w.bin", len(real))]


def test_a_look_alike_of_another_runs_stand_in_is_an_ordinary_file(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(weights(3, MIB))
    other = standins.StandIns(pins_of(tmp_path, "w.bin"))
    foreign = other.add("w.bin", tmp_path / "w.bin")
    assert foreign is not None
    mine = standins.StandIns(pins_of(tmp_path, "w.bin"))
    mine.add("w.bin", tmp_path / "w.bin")
    layer = ustar(("w.bin", foreign))
    assert b"".join(clamp_tar(io.BytesIO(layer), EPOCH, "L", stand_ins=mine)) == layer
    assert mine.replaced == []


@pytest.mark.parametrize("change", ["same-size", "grown", "shrunk", "symlink", "gone"])
def test_a_file_that_changes_under_the_build_is_refused(tmp_path: Path, change: str) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(weights(3, MIB))
    si = standins.StandIns(pins_of(tmp_path, "w.bin"))
    stand_in = si.add("w.bin", src)
    assert stand_in is not None
    layer = ustar(("w.bin", stand_in))
    match = "changed .or its path now leads elsewhere."
    if change == "same-size":
        src.write_bytes(weights(4, MIB))
    elif change == "grown":
        src.write_bytes(weights(3, MIB) + b"x")
    elif change == "shrunk":
        src.write_bytes(weights(3, MIB - 1))
    elif change == "symlink":
        src.unlink()
        (tmp_path / "elsewhere").write_bytes(weights(3, MIB))
        src.symlink_to(tmp_path / "elsewhere")
        match = "cannot read the model file w.bin"
    else:
        src.unlink()
        match = "cannot read the model file w.bin"
    with pytest.raises(GateError, match=match):
        b"".join(clamp_tar(io.BytesIO(layer), EPOCH, "L", stand_ins=si))


def test_only_files_the_lock_pins_at_their_size_get_stand_ins(tmp_path: Path) -> None:
    for name, size in [("small", MIB - 1), ("big", MIB), ("unpinned", 2 * MIB), ("moved", MIB)]:
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "dir").mkdir()
    pins = pins_of(tmp_path, "small", "big", "moved")
    (tmp_path / "moved").write_bytes(b"x" * (MIB + 1))  # another size than pinned
    si = standins.StandIns(pins)
    assert si.add("small", tmp_path / "small") is None
    assert si.add("unpinned", tmp_path / "unpinned") is None
    assert si.add("moved", tmp_path / "moved") is None
    assert si.add("dir", tmp_path / "dir") is None
    assert si.add("big", tmp_path / "big") is not None


@pytest.mark.parametrize(
    ("config", "registry", "blocked"),
    [
        ({"config": {"Cmd": ["sh"]}}, False, None),
        ({"config": {"OnBuild": ["COPY . /src", "RUN make"]}}, False, "has ONBUILD triggers"),
        ({"config": {}}, True, "is not pinned by digest"),
    ],
)
def test_a_base_with_onbuild_triggers_blocks_them(
    tmp_path: Path, config: dict[str, object], registry: bool, blocked: str | None
) -> None:
    from modelseal.imagebuild.bases import classify_bases

    digest = image_layout(tmp_path / "layout", config, [])
    layout = f"oci-layout://{tmp_path / 'layout'}@{digest}"
    text = "FROM base AS one\nFROM scratch\nFROM one\nFROM dir\n"
    if registry:
        # Named by a tag: not read (no registry is asked; pinned ones are, in
        # test_stand_ins_registry.py, from the local registry).
        text += "FROM reg.example/img:1\n"
    df = parse_dockerfile(text, "Dockerfile")
    contexts = {"base": layout, "dir": str(tmp_path)}
    bases = classify_bases(df, contexts)
    why = standins.base_blocker(bases, contexts)
    assert (why is None) if blocked is None else (why is not None and blocked in why), why
