"""The resolved filesystem of an image (modelseal.imagefs) on crafted OCI layouts: the layer
application edge cases a container runtime handles, and the hostile names it must refuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.support.layouts import M, layer, make_layout

from modelseal import imagefs
from modelseal.errors import GateError
from modelseal.imagefs import ImageFs


def view(tmp_path: Path, *layers: bytes, hash_all: bool = True) -> ImageFs:
    layout, digest = make_layout(tmp_path / "oci", list(layers))
    return ImageFs.build(layout, digest, hash_paths=(lambda _: True) if hash_all else None)


def files(fs: ImageFs, top: str = "") -> dict[str, str]:
    """Every non-directory below ``top``: path → kind (and symlink target)."""
    return {e.path: e.describe() for e in fs.walk(top) if e.kind != "dir"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_whiteouts_delete_files_and_whole_directories(tmp_path: Path) -> None:
    fs = view(
        tmp_path,
        layer(M("app/a"), M("app/d/x"), M("app/d/sub/y"), M("app/keep")),
        layer(M("app/.wh.a"), M("app/.wh.d"), M("app/.wh.never-there")),
    )
    assert files(fs) == {"app/keep": "file"}


@pytest.mark.parametrize("opaque_first", [True, False])
def test_an_opaque_whiteout_hides_lower_layers_only(tmp_path: Path, opaque_first: bool) -> None:
    opq = M("app/model/.wh..wh..opq")
    new = [M("app/model/new", data=b"n"), M("app/model/sub/deep", data=b"d")]
    fs = view(
        tmp_path,
        layer(M("app/model/old"), M("app/model/sub/lower"), M("app/other")),
        layer(*([opq, *new] if opaque_first else [*new, opq])),
    )
    assert files(fs) == {"app/model/new": "file", "app/model/sub/deep": "file", "app/other": "file"}


def test_a_symlink_replacing_a_directory_deletes_what_was_below(tmp_path: Path) -> None:
    # What BuildKit writes for `RUN rm -rf /app/model && ln -s /elsewhere /app/model`: a bare
    # symlink, no whiteout.
    fs = view(
        tmp_path,
        layer(M("app/model/a.safetensors", data=b"pinned")),
        layer(
            M("elsewhere/a.safetensors", data=b"altered"), M("app/model", "l", link="/elsewhere")
        ),
    )
    assert files(fs, "app") == {"app/model": "symlink to /elsewhere"}
    r = fs.resolve("app/model/a.safetensors")
    assert r.symlinks == (("app/model", "/elsewhere"),)
    assert r.resolved == "elsewhere/a.safetensors" and r.entry is not None
    assert fs.hash_files([r.resolved]) == {r.resolved: sha(b"altered")}


def test_a_file_replacing_a_directory_and_a_directory_over_a_directory(tmp_path: Path) -> None:
    fs = view(
        tmp_path,
        layer(M("a/x"), M("b/y"), M("c", "l", link="b")),
        layer(M("a"), M("b", "d"), M("b/z"), M("c", "d"), M("c/w")),
    )
    # a: the file replaced the directory and its child; b: merged; c: the directory replaced
    # the symlink (nothing of b shows through it).
    assert files(fs) == {"a": "file", "b/y": "file", "b/z": "file", "c/w": "file"}
    assert fs.resolve("c/w").symlinks == ()


def test_member_names_are_cleaned_as_runtimes_clean_them(tmp_path: Path) -> None:
    fs = view(
        tmp_path,
        layer(M("app/model/w", data=b"1")),
        layer(
            M("/app/model/w", data=b"abs"), M("app//model/x"), M("./app/./model/y"),
            M("app/q/../model/z"), M("app/model/sub/", "d"),
        ),
    )  # fmt: skip
    assert files(fs, "app/model") == {"app/model/w": "file", "app/model/x": "file",
                                      "app/model/y": "file", "app/model/z": "file"}  # fmt: skip
    assert fs.hash_files(["app/model/w"]) == {"app/model/w": sha(b"abs")}


@pytest.mark.parametrize("name", ["../etc/passwd", "app/../../x", "/../x", "a/b/../../../x"])
def test_a_name_climbing_out_of_the_root_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(GateError, match="climbs out of the image root"):
        view(tmp_path, layer(M("a/b/c"), M(name)))


@pytest.mark.parametrize(
    ("lower", "upper", "message"),
    [
        ((M("app", "l", link="/srv"),), (M("app/model/w"),), "below /app, a symlink"),
        ((), (M("app", "l", link="/srv"), M("app/model/w")), "below /app, a symlink"),
        ((M("x"),), (M("x/y"),), "below /x, which is a file"),
        ((), (M("x"), M("x/y")), "below /x, which is a file"),
        ((M("x", "p"),), (M("x/.wh.y"),), "below /x, which is a fifo"),
    ],
)
def test_entries_below_a_symlink_or_a_file_are_refused(
    tmp_path: Path, lower: tuple[M, ...], upper: tuple[M, ...], message: str
) -> None:
    with pytest.raises(GateError, match=message):
        view(tmp_path, layer(*lower), layer(*upper))


def test_hardlinks_copy_a_file_of_the_same_layer(tmp_path: Path) -> None:
    fs = view(
        tmp_path,
        layer(M("tmp/evil", data=b"altered"), M("app/model/w", "h", link="tmp/evil")),
        hash_all=False,
    )
    assert files(fs) == {"app/model/w": "file", "tmp/evil": "file"}
    assert fs.hash_files(["app/model/w"]) == {"app/model/w": sha(b"altered")}


@pytest.mark.parametrize(
    ("lower", "link", "message"),
    [
        ((M("tmp/evil"),), "tmp/evil", "from a lower layer"),
        ((), "tmp/none", "not in the image"),
        ((M("tmp/dir", "d"),), "tmp/dir", "a directory"),
        ((), "../../etc/passwd", "climbs out"),
    ],
)
def test_hardlinks_that_runtimes_refuse_are_refused(
    tmp_path: Path, lower: tuple[M, ...], link: str, message: str
) -> None:
    with pytest.raises(GateError, match=message):
        view(tmp_path, layer(*lower), layer(M("app/w", "h", link=link)))


def test_a_whiteout_of_what_the_same_layer_writes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GateError, match="deletes what the same layer writes"):
        view(tmp_path, layer(M("app/model/w"), M("app/.wh.model")))


def test_symlinks_resolve_inside_the_image_root(tmp_path: Path) -> None:
    fs = view(
        tmp_path,
        layer(
            M("etc/passwd", data=b"image"), M("app/abs", "l", link="/etc/passwd"),
            M("app/up", "l", link="../../../../../etc/passwd"), M("app/loop", "l", link="loop2"),
            M("app/loop2", "l", link="loop"), M("app/dangling", "l", link="/nowhere/x"),
            M("app/empty", "l", link=""), M("app/f"),
        ),
    )  # fmt: skip
    for name in ("app/abs", "app/up"):
        r = fs.resolve(name)
        assert r.resolved == "etc/passwd" and r.entry is not None and r.entry.kind == "file"
        assert fs.hash_files([r.resolved]) == {"etc/passwd": sha(b"image")}
    assert fs.resolve("app/loop").problem == "too many symlinks"
    assert fs.resolve("app/dangling").problem == "missing"
    assert fs.resolve("app/empty").problem == "missing"
    assert fs.resolve("app/f/x").problem == "not a directory"
    no_follow = fs.resolve("app/abs", follow_final=False)
    assert no_follow.entry is not None and no_follow.entry.kind == "symlink"


def test_fifos_and_devices_are_entries_of_their_own(tmp_path: Path) -> None:
    fs = view(tmp_path, layer(M("app/model/p", "p"), M("app/model/c", "c")))
    assert files(fs) == {"app/model/c": "character device 0:0", "app/model/p": "fifo"}


@pytest.mark.parametrize(
    "digest",
    ["sha256:/etc/passwd", "sha256:../../../../etc/passwd", "md5:abc", "sha256:" + "A" * 64],
)
def test_a_layer_digest_that_is_not_a_sha256_is_never_a_path(tmp_path: Path, digest: str) -> None:
    layout, manifest = make_layout(tmp_path / "oci", [layer(M("a"))], digests=[digest])
    with pytest.raises(GateError, match="digest"):
        ImageFs.build(layout, manifest)
    with pytest.raises(GateError, match="not a sha256 digest"):
        layout.blob(digest)
    with pytest.raises(GateError, match="not a sha256 digest"):
        layout.read_json(digest)


def test_a_descriptor_without_a_valid_digest_is_a_gate_error(tmp_path: Path) -> None:
    layout, _ = make_layout(tmp_path / "oci", [layer(M("a"))])
    (layout.path / "index.json").write_text(
        json.dumps({"manifests": [{"mediaType": "x", "digest": "sha256:/etc/passwd"}]})
    )
    with pytest.raises(GateError, match="not a sha256 digest"):
        layout.top_descriptors()


def test_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many = layer(*(M(f"f{i}") for i in range(20)))
    monkeypatch.setattr(imagefs, "MAX_MEMBERS", 10)
    with pytest.raises(GateError, match="more than 10 layer members"):
        view(tmp_path / "a", many)
    with pytest.raises(GateError, match="name is too long"):
        view(tmp_path / "b", layer(M("a/" * 2100)))
    with pytest.raises(GateError, match="component is too long"):
        view(tmp_path / "c", layer(M("x" * 256)))
    with pytest.raises(GateError, match="link target is too long"):
        view(tmp_path / "d", layer(M("l", "l", link="/a" * 2100)))
    monkeypatch.setattr(imagefs, "MAX_HEADER", 512)
    view(tmp_path / "e", layer(M("n" * 200)))  # a pax header under the limit
    with pytest.raises(GateError, match="extended header"):
        view(tmp_path / "f", layer(M("/".join(["n" * 200] * 5))))


def test_a_corrupt_layer_is_a_gate_error(tmp_path: Path) -> None:
    good = layer(M("app/w", data=b"x" * 4096), gz=True)
    with pytest.raises(GateError, match="unreadable"):
        view(tmp_path, good[: len(good) // 2])


def test_gzip_layers_and_lazy_hashing(tmp_path: Path) -> None:
    fs = view(tmp_path, layer(M("a", data=b"1")), layer(M("b", data=b"2"), gz=True), hash_all=False)
    assert fs.entry("b") is not None and fs.entry("b").sha256 is None  # type: ignore[union-attr]
    assert fs.hash_files(["a", "b"]) == {"a": sha(b"1"), "b": sha(b"2")}


def test_extract_writes_fresh_files_only(tmp_path: Path) -> None:
    fs = view(tmp_path, layer(M("app/w", data=b"w"), M("app/v", "h", link="app/w")))
    out = tmp_path / "out"
    fs.extract({"app/w": out / "app" / "w", "app/v": out / "v"})
    assert (out / "app" / "w").read_bytes() == (out / "v").read_bytes() == b"w"
    (out / "evil").symlink_to(tmp_path / "victim")
    with pytest.raises(FileExistsError):
        fs.extract({"app/w": out / "evil"})
    assert not (tmp_path / "victim").exists()


@pytest.mark.parametrize("kind", ["fifo", "oversized"])
def test_a_json_blob_is_read_bounded_and_never_from_a_fifo(tmp_path: Path, kind: str) -> None:
    import os
    import threading

    from modelseal.oci import MAX_JSON_BYTES

    layout, manifest = make_layout(tmp_path / "oci", [layer(M("a"))])
    blob = layout.blob(manifest)
    blob.unlink()
    if kind == "fifo":
        os.mkfifo(blob)
    else:
        blob.write_bytes(b" " * (MAX_JSON_BYTES + 1))
    caught: list[BaseException] = []

    def read() -> None:
        try:
            layout.read_json(manifest)
        except BaseException as e:
            caught.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    hung = t.is_alive()
    if hung:  # a writer end releases the reader blocked in open()
        os.close(os.open(blob, os.O_WRONLY | os.O_NONBLOCK))
        t.join(10)
    assert not hung, "reading a FIFO blob hung"
    assert len(caught) == 1 and isinstance(caught[0], GateError)
    assert ("FIFO" if kind == "fifo" else "limit") in caught[0].message


def test_the_index_limit_is_a_named_constant() -> None:
    from modelseal import oci

    assert oci.MAX_INDEX_BYTES == 16 << 20 and oci.MAX_INDEX_BYTES > oci.MAX_JSON_BYTES


# -- one pass: hashing and keeping while streaming (modelseal.postbuild) ---------------------


def _counting_opens(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Instrument the layer reader: how often each blob is opened (decompressed)."""
    opened: dict[str, int] = {}
    real = imagefs.open_layer

    def counting(path: Path, media: str) -> object:
        opened[Path(path).name] = opened.get(Path(path).name, 0) + 1
        return real(path, media)

    monkeypatch.setattr(imagefs, "open_layer", counting)
    return opened


