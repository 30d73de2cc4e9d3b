"""Review r17: the runtime user (modelseal.imagegate.user) against runc's ``GetExecUser``
(moby/sys/user): a numeric ``USER`` part is always an id, matched against the uid/gid column
only, never against names; passwd/group lines are ``strings.TrimSpace``d before they are split.
Where modelseal answers a non-root uid for an image runc starts as root, the runtime profile
(and its signed attestation, and the exported admission rule) claims a privilege the image does
not keep. Each test was a strict xfail until fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import EPOCH
from tests.support.layouts import M, layer, make_layout

from modelseal.imagegate.profile import runtime_profile
from modelseal.imagegate.user import runtime_user
from modelseal.imagegate.view import ImageView
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text


def _view(tmp_path: Path, user: str, passwd: str, group: str = "root:x:0:\n") -> ImageView:
    ctx = Context(
        policy=load_policy_text("version: 1\n", "policy.yml"), options=RunOptions(context=tmp_path),
        epoch=SourceDateEpoch(EPOCH, "x"), work_dir=tmp_path / "work", out_dir=tmp_path / "out",
    )  # fmt: skip
    ctx.work_dir.mkdir()
    layout, digest = make_layout(
        tmp_path / "oci",
        [layer(M("etc/passwd", data=passwd.encode()), M("etc/group", data=group.encode()))],
    )
    return ImageView(ctx, layout, "linux/amd64", digest, {}, {"config": {"User": user}})


@pytest.mark.parametrize("user", ["0", ""])
def test_review_numeric_user_is_an_id_not_a_name(tmp_path: Path, user: str) -> None:
    passwd = "0:x:1000:1000::/:/bin/sh\nroot:x:0:0:root:/root:/bin/sh\n"
    view = _view(tmp_path, user, passwd)
    # runc: Atoi("0") succeeds, so only entries with Uid == 0 match: root, uid 0.
    assert runtime_user(view).uid == 0
    assert runtime_profile(view).non_root is False


def test_review_passwd_lines_are_trimmed_as_runc_does(tmp_path: Path) -> None:
    passwd = " app:x:0:0::/:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    view = _view(tmp_path, "app", passwd)
    assert runtime_user(view).uid == 0
    assert runtime_profile(view).security_context()["runAsNonRoot"] is False


def test_review_numeric_group_is_a_gid_not_a_name(tmp_path: Path) -> None:
    passwd = "app:x:1000:1000::/app:/bin/sh\n"
    view = _view(tmp_path, "app:0", passwd, group="0:x:1000:\nroot:x:0:\n")
    assert runtime_user(view).gid == 0


def test_review_signed_numeric_user_is_uid_0(tmp_path: Path) -> None:
    view = _view(tmp_path, "+0", "root:x:0:0:root:/root:/bin/sh\n")
    u = runtime_user(view)
    # fail closed today (no uid, a problem), but the problem text is wrong: the image does
    # start, as root; a report telling the user "the container cannot start" misleads.
    assert u.uid == 0 and not u.problem


def test_review_the_image_gate_refuses_a_root_image(tmp_path: Path) -> None:
    from modelseal.findings import GateResult, Status
    from modelseal.imagegate import config
    from modelseal.imagegate.gate import COLLECTORS
    from modelseal.imagegate.rules import image_rule
    from modelseal.judge import Outcome

    view = _view(tmp_path, "", "root:x:0:0:root:/root:/bin/sh\n")
    # The gate requires build (its history names the Dockerfile line of each finding).
    view.ctx.results["build"] = GateResult("build", Status.PASSED)
    assert runtime_user(view).is_root
    # The user check is the config collector's (the others need Trivy and a real image).
    assert "modelseal.imagegate.config:collect" in COLLECTORS
    findings = config.collect(view)
    policy = view.ctx.policy.policy
    assert any(
        f.id == "image.root-user" and image_rule(policy, f).outcome is Outcome.FAIL
        for f in findings
    ), findings


def test_review_numeric_user_matches_passwd_by_value(tmp_path: Path) -> None:
    view = _view(
        tmp_path, "01000", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    )
    u = runtime_user(view)
    assert (u.uid, u.gid, u.name) == (1000, 1000, "app")
    assert runtime_profile(view).security_context()["runAsGroup"] == 1000


APP = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"


@pytest.mark.parametrize(
    ("user", "passwd", "group", "expected"),
    [
        # strconv.Atoi: a sign is part of a number; a number is only an id.
        ("+1000", APP, "", (1000, 1000, "app")),
        ("1000:+5", APP, "", (1000, 5, "app")),
        # An empty part is unset: "app:" is app; ":2000" is uid 0 (by uid) with gid 2000.
        ("app:", APP, "", (1000, 1000, "app")),
        (":2000", APP, "models:x:2000:\n", (0, 2000, "root")),
        # passwd lines: a "#" line is an entry (its uid field missing: 0), found by uid 0 first.
        ("", "# base image\n" + APP, "", (0, 0, "# base image")),
        # A missing or non-numeric uid field is 0 (Go's Atoi errors are ignored).
        ("app", "app\n" + APP, "", (0, 0, "app")),
        ("app", "app:x:abc:1000::/:/bin/sh\n" + APP, "", (0, 1000, "app")),
        # Trimmed as bytes.TrimSpace trims: CR LF line ends, a leading no-break space.
        ("app", "app:x:1000:1000\r\n", "", (1000, 1000, "app")),
        ("app", "\u00a0app:x:0:0::/:/bin/sh\n" + APP, "", (0, 0, "app")),
        # /etc/group: a "#" line is a comment; ids of entries are matched by value.
        ("app:7", APP, "#seven:x:7:\nseven:x:007:\n", (1000, 7, "app")),
    ],
)
def test_runc_user_resolution_details(
    tmp_path: Path, user: str, passwd: str, group: str, expected: tuple[int, int, str]
) -> None:
    u = runtime_user(_view(tmp_path, user, passwd, group or "root:x:0:\n"))
    assert (u.uid, u.gid, u.name, u.problem) == (*expected, "")


@pytest.mark.parametrize(
    ("user", "passwd", "group", "problem"),
    [
        ("-1", APP, "", "uid -1 is out of range"),
        ("2147483648", APP, "", "out of range"),
        ("app:-5", APP, "", "gid -5 is out of range"),
        ("app:#g", APP, "#g:x:5:\n", "group #g is not in the image's /etc/group"),
        # runc's bufio.Scanner stops at a 64 KiB line: the container does not start.
        ("app", APP + "x" * 70_000 + "\n", "", "longer than 65535 bytes"),
        # A name is never matched against the uid column.
        ("1000x", APP, "", "user 1000x is not in"),
    ],
)
def test_runc_user_resolution_errors(
    tmp_path: Path, user: str, passwd: str, group: str, problem: str
) -> None:
    view = _view(tmp_path, user, passwd, group or "root:x:0:\n")
    u = runtime_user(view)
    assert problem in u.problem and u.gid is None
    assert runtime_profile(view).non_root is False
