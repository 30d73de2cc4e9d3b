"""``modelseal models fetch`` and ``models verify``'s source checks, with the real huggingface_hub
client against a local stand-in of the Hub (tests/support/hf_hub.py) that checks every request."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.hf_hub import FakeHub, FakeRepo

from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.models.hub import HubRef, name_problem, parse_hf_uri

TOKEN = "hf_standinSECRETtoken0123456789"
FILES = {
    "config.json": b'{"architectures": ["Tiny"]}',
    "model.safetensors": b"S" * 300,  # LFS in the stand-in (> 64 bytes): served by the "CDN"
    "sub/weights.bin": b"W" * 200,
}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(token=TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        yield fake
        assert fake.violations == []


def _repo(hub: FakeHub, files: dict[str, bytes] = FILES) -> tuple[FakeRepo, str]:
    repo = hub.repo("org/tiny")
    return repo, repo.commit(files)


def _lock() -> dict[str, dict[str, object]]:
    data = json.loads(Path("models.lock").read_text())
    return {e["path"]: e for e in data["files"]}


def _leftovers() -> list[str]:
    """Temporary directories a fetch left next to its destination."""
    models = Path("models")
    return (
        sorted(p.name for p in models.iterdir() if p.name.startswith("."))
        if models.exists()
        else []
    )


def test_a_clean_fetch_writes_the_files_and_pins_them_with_their_source(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _, commit = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0
    out, err = capsys.readouterr()
    dest = Path("models/tiny")
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} == set(FILES)
    for rel, data in FILES.items():
        assert (dest / rel).read_bytes() == data
    assert not (dest / ".cache").exists() and _leftovers() == []
    lock = _lock()
    assert set(lock) == {f"models/tiny/{p}" for p in FILES}
    for rel, data in FILES.items():
        entry = lock[f"models/tiny/{rel}"]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        assert entry["source"] == {
            "uri": "hf://org/tiny", "revision": commit, "path": rel,
            "endpoint": hub.endpoint.rstrip("/"),
        }  # fmt: skip
    assert json.loads(Path("models.lock").read_text())["roots"] == ["models/tiny"]
    # Every file was asked for by the commit; LFS bytes came from the other origin (the "CDN"),
    # which never saw the token (FakeHub records a violation otherwise); the token is nowhere.
    resolves = list(hub.resolve_requests())
    assert all(f"/resolve/{commit}/" in p for p in resolves)
    heads = sorted(p.rsplit("/", 1)[-1] for s, m, p in hub.requests if m == "HEAD")
    assert heads == ["config.json", "model.safetensors", "weights.bin"]
    assert sum(1 for s, _, _ in hub.requests if s == "cdn") == 2
    assert TOKEN not in out + err
    assert f"hf://org/tiny@{commit}: 3 file(s)" in out
    # The lock it wrote verifies, and the Hub still has every file at that commit.
    assert main(["models", "verify", "--check-source"]) == 0


def test_include_selects_files_and_pagination_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub(token=TOKEN, page_size=1) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.chdir(tmp_path)
        _, commit = _repo(hub)
        uri = f"hf://org/tiny@{commit}"
        assert main(["models", "fetch", uri, "--include", "*.bin", "--dest", "m"]) == 0
        assert hub.violations == []
        tree_pages = [p for s, _, p in hub.requests if "/tree/" in p]
    assert len(tree_pages) == 4  # a directory and 3 files, one per page: each Link followed
    assert sorted(_lock()) == ["m/sub/weights.bin"]
    assert sorted(p.name for p in Path("m").rglob("*") if p.is_file()) == ["weights.bin"]


def test_the_token_does_not_follow_a_link_to_another_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub follows the listing's `Link: rel="next"` with the same headers, token
    # included, wherever it points; modelseal's transport drops the token off the endpoint.
    with FakeHub(token=TOKEN, page_size=1) as hub:
        hub.link_origin = hub.cdn_origin
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.chdir(tmp_path)
        _, commit = _repo(hub)
        assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) in (2, 3)
        assert any(s == "cdn" and "/tree/" in p for s, _, p in hub.requests)
        assert hub.violations == []
    assert not Path("models").exists()


@pytest.mark.parametrize("revision", ["main", "v1.0", None])
def test_a_branch_tag_or_missing_revision_is_refused(
    hub: FakeHub, revision: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    _repo(hub)
    hub.repo("org/tiny").refs["v1.0"] = hub.repo("org/tiny").refs["main"]
    uri = "hf://org/tiny" + (f"@{revision}" if revision else "")
    assert main(["models", "fetch", uri]) == 2
    err = capsys.readouterr().err
    assert "not a commit" in err and "--allow-ref" in err
    assert hub.requests == [] and not Path("models").exists() and not Path("models.lock").exists()


def test_allow_ref_resolves_the_branch_records_the_commit_and_warns(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _, commit = _repo(hub)
    assert main(["models", "fetch", "hf://org/tiny@main", "--allow-ref"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and commit in err and "not a commit" in err
    assert {e["source"]["revision"] for e in _lock().values()} == {commit}  # type: ignore[index]
    # Only the model info was asked by the branch; the listing and files by the commit (the
    # stand-in records a violation otherwise).
    by_ref = [p for _, _, p in hub.requests if "/main" in p]
    assert by_ref == ["/api/models/org/tiny/revision/main"]


def test_the_policy_switch_allows_refs(hub: FakeHub) -> None:
    _, commit = _repo(hub)
    Path("modelseal.yml").write_text("version: 1\nmodels:\n  fetch:\n    allow_refs: true\n")
    assert main(["models", "fetch", "hf://org/tiny@main"]) == 0
    assert {e["source"]["revision"] for e in _lock().values()} == {commit}  # type: ignore[index]


def test_bytes_that_do_not_match_the_hubs_lfs_sha256_fail_and_nothing_is_written(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = _repo(hub)
    tampered = b"T" * 300
    repo.served["model.safetensors"] = tampered  # same size: only the digest can tell
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 1
    out = capsys.readouterr().out
    listed = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert f"model.safetensors: sha256 {hashlib.sha256(tampered).hexdigest()} downloaded" in out
    assert f"the Hub lists sha256 {listed}" in out
    assert not Path("models/tiny").exists() and not Path("models.lock").exists()
    assert _leftovers() == []


def test_a_small_file_not_matching_its_git_blob_id_fails(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = _repo(hub)
    repo.served["config.json"] = b'{"architectures": ["Evil"]}'
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 1
    out = capsys.readouterr().out
    assert "config.json: git-sha1 " in out and "the Hub lists git-sha1 " in out
    assert not Path("models/tiny").exists() and not Path("models.lock").exists()


def test_a_file_not_matching_the_lock_fails_and_leaves_the_previous_fetch(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, first = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{first}"]) == 0
    before = Path("models.lock").read_text()
    second = repo.commit({**FILES, "model.safetensors": b"N" * 300})
    capsys.readouterr()
    assert main(["models", "fetch", f"hf://org/tiny@{second}", "--replace"]) == 1
    out = capsys.readouterr().out
    pinned = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    got = hashlib.sha256(b"N" * 300).hexdigest()
    assert f"model.safetensors: sha256 {got} downloaded, models.lock pins sha256 {pinned}" in out
    assert Path("models.lock").read_text() == before
    assert Path("models/tiny/model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert _leftovers() == []


def test_a_non_empty_destination_needs_replace(hub: FakeHub) -> None:
    _, commit = _repo(hub)
    Path("models/tiny").mkdir(parents=True)
    Path("models/tiny/mine.txt").write_text("keep")
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 2
    assert Path("models/tiny/mine.txt").read_text() == "keep"
    assert main(["models", "fetch", f"hf://org/tiny@{commit}", "--replace"]) == 0
    assert not Path("models/tiny/mine.txt").exists()


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "x" * 300,
        "d/" * 600 + "x",  # 1201 bytes
        "evil\x1b[31mred.bin",
        "line\nbreak.bin",
        "bidi\u202ebin.exe",
        "back\\slash",
        "a//b",
        ".cache/huggingface/download/model.safetensors.metadata",
        "sub",  # a file where the listing has a directory
    ],
)
def test_hostile_file_names_are_refused_before_any_download(
    hub: FakeHub, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = _repo(hub)
    repo.extra_listing.append({"type": "file", "oid": "a" * 40, "size": 3, "path": name})
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err
    assert "\x1b" not in err and "\u202e" not in err and "\nbreak" not in err
    assert list(hub.resolve_requests()) == []
    assert not Path("models").exists() and not Path("models.lock").exists()


@pytest.mark.parametrize(
    ("policy", "limit"),
    [
        ("max_files: 2", "models.fetch.max_files = 2"),
        ("max_bytes: 400", "models.fetch.max_bytes = 400"),
    ],
)
def test_too_many_or_too_large_files_are_refused_naming_the_limit(
    hub: FakeHub, policy: str, limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, commit = _repo(hub)
    Path("modelseal.yml").write_text(f"version: 1\nmodels:\n  fetch:\n    {policy}\n")
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 2
    assert limit in capsys.readouterr().err
    assert list(hub.resolve_requests()) == [] and not Path("models").exists()


def test_an_unreachable_hub_is_exit_3_and_the_token_stays_out_of_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    assert main(["models", "fetch", "hf://org/tiny@" + "a" * 40]) == 3
    out, err = capsys.readouterr()
    assert "could not get an answer from the Hub" in err and TOKEN not in out + err
    assert not (tmp_path / "models").exists()


def test_a_server_that_dribbles_meets_the_deadline(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _, commit = _repo(hub)
    hub.cdn_trickle = 0.05  # 300 bytes: 15 s; every byte well inside a read timeout
    Path("modelseal.yml").write_text("version: 1\nmodels:\n  fetch:\n    max_seconds: 1\n")
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 3
    assert "models.fetch.max_seconds = 1 s" in capsys.readouterr().err
    assert not Path("models/tiny").exists() and _leftovers() == []


def test_a_token_is_never_sent_over_plain_http_off_the_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0.0.0.0 is not a loopback name to the check, but is this machine should it regress.
    monkeypatch.setenv("HF_ENDPOINT", "http://0.0.0.0:9")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    assert main(["models", "fetch", "hf://org/tiny@" + "a" * 40]) == 2
    err = capsys.readouterr().err
    assert "clear text" in err and TOKEN not in err


def test_the_default_destination_is_beside_the_lock(hub: FakeHub) -> None:
    _, commit = _repo(hub)
    Path("sub").mkdir()
    assert main(["models", "fetch", f"hf://org/tiny@{commit}", "--lock", "sub/models.lock"]) == 0
    assert Path("sub/models/tiny/model.safetensors").read_bytes() == FILES["model.safetensors"]
    lock = json.loads(Path("sub/models.lock").read_text())
    assert lock["roots"] == ["models/tiny"]


def test_a_body_announced_beyond_the_listed_sizes_is_refused_before_it_is_read(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _, commit = _repo(hub)
    hub.cdn_content_length = 1 << 40  # a terabyte for a 300-byte file
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 3
    assert "the Hub announced more than" in capsys.readouterr().err
    assert not Path("models/tiny").exists() and _leftovers() == []


def test_a_compressed_answer_is_refused(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    _, commit = _repo(hub)
    hub.content_encoding = "gzip"  # huggingface_hub would inflate it, unbounded
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 3
    assert "compressed (gzip) though asked not to" in capsys.readouterr().err
    assert not Path("models/tiny").exists() and _leftovers() == []


def test_a_missing_repository_or_commit_is_exit_2(hub: FakeHub) -> None:
    _repo(hub)
    assert main(["models", "fetch", "hf://org/other@" + "a" * 40]) == 2
    assert main(["models", "fetch", "hf://org/tiny@" + "b" * 40]) == 2


def test_verify_reports_an_unpinned_source_revision_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never asked: the check is offline
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    args = ["models", "lock", "m", "--source-uri", "hf://org/tiny", "--source-revision", "main"]
    assert main(args) == 2  # models lock refuses to write such a source (below)
    # A lock written by hand (or by an older modelseal) with a branch as its revision:
    assert main(["models", "lock", "m", "--source-uri", "hf://org/tiny"]) == 2
    assert main(["models", "lock", "m", "--source-uri", "https://example.org/tiny"]) == 0
    lock = Path("models.lock")
    lock.write_text(lock.read_text().replace('"uri": "https://example.org/tiny"',
                                             '"uri": "hf://org/tiny", "revision": "main"'))  # fmt: skip
    capsys.readouterr()
    assert main(["models", "verify"]) == 1
    out = capsys.readouterr().out
    assert "models.source-unpinned" in out and "'main', not a full commit" in out
    # The tree matches: the source finding is not counted as a tree mismatch.
    assert "the tree matches; 1 source finding(s)" in out


@pytest.mark.parametrize(
    ("uri", "revision", "why"),
    [
        ("hf://gpt2", "a" * 40, "hf://ORG/NAME"),
        ("hf://org/tiny", "main", "'main' is not a full 40-hex commit"),
        ("hf://org/tiny", "abc1234", "'abc1234' is not a full 40-hex commit"),
        ("hf://org/tiny", None, "no revision is not a full 40-hex commit"),
        ("hf://org/tiny@main", None, "'main' is not a full 40-hex commit"),
        ("hf://org/tiny@" + "a" * 40, "b" * 40, "give one"),
    ],
)
def test_models_lock_refuses_a_source_models_verify_would_fail(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uri: str,
    revision: str | None,
    why: str,
) -> None:
    """Issue 15 review: `models lock --source-uri hf://gpt2` or `--source-revision main`
    wrote sources `models verify` then failed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    args = ["models", "lock", "m", "--source-uri", uri]
    assert main(args + (["--source-revision", revision] if revision else [])) == 2
    assert why in capsys.readouterr().err
    assert not Path("models.lock").exists()


