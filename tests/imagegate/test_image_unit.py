"""The image gate's parts that need no engine: resolving the runtime user on crafted layouts,
what looks like a secret and how history text is shown without it, the history ↔ Dockerfile
line pairing, the rules, and the policy keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.layouts import M, layer, make_layout

from modelseal.errors import ConfigError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.imagegate.history import final_stage, layer_origins
from modelseal.imagegate.rules import image_rule
from modelseal.imagegate.secretlike import REDACTED, redact, secret_kind
from modelseal.imagegate.user import RuntimeUser, runtime_user
from modelseal.imagegate.view import ImageView
from modelseal.judge import Outcome
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text

PASSWD = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n# c\nbad:x:zz:1::/:/\n"
GROUP = b"root:x:0:\napp:x:1001:\nmodels:x:2000:other,app\nvideo:x:44:other\n"


def _view(tmp_path: Path, user: str | None, files: dict[str, bytes]) -> ImageView:
    members = [M("etc", "d")] + [M(name, "f", data) for name, data in files.items()]
    layout, digest = make_layout(tmp_path / "oci", [layer(*members)])
    policy = load_policy_text("version: 1\n", "p.yml")
    ctx = Context(policy=policy, options=RunOptions(context=tmp_path),
                  epoch=SourceDateEpoch(0, "x"), work_dir=tmp_path / "work",
                  out_dir=tmp_path / "out")  # fmt: skip
    ctx.results["build"] = GateResult("build", Status.PASSED)
    config = {"config": {} if user is None else {"User": user}}
    return ImageView(ctx, layout, "linux/amd64", digest, layout.manifest(digest), config)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, RuntimeUser("", 0, 0, "root")),
        ("", RuntimeUser("", 0, 0, "root")),
        ("app", RuntimeUser("app", 1000, 1001, "app", "", (2000,))),
        ("1000", RuntimeUser("1000", 1000, 1001, "app", "", (2000,))),
        ("app:video", RuntimeUser("app:video", 1000, 44, "app", "", (2000,))),
        ("app:0", RuntimeUser("app:0", 1000, 0, "app", "", (2000,))),
        # Numeric and not listed: runc runs it with that uid and gid 0.
        ("4242", RuntimeUser("4242", 4242, 0, None)),
        ("4242:4243", RuntimeUser("4242:4243", 4242, 4243, None)),
        ("0", RuntimeUser("0", 0, 0, "root")),
        ("root", RuntimeUser("root", 0, 0, "root")),
    ],
)
def test_the_runtime_user_resolves_as_runc_does(
    tmp_path: Path, user: str | None, expected: RuntimeUser
) -> None:
    view = _view(tmp_path, user, {"etc/passwd": PASSWD, "etc/group": GROUP})
    assert runtime_user(view) == expected
    # Read from the spool of the shared pass: the layer was decompressed once.
    assert dict(view.fs.reads) == {0: 1}


@pytest.mark.parametrize(
    ("user", "files", "problem"),
    [
        ("ghost", {"etc/passwd": PASSWD}, "user ghost is not in the image's /etc/passwd"),
        ("app", {}, "user app is not in the image's /etc/passwd"),
        ("app:ghosts", {"etc/passwd": PASSWD, "etc/group": GROUP},
         "group ghosts is not in the image's /etc/group"),
        ("99999999999", {"etc/passwd": PASSWD}, "uid 99999999999 is out of range"),
    ],
)  # fmt: skip
def test_a_user_the_runtime_cannot_resolve_is_a_problem(
    tmp_path: Path, user: str, files: dict[str, bytes], problem: str
) -> None:
    got = runtime_user(_view(tmp_path, user, files))
    # The gid is never known; the uid may be (a listed user with an unknown group).
    assert got.gid is None and got.problem
    assert problem in got.problem


def test_who_may_write_what() -> None:
    app = RuntimeUser("app", 1000, 1001, "app", "", (2000,))
    assert app.can_write(1000, 0, 0o444)  # the owner may chmod
    assert app.can_write(0, 0, 0o666)  # world-writable
    assert app.can_write(0, 2000, 0o664)  # a supplementary group
    assert app.can_write(0, 1001, 0o775)
    assert not app.can_write(0, 1001, 0o755)
    assert not app.can_write(0, 0, 0o644)
    assert RuntimeUser("", 0, 0, "root").can_write(5, 5, 0o400)


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("HF_TOKEN", "x" * 8, "secret-like name"),
        ("DB_PASSWORD", "hunter2", "secret-like name"),
        ("OPENAI_API_KEY", "abc", "secret-like name"),
        ("aws_secret_access_key", "abc", "secret-like name"),
        ("MODEL", "hf_" + "a" * 34, "Hugging Face token"),
        ("X", "ghp_" + "a" * 36, "GitHub token"),
        ("X", "AKIA" + "A" * 16, "AWS access key id"),
        ("DATABASE_URL", "postgres://u:pw@db/x", "URL with a password"),
        # Not secrets: a pointer to one, an empty value, a word that only starts like one.
        ("PASSWORD_FILE", "/run/secrets/pw", ""),
        ("HF_TOKEN", "", ""),
        ("TOKENIZERS_PARALLELISM", "false", ""),
        ("MAX_NEW_TOKENS", "512", ""),
        ("PWD", "/app", ""),
        # A keyword glued to the word before it, or ending a camelCase word.
        ("PGPASSWORD", "hunter2", "secret-like name"),
        ("MYSQL_PWD", "hunter2", "secret-like name"),
        ("dbPassword", "hunter2", "secret-like name"),
        ("githubToken", "abc", "secret-like name"),
        ("apiKey", "abc", "secret-like name"),
        ("passwordFile", "/run/secrets/pw", ""),
        ("PATH", "/usr/bin:/bin", ""),
        ("SECRETARY", "bob", ""),
        ("DATABASE_URL", "postgres://db/x", ""),
    ],
)
def test_what_looks_like_a_secret(name: str, value: str, kind: str) -> None:
    assert secret_kind(name, value) == kind


def test_history_text_is_shown_without_secrets() -> None:
    token = "ghp_" + "b" * 36
    assert redact(f"RUN |2 SOURCE_DATE_EPOCH=1 TOKEN={token} /bin/sh -c make") == (
        f"RUN |2 {REDACTED} /bin/sh -c make"
    )
    assert redact(f"RUN /bin/sh -c curl -H 'Authorization: {token}' x") == (
        f"RUN /bin/sh -c curl -H 'Authorization: {REDACTED}' x"
    )
    assert redact("ENV DB_PASSWORD=hunter2 MODE=prod") == f"ENV DB_PASSWORD={REDACTED} MODE=prod"
    assert redact("COPY a /b") == "COPY a /b"


@pytest.mark.parametrize(
    ("created_by", "shown"),
    [
        # BuildKit writes build-argument values unquoted: a value may hold spaces, even a shell.
        ("RUN |1 PASS=correct horse battery staple /bin/sh -c make",
         f"RUN |1 {REDACTED} /bin/sh -c make"),
        ("RUN |1 PASS=a /bin/sh -c b /bin/sh -c make", f"RUN |1 {REDACTED} /bin/sh -c make"),
        ("RUN |2 A=x y B=z /bin/bash -o pipefail -c make",
         f"RUN |2 {REDACTED} /bin/bash -o pipefail -c make"),
        # No shell to tell the command from the values (exec form): all of it is redacted.
        ("RUN |1 PASS=correct horse python x.py", f"RUN |1 {REDACTED}"),
        # The classic builder's form.
        ("|1 NPM_AUTH=s3cr3t v /bin/sh -c npm ci", f"|1 {REDACTED} /bin/sh -c npm ci"),
        ("|1 NPM_AUTH=s3cr3t", f"|1 {REDACTED}"),
    ],
)  # fmt: skip
def test_build_arguments_are_redacted_whatever_their_values(created_by: str, shown: str) -> None:
    assert redact(created_by) == shown


def _history(*created: str) -> dict[str, object]:
    return {"history": [
        {"created_by": c.removeprefix("-"), **({"empty_layer": True} if c.startswith("-") else {})}
        for c in created
    ]}  # fmt: skip


def test_layers_pair_with_the_final_stage_lines_from_the_end() -> None:
    config = _history(
        "COPY rootfs/ / # buildkit", "-CMD [\"/bin/sh\"]",  # the base image
        "-ARG SOURCE_DATE_EPOCH",  # what the build gate adds after each FROM
        "WORKDIR /app", "COPY a /app/a # buildkit", "-ENV X=1",
        "RUN |1 SOURCE_DATE_EPOCH=1 /bin/sh -c make # buildkit", "-USER 1",
    )  # fmt: skip
    dockerfile = "FROM base\nWORKDIR /app\n\nCOPY a /app/a\nENV X=1\nRUN make \\\n  all\nUSER 1\n"
    origins = layer_origins(config, 4, final_stage(dockerfile, "Dockerfile"), "Dockerfile")
    assert [(o.line, o.location) for o in origins] == [
        (0, "layer 1"), (2, "Dockerfile:2"), (4, "Dockerfile:4"), (6, "Dockerfile:6"),
    ]  # fmt: skip
    assert origins[0].created_by == "COPY rootfs/ /"
    assert origins[3].created_by == f"RUN |1 {REDACTED} /bin/sh -c make"
    # A Dockerfile that does not line up (another file, edited since): created_by only.
    other = layer_origins(
        config, 4, final_stage("FROM base\nCOPY x /x\nRUN y\nUSER 1\n", "Dockerfile"), "Dockerfile"
    )
    assert [o.line for o in other] == [0, 0, 0, 0]
    # History that does not pair with the layers: nothing is guessed.
    short = layer_origins(config, 3, final_stage(dockerfile, "D"), "D")
    assert [o.created_by for o in short] == ["", "", ""]


def _finding(id: str, subject: str = "x") -> Finding:
    return Finding("image", id, Severity.HIGH, "t", subject)


@pytest.mark.parametrize(
    ("policy", "id", "subject", "outcome"),
    [
        ("", "image.root-user", "USER", Outcome.FAIL),
        ("require_non_root: false", "image.root-user", "USER", Outcome.WARN),
        ("require_non_root: false", "image.user-unresolved", "USER", Outcome.WARN),
        ("", "image.no-healthcheck", "HEALTHCHECK", Outcome.WARN),
        ("require_healthcheck: true", "image.no-healthcheck", "HEALTHCHECK", Outcome.FAIL),
        ("", "image.exposed-port", "port 22/tcp", Outcome.FAIL),
        ("allow_setuid: [usr/bin/*]", "image.setuid", "/usr/bin/passwd", Outcome.IGNORED),
        ("allow_setuid: [usr/bin/*]", "image.setuid", "/usr/local/bin/x", Outcome.FAIL),
        ("allow_world_writable: [data]", "image.world-writable", "/data", Outcome.IGNORED),
        ("allow_world_writable: [data]", "image.world-writable", "/data/x", Outcome.FAIL),
        ("allow_world_writable: ['**']", "image.model-writable", "/app/model", Outcome.FAIL),
        ("", "image.secret", "/app/app.ini", Outcome.FAIL),
        ("secrets: warn", "image.secret", "/app/app.ini", Outcome.WARN),
        ("secrets_ignore: ['usr/lib/*/tests/*']", "image.secret",
         "/usr/lib/p/tests/key.pem", Outcome.IGNORED),
        ("secrets_ignore: ['env:HF_*']", "image.secret-env", "env:HF_TOKEN", Outcome.IGNORED),
        ("secrets: warn", "image.secret-config", "image config", Outcome.WARN),
        ("", "image.findings-truncated", "image.setuid", Outcome.FAIL),
        ("secrets: warn", "image.something-new", "x", Outcome.FAIL),  # unknown: fails
    ],
)  # fmt: skip
def test_the_rules(policy: str, id: str, subject: str, outcome: Outcome) -> None:
    text = "version: 1\nimage:\n  " + policy + "\n" if policy else "version: 1\n"
    loaded = load_policy_text(text, "p.yml")
    assert image_rule(loaded.policy, _finding(id, subject)).outcome is outcome


def test_allowed_ports_are_normalized_and_checked() -> None:
    pol = load_policy_text("version: 1\nimage:\n  allowed_ports: ['8080', 53/UDP]\n", "p.yml")
    assert pol.policy.image.allowed_ports == ["8080/tcp", "53/udp"]
    for bad in ("0", "70000", "80/icmp", "http"):
        with pytest.raises(ConfigError, match="allowed_ports"):
            load_policy_text(f"version: 1\nimage:\n  allowed_ports: ['{bad}']\n", "p.yml")


def _tar(*members: tuple[str, str, int, int, int]) -> bytes:
    """A layer of ``(name, kind f|d, mode, uid, gid)`` members."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, uid, gid in members:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if kind == "d" else tarfile.REGTYPE
            info.mode, info.uid, info.gid = mode, uid, gid
            data = PASSWD if name == "etc/passwd" else GROUP if name == "etc/group" else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _files_view(tmp_path: Path, user: str, *layers: bytes, policy: str = "") -> ImageView:
    layout, digest = make_layout(tmp_path / "oci", list(layers))
    loaded = load_policy_text(
        "version: 1\nmodels:\n  enabled: false\n  image_paths: {m: /app/model}\n" + policy, "p.yml"
    )
    ctx = Context(policy=loaded, options=RunOptions(context=tmp_path),
                  epoch=SourceDateEpoch(0, "x"), work_dir=tmp_path / "work",
                  out_dir=tmp_path / "out")  # fmt: skip
    ctx.results["build"] = GateResult("build", Status.PASSED)
    return ImageView(ctx, layout, "linux/amd64", digest, layout.manifest(digest),
                     {"config": {"User": user}})  # fmt: skip


