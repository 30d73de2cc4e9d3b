"""The runtime profile the image gate writes (modelseal.imagegate.profile, .user), from real
BuildKit images: a root image, a numeric USER, a named USER and group resolved through the
image's /etc/passwd and /etc/group, a name the image does not know; the profile's docker flags
run the image in the private engine with exactly that privilege."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.tools import docker_cli

from modelseal.findings import GateResult, Status
from modelseal.imagebuild.gate import BuildGate
from modelseal.imagegate import user
from modelseal.imagegate.gate import ImageGate
from modelseal.imagegate.profile import PROFILE_FILE, profile_sha256
from modelseal.pipeline import RunOptions, SourceDateEpoch, run_pipeline
from modelseal.policy import load_policy_text

pytestmark = pytest.mark.engine

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:model server:/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nmodels:x:2000:app\n"


@dataclass
class Run:
    image: GateResult
    profile: dict[str, object]
    out: Path
    context: Path


def _run(
    busybox_base: str, root: Path, dockerfile: str, policy_extra: str = "",
    files: dict[str, str] | None = None,
) -> Run:  # fmt: skip
    ctx = root / "ctx"
    ctx.mkdir(parents=True)
    for name, text in {"passwd": PASSWD, "group": GROUP, **(files or {})}.items():
        (ctx / name).write_text(text)
    (ctx / "Dockerfile").write_text("FROM base\n" + dockerfile)
    policy = load_policy_text(
        "version: 1\nbuild:\n  rebuild_check: false\n" + policy_extra, "policy.yml"
    )
    options = RunOptions(
        context=ctx, build_contexts={"base": busybox_base}, source_date_epoch=EPOCH,
        out_dir=root / "out",
    )  # fmt: skip
    res = run_pipeline(
        [BuildGate(), ImageGate()], policy, options, SourceDateEpoch(EPOCH, "option")
    )
    results = {r.gate: r for r in res.results}
    assert results["build"].status is Status.PASSED, results["build"].error
    image = results["image"]
    assert image.status is Status.PASSED, image.error
    path = image.artifacts["runtime_profile"]
    assert path == root / "out" / PROFILE_FILE
    profile = json.loads(path.read_text())
    assert image.facts["runtime_profile.sha256"] == profile_sha256(profile)
    return Run(image, profile, root / "out", ctx)


@pytest.fixture(scope="module")
def root_image(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(busybox_base, tmp_path_factory.mktemp("root"), "EXPOSE 80 8080/tcp\n")


@pytest.fixture(scope="module")
def numeric_image(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(
        busybox_base, tmp_path_factory.mktemp("numeric"),
        "EXPOSE 8080\nVOLUME /data\nUSER 1234:5678\n",
        "image:\n  runtime:\n    writable_paths: [/tmp, /var/cache/model/../hf]\n"
        "    add_capabilities: [NET_RAW]\n",
    )  # fmt: skip


@pytest.fixture(scope="module")
def named_image(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(
        busybox_base, tmp_path_factory.mktemp("named"),
        "COPY passwd group /etc/\nUSER app:models\n",
    )  # fmt: skip


def test_root_image_gets_a_profile_that_claims_no_non_root(root_image: Run) -> None:
    p = root_image.profile
    assert p["nonRoot"] is False
    assert p["user"] == {"configured": "", "uid": 0, "gid": 0, "name": None}
    sc = p["kubernetes"]["securityContext"]  # type: ignore[index]
    assert sc == {
        "runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0,
        "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "privileged": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    # port 80 needs no capability: the sysctl lets the process bind it
    assert p["exposedPorts"] == ["80/tcp", "8080/tcp"]
    assert p["kubernetes"]["podSecurityContext"] == {  # type: ignore[index]
        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]
    }
    assert p["docker"]["run"] == [  # type: ignore[index]
        "--user", "0:0", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:mode=1777",
        "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
    ]  # fmt: skip


def test_numeric_user_volumes_and_policy_knobs(numeric_image: Run) -> None:
    p = numeric_image.profile
    assert p["nonRoot"] is True
    # no /etc/passwd in the image: the numeric uid and gid stand for themselves
    assert p["user"] == {"configured": "1234:5678", "uid": 1234, "gid": 5678, "name": None}
    sc = p["kubernetes"]["securityContext"]  # type: ignore[index]
    assert (sc["runAsNonRoot"], sc["runAsUser"], sc["runAsGroup"]) == (True, 1234, 5678)
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    # the image's VOLUME and the policy's paths (cleaned), each an emptyDir
    assert p["writablePaths"] == ["/data", "/tmp", "/var/cache/hf"]
    k8s = p["kubernetes"]
    assert k8s["volumeMounts"] == [  # type: ignore[index]
        {"name": "writable-0", "mountPath": "/data"},
        {"name": "writable-1", "mountPath": "/tmp"},
        {"name": "writable-2", "mountPath": "/var/cache/hf"},
    ]
    assert k8s["volumes"][0] == {"name": "writable-0", "emptyDir": {}}  # type: ignore[index]
    assert "podSecurityContext" not in k8s  # type: ignore[operator]
    assert p["docker"]["run"][:2] == ["--user", "1234:5678"]  # type: ignore[index]
    assert p["docker"]["run"][5:7] == ["--cap-add", "NET_RAW"]  # type: ignore[index]


def test_named_user_and_group_resolve_through_the_image_files(named_image: Run) -> None:
    p = named_image.profile
    assert p["user"] == {"configured": "app:models", "uid": 1000, "gid": 2000, "name": "app"}
    assert p["nonRoot"] is True
    sc = p["kubernetes"]["securityContext"]  # type: ignore[index]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (1000, 2000)


def test_a_user_the_image_does_not_know_gets_no_uid(busybox_base: str, tmp_path: Path) -> None:
    run = _run(busybox_base, tmp_path, "COPY passwd group /etc/\nUSER ghost\n")
    p = run.profile
    assert p["nonRoot"] is False
    assert p["user"] == {
        "configured": "ghost", "uid": None, "gid": None, "name": None,
        "problem": "user ghost is not in the image's /etc/passwd",
    }  # fmt: skip
    sc = p["kubernetes"]["securityContext"]  # type: ignore[index]
    assert sc["runAsNonRoot"] is False and "runAsUser" not in sc
    assert "--user" not in p["docker"]["run"]  # type: ignore[operator]
    # a known name with an unknown group
    run = _run(busybox_base, tmp_path / "g", "COPY passwd group /etc/\nUSER app:nogroup\n")
    assert run.profile["nonRoot"] is False
    assert run.profile["user"]["problem"] == (  # type: ignore[index]
        "group nogroup is not in the image's /etc/group"
    )


def test_the_profile_docker_flags_run_the_image_with_that_privilege(
    named_image: Run, busybox_base: str
) -> None:
    """The flags work with the real docker: uid/gid as stated, the root filesystem read-only,
    the writable path writable, no capability left."""
    docker = docker_cli()
    tag = "modelseal-test/profile-named:1"
    build = subprocess.run(
        [docker, "buildx", "build", "--load", "-t", tag, "--build-context",
         f"base={busybox_base}", str(named_image.context)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    flags = named_image.profile["docker"]["run"]  # type: ignore[index]
    script = (
        "busybox id -u; busybox id -g; "
        "(touch /x 2>/dev/null && echo root-writable || echo root-read-only); "
        "touch /tmp/ok && echo tmp-writable; busybox grep CapEff /proc/self/status"
    )
    proc = subprocess.run(
        [docker, "run", "--rm", "--network", "none", *flags, tag, "sh", "-c", script],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[:4] == ["1000", "2000", "root-read-only", "tmp-writable"], proc.stdout
    assert proc.stdout.strip().endswith("0000000000000000"), proc.stdout


def test_the_root_profile_flags_lower_the_port_sysctl_and_drop_every_capability(
    root_image: Run, busybox_base: str
) -> None:
    docker = docker_cli()
    tag = "modelseal-test/profile-root:1"
    build = subprocess.run(
        [docker, "buildx", "build", "--load", "-t", tag, "--build-context",
         f"base={busybox_base}", str(root_image.context)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    flags = root_image.profile["docker"]["run"]  # type: ignore[index]
    script = (
        "busybox id -u; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
        "busybox grep CapBnd /proc/self/status"
    )
    proc = subprocess.run(
        [docker, "run", "--rm", "--network", "none", *flags, tag, "sh", "-c", script],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "80", "CapBnd:", "0000000000000000"], proc.stdout


def test_the_image_files_are_read_inside_the_image_and_bounded(
    busybox_base: str, tmp_path: Path
) -> None:
    """/etc/passwd through a symlink inside the image is read; one over the size limit
    resolves nothing (never a guess); an entry whose uid is no number is uid 0, as runc reads
    it (Go's Atoi error ignored): root."""
    run = _run(
        busybox_base, tmp_path / "link",
        "COPY passwd /srv/users\nCOPY group /etc/group\n"
        "RUN mkdir -p /etc && ln -s ../srv/users /etc/passwd\nUSER app\n",
    )  # fmt: skip
    assert run.profile["user"] == {"configured": "app", "uid": 1000, "gid": 1000, "name": "app"}
    huge = PASSWD + "#" * user.MAX_FILE_BYTES
    run = _run(busybox_base, tmp_path / "big", "COPY huge /etc/passwd\nUSER app\n",
               files={"huge": huge})  # fmt: skip
    assert run.profile["user"]["problem"] == (  # type: ignore[index]
        f"/etc/passwd is {len(huge)} bytes; at most {user.MAX_FILE_BYTES} are read"
    )
    run = _run(busybox_base, tmp_path / "bad", "COPY bad /etc/passwd\nUSER app\n",
               files={"bad": "app:x:1e3:0::/:/bin/sh\n"})  # fmt: skip
    assert run.profile["user"] == {"configured": "app", "uid": 0, "gid": 0, "name": "app"}
    assert run.profile["nonRoot"] is False


def test_platforms_that_need_different_profiles_get_none(tmp_path: Path) -> None:
    import types
    from typing import cast

    from modelseal.findings import Finding
    from modelseal.imagegate.profile import write_profile
    from modelseal.pipeline import Context

    ctx = cast("Context", types.SimpleNamespace(out_dir=tmp_path))
    a = {"version": 1, "nonRoot": True, "user": {"uid": 1000}}
    made = write_profile(ctx, {"linux/amd64": a, "linux/arm64": a | {"nonRoot": False}})
    assert isinstance(made, Finding) and made.id == "image.runtime_profile"
    assert made.evidence["platforms"] == "linux/amd64 uid 1000, linux/arm64 root"
    assert not (tmp_path / PROFILE_FILE).exists()
    path, sha = write_profile(ctx, {"linux/amd64": a, "linux/arm64": dict(a)})  # type: ignore[misc]
    assert json.loads(path.read_text()) == a and sha == profile_sha256(a)


def test_an_empty_user_is_uid_0_looked_up_in_the_image(busybox_base: str, tmp_path: Path) -> None:
    """runc reads no USER as "0": the passwd entry of uid 0 names it and gives its group."""
    run = _run(busybox_base, tmp_path, "COPY passwd /etc/passwd\n",
               files={"passwd": "toor:x:0:7:root:/root:/bin/sh\n"})  # fmt: skip
    assert run.profile["user"] == {"configured": "", "uid": 0, "gid": 7, "name": "toor"}
    assert run.profile["nonRoot"] is False