def test_kept_files_are_extracted_without_reading_a_layer_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _counting_opens(monkeypatch)
    layout, digest = make_layout(
        tmp_path / "oci",
        [
            layer(M("app/model/w", data=b"W" * 5000), M("site/a.dist-info/METADATA", data=b"A"),
                  gz=True),
            layer(M("app/model/x", data=b"X"), M("site/b.dist-info/METADATA", data=b"B"),
                  M("site/c.dist-info/METADATA", "h", link="site/b.dist-info/METADATA"),
                  M("etc/big", data=b"big")),
        ],
    )  # fmt: skip
    spool = tmp_path / "spool"
    spool.mkdir()
    fs = ImageFs.build(
        layout, digest, hash_paths=lambda p: p.startswith("app/model/"),
        keep=lambda p, size: p.endswith("/METADATA"), spool=spool,
    )  # fmt: skip
    assert sorted(opened.values()) == [1, 1]
    assert fs.hash_files(["app/model/w", "app/model/x"]) == {
        "app/model/w": sha(b"W" * 5000), "app/model/x": sha(b"X")
    }  # fmt: skip
    out = tmp_path / "out"
    fs.extract({m: out / m for m in
                ("site/a.dist-info/METADATA", "site/b.dist-info/METADATA", "site/c.dist-info/METADATA")})  # fmt: skip
    assert [(out / f"site/{n}.dist-info/METADATA").read_bytes() for n in "abc"] == [b"A", b"B", b"B"]
    assert sorted(opened.values()) == [1, 1], "a kept or hashed file read its layer again"
    assert dict(fs.reads) == {0: 1, 1: 1}
    # What was neither kept nor hashed is still read on request, from its layer only.
    assert fs.hash_files(["etc/big"]) == {"etc/big": sha(b"big")}
    assert dict(fs.reads) == {0: 1, 1: 2}
    assert sorted(p.name for p in spool.iterdir()) == ["0-1", "1-1"]


