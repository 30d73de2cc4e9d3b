"""Which BuildKit builds: the pinned docker-container builder on a classic image store, a builder
the user names, and the cache flags of the first build.

The docker-container path runs against a recording ``docker`` stand-in (it answers like Docker
28 with the classic store, as on GitHub's ubuntu-24.04 runners, and keeps buildx's builders in a
JSON file); ``buildx build`` is handed on to the real CLI and the private engine when one is
given, so that the gate's whole path runs. The pull of the pinned image itself runs against a
real dockerd started with the classic store, which reaches no registry here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import EPOCH, REPO
from tests.support.tools import require

from modelseal._cli import main
from modelseal.errors import EngineError
from modelseal.findings import Status
from modelseal.imagebuild.engine import BUILDKIT_IMAGE, PrivateEngine, builder_name, probe_engine
from modelseal.imagebuild.gate import BuildGate
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text

DIGEST_HEX = BUILDKIT_IMAGE.rpartition("@sha256:")[2]
OTHER = "mirror.example/moby/buildkit:v0.31.2@sha256:" + "cd" * 32

STAND_IN = r'''#!{python}
"""A recording docker CLI: Docker 28, classic image store, buildx builders in a JSON file."""
import json, os, subprocess, sys

rec, state_file = os.environ["STANDIN_RECORD"], os.environ["STANDIN_STATE"]
argv = sys.argv[1:]
with open(rec, "a") as f:
    f.write(json.dumps(argv) + "\n")
if argv[:2] == ["buildx", "build"]:
    with open(rec + ".env", "a") as f:
        f.write(json.dumps(sorted(os.environ)) + "\n")
state = json.load(open(state_file)) if os.path.exists(state_file) else {{}}

def save():
    json.dump(state, open(state_file, "w"))

def inspect(name, boot):
    b = state.get(name)
    if b is None and name == os.environ.get("STANDIN_CONTEXT", "default"):
        b = {{"driver": "docker", "image": "", "version": "v0.20.2"}}
    if b is None:
        print(f'ERROR: no builder "{{name}}" found', file=sys.stderr)
        sys.exit(1)
    if boot and os.environ.get("STANDIN_PULL_FAIL"):
        print("#1 [internal] booting buildkit", file=sys.stderr)
        print(f"#1 pulling image {{b['image']}}", file=sys.stderr)
        print("ERROR: Error response from daemon: toomanyrequests: You have reached your "
              "unauthenticated pull rate limit.", file=sys.stderr)
        sys.exit(1)
    print(f"Name:          {{name}}\nDriver:        {{b['driver']}}\n\nNodes:\nName: {{name}}0")
    if b.get("image"):
        print(f'Driver Options:        image="{{b["image"]}}"')
    boot = boot or b["driver"] == "docker"  # the engine's own BuildKit always runs
    print("Status:                running" if boot else "Status:                inactive")
    if boot:
        print(f"BuildKit version:      {{b.get('version', 'v0.31.2')}}")

if argv[:1] == ["info"]:
    store = ([["driver-type", "io.containerd.snapshotter.v1"]]
             if os.environ.get("STANDIN_CONTAINERD") else [["Backing Filesystem", "extfs"]])
    print(json.dumps({{"ServerVersion": "28.0.4", "DriverStatus": store}}))
elif argv[:2] == ["context", "show"]:
    print(os.environ.get("STANDIN_CONTEXT", "default"))
elif argv[:2] == ["buildx", "version"]:
    print("github.com/docker/buildx v0.26.1 1a8287f")
elif argv[:2] == ["buildx", "inspect"]:
    rest = [a for a in argv[2:] if a != "--bootstrap"]
    current = os.environ.get("BUILDX_BUILDER") or state.get("__current__")
    if not rest and current:
        inspect(current, "--bootstrap" in argv)
    elif not rest:
        print("Name:   default\nDriver: docker\nBuildKit version: v0.20.2")
    else:
        inspect(rest[0], "--bootstrap" in argv)
elif argv[:2] == ["buildx", "create"]:
    opts = dict(zip(argv[2::2], argv[3::2]))
    state[opts["--name"]] = {{"driver": opts["--driver"],
                             "image": opts.get("--driver-opt", "").removeprefix("image=")}}
    save()
    print(opts["--name"])
elif argv[:2] == ["buildx", "build"] and os.environ.get("STANDIN_REAL_DOCKER"):
    # The real engine (containerd store) does the build; the builder is the stand-in's story.
    i = argv.index("--builder")
    real = [os.environ["STANDIN_REAL_DOCKER"], *argv[:i], *argv[i + 2:]]
    sys.exit(subprocess.run(real).returncode)
else:
    print(f"stand-in: unexpected {{argv}}", file=sys.stderr)
    sys.exit(2)
'''


class StandIn:
    """The stand-in's record (argv of every call) and builder state."""

    def __init__(self, root: Path) -> None:
        self.record = root / "calls.jsonl"
        self.state = root / "builders.json"

    def calls(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def buildx(self, verb: str) -> list[list[str]]:
        return [c for c in self.calls() if c[:2] == ["buildx", verb]]

    def seed(self, name: str, driver: str, image: str | None, *, current: bool = False) -> None:
        builders = json.loads(self.state.read_text()) if self.state.exists() else {}
        builders[name] = {"driver": driver, "image": image or ""}
        if current:  # as `docker buildx use NAME` (setup-buildx-action) leaves it
            builders["__current__"] = name
        self.state.write_text(json.dumps(builders))


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    root = tmp_path / "stand-in"
    root.mkdir()
    docker = root / "docker"
    docker.write_text(STAND_IN.format(python=sys.executable))
    docker.chmod(0o755)
    s = StandIn(root)
    monkeypatch.setenv("MODELSEAL_DOCKER", str(docker))
    monkeypatch.setenv("STANDIN_RECORD", str(s.record))
    monkeypatch.setenv("STANDIN_STATE", str(s.state))
    for var in ("STANDIN_PULL_FAIL", "STANDIN_CONTAINERD", "STANDIN_CONTEXT", "BUILDX_BUILDER"):
        monkeypatch.delenv(var, raising=False)
    yield s


# --- the pinned builder on a classic image store ------------------------------------------


def test_the_pinned_image_is_a_release_pinned_by_its_index_digest() -> None:
    repo, _, digest = BUILDKIT_IMAGE.partition("@")
    assert repo.startswith("moby/buildkit:v") and repo != "moby/buildkit:buildx-stable-1"
    assert len(digest) == len("sha256:") + 64
    assert builder_name(BUILDKIT_IMAGE) == "modelseal-buildkit-" + DIGEST_HEX[:16]


def test_classic_store_creates_the_pinned_builder(stand_in: StandIn) -> None:
    info = probe_engine()
    name = builder_name(BUILDKIT_IMAGE)
    assert stand_in.buildx("create") == [
        ["buildx", "create", "--name", name, "--driver", "docker-container",
         "--driver-opt", f"image={BUILDKIT_IMAGE}"],
    ]  # fmt: skip
    assert ["buildx", "inspect", "--bootstrap", name] in stand_in.calls()
    assert (info.builder, info.builder_driver, info.builder_image) == (
        name, "docker-container", BUILDKIT_IMAGE,
    )  # fmt: skip
    assert info.buildkit_version == "v0.31.2" and info.buildx_args() == ["--builder", name]
    assert not info.containerd_store and info.server_version == "28.0.4"


def test_the_pinned_builder_is_reused(stand_in: StandIn) -> None:
    probe_engine()
    probe_engine()
    assert len(stand_in.buildx("create")) == 1


def test_a_builder_under_our_name_with_another_image_is_not_trusted(stand_in: StandIn) -> None:
    name = builder_name(BUILDKIT_IMAGE)
    stand_in.seed(name, "docker-container", "moby/buildkit:buildx-stable-1")
    with pytest.raises(EngineError) as exc:
        probe_engine()
    assert "not trusted" in exc.value.message and "buildx-stable-1" in exc.value.message
    assert f"docker buildx rm {name}" in (exc.value.hint or "")
    # Neither replaced nor started: nothing runs from an image modelseal did not pin.
    assert stand_in.buildx("create") == []
    assert ["buildx", "inspect", "--bootstrap", name] not in stand_in.calls()


def test_a_builder_under_our_name_without_an_image_is_not_trusted(stand_in: StandIn) -> None:
    stand_in.seed(builder_name(BUILDKIT_IMAGE), "docker-container", None)
    with pytest.raises(EngineError, match="not trusted"):
        probe_engine()


def test_the_same_digest_from_a_mirror_is_the_same_image(stand_in: StandIn) -> None:
    mirror = "mirror.example/moby/buildkit:v0.31.2@sha256:" + DIGEST_HEX
    stand_in.seed(builder_name(BUILDKIT_IMAGE), "docker-container", mirror)
    info = probe_engine()
    assert stand_in.buildx("create") == [] and info.builder == builder_name(BUILDKIT_IMAGE)


def test_another_image_gets_a_builder_of_its_own(stand_in: StandIn) -> None:
    probe_engine()
    info = probe_engine(buildkit_image=OTHER)
    assert info.builder == "modelseal-buildkit-" + "cd" * 8 != builder_name(BUILDKIT_IMAGE)
    assert stand_in.buildx("create")[-1][-1] == f"image={OTHER}"
    assert info.builder_image == OTHER


def test_a_failed_pull_names_the_image_and_the_mirror_option(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_PULL_FAIL", "1")
    with pytest.raises(EngineError) as exc:
        probe_engine()
    assert BUILDKIT_IMAGE in exc.value.message and "rate limit" in exc.value.message
    assert "does not fall back" in exc.value.message
    assert "build.buildkit_image" in (exc.value.hint or "")
    assert exc.value.exit_code == 3


# --- a builder the user names -------------------------------------------------------------


def test_a_named_builder_is_used_as_it_is_and_recorded(stand_in: StandIn) -> None:
    stand_in.seed("ci", "docker-container", OTHER)
    info = probe_engine(builder="ci")
    assert ["buildx", "inspect", "--bootstrap", "ci"] in stand_in.calls()
    assert stand_in.buildx("create") == []
    assert (info.builder, info.builder_driver, info.builder_image, info.buildkit_version) == (
        "ci", "docker-container", OTHER, "v0.31.2",
    )  # fmt: skip


def test_a_missing_named_builder_is_an_engine_error(stand_in: StandIn) -> None:
    with pytest.raises(EngineError) as exc:
        probe_engine(builder="nope")
    assert "'nope' cannot be used" in exc.value.message and 'no builder "nope"' in exc.value.message
    assert "docker buildx ls" in (exc.value.hint or "")


@pytest.mark.parametrize("how", ["buildx use", "BUILDX_BUILDER"])
def test_on_a_containerd_store_the_engines_own_builder_builds_not_the_current_one(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # setup-buildx-action ran first: its floating docker-container builder is current.
    monkeypatch.setenv("STANDIN_CONTAINERD", "1")
    stand_in.seed("builder-3f2a", "docker-container", "moby/buildkit:buildx-stable-1",
                  current=how == "buildx use")  # fmt: skip
    if how == "BUILDX_BUILDER":
        monkeypatch.setenv("BUILDX_BUILDER", "builder-3f2a")
    info = probe_engine()
    assert info.containerd_store and info.builder is None
    assert info.builder_driver == "docker" and info.builder_image is None
    assert info.buildkit_version == "v0.20.2"
    # The builder recorded is the one named on the build's command line.
    assert info.buildx_args() == ["--builder", "default"]


def test_the_engines_own_builder_follows_the_docker_context(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_CONTAINERD", "1")
    monkeypatch.setenv("STANDIN_CONTEXT", "desktop-linux")
    info = probe_engine()
    assert info.buildx_args() == ["--builder", "desktop-linux"]
    assert ["buildx", "inspect", "desktop-linux"] in stand_in.calls()


def test_the_engines_own_builder_on_a_classic_store_is_refused(stand_in: StandIn) -> None:
    stand_in.seed("default", "docker", None)
    with pytest.raises(EngineError, match="classic image store"):
        probe_engine(builder="default")


# --- the gate, end to end on the stand-in's builder ---------------------------------------


def _ctx(tmp_path: Path, policy: str, **options: object) -> Context:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "Dockerfile").write_text("FROM scratch\nCOPY model.bin /model.bin\n")
    (app / "model.bin").write_bytes(b"\x00weights" * 64)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return Context(
        policy=load_policy_text(policy, "t.yml"),
        options=RunOptions(context=app, **options),  # type: ignore[arg-type]
        epoch=SourceDateEpoch(EPOCH, "option"),
        work_dir=work,
        out_dir=out,
    )


@pytest.mark.engine
@pytest.mark.parametrize(("mode", "publish", "rebuilt"), [
    ("always", False, True), ("publish", False, False), ("publish", True, True),
    ("never", True, False),
])  # fmt: skip
def test_the_gate_on_the_pinned_builder_with_a_cache(
    engine: PrivateEngine,
    stand_in: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    publish: bool,
    rebuilt: bool,
) -> None:
    monkeypatch.setenv("STANDIN_REAL_DOCKER", shutil.which("docker") or "docker")
    cache = tmp_path / "cache"
    ctx = _ctx(
        tmp_path,
        f"version: 1\nbuild:\n  rebuild_check: {mode}\n"
        f'  cache_to: ["type=local,dest={cache},mode=max"]\n',
        cache_from=(f"type=local,src={cache}",),
        publish=publish,
    )
    r = BuildGate().run(ctx)
    assert r.status is Status.PASSED, r.error
    name = builder_name(BUILDKIT_IMAGE)
    assert r.facts["builder.name"] == name
    assert r.facts["builder.driver"] == "docker-container"
    assert r.facts["builder.image"] == BUILDKIT_IMAGE
    assert r.facts["buildkit.version"] == "v0.31.2"
    assert r.facts["cache.from"] == f"type=local,src={cache}"  # the flag replaced nothing
    assert r.facts["cache.to"] == f"type=local,dest={cache},mode=max"  # the policy's
    assert r.facts["rebuild.check"] == mode + ("" if rebuilt else " (skipped)")
    assert ("rebuild.digest" in r.facts) is rebuilt
    builds = stand_in.buildx("build")
    assert len(builds) == (2 if rebuilt else 1)
    first = builds[0]
    assert first[first.index("--builder") + 1] == name
    assert first[first.index("--cache-from") + 1] == f"type=local,src={cache}"
    assert first[first.index("--cache-to") + 1] == f"type=local,dest={cache},mode=max"
    assert "--no-cache" not in first
    assert (cache / "index.json").is_file(), "the cache was written"
    if rebuilt:
        # The proof reads no cache and writes none.
        second = builds[1]
        assert "--no-cache" in second and second[second.index("--builder") + 1] == name
        assert not any(a.startswith("--cache") for a in second)
        assert r.facts["rebuild.reproducible"] == "yes"


def test_an_unpinned_buildkit_image_in_the_policy_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yml"
    policy.write_text("version: 1\nbuild:\n  buildkit_image: moby/buildkit:buildx-stable-1\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert main(["build", str(tmp_path), "--policy", str(policy), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "build.buildkit_image" in err and "pinned by digest" in err


@pytest.mark.parametrize(
    "flag",
    [
        ["--buildkit-image", "moby/buildkit:v0.31.2"],
        ["--cache-from", "type=s3,bucket=b"],
        ["--cache-to", "type=local,src=x"],
        ["--builder", "a b"],
    ],
)
def test_bad_builder_and_cache_flags_are_usage_errors(
    tmp_path: Path, flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path), *flag])
    assert exc.value.code == 2
    assert flag[0] in capsys.readouterr().err


# --- the real engine, classic store: the pull fails, the gate is ERRORED ------------------


@pytest.fixture(scope="module")
def classic_engine() -> Iterator[PrivateEngine]:
    require(os.geteuid() == 0, "root (to start dockerd)")
    require(shutil.which("dockerd") is not None, "dockerd")
    root = Path(tempfile.mkdtemp(prefix="ms-cl-", dir="/tmp"))
    eng = PrivateEngine(root, containerd_store=False).start()
    try:
        yield eng
    finally:
        eng.stop(remove=True)


@pytest.mark.engine
def test_real_classic_engine_without_registry_errors_the_gate_naming_the_image(
    classic_engine: PrivateEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", classic_engine.docker_host)
    # buildx keeps its builders in the Docker config directory: a private one.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("MODELSEAL_DOCKER", raising=False)
    ctx = _ctx(tmp_path, "version: 1\n")
    r = BuildGate().run(ctx)
    assert r.status is Status.ERRORED
    assert BUILDKIT_IMAGE in (r.error or "") and "build.buildkit_image" in (r.error or "")
    assert "does not fall back to an unpinned image" in (r.error or "")
    # The builder exists, pinned, under the digest's name; nothing else was pulled.
    builders = os.listdir(tmp_path / "docker-config" / "buildx" / "instances")
    assert builders == [builder_name(BUILDKIT_IMAGE)]
    inspect = json.loads(
        (tmp_path / "docker-config" / "buildx" / "instances" / builders[0]).read_text()
    )
    assert inspect["Nodes"][0]["DriverOpts"] == {"image": BUILDKIT_IMAGE}
    # The engine really has the classic store: it reports no containerd snapshotter.
    with pytest.raises(EngineError, match="classic image store"):
        probe_engine(create_builder=False)


def test_the_readme_documents_the_builder_keys() -> None:
    readme = (REPO / "README.md").read_text()
    for key in ("--builder", "--cache-from", "--cache-to", "buildkit_image", "rebuild_check"):
        assert key in readme, key


# --- cache specs cannot send the runner's token elsewhere nor write through links ---------


@pytest.mark.parametrize(
    ("spec", "direction", "key"),
    [
        ("type=gha,url=https://evil.example/", "from", "url"),
        ("type=gha,url_v2=https://evil.example/,mode=max", "to", "url_v2"),
        ("type=gha,repository=evil/repo", "to", "repository"),
        ("type=gha,token=abc", "from", "token"),
        ("type=registry,ref=r.example/c,ghtoken=x", "to", "ghtoken"),
        ("type=registry,ref=r.example/c,registry.insecure=true", "from", "registry.insecure"),
        ("type=local,src=/tmp/c,dest=/tmp/d", "from", "dest"),
    ],
)
def test_cache_attributes_outside_the_allowlist_are_refused(
    tmp_path: Path, spec: str, direction: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelseal.errors import ConfigError

    field = "cache_from" if direction == "from" else "cache_to"
    with pytest.raises(ConfigError, match=f"{key}"):
        load_policy_text(f'version: 1\nbuild:\n  {field}: ["{spec}"]\n', "t.yml")
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path), f"--cache-{direction}", spec])
    assert exc.value.code == 2
    assert key in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "direction"),
    [
        ("type=gha,scope=pr-1,timeout=5m", "from"),
        ("type=gha,scope=main,mode=max,ignore-error=true,timeout=10m", "to"),
        ("type=registry,ref=r.example/cache:main", "from"),
        ("type=registry,ref=r.example/c,mode=max,image-manifest=true,oci-mediatypes=true,"
         "compression=zstd,compression-level=3,force-compression=true,ignore-error=true", "to"),
        ("type=local,src=/tmp/c,tag=main", "from"),
        ("type=local,dest=/tmp/c,mode=max,compression=gzip", "to"),
    ],
)  # fmt: skip
def test_documented_cache_attributes_are_accepted(spec: str, direction: str) -> None:
    from modelseal.policy.model import cache_spec_problem

    assert cache_spec_problem(spec, direction) is None  # type: ignore[arg-type]


