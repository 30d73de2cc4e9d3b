"""Review (issue 17, least-privilege part of the image gate): regression tests for defects
found in review. Each was an xfail(strict) until fixed."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.support.layouts import make_layout

from modelseal.findings import GateResult, Status
from modelseal.imagegate.history import Attribution
from modelseal.imagegate.secretlike import redact, secret_kind
from modelseal.imagegate.user import runtime_user
from modelseal.imagegate.view import ImageView
from modelseal.oci import OciLayout
from modelseal.pipeline import Context, RunOptions, SourceDateEpoch
from modelseal.policy import load_policy_text

ROOT = "root:x:0:0::/root:/bin/sh\n"


def _tar(*members: tuple[str, str, int, int, int, bytes | str]) -> bytes:
    """``(name, kind f|d|l|h, mode, uid, gid, data-or-linkname)`` members, in order."""
    buf = io.BytesIO()
    types = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
             "h": tarfile.LNKTYPE}  # fmt: skip
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, uid, gid, extra in members:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.mode, info.uid, info.gid = mode, uid, gid
            data = extra if isinstance(extra, bytes) else b""
            if kind in "lh":
                assert isinstance(extra, str)
                info.linkname = extra
            info.size = len(data) if kind == "f" else 0
            tar.addfile(info, io.BytesIO(data) if kind == "f" else None)
    return buf.getvalue()


def _ctx(tmp_path: Path, policy: str = "") -> Context:
    loaded = load_policy_text(
        "version: 1\nmodels:\n  enabled: false\n  image_paths: {m: /app/model}\n" + policy, "p.yml"
    )
    ctx = Context(policy=loaded, options=RunOptions(context=tmp_path),
                  epoch=SourceDateEpoch(0, "x"), work_dir=tmp_path / "work",
                  out_dir=tmp_path / "out")  # fmt: skip
    ctx.results["build"] = GateResult("build", Status.PASSED)
    return ctx


def _view(tmp_path: Path, user: str | None, *layers: bytes) -> ImageView:
    layout, digest = make_layout(tmp_path / "oci", list(layers))
    config = {"config": {} if user is None else {"User": user}}
    return ImageView(_ctx(tmp_path), layout, "linux/amd64", digest, layout.manifest(digest), config)


def _etc(passwd: str, group: str = "root:x:0:\n") -> bytes:
    return _tar(("etc", "d", 0o755, 0, 0, b""), ("etc/passwd", "f", 0o644, 0, 0, passwd.encode()),
                ("etc/group", "f", 0o644, 0, 0, group.encode()))  # fmt: skip


# --- (1) the runtime user: fail-open against runc's GetExecUser --------------------------------


@pytest.mark.parametrize("user", ["0", "", None])
def test_numeric_user_is_a_uid_never_a_name(tmp_path: Path, user: str | None) -> None:
    # runc (libcontainer/user.GetExecUser): "If the userArg is numeric, always treat it as a
    # UID"; an empty User matches u.Uid == 0. No entry has uid 0 here → runc runs uid 0.
    view = _view(tmp_path, user, _etc("0:x:1000:1000::/home/z:/bin/sh\n"))
    assert runtime_user(view).is_root


def test_passwd_lines_are_trimmed_as_runc_does(tmp_path: Path) -> None:
    passwd = ROOT + " app:x:0:0::/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    assert runtime_user(_view(tmp_path, "app", _etc(passwd))).is_root


def test_a_short_passwd_line_is_uid_0_as_in_runc(tmp_path: Path) -> None:
    passwd = ROOT + "app:x\napp:x:1000:1000::/home/app:/bin/sh\n"
    assert runtime_user(_view(tmp_path, "app", _etc(passwd))).is_root


# --- (2) model-writable missed ------------------------------------------------------------------

APP = ROOT + "app:x:1000:1000::/home/app:/bin/sh\n"


def test_the_directory_holding_a_symlinked_model_path_is_checked(tmp_path: Path) -> None:
    from modelseal.imagegate.files import collect

    image = _tar(
        ("app", "d", 0o755, 1000, 1000, b""),  # owned by the runtime user
        ("app/model", "l", 0o777, 0, 0, "/opt/m"),
        ("opt", "d", 0o755, 0, 0, b""),
        ("opt/m", "d", 0o755, 0, 0, b""),
        ("opt/m/w.bin", "f", 0o644, 0, 0, b"w"),
    )  # fmt: skip
    found = collect(_view(tmp_path, "app", _etc(APP), image))
    assert any(f.id == "image.model-writable" for f in found), [(f.id, f.subject) for f in found]


def test_a_hardlink_that_chowns_a_model_file_is_reported(tmp_path: Path) -> None:
    from modelseal.imagegate.files import collect

    image = _tar(
        ("app", "d", 0o755, 0, 0, b""),
        ("app/model", "d", 0o755, 0, 0, b""),
        ("app/model/w.bin", "f", 0o644, 0, 0, b"w"),
        ("tmp2", "d", 0o755, 0, 0, b""),
        ("tmp2/h", "h", 0o644, 1000, 1000, "app/model/w.bin"),  # same inode, chowned to app
    )  # fmt: skip
    found = collect(_view(tmp_path, "app", _etc(APP), image))
    assert ("image.model-writable", "/app/model/w.bin") in {(f.id, f.subject) for f in found}


# --- (1) secrets: detection and redaction -------------------------------------------------------


@pytest.mark.parametrize("name", ["PGPASSWORD", "MYSQL_PWD", "dbPassword", "githubToken"])
def test_well_known_password_variables_look_like_secrets(name: str) -> None:
    assert secret_kind(name, "hunter2")


def test_a_build_argument_with_spaces_is_redacted_whole() -> None:
    # BuildKit: strings.Join(["|1", "PASSPHRASE=" + v, "/bin/sh", "-c", cmd], " ")
    shown = redact("RUN |1 PASSPHRASE=correct horse battery staple /bin/sh -c make")
    assert "horse" not in shown and "staple" not in shown, shown


# --- (1) Trivy's secret scan narrowed by the environment ----------------------------------------

KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(["MIIEpAIBAAKCAQEA" + "q" * 48] + ["A" * 64] * 20)
    + "\n-----END RSA PRIVATE KEY-----\n"
)


def _trivy_view(tmp_path: Path, path: str = "app/id_rsa") -> ImageView:
    """A single-platform layout with a config (Trivy needs one) and a private key at ``path``."""
    root = tmp_path / "oci"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return f"sha256:{d}"

    parts = path.split("/")
    dirs = [("/".join(parts[:k]), "d", 0o755, 0, 0, b"") for k in range(1, len(parts))]
    tar = _tar(*dirs, (path, "f", 0o600, 0, 0, KEY.encode()))
    diff = put(tar)
    config = {"architecture": "amd64", "os": "linux", "config": {"User": "1000"},
              "rootfs": {"type": "layers", "diff_ids": [diff]},
              "history": [{"created_by": "COPY id_rsa /app/id_rsa # buildkit"}]}  # fmt: skip
    cdata = json.dumps(config).encode()
    cdig = put(cdata)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                   "size": len(cdata)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff,
                    "size": len(tar)}],
    }).encode()  # fmt: skip
    mdig = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
         "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"}}]}))  # fmt: skip
    layout = OciLayout(root)
    ctx = _ctx(tmp_path, f"trivy:\n  db:\n    mode: offline\n    cache_dir: {tmp_path / 'tc'}\n")
    return ImageView(ctx, layout, "linux/amd64", mdig, layout.manifest(mdig), config)


def test_the_secret_scan_finds_the_key_in_the_crafted_layer(tmp_path: Path) -> None:
    """The control for the test below: with a clean environment the key is found."""
    from modelseal.imagegate.secrets import collect

    found = collect(_trivy_view(tmp_path))
    assert [f.subject for f in found if f.id == "image.secret"] == ["/app/id_rsa"]


@pytest.mark.parametrize(
    ("var", "value"),
    [("TRIVY_SKIP_FILES", "app/id_rsa"), ("TRIVY_SKIP_DIRS", "app"),
     ("TRIVY_SEVERITY", "LOW")],
)  # fmt: skip
def test_trivy_environment_cannot_narrow_the_secret_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    from modelseal.errors import Error
    from modelseal.imagegate.secrets import collect

    monkeypatch.setenv(var, value)
    try:
        found = collect(_trivy_view(tmp_path))
    except Error:
        return  # refusing to run narrowed is fine (fail closed)
    assert [f.subject for f in found if f.id == "image.secret"] == ["/app/id_rsa"]


# --- (3) attribution -----------------------------------------------------------------------------


def test_an_env_line_is_blamed_only_for_the_names_it_sets() -> None:
    from modelseal.imagebuild.dockerfile import parse_dockerfile

    text = "FROM base\nENV HF_TOKEN=hf_x\nRUN true\nENV TOKEN_VARIABLE=HF_TOKEN\n"
    stage = tuple(parse_dockerfile(text, "Dockerfile", build_args={}).instructions[1:])
    at = Attribution((), stage, "Dockerfile")
    assert at.instruction("ENV", "HF_TOKEN")[0] == "Dockerfile:2"


# --- round 2 -------------------------------------------------------------------------------------


def test_a_model_file_symlinked_to_a_user_owned_file_is_reported(tmp_path: Path) -> None:
    from modelseal.imagegate.files import collect

    image = _tar(
        ("app", "d", 0o755, 0, 0, b""),
        ("app/model", "d", 0o755, 0, 0, b""),
        ("home", "d", 0o755, 0, 0, b""),
        ("home/app", "d", 0o755, 1000, 1000, b""),
        ("home/app/w.bin", "f", 0o644, 1000, 1000, b"w"),
        ("app/model/w.bin", "l", 0o777, 0, 0, "/home/app/w.bin"),
    )  # fmt: skip
    found = collect(_view(tmp_path, "app", _etc(APP), image))
    assert any(f.id == "image.model-writable" for f in found), [(f.id, f.subject) for f in found]


@pytest.mark.parametrize("path", [
    "usr/local/lib/python3.11/site-packages/app/id_rsa",  # where a pip-installed app lives
    "app/tests/id_rsa", "app/examples/id_rsa", "usr/lib/app/id_rsa", "app/README.md",
])  # fmt: skip
def test_a_key_in_an_allow_listed_tree_is_found(tmp_path: Path, path: str) -> None:
    from modelseal.imagegate.secrets import collect

    found = collect(_trivy_view(tmp_path, path))
    assert [f.subject for f in found if f.id == "image.secret"] == ["/" + path]


def test_an_exposed_port_is_blamed_on_the_line_that_exposes_it(tmp_path: Path) -> None:
    from modelseal.imagegate.config import collect
    from modelseal.imagegate.history import text_digest

    text = "FROM base\nEXPOSE 22\nRUN true\nEXPOSE 8080\n"
    (tmp_path / "Dockerfile").write_text(text)
    ctx = _ctx(tmp_path, "image:\n  allowed_ports: ['8080']\n")
    ctx.results["build"] = GateResult("build", Status.PASSED,
                                      facts={"dockerfile.sha256": text_digest(text)})  # fmt: skip
    layout, digest = make_layout(tmp_path / "oci", [_etc(APP)])
    config = {"config": {"User": "app", "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}},
                         "Healthcheck": {"Test": ["CMD", "true"]}}}  # fmt: skip
    view = ImageView(ctx, layout, "linux/amd64", digest, layout.manifest(digest), config)
    (port,) = [f for f in collect(view) if f.id == "image.exposed-port"]
    assert port.subject == "port 22/tcp"
    assert port.location != "Dockerfile:4", "blamed on EXPOSE 8080"


def test_classic_builder_build_arguments_are_redacted() -> None:
    shown = redact("|1 NPM_AUTH=s3cr3tvalue /bin/sh -c npm ci")
    assert "s3cr3tvalue" not in shown, shown


@pytest.mark.engine
def test_a_real_image_with_user_0_and_a_passwd_entry_named_0_fails(
    busybox_base: str, tmp_path: Path
) -> None:
    from tests.imagegate.test_image_gate import _policy, _run

    ctx = tmp_path / "ctx"
    (ctx / "etc").mkdir(parents=True)
    (ctx / "etc" / "passwd").write_text("0:x:1000:1000::/home/z:/bin/sh\n")
    (ctx / "etc" / "group").write_text("root:x:0:\n")
    (ctx / "Dockerfile").write_text("FROM base\nCOPY etc/ /etc/\nUSER 0\n")
    run = _run(ctx, _policy(tmp_path), busybox_base)
    assert run.outcomes().get(("image.root-user", "USER")) == "fail", run.outcomes()
    assert run.code == 1, run.logs