BASE = _tar(("etc", "d", 0o755, 0, 0), ("etc/passwd", "f", 0o644, 0, 0),
            ("etc/group", "f", 0o644, 0, 0))  # fmt: skip


def test_file_permissions_on_a_crafted_image(tmp_path: Path) -> None:
    from modelseal.imagegate.files import collect

    app = _tar(
        ("bin", "d", 0o755, 0, 0),
        ("bin/su", "f", 0o4755, 0, 0),  # setuid
        ("bin/wall", "f", 0o2755, 0, 5),  # setgid
        ("bin/ok", "f", 0o755, 0, 0),
        ("tmp", "d", 0o1777, 0, 0),  # sticky: not reported
        ("scratch", "d", 0o777, 0, 0),  # world-writable directory
        ("app", "d", 0o755, 0, 0),
        ("app/model", "d", 0o775, 0, 2000),  # group-writable, the user is in group 2000
        ("app/model/a.bin", "f", 0o644, 0, 0),
        ("app/model/b.bin", "f", 0o444, 1000, 0),  # owned by the user (it may chmod)
        ("app/model/c.bin", "f", 0o664, 0, 1001),  # writable by the user's primary group
        ("app/model/d.bin", "f", 0o664, 0, 44),  # a group the user is not in
    )  # fmt: skip
    view = _files_view(tmp_path, "app", BASE, app)
    found = {(f.id, f.subject) for f in collect(view)}
    assert found == {
        ("image.setuid", "/bin/su"), ("image.setuid", "/bin/wall"),
        ("image.world-writable", "/scratch"),
        ("image.model-writable", "/app/model"), ("image.model-writable", "/app/model/b.bin"),
        ("image.model-writable", "/app/model/c.bin"),
    }  # fmt: skip
    f = next(f for f in collect(view) if f.subject == "/bin/wall")
    assert f.evidence["mode"] == "2755" and f.evidence["gid"] == "5"
    assert f.evidence["layer"] == "2" and f.location == "layer 2"  # no Dockerfile to name


