"""The plan a rebuild follows, from a provenance statement: what is taken, what is refused
(no engine, no registry: the statement is made by modelseal's own provenance code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelseal.errors import ConfigError
from modelseal.imagebuild.context import NORMALIZATION_VERSION
from modelseal.imagebuild.finalize import FINALIZER_VERSION
from modelseal.publish.provenance import ProvenanceInput, provenance_statement
from modelseal.rebuild.plan import CannotRebuild, NotSignedProvenance, plan_from_statement
from modelseal.rebuild.runner import resolve_contexts
from modelseal.rebuild.source import inside

DIGEST = "sha256:" + "ab" * 32
BASE = "sha256:" + "cd" * 32
COMMIT = "1" * 40


def _statement(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "image_name": "127.0.0.1:5000/seal/app",
        "manifest_digest": DIGEST,
        "builder_id": "https://example.com/builder",
        "invocation_id": "run-1",
        "started_on": "2026-01-01T00:00:00Z",
        "finished_on": "2026-01-01T00:00:01Z",
        "source_date_epoch": 1700000000,
        "dockerfile": "Dockerfile",
        "commit": COMMIT,
        "repository": "https://github.com/org/app",
        "context_path": "app",
        "dockerfile_path": "app/Dockerfile",
        "build_args": {"GREETING": "hello"},
        "build_contexts": {
            "base": f"oci-layout {BASE}",
            "assets": "local app/assets",
            "remote": "https://example.com/ctx.git",
        },
        "normalization_version": NORMALIZATION_VERSION,
        "finalizer_version": FINALIZER_VERSION,
        "network": "default",
        "platforms": ("linux/amd64",),
    } | changes
    return provenance_statement(ProvenanceInput(**values))


def test_a_plan_holds_what_the_build_used() -> None:
    plan = plan_from_statement(_statement())
    assert plan.expected_digest == DIGEST and plan.commit == COMMIT
    assert (plan.context, plan.dockerfile) == ("app", "app/Dockerfile")
    assert plan.network == "default" and plan.platforms == ("linux/amd64",)
    assert dict(plan.build_args) == {"GREETING": "hello"}
    assert {c.name: c.type for c in plan.build_contexts} == {
        "assets": "local", "base": "oci-layout", "remote": "url",
    }  # fmt: skip
    assert len(plan.provenance_sha256) == 64
    # a provenance written before the network was recorded: none, as the build gate's default
    st = _statement(network=None)
    assert "network" not in st["predicate"]["buildDefinition"]["externalParameters"]
    assert plan_from_statement(st).network == "none"


@pytest.mark.parametrize(
    ("change", "error", "text"),
    [
        (lambda st: st["predicate"]["buildDefinition"].update(buildType="https://x/y"),
         NotSignedProvenance, "is not modelseal's"),
        (lambda st: _ext(st).update(dockerfile_args=["--x"]), CannotRebuild, "dockerfile_args"),
        (lambda st: _ext(st)["source"].update(context="/etc"), CannotRebuild, "not a path inside"),
        (lambda st: _ext(st)["source"].update(dockerfile="app/../../x"), CannotRebuild,
         "not a path inside"),
        (lambda st: _ext(st)["source"].pop("dockerfile"), CannotRebuild, "no source.dockerfile"),
        (lambda st: _ext(st)["buildContexts"]["assets"].update(path="../up"), CannotRebuild,
         "not a path inside"),
        (lambda st: _ext(st)["buildContexts"]["base"].update(type="ftp"), CannotRebuild,
         "type ftp"),
        (lambda st: _ext(st).update(network="host"), NotSignedProvenance, "network"),
        (lambda st: st["predicate"]["buildDefinition"]["internalParameters"].update(
            sourceDateEpoch="soon"), NotSignedProvenance, "sourceDateEpoch"),
        (lambda st: st.update(subject=[]), NotSignedProvenance, "exactly one subject"),
        # Layers made by another finalizer, or by BuildKit's rewrite-timestamp (before the
        # finalizer was recorded), would not come out the same here.
        (lambda st: st["predicate"]["buildDefinition"]["internalParameters"].update(
            layoutFinalizer=99), CannotRebuild, "layout finalizer 99"),
        (lambda st: st["predicate"]["buildDefinition"]["internalParameters"].pop(
            "layoutFinalizer"), CannotRebuild, "rewrite-timestamp"),
    ],
)  # fmt: skip
def test_what_a_plan_refuses(change: Any, error: type[Exception], text: str) -> None:
    st = _statement()
    change(st)
    with pytest.raises(error, match=text):
        plan_from_statement(st)


def _ext(st: dict[str, Any]) -> dict[str, Any]:
    return st["predicate"]["buildDefinition"]["externalParameters"]  # type: ignore[no-any-return]


def test_build_contexts_are_resolved_or_refused(tmp_path: Path) -> None:
    (tmp_path / "app" / "assets").mkdir(parents=True)
    plan = plan_from_statement(_statement())
    with pytest.raises(CannotRebuild, match=f"base.*{BASE}"):
        resolve_contexts(plan, {}, tmp_path)
    with pytest.raises(ConfigError, match="not the recorded"):
        resolve_contexts(plan, {"base": f"oci-layout://{tmp_path}@{DIGEST}"}, tmp_path)
    with pytest.raises(CannotRebuild, match="does not hold"):
        resolve_contexts(plan, {"base": f"oci-layout://{tmp_path}"}, tmp_path)
    with pytest.raises(ConfigError, match="records no build context of that name"):
        resolve_contexts(plan, {"other": "docker-image://x@" + BASE}, tmp_path)
    resolved = resolve_contexts(plan, {"base": f"docker-image://r.example/b@{BASE}"}, tmp_path)
    assert resolved == {
        "assets": str((tmp_path / "app" / "assets").resolve()),
        "base": f"docker-image://r.example/b@{BASE}",
        "remote": "https://example.com/ctx.git",
    }
    hosted = plan_from_statement(_statement(build_contexts={"cache": "host /srv/cache"}))
    with pytest.raises(CannotRebuild, match="cannot be resolved elsewhere"):
        resolve_contexts(hosted, {}, tmp_path)


def test_a_symbolic_link_cannot_take_the_build_out_of_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "outside").mkdir()
    (checkout / "app").symlink_to(tmp_path / "outside")
    with pytest.raises(CannotRebuild, match="leaves the checkout"):
        inside(checkout, "app", "source.context")
    with pytest.raises(CannotRebuild, match="is not in the checkout"):
        inside(checkout, "missing", "source.context")


def _with_contexts(contexts: dict[str, Any]) -> dict[str, Any]:
    st = _statement(build_contexts={})
    _ext(st)["buildContexts"] = contexts
    return st


@pytest.mark.parametrize(
    "uri",
    [
        "x://../../../../../../root",  # buildx: an unknown scheme is a local dir, from its cwd
        "oci-layout:///var/lib/some-layout",  # a layout on the rebuilder's host
        "docker-image://r.example/base:1",  # an image, but recorded as a url
        "file:///etc",
        "https://user:secret@example.com/ctx.git",  # public_context_url drops user info
        "https://example.com/ctx.tar.gz?token=x",  # ... and the query
        "https:///no-host",
        "https://example.com:notaport/x",
    ],
)
def test_a_url_context_is_only_a_remote_url(tmp_path: Path, uri: str) -> None:
    """A signed provenance's url context must not read the rebuilder's disk: only what
    public_context_url records (http(s)/git/ssh with a host, no user info or query)."""
    st = _with_contexts({"h": {"type": "url", "uri": uri}})
    with pytest.raises(CannotRebuild, match=r"buildContexts\.h: .*not a remote build context"):
        resolve_contexts(plan_from_statement(st), {}, tmp_path)


@pytest.mark.parametrize(
    "uri",
    ["https://example.com/ctx.git#main:sub", "git://example.com/r.git", "ssh://example.com/r"],
)
def test_a_remote_url_context_is_passed_on(tmp_path: Path, uri: str) -> None:
    plan = plan_from_statement(_with_contexts({"h": {"type": "url", "uri": uri}}))
    assert resolve_contexts(plan, {}, tmp_path) == {"h": uri}


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda st: _ext(st)["source"].update(context=".git"), "source.context .git"),
        (lambda st: _ext(st)["source"].update(context="app/.git/x"), "source.context app/.git"),
        (lambda st: _ext(st)["source"].update(dockerfile=".git/config"), "source.dockerfile"),
        (lambda st: _ext(st)["buildContexts"]["assets"].update(path=".git"),
         "buildContexts.assets.path .git"),
        (lambda st: _ext(st)["buildContexts"]["assets"].update(path="sub/.GIT"), r"\.GIT"),
    ],
)  # fmt: skip
def test_the_git_directory_is_never_build_input(change: Any, text: str) -> None:
    st = _statement()
    change(st)
    with pytest.raises(CannotRebuild, match=text + ".*the repository's .git directory"):
        plan_from_statement(st)


def test_a_link_to_the_git_directory_is_not_build_input(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "creds").symlink_to(".git")
    with pytest.raises(CannotRebuild, match=r"build context c creds .*\.git"):
        inside(tmp_path, "creds", "build context c")


@pytest.mark.parametrize("arg", ["BUILDKIT_SYNTAX", "BUILDKIT_CONTEXT_KEEP_GIT_DIR", "buildkit_x"])
def test_buildkit_build_args_are_refused(arg: str) -> None:
    st = _statement(build_args={"GREETING": "hi", arg: "1"})
    with pytest.raises(CannotRebuild, match=f"buildArgs {arg}: BUILDKIT_"):
        plan_from_statement(st)


@pytest.mark.parametrize("platform", ["linux/amd64 --push", "../x", "linux", "Linux/AMD64"])
def test_recorded_platforms_are_validated(platform: str) -> None:
    st = _statement()
    _ext(st)["platforms"] = [platform]
    with pytest.raises(NotSignedProvenance, match="is not a platform"):
        plan_from_statement(st)


def test_a_docker_image_context_is_rebuilt_from_its_recorded_digest(tmp_path: Path) -> None:
    def resolved(ref: str) -> str:
        entry = {"type": "docker-image", "ref": ref, "digest": BASE}
        return resolve_contexts(plan_from_statement(_with_contexts({"b": entry})), {}, tmp_path)[
            "b"
        ]

    assert resolved("python:3.12") == f"docker-image://python@{BASE}"
    assert resolved("127.0.0.1:5000/lib/py:3") == f"docker-image://127.0.0.1:5000/lib/py@{BASE}"
    assert resolved(f"python:3.12@{BASE}") == f"docker-image://python:3.12@{BASE}"
    with pytest.raises(CannotRebuild, match="pinned to another digest"):
        resolved(f"python@{DIGEST}")


def test_the_recorded_compression_is_the_plans() -> None:
    plan = plan_from_statement(_statement(compression={"type": "zstd", "level": 19, "force": True}))
    assert (plan.compression, plan.compression_level, plan.force_compression) == ("zstd", 19, True)
    # A provenance from before the compression was recorded: those images were gzip.
    st = _statement()
    assert "compression" not in _ext(st)
    plan = plan_from_statement(st)
    assert (plan.compression, plan.compression_level, plan.force_compression) == (
        "gzip", None, False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [{"type": "brotli"}, {"type": "zstd", "level": 30}, {"type": "gzip", "force": "yes"},
     {"type": "gzip", "args": "--push"}, "zstd"],
)  # fmt: skip
def test_a_bad_recorded_compression_is_refused(value: Any) -> None:
    st = _statement()
    _ext(st)["compression"] = value
    with pytest.raises(NotSignedProvenance, match=r"externalParameters\.compression"):
        plan_from_statement(st)
