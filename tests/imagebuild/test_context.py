"""The normalized build context and .dockerignore semantics.

The expected file sets in the tree tables were recorded from real BuildKit (Docker 26.1.5,
BuildKit 0.13, ``docker buildx build --output type=local`` of ``FROM scratch`` +
``COPY . /``) on the same trees, so they are BuildKit's behaviour, not our reading of it.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from modelseal.errors import ConfigError
from modelseal.imagebuild import context as context_module
from modelseal.imagebuild.context import ContextSummary, DockerIgnore, go_clean, normalize_context

EPOCH = 1_700_000_000
EPOCH_NS = EPOCH * 1_000_000_000


def ignore(text: str) -> DockerIgnore:
    return DockerIgnore.from_lines(text.split("\n"))


# (patterns, path, excluded) -- the documented Docker behaviour.
IGNORE_CASES = [
    ("*.md\n!README.md", "notes.md", True),
    ("*.md\n!README.md", "README.md", False),
    ("*.md", "docs/x.md", False),  # "*" stays inside one path segment
    ("**/*.pyc", "a.pyc", True),  # "**/" also matches zero directories
    ("**/*.pyc", "x/y/z.pyc", True),
    ("**/*.pyc", "x/y/z.py", False),
    ("build/", "build", True),  # trailing slash is cleaned away
    ("build/", "build/o", True),  # a matching directory excludes its contents
    ("build/", "builder", False),
    ("/abs", "abs", True),  # leading slash means the context root
    ("/abs", "sub/abs", False),
    ("dir\n!dir/keep", "dir/keep", False),
    ("dir\n!dir/keep", "dir/other", True),
    ("dir\n!dir/keep", "dir/sub/keep", True),
    ("#comment", "#comment", False),  # a comment, not a pattern
    ("  #h", "#h", True),  # only a "#" in column one starts a comment
    ("f?", "f1", True),
    ("f?", "f12", False),
    ("f?", "f/", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[^a]x", "bx", True),
    ("dir/sub/", "dir/sub/keep.txt", True),
    ("**", "any/thing", True),
    ("**/foo", "foo", True),
    ("**/foo", "a/b/foo", True),
    ("**/foo", "foo2", False),
    ("foo/**", "foo/x", True),
    ("foo/**", "foo", False),  # the directory itself is still sent, empty
    ("!b\nb", "b", True),  # later lines win
    ("b\n!b", "b", False),
    ("x/../b", "b", True),  # patterns are cleaned
    ("a/*/foo", "a/b/foo", True),
    ("a/*/foo", "a/foo", False),
    ("  spaced  ", "spaced", True),
    ("! keep\n*", "keep", True),
    ("*\n! keep", "keep", False),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("", "anything", False),
    ("*", ".", False),  # the context root is never excluded
]


@pytest.mark.parametrize(("patterns", "path", "expected"), IGNORE_CASES)
def test_dockerignore_semantics(patterns: str, path: str, expected: bool) -> None:
    assert ignore(patterns).excluded(path) is expected


def test_dockerignore_patterns_are_cleaned_like_buildkit() -> None:
    di = ignore("\ufeff# c\n/a/./b/\nc\n!/c//d\n\n  e  \r\n")
    assert di.patterns == ("a/b", "c", "!c/d", "e")
    # "!/c//d" is an exception: it takes c/d back out of the excluded directory c.
    assert [di.excluded(p) for p in ("a/b", "c/x", "c/d", "e")] == [True, True, False, True]


@pytest.mark.parametrize("bad", ["[", "!", "a[b", "x\\", "[]a]", "[a-]"])
def test_invalid_patterns_are_config_errors_naming_the_line(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"\.dockerignore:2:"):
        ignore(f"ok\n{bad}")


def test_go_clean_matches_go() -> None:
    cases = {
        "": ".",
        "a/../..": "..",
        "/../a": "/a",
        "//a//b/": "/a/b",
        "a/./b/../c": "a/c",
        "!foo/../bar": "bar",
    }
    for raw, cleaned in cases.items():
        assert go_clean(raw) == cleaned


def test_load_prefers_the_dockerfile_specific_ignore_file(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / ".dockerignore").write_text("a\n")
    other = tmp_path / "docker"
    other.mkdir()
    dockerfile = other / "Df.x"
    dockerfile.write_text("FROM scratch\n")
    assert DockerIgnore.load(ctx, dockerfile).patterns == ("a",)
    (other / "Df.x.dockerignore").write_text("b\n")
    assert DockerIgnore.load(ctx, dockerfile).patterns == ("b",)
    # Without -f the Dockerfile is <context>/Dockerfile, so its own ignore file counts too.
    assert DockerIgnore.load(ctx, None).patterns == ("a",)
    (ctx / "Dockerfile.dockerignore").write_text("c\n")
    assert DockerIgnore.load(ctx, None).patterns == ("c",)


def test_load_without_any_file_ignores_nothing(tmp_path: Path) -> None:
    di = DockerIgnore.load(tmp_path, None)
    assert di.patterns == ()
    assert not di.excluded("x")


def test_load_names_the_file_in_errors(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("ok\n[\n")
    with pytest.raises(ConfigError, match=r"\.dockerignore:2: invalid pattern"):
        DockerIgnore.load(tmp_path, None)


# --- normalization -------------------------------------------------------------------------


def make_tree(root: Path, paths: list[str]) -> None:
    for p in paths:
        target = root / p
        if p.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(p)


def listing(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def full_listing(root: Path) -> list[tuple[str, int, int, bytes]]:
    """(path, mode, mtime, content or link target) for every entry, the root included."""
    out = []
    for rel in [".", *listing(root)]:
        p = root / rel
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            content = os.readlink(p).encode()
        elif stat.S_ISREG(st.st_mode):
            content = p.read_bytes()
        else:
            content = b""
        out.append((rel, stat.S_IMODE(st.st_mode), st.st_mtime_ns, content))
    return out


TREE_A = [
    "README.md", "notes.md", "a.pyc", "dir/keep.txt", "dir/other.txt", "dir/sub/keep.txt",
    "build/o", "x/y/z.pyc", "abs", "f1", "f2", "fa", "fb", "fd", " sp", "#h",
]  # fmt: skip
ALL_A = sorted({*TREE_A, "dir", "dir/sub", "build", "x", "x/y"})

TREE_B = [
    "foo/x", "foo/bar/y", "a/b/foo", "a/foo", "foo2", "docs/x.md", "top.md", "b", "c",
    "builder/z", "sub/abs", "abs", "a b",
]  # fmt: skip
ALL_B = sorted({*TREE_B, "foo", "foo/bar", "a", "a/b", "docs", "builder", "sub"})


def without(everything: list[str], *gone: str) -> list[str]:
    return [p for p in everything if p not in gone]


# (tree, patterns, what BuildKit sent)
BUILDKIT_OBSERVED = [
    (TREE_A, "*.md\n!README.md", without(ALL_A, "notes.md")),
    (TREE_A, "**/*.pyc", without(ALL_A, "a.pyc", "x/y/z.pyc")),
    (TREE_A, "build/", without(ALL_A, "build", "build/o")),
    (TREE_A, "/abs", without(ALL_A, "abs")),
    (TREE_A, "dir\n!dir/keep.txt", without(ALL_A, "dir/other.txt", "dir/sub", "dir/sub/keep.txt")),
    (TREE_A, "dir\n!**/keep.txt", without(ALL_A, "dir/other.txt")),
    (TREE_A, "#h\n  #h", without(ALL_A, "#h")),
    (TREE_A, "f?\n!f[a-c]", without(ALL_A, "f1", "f2", "fd")),
    (TREE_A, "dir/*\n!dir/sub", without(ALL_A, "dir/keep.txt", "dir/other.txt")),
    (TREE_A, "*\n!dir/sub/keep.txt", ["dir", "dir/sub", "dir/sub/keep.txt"]),
    (TREE_B, "**/foo", without(ALL_B, "foo", "foo/x", "foo/bar", "foo/bar/y", "a/foo", "a/b/foo")),
    (TREE_B, "foo/**", without(ALL_B, "foo/x", "foo/bar", "foo/bar/y")),
    (TREE_B, "!b\nb", without(ALL_B, "b")),
    (TREE_B, "b\n!b", ALL_B),
    (TREE_B, "x/../b", without(ALL_B, "b")),
    (TREE_B, "*.md", without(ALL_B, "top.md")),
    (TREE_B, "builder*", without(ALL_B, "builder", "builder/z")),
    (TREE_B, "a b", without(ALL_B, "a b")),
    (TREE_B, "foo\n!foo/bar/y", without(ALL_B, "foo/x")),
    (TREE_B, "a/*/foo", without(ALL_B, "a/b/foo")),
]


@pytest.mark.parametrize(("tree", "patterns", "expected"), BUILDKIT_OBSERVED)
def test_normalized_tree_is_what_buildkit_sends(
    tmp_path: Path, tree: list[str], patterns: str, expected: list[str]
) -> None:
    src = tmp_path / "src"
    make_tree(src, tree)
    dest = tmp_path / "out"
    normalize_context(src, dest, epoch=EPOCH, ignore=ignore(patterns))
    assert listing(dest) == expected


def test_modes_times_and_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, ["plain", "script.sh", "private", "sub/deep/file", "empty/"])
    os.chmod(src / "script.sh", 0o700)
    os.chmod(src / "private", 0o600)
    os.chmod(src / "sub", 0o700)
    os.symlink("plain", src / "rel-link")
    os.symlink("/etc/passwd", src / "abs-link")
    os.symlink("../../outside", src / "sub/escaping-link")
    os.symlink("sub", src / "dir-link")
    os.symlink("missing", src / "dangling")
    dest = tmp_path / "out"

    summary = normalize_context(src, dest, epoch=EPOCH, ignore=DockerIgnore())

    written = [
        ".", "plain", "script.sh", "private", "sub", "sub/deep", "sub/deep/file", "empty",
        "rel-link", "abs-link", "sub/escaping-link", "dir-link", "dangling",
    ]  # fmt: skip
    # Checked before anything lists or reads the tree: that moves atimes (relatime).
    for rel in written:
        assert os.lstat(dest / rel).st_atime_ns == EPOCH_NS, rel
    assert listing(dest) == sorted(written[1:])
    entries = {rel: (mode, mtime) for rel, mode, mtime, _ in full_listing(dest)}
    files = {"plain", "script.sh", "private", "sub/deep/file"}
    # Directories and links sit at the epoch; files within the second after it (a
    # content-derived offset that the layout finalizer clamps back to the epoch).
    assert {mtime for rel, (_, mtime) in entries.items() if rel not in files} == {EPOCH_NS}
    assert all(EPOCH_NS < entries[rel][1] < EPOCH_NS + 1_000_000_000 for rel in files)
    assert entries["."][0] == 0o755
    assert entries["plain"][0] == 0o644
    assert entries["private"][0] == 0o644
    assert entries["script.sh"][0] == 0o755
    assert entries["sub"][0] == 0o755
    assert entries["empty"][0] == 0o755
    assert os.readlink(dest / "abs-link") == "/etc/passwd"
    assert os.readlink(dest / "sub/escaping-link") == "../../outside"
    assert os.readlink(dest / "dangling") == "missing"
    # A link to a directory stays a link: its target is not copied through it.
    assert (dest / "dir-link").is_symlink()
    assert (dest / "script.sh").read_text() == "script.sh"
    assert summary == ContextSummary(files=4, dirs=3, symlinks=5, bytes=34, excluded=0)


def test_ignored_files_are_absent_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, [".git/HEAD", ".git/objects/x", "model.bin", "notes.md", "app/main.py"])
    summary = normalize_context(src, tmp_path / "out", epoch=EPOCH, ignore=ignore(".git\n*.md"))
    assert listing(tmp_path / "out") == ["app", "app/main.py", "model.bin"]
    # .git is pruned without being walked, so it counts once.
    assert summary.excluded == 2
    assert summary.files == 2


def test_listing_does_not_depend_on_source_metadata(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, ["a", "b/c", "b/d/e", "run.sh"])
    os.chmod(src / "run.sh", 0o755)
    os.symlink("a", src / "link")
    normalize_context(src, tmp_path / "one", epoch=EPOCH, ignore=DockerIgnore())

    os.utime(src / "a", (1, 1))
    os.utime(src / "b", (5, 123456789))
    os.chmod(src / "a", 0o600)
    os.chmod(src / "b/c", 0o664)
    os.chmod(src / "run.sh", 0o711)
    os.chmod(src / "b/d", 0o700)
    os.utime(src / "link", (7, 7), follow_symlinks=False)
    normalize_context(src, tmp_path / "two", epoch=EPOCH, ignore=DockerIgnore())

    assert full_listing(tmp_path / "one") == full_listing(tmp_path / "two")


def test_other_epoch_gives_other_times_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, ["a", "b/c"])
    normalize_context(src, tmp_path / "one", epoch=0, ignore=DockerIgnore())
    normalize_context(src, tmp_path / "two", epoch=86400, ignore=DockerIgnore())
    one, two = full_listing(tmp_path / "one"), full_listing(tmp_path / "two")
    assert [(p, m, c) for p, m, _, c in one] == [(p, m, c) for p, m, _, c in two]
    assert [t + 86400 * 1_000_000_000 for _, _, t, _ in one] == [t for _, _, t, _ in two]
    assert all(0 <= t < 1_000_000_000 for _, _, t, _ in one)


def test_same_size_edit_moves_the_file_mtime(tmp_path: Path) -> None:
    # BuildKit re-sends a context file only if its size, mode or mtime changed since the last
    # build from a directory of the same name: one flipped byte must show in the mtime.
    src = tmp_path / "src"
    make_tree(src, ["model.bin"])
    mtimes = []
    for n, content in enumerate([b"AAAA", b"AAAB", b"AAAA"]):
        (src / "model.bin").write_bytes(content)
        normalize_context(src, tmp_path / f"out{n}", epoch=EPOCH, ignore=DockerIgnore())
        mtimes.append(os.lstat(tmp_path / f"out{n}" / "model.bin").st_mtime_ns)
    assert mtimes[0] != mtimes[1]
    assert mtimes[0] == mtimes[2]


def test_fifo_is_a_config_error_naming_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, ["a"])
    os.mkfifo(src / "pipe")
    with pytest.raises(ConfigError, match=r"pipe.*FIFO"):
        normalize_context(src, tmp_path / "out", epoch=EPOCH, ignore=DockerIgnore())


def test_excluded_fifo_is_fine(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, ["a"])
    os.mkfifo(src / "pipe")
    summary = normalize_context(src, tmp_path / "out", epoch=EPOCH, ignore=ignore("pipe"))
    assert listing(tmp_path / "out") == ["a"]
    assert summary.excluded == 1


def test_socket_is_a_config_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(src / "s"))
        with pytest.raises(ConfigError, match="socket"):
            normalize_context(src, tmp_path / "out", epoch=EPOCH, ignore=DockerIgnore())
    finally:
        sock.close()


def test_unreadable_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    make_tree(src, ["secret"])
    # Root reads a mode-0 file anyway, so the read failure is made by hand.
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(path)) == src / "secret":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(ConfigError, match=r"cannot read .*secret.*Permission denied"):
        normalize_context(src, tmp_path / "out", epoch=EPOCH, ignore=DockerIgnore())


def test_dest_must_be_new_or_empty_and_outside_the_context(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, ["a"])
    busy = tmp_path / "busy"
    make_tree(busy, ["x"])
    with pytest.raises(ConfigError, match="not empty"):
        normalize_context(src, busy, epoch=EPOCH, ignore=DockerIgnore())
    with pytest.raises(ConfigError, match="inside the build context"):
        normalize_context(src, src / "out", epoch=EPOCH, ignore=DockerIgnore())
    empty = tmp_path / "empty"
    empty.mkdir()
    normalize_context(src, empty, epoch=EPOCH, ignore=DockerIgnore())
    assert listing(empty) == ["a"]


def test_missing_context_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        normalize_context(tmp_path / "nope", tmp_path / "out", epoch=EPOCH, ignore=DockerIgnore())


def test_copy_failure_is_a_config_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_tree(src, ["secret"])

    def refuse(source: Path, target: Path) -> tuple[int, int]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(context_module, "_copy_hashing", refuse)
    with pytest.raises(ConfigError, match=r"cannot read .*secret.*Permission denied"):
        normalize_context(src, tmp_path / "out", epoch=EPOCH, ignore=DockerIgnore())