def test_a_directory_changes_its_layer_only_when_its_owner_or_mode_does(tmp_path: Path) -> None:
    from modelseal.imagegate.files import collect

    first = _tar(("app", "d", 0o755, 1000, 1000), ("app/model", "d", 0o755, 0, 0))
    same = _tar(("app", "d", 0o755, 1000, 1000), ("app/x", "f", 0o644, 0, 0))
    view = _files_view(tmp_path, "app", BASE, first, same)
    (f,) = [f for f in collect(view) if f.subject == "/app"]
    assert f.id == "image.model-writable" and f.evidence["layer"] == "2"


def test_findings_of_one_kind_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelseal.imagegate import files

    monkeypatch.setattr(files, "MAX_PER_KIND", 2)
    many = _tar(*((f"w{i}", "f", 0o666, 0, 0) for i in range(5)))
    found = files.collect(_files_view(tmp_path, "0", BASE, many))
    assert [f.id for f in found] == ["image.world-writable"] * 2 + ["image.findings-truncated"]
    assert found[-1].evidence["dropped"] == "3"
    assert (
        image_rule(load_policy_text("version: 1\n", "p").policy, found[-1]).outcome is Outcome.FAIL
    )


def test_the_names_of_one_inode_share_the_last_owner_and_mode(tmp_path: Path) -> None:
    # Runtimes link, then lchown and chmod the new name: the one inode every name shows.
    from tests.imagegate.test_review_r17a import _tar

    from modelseal.imagefs import ImageFs

    image = _tar(
        ("a", "d", 0o755, 0, 0, b""),
        ("a/f", "f", 0o644, 0, 0, b"data"),
        ("a/h1", "h", 0o664, 1000, 1000, "a/f"),
        ("a/h2", "h", 0o600, 2000, 3000, "a/h1"),
        ("a/g", "f", 0o644, 0, 0, b"other"),
    )  # fmt: skip
    layout, digest = make_layout(tmp_path / "oci", [image])
    fs = ImageFs.build(layout, digest)
    shown = {e.path: (e.uid, e.gid, e.mode & 0o7777) for e in fs.walk("a")}
    assert shown == {"a/f": (2000, 3000, 0o600), "a/h1": (2000, 3000, 0o600),
                     "a/h2": (2000, 3000, 0o600), "a/g": (0, 0, 0o644)}  # fmt: skip