def test_models_lock_records_an_hf_source_at_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    assert main(["models", "lock", "m", "--source-uri", "hf://org/tiny@" + "A" * 40]) == 0
    assert _lock()["m/w.bin"]["source"] == {"uri": "hf://org/tiny", "revision": "a" * 40}
    assert main(["models", "verify"]) == 0


def test_verify_check_source_reports_a_moved_file_and_a_vanished_commit(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0
    assert main(["models", "verify"]) == 0  # offline: nothing to say
    # The stand-in now serves other bytes for the commit (a rewritten mirror).
    repo.commits[commit] = {**FILES, "model.safetensors": b"M" * 300}
    del repo.commits[commit]["config.json"]
    capsys.readouterr()
    assert main(["models", "verify", "--check-source"]) == 1
    out = capsys.readouterr().out
    assert "models.source-moved" in out
    assert "model.safetensors: the Hub lists sha256" in out
    assert "config.json: config.json is no longer there" in out
    # History rewritten: the commit is gone altogether.
    del repo.commits[commit]
    assert main(["models", "verify", "--check-source", "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)["mismatches"]
    assert sorted(f["id"] for f in found) == ["models.source-moved"] * 3
    assert all("is gone" in f["title"] for f in found)


def test_verify_check_source_cannot_reach_the_hub_is_exit_3(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, commit = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The lock records the endpoint; the same hub, now unreachable (moved to a dead port).
    lock = Path("models.lock")
    lock.write_text(lock.read_text().replace(hub.endpoint.rstrip("/"), f"http://127.0.0.1:{port}"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert main(["models", "verify", "--check-source"]) == 3


def test_old_locks_without_a_source_path_stay_readable(tmp_path: Path) -> None:
    from modelseal.models.lock import load_lock

    lock = tmp_path / "models.lock"
    entry = {"path": "m/w.bin", "size": 1, "sha256": "0" * 64, "format": "unknown",
             "source": {"uri": "hf://org/tiny", "revision": "c" * 40}}  # fmt: skip
    lock.write_text(json.dumps({"version": 1, "roots": ["m"], "files": [entry]}))
    src = load_lock(lock).entries[0].source
    assert src is not None and src.path is None and src.revision == "c" * 40


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("hf://org/name@" + "a" * 40, HubRef("org/name", "a" * 40)),
        ("hf://Org-1/na.me_2@main", HubRef("Org-1/na.me_2", "main")),
        ("hf://org/name", HubRef("org/name", None)),
        ("hf://org/name@" + "AB" * 20, HubRef("org/name", "ab" * 20)),
    ],
)
def test_parse_hf_uri(text: str, ref: HubRef) -> None:
    assert parse_hf_uri(text) == ref


@pytest.mark.parametrize(
    "text",
    ["org/name", "hf://name", "hf://a/b/c", "hf://org/../x", "hf://org/na--me", "hf://o/n@a b",
     "hf://o/n@../x", "https://huggingface.co/org/name"],
)  # fmt: skip
def test_parse_hf_uri_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_hf_uri(text)


def test_name_problem_accepts_ordinary_names() -> None:
    for name in ("model.safetensors", "onnx/model.onnx", "tokenizer/vocab.json", ".gitattributes"):
        assert name_problem(name) is None
    assert name_problem("") and name_problem(None)


def test_the_token_never_needs_the_command_line() -> None:
    from modelseal._cli_parser import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["models"]  # type: ignore[union-attr]
    fetch = sub._subparsers._group_actions[0].choices["fetch"]  # type: ignore[union-attr]
    flags = {f for a in fetch._actions for f in a.option_strings}
    assert not any("token" in f for f in flags)
    assert os.environ.get("HF_TOKEN") != TOKEN  # the fixtures set it only for a test


def test_huggingface_hubs_own_log_lines_are_escaped_and_scrubbed(
    hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import huggingface_hub.utils.logging  # noqa: F401  (installs its stderr handler)

    from modelseal.models.hub import FetchLimits, HubSession

    lib = logging.getLogger("huggingface_hub")
    handlers = list(lib.handlers)
    assert handlers
    with HubSession.from_env(FetchLimits()):
        # Its raw stderr handler is off while modelseal fetches; modelseal's scrubs and escapes.
        assert [type(h).__name__ for h in lib.handlers] == ["_ScrubbingHandler"]
        logging.getLogger("huggingface_hub.file_download").warning(
            "Error while downloading from %s", f"http://x/\x1b[2J{TOKEN}"
        )
    assert lib.handlers == handlers
    text = caplog.records[-1].getMessage()
    assert "\x1b" not in text and TOKEN not in text and "[HF_TOKEN]" in text


def test_fetch_then_sign_round_trips_with_the_hubs_gitattributes(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 review: every Hub repository has a .gitattributes; fetch pins it, and sign
    then refused it (model-signing's verifier never checks git paths). Sign leaves it out,
    as the verifier does, and the round trip verifies."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from modelseal.models.signing import verify_model_signature

    gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    _, commit = _repo(hub, FILES | {".gitattributes": gitattributes})
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0
    assert "models/tiny/.gitattributes" in _lock()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "k.pem").write_bytes(pem)
    pub = tmp_path / "k.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    Path("p.yml").write_text("version: 1\n")
    assert main(["models", "sign", "--key", str(tmp_path / "k.pem"), "--policy", "p.yml"]) == 0
    capsys.readouterr()
    sig = Path("models/model.sig")
    assert (
        verify_model_signature(model_dir=Path("models/tiny"), signature=sig, public_key=pub) is None
    )


def test_the_endpoint_is_recorded_named_in_the_purl_and_checked_against(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 review: the hub a file came from was recorded nowhere, and --check-source
    asked whatever HF_ENDPOINT said."""
    from modelseal.models.mlbom import hf_purl

    _, commit = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0
    source = _lock()["models/tiny/config.json"]["source"]
    assert source["endpoint"] == hub.endpoint.rstrip("/")
    purl = hf_purl(source)
    assert purl == (
        f"pkg:huggingface/org/tiny@{commit}?repository_url={hub.endpoint.rstrip('/')}#config.json"
    )
    assert main(["models", "verify", "--check-source"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    capsys.readouterr()
    assert main(["models", "verify", "--check-source"]) == 2
    err = capsys.readouterr().err
    assert "was fetched from the hub at" in err and "HF_ENDPOINT" in err


def test_credentials_in_hf_endpoint_stay_out_of_messages(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_ENDPOINT", f"http://mirror-user:p4ssw0rd@127.0.0.1:{port}")
    assert main(["models", "fetch", "hf://org/tiny@" + "a" * 40]) == 3
    out, err = capsys.readouterr()
    assert "p4ssw0rd" not in out + err and "mirror-user" not in out + err
    assert f"127.0.0.1:{port}" in err


def test_repository_files_under_dot_cache_are_refused(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """fetch removes huggingface_hub's DEST/.cache after the download: a repository file
    there (.cache/other.bin) would have been deleted silently."""
    _, commit = _repo(hub, FILES | {".cache/other.bin": b"kept?"})
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 2
    assert ".cache/other.bin" in capsys.readouterr().err
    assert not Path("models/tiny").exists() and not Path("models.lock").exists()


def test_a_failure_after_the_download_leaves_the_previous_fetch(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Formats are detected and the lock text made before the destination is replaced."""
    import modelseal.models.formats as formats
    from modelseal.errors import GateError

    repo, first = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{first}"]) == 0
    before = Path("models.lock").read_text()
    second = repo.commit({**FILES, "extra.bin": b"E" * 10})

    def broken(path: Path) -> object:
        raise GateError(f"cannot detect {path.name}")

    monkeypatch.setattr(formats, "detect_format", broken)
    assert main(["models", "fetch", f"hf://org/tiny@{second}", "--replace"]) == 3
    assert not Path("models/tiny/extra.bin").exists()
    assert Path("models.lock").read_text() == before
    assert _leftovers() == []


def test_check_source_without_a_token_on_a_hidden_repository_could_not_check(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A private or gated repository looks missing to a request without a token: that is
    "could not check" (exit 3), not a moved source."""
    _, commit = _repo(hub)
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0
    monkeypatch.delenv("HF_TOKEN")
    hub.token = None
    del hub.repos["org/tiny"]
    capsys.readouterr()
    assert main(["models", "verify", "--check-source"]) == 3
    assert "could not check" in capsys.readouterr().err


def test_proxy_selection_follows_the_environment() -> None:
    from modelseal.models.hub import proxy_for

    proxies = {
        "https://": "http://proxy.test:3128",
        "http://": "http://proxy.test:3128",
        "all://127.0.0.1": None,  # NO_PROXY=127.0.0.1
        "all://*example.org": None,  # NO_PROXY=example.org
    }
    assert proxy_for("https://huggingface.co/api/models/a/b", proxies) == "http://proxy.test:3128"
    assert proxy_for("https://cdn.example.org/x", proxies) is None
    assert proxy_for("http://127.0.0.1:8080/api", proxies) is None
    assert proxy_for("https://huggingface.co/", {}) is None


def test_a_fetch_goes_through_the_environments_proxy_unless_no_proxy(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 review: the guarded transport ignored HTTP(S)_PROXY/NO_PROXY. A proxy that
    is not there fails the fetch (so it was used); NO_PROXY for the Hub's host lets it by."""
    _, commit = _repo(hub)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{dead}")
    # With the token: refused before it would reach the proxy in clear text.
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 3
    assert "proxy from the environment would carry HF_TOKEN" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    hub.token = None
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 3
    assert not hub.requests  # nothing reached the Hub: the (missing) proxy was asked
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the Hub and its "CDN"
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    assert main(["models", "fetch", f"hf://org/tiny@{commit}"]) == 0


def test_a_lock_path_that_cannot_be_written_is_refused_before_the_download(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    _, commit = _repo(hub)
    Path("b.lock").mkdir()
    assert main(["models", "fetch", f"hf://org/tiny@{commit}", "--lock", "b.lock"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert not Path("models").exists() and not hub.requests
