"""Review r17: the runtime user (modelseal.imagegate.user) against runc's ``GetExecUser``
(moby/sys/user): a numeric ``USER`` part is always an id, matched against the uid/gid column
only, never against names; passwd/group lines are ``strings.TrimSpace``d before they are split.
Where modelseal answers a non-root uid for an image runc starts as root, the runtime profile
(and its signed attestation, and the exported admission rule) claims a privilege the image does
not keep. Each test documents a defect (xfail strict) until fixed."""

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


@pytest.mark.xfail(strict=True, reason="review: USER '0' (or no USER) matched by NAME against a "
                   "passwd user called '0' with uid 1000: profile says non-root, runc runs uid 0")  # fmt: skip
@pytest.mark.parametrize("user", ["0", ""])
def test_review_numeric_user_is_an_id_not_a_name(tmp_path: Path, user: str) -> None:
    passwd = "0:x:1000:1000::/:/bin/sh\nroot:x:0:0:root:/root:/bin/sh\n"
    view = _view(tmp_path, user, passwd)
    # runc: Atoi("0") succeeds, so only entries with Uid == 0 match: root, uid 0.
    assert runtime_user(view).uid == 0
    assert runtime_profile(view).non_root is False


@pytest.mark.xfail(strict=True, reason="review: runc trims passwd lines; ' app:x:0:0' is app "
                   "(uid 0) to runc, skipped here in favour of a later app:x:1000 line")  # fmt: skip
def test_review_passwd_lines_are_trimmed_as_runc_does(tmp_path: Path) -> None:
    passwd = " app:x:0:0::/:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    view = _view(tmp_path, "app", passwd)
    assert runtime_user(view).uid == 0
    assert runtime_profile(view).security_context()["runAsNonRoot"] is False


@pytest.mark.xfail(strict=True, reason="review: USER 'app:0' matched against a group NAMED '0' "
                   "(gid 1000): the profile's runAsGroup is 1000, runc runs gid 0")  # fmt: skip
def test_review_numeric_group_is_a_gid_not_a_name(tmp_path: Path) -> None:
    passwd = "app:x:1000:1000::/app:/bin/sh\n"
    view = _view(tmp_path, "app:0", passwd, group="0:x:1000:\nroot:x:0:\n")
    assert runtime_user(view).gid == 0


@pytest.mark.xfail(strict=True, reason="review: USER '+0' is uid 0 to runc (strconv.Atoi takes "
                   "a sign) and has no passwd entry; here it is 'not in /etc/passwd'")  # fmt: skip
def test_review_signed_numeric_user_is_uid_0(tmp_path: Path) -> None:
    view = _view(tmp_path, "+0", "root:x:0:0:root:/root:/bin/sh\n")
    u = runtime_user(view)
    # fail closed today (no uid, a problem), but the problem text is wrong: the image does
    # start, as root; a report telling the user "the container cannot start" misleads.
    assert u.uid == 0 and not u.problem


@pytest.mark.xfail(strict=True, reason="review: profile.py and README ('the image gate's user "
                   "check refuses such images by default', image.require_non_root) describe a "
                   "check that does not exist: a root image passes every image-gate collector")  # fmt: skip
def test_review_the_image_gate_refuses_a_root_image(tmp_path: Path) -> None:
    from modelseal.gates import resolve
    from modelseal.imagegate.gate import COLLECTORS
    from modelseal.imagegate.rules import image_rule
    from modelseal.judge import Outcome

    view = _view(tmp_path, "", "root:x:0:0:root:/root:/bin/sh\n")
    assert runtime_user(view).is_root
    findings = [f for ref in COLLECTORS for f in resolve(ref)(view)]  # type: ignore[operator]
    policy = view.ctx.policy.policy
    assert any(image_rule(policy, f).outcome is Outcome.FAIL for f in findings), findings


def test_review_numeric_user_matches_passwd_by_value(tmp_path: Path) -> None:
    view = _view(
        tmp_path, "01000", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    )
    u = runtime_user(view)
    assert (u.uid, u.gid, u.name) == (1000, 1000, "app")
    assert runtime_profile(view).security_context()["runAsGroup"] == 1000