def test_config_values_are_blamed_on_the_line_that_sets_them() -> None:
    from modelseal.imagebuild.dockerfile import parse_dockerfile
    from modelseal.imagegate.history import Attribution

    text = (
        "FROM base\n"
        "ENV HF_TOKEN=hf_x\n"
        "ENV HINT HF_TOKEN and DB_PASSWORD\n"  # legacy form: sets HINT only
        'LABEL "a.b"="HF_TOKEN" c=d\n'
        "EXPOSE 8000-8010/tcp 53/udp\n"
        "EXPOSE 22\n"
        "ENV TOKEN_VARIABLE=HF_TOKEN\n"
    )
    stage = tuple(parse_dockerfile(text, "Dockerfile", build_args={}).instructions[1:])
    at = Attribution((), stage, "Dockerfile")
    assert at.instruction("ENV", "HF_TOKEN")[0] == "Dockerfile:2"
    assert at.instruction("ENV", "HINT")[0] == "Dockerfile:3"
    assert at.instruction("ENV", "DB_PASSWORD")[0] == ""  # the base image's
    assert at.instruction("LABEL", "a.b")[0] == "Dockerfile:4"
    assert at.instruction("LABEL", "HF_TOKEN")[0] == ""
    assert at.instruction("EXPOSE", "8005/tcp")[0] == "Dockerfile:5"
    assert at.instruction("EXPOSE", "53/udp")[0] == "Dockerfile:5"
    assert at.instruction("EXPOSE", "22/tcp")[0] == "Dockerfile:6"
    assert at.instruction("EXPOSE", "53/tcp")[0] == ""
    assert at.instruction("EXPOSE", "8011/tcp")[0] == ""