def test_a_local_cache_dest_through_a_symlink_errors_the_gate(
    stand_in: StandIn, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    dest = tmp_path / "link" / "cache"
    ctx = _ctx(tmp_path, "version: 1\n", cache_to=(f"type=local,dest={dest}",))
    r = BuildGate().run(ctx)
    assert r.status is Status.ERRORED
    assert "symbolic link" in (r.error or "") and "dest=" in (r.error or "")
    assert not (elsewhere / "cache").exists()
    assert stand_in.buildx("build") == []


@pytest.mark.parametrize("where", ["workspace", "context"])
def test_a_local_cache_in_the_workspace_or_build_context_errors_the_gate(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    monkeypatch.chdir(workspace)
    inside = workspace / ".cache" if where == "workspace" else tmp_path / "app" / "cache"
    ctx = _ctx(tmp_path, "version: 1\n", cache_from=(f"type=local,src={inside}",))
    r = BuildGate().run(ctx)
    assert r.status is Status.ERRORED
    assert "inside the working directory or the build context" in (r.error or "")
    assert stand_in.buildx("build") == []


@pytest.mark.parametrize("gha", [True, False])
def test_buildx_gets_the_runtime_token_only_for_a_gha_cache(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gha: bool
) -> None:
    for var in (
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_RESULTS_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "MODELSEAL_GITHUB_TOKEN",
        "MODELSEAL_REGISTRY_PASSWORD",
    ):
        monkeypatch.setenv(var, "secret-" + var)
    cache = ("type=gha,scope=pr",) if gha else (f"type=local,dest={tmp_path / 'c'}",)
    BuildGate().run(_ctx(tmp_path, "version: 1\n", cache_to=cache))
    envs = [
        json.loads(line) for line in Path(str(stand_in.record) + ".env").read_text().splitlines()
    ]
    assert envs, "buildx build ran"
    for seen in envs:
        assert ("ACTIONS_RUNTIME_TOKEN" in seen) is gha
        assert ("ACTIONS_RESULTS_URL" in seen) is gha
        assert not {"ACTIONS_ID_TOKEN_REQUEST_TOKEN", "MODELSEAL_GITHUB_TOKEN",
                    "MODELSEAL_REGISTRY_PASSWORD"} & set(seen)  # fmt: skip


def test_a_gha_cache_in_the_policy_only_is_documented_to_get_no_token() -> None:
    from ruamel.yaml import YAML

    readme = (REPO / "README.md").read_text()
    assert "A `type=gha` cache written only in the policy" in readme
    inputs = YAML(typ="safe").load((REPO / "action.yml").read_text())["inputs"]
    for name in ("cache-from", "cache-to"):
        assert "type=gha cache" in inputs[name]["description"], name
        assert "only when" in inputs[name]["description"], name
