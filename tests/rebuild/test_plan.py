"""The plan a rebuild follows, from a provenance statement: what is taken, what is refused
(no engine, no registry: the statement is made by modelseal's own provenance code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelseal.errors import ConfigError
from modelseal.imagebuild.context import NORMALIZATION_VERSION
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