# --- the secret scan: every tree, whatever the environment (needs trivy) -----------------------


@pytest.mark.parametrize("path", [
    "app/vendor/id_rsa", "usr/share/app/id_rsa", "usr/include/id_rsa", "app/locale/id_rsa",
    "usr/local/go/id_rsa", "opt/yarn-v1.22.0/id_rsa", "usr/src/wordpress/id_rsa",
    "var/log/anaconda/id_rsa", "usr/lib/gems/id_rsa", "srv/example.pem", "app/my-test/id_rsa",
])  # fmt: skip
def test_a_key_under_any_of_trivys_allow_listed_trees_is_found(tmp_path: Path, path: str) -> None:
    # Every built-in allow rule of Trivy (secrets.BUILTIN_ALLOW_RULES) is switched off.
    from tests.imagegate.test_review_r17a import _trivy_view

    from modelseal.imagegate.secrets import collect

    found = collect(_trivy_view(tmp_path, path))
    assert [f.subject for f in found if f.id == "image.secret"] == ["/" + path]


@pytest.mark.parametrize(
    ("var", "value"),
    [("TRIVY_SECRET_CONFIG", "narrow.yaml"), ("TRIVY_IGNOREFILE", "ignore"),
     ("TRIVY_OUTPUT", "elsewhere.json"), ("TRIVY_FORMAT", "table"),
     ("TRIVY_SCANNERS", "vuln"), ("TRIVY_SKIP_DIRS", "/app")],
)  # fmt: skip
def test_no_trivy_variable_reaches_the_secret_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    from tests.imagegate.test_review_r17a import _trivy_view

    from modelseal.imagegate.secrets import collect

    # What the variables would point at: a config that disables every rule, an ignore file
    # that drops the rule's findings.
    (tmp_path / "narrow.yaml").write_text("disable-rules: [private-key]\n")
    (tmp_path / "ignore").write_text("private-key\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(var, str(tmp_path / value))
    found = collect(_trivy_view(tmp_path))
    assert [f.subject for f in found if f.id == "image.secret"] == ["/app/id_rsa"]
    assert not (tmp_path / "elsewhere.json").exists()


def test_a_secret_report_past_the_limit_errors_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.imagegate.test_review_r17a import _trivy_view

    from modelseal.errors import ToolError
    from modelseal.imagegate import secrets

    monkeypatch.setattr(secrets, "MAX_REPORT_BYTES", 100)
    with pytest.raises(ToolError, match="larger than the 100 bytes limit"):
        secrets.collect(_trivy_view(tmp_path))
    # The report holds the matched key: not left behind.
    assert not list((tmp_path / "work").glob("secrets-*/secrets.json"))


def test_model_writable_follows_symlinks_to_their_targets_and_the_way_there(tmp_path: Path) -> None:
    from tests.imagegate.test_review_r17a import APP, _etc, _tar
    from tests.imagegate.test_review_r17a import _view as view_of

    from modelseal.imagegate.files import collect

    image = _tar(
        ("app", "d", 0o755, 0, 0, b""),
        ("app/model", "d", 0o755, 0, 0, b""),
        # A directory link below the model path, relative, to a tree whose file the user owns.
        ("app/model/sub", "l", 0o777, 0, 0, "../../srv/weights"),
        ("srv", "d", 0o755, 0, 0, b""),
        ("srv/weights", "d", 0o755, 0, 0, b""),
        ("srv/weights/a.bin", "f", 0o644, 1000, 1000, b"a"),
        # A link through a user-owned directory (the user could re-point /home/app/cur).
        ("home", "d", 0o755, 0, 0, b""),
        ("home/app", "d", 0o755, 1000, 1000, b""),
        ("home/app/cur", "l", 0o777, 0, 0, "/opt/b.bin"),
        ("opt", "d", 0o755, 0, 0, b""),
        ("opt/b.bin", "f", 0o644, 0, 0, b"b"),
        ("app/model/b.bin", "l", 0o777, 0, 0, "/home/app/cur"),
        # A loop and a dangling link: nothing to serve, nothing reported, no hang.
        ("app/model/loop", "l", 0o777, 0, 0, "loop"),
        ("app/model/gone", "l", 0o777, 0, 0, "/nowhere"),
        ("app/model/self", "l", 0o777, 0, 0, "."),
        ("app/model/ok.bin", "f", 0o644, 0, 0, b"ok"),
    )  # fmt: skip
    found = collect(view_of(tmp_path, "app", _etc(APP), image))
    assert sorted(f.subject for f in found if f.id == "image.model-writable") == [
        "/home/app", "/srv/weights/a.bin"
    ]