def test_keeping_is_bounded_and_falls_back_to_reading_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imagefs, "MAX_KEPT_BYTES", 10)
    layout, digest = make_layout(
        tmp_path / "oci", [layer(M("a", data=b"12345678"), M("b", data=b"12345678"))]
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    fs = ImageFs.build(layout, digest, keep=lambda p, size: True, spool=spool)
    assert [p.name for p in spool.iterdir()] == ["0-0"]  # b would pass the byte limit
    fs.extract({"a": tmp_path / "a", "b": tmp_path / "b"})
    assert (tmp_path / "b").read_bytes() == b"12345678"
    assert fs.reads[0] == 2
    with pytest.raises(ValueError, match="spool"):
        ImageFs.build(layout, digest, keep=lambda p, size: True)


@pytest.mark.parametrize(
    "bad",
    [
        [M("../../etc/METADATA", data=b"x")],
        [M("lnk", "l", link="/tmp"), M("lnk/x.dist-info/METADATA", data=b"x")],
        [M("x.dist-info/METADATA", "h", link="nowhere/METADATA")],
    ],
    ids=["climbing-name", "below-a-symlink", "dangling-hardlink"],
)
def test_hostile_layers_are_refused_by_the_one_pass_and_nothing_lands_outside_the_spool(
    tmp_path: Path, bad: list[M]
) -> None:
    layout, digest = make_layout(tmp_path / "oci", [layer(*bad)])
    spool = tmp_path / "spool"
    spool.mkdir()
    with pytest.raises(GateError):
        ImageFs.build(layout, digest, hash_paths=lambda _: True, keep=lambda p, s: True,
                      spool=spool)  # fmt: skip
    assert list(spool.iterdir()) == []
    assert not (tmp_path / "etc").exists()
