"""The image gate on real BuildKit images: the runtime user, setuid files, world-writable files
and directories, a model the runtime user may change, secrets in a layer (also one a later layer
deletes), a secret-looking environment variable, a port the policy does not allow — each next
to a passing counterpart — and every finding naming the Dockerfile line that made it. The
secrets themselves appear in no report, SARIF, summary or log."""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.support import EPOCH, REPO
from tests.support.model_files import safetensors_bytes

pytestmark = pytest.mark.engine

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nmodels:x:2000:app\n"


def _token(prefix: str, n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass
class Run:
    code: int
    out: Path
    report: dict[str, Any]
    logs: str

    def decisions(self, id: str | None = None) -> list[dict[str, Any]]:
        """The image gate's findings, each with the judge's ``outcome``."""
        (image,) = [g for g in self.report["gates"] if g["gate"] == "image"]
        assert image["evidence"]["status"] == "PASSED", image["evidence"]["error"]
        findings = image["evidence"]["findings"]
        out = [{"finding": findings[o["index"]], "outcome": o["decision"]}
               for o in image["decision"]["outcomes"] if o["from"] == "evidence"]  # fmt: skip
        assert len(out) == len(findings)
        return [d for d in out if id is None or d["finding"]["id"] == id]

    def outcomes(self) -> dict[tuple[str, str], str]:
        return {(d["finding"]["id"], d["finding"]["subject"]): d["outcome"]
                for d in self.decisions()}  # fmt: skip

    def one(self, id: str, subject: str) -> dict[str, Any]:
        (d,) = [d for d in self.decisions(id) if d["finding"]["subject"] == subject]
        return d["finding"]  # type: ignore[no-any-return]


def _run(ctx: Path, policy: str, base: str, **env: str) -> Run:
    """``modelseal run`` (build and image gates) as a user runs it, its output captured."""
    (ctx / "modelseal.yml").write_text(policy)
    out = ctx.parent / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "modelseal", "run", ".", "--gate", "build", "--gate", "image",
         "-o", str(out), "--build-context", f"base={base}", "--source-date-epoch", str(EPOCH)],
        capture_output=True, text=True, cwd=ctx, env={**os.environ, "PYTHONPATH": str(REPO / "src"), **env}, timeout=900, check=False,
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    return Run(proc.returncode, out, report, proc.stdout + proc.stderr)


def _policy(root: Path, extra: str = "") -> str:
    return (
        "version: 1\nbuild:\n  rebuild_check: false\n"
        "models:\n  enabled: false\n  image_paths: {model: /app/model, extra: /app/extra}\n"
        f"trivy:\n  db:\n    mode: offline\n    cache_dir: {root / 'trivy-cache'}\n"
        "image:\n  allowed_ports: ['8080/tcp']\n" + extra
    )


def _context(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "etc").mkdir(parents=True)
    (ctx / "etc" / "passwd").write_text(PASSWD)
    (ctx / "etc" / "group").write_text(GROUP)
    (ctx / "model").mkdir()
    (ctx / "model" / "w.safetensors").write_bytes(safetensors_bytes([1.0, 2.0]))
    (ctx / "extra").mkdir()
    (ctx / "extra" / "x.safetensors").write_bytes(safetensors_bytes([3.0]))
    (ctx / "tool").write_text("#!/bin/sh\necho tool\n")
    return ctx


@dataclass
class Planted:
    key_line: str  # one line of the private key's base64 body
    github: str
    hf: str


@pytest.fixture(scope="module")
def bad(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Planted]:
    root = tmp_path_factory.mktemp("image-bad")
    ctx = _context(root)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    planted = Planted(key.splitlines()[5], _token("ghp_", 36), _token("hf_", 34))
    (ctx / "key.pem").write_text(key)
    (ctx / "app.ini").write_text(f"[github]\ntoken = {planted.github}\n")
    (ctx / "Dockerfile").write_text(
        "FROM base\n"  # 1
        "COPY etc/ /etc/\n"  # 2
        "COPY --chown=1000:1000 model/ /app/model/\n"  # 3: the model owned by the runtime user
        "COPY --chmod=0666 extra/ /app/extra/\n"  # 4: a world-writable model file
        "COPY --chmod=4755 tool /usr/local/bin/tool\n"  # 5: setuid
        "RUN mkdir -p /data && chmod 0777 /data && chmod 1777 /tmp\n"  # 6
        "COPY key.pem /root/key.pem\n"  # 7: a secret ...
        "RUN rm /root/key.pem\n"  # 8: ... deleted by a later layer
        "COPY app.ini /app/app.ini\n"  # 9: a secret that stays
        f"ENV HF_TOKEN={planted.hf} TOKENIZERS_PARALLELISM=false\n"  # 10
        "EXPOSE 8080 22\n"  # 11
        "USER app\n"  # 12
    )
    return _run(ctx, _policy(root), busybox_base), planted


@pytest.fixture(scope="module")
def good(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("image-good")
    ctx = _context(root)
    (ctx / "Dockerfile").write_text(
        "FROM base\n"
        "COPY etc/ /etc/\n"
        "COPY model/ /app/model/\n"
        "COPY extra/ /app/extra/\n"
        # Accepted by image.allow_setuid / allow_world_writable globs below.
        "COPY --chmod=4755 tool /usr/local/bin/tool\n"
        "RUN mkdir -p /data/shared && chmod 0777 /data/shared && chmod 1777 /tmp\n"
        "ENV HF_HOME=/cache TOKENIZERS_PARALLELISM=false PASSWORD_FILE=/run/secrets/pw\n"
        "EXPOSE 8080\n"
        'HEALTHCHECK CMD ["/bin/sh", "-c", "exit 0"]\n'
        "USER app:models\n"
    )
    extra = (
        "  require_healthcheck: true\n  allow_setuid: [usr/local/bin/tool]\n"
        "  allow_world_writable: ['data/*']\n"
    )
    return _run(ctx, _policy(root, extra), busybox_base)


def test_a_clean_image_passes_with_accepted_exceptions(good: Run) -> None:
    assert good.code == 0, good.logs
    assert good.outcomes() == {
        ("image.setuid", "/usr/local/bin/tool"): "ignored",
        ("image.world-writable", "/data/shared"): "ignored",
        # The models gate is off here, so no lock vouches for the model files: the payload
        # check reports them (a warning under the default model_files_outside_lock).
        ("image.model-file", "/app/model/w.safetensors"): "warn",
        ("image.model-file", "/app/extra/x.safetensors"): "warn",
    }


def test_the_findings_of_a_bad_image(bad: tuple[Run, Planted]) -> None:
    run, _ = bad
    assert run.code == 1, run.logs
    assert run.outcomes() == {
        # /app too: COPY --chown made it (the parent of the model) the user's, so it could
        # move the model aside and put another in its place.
        # The models gate is off here: no lock vouches for the model files (see good's).
        ("image.model-file", "/app/model/w.safetensors"): "warn",
        ("image.model-file", "/app/extra/x.safetensors"): "warn",
        ("image.model-writable", "/app"): "fail",
        ("image.model-writable", "/app/model"): "fail",
        ("image.model-writable", "/app/model/w.safetensors"): "fail",
        ("image.model-writable", "/app/extra/x.safetensors"): "fail",
        ("image.world-writable", "/app/extra/x.safetensors"): "fail",
        ("image.setuid", "/usr/local/bin/tool"): "fail",
        ("image.world-writable", "/data"): "fail",
        ("image.secret", "/root/key.pem"): "fail",
        ("image.secret", "/app/app.ini"): "fail",
        ("image.secret-env", "env:HF_TOKEN"): "fail",
        # Trivy finds the token in the config too (in Env and in the ENV history entry).
        ("image.secret-config", "image config"): "fail",
        ("image.exposed-port", "port 22/tcp"): "fail",
        ("image.no-healthcheck", "HEALTHCHECK"): "warn",
    }


def test_findings_name_the_dockerfile_line_that_made_them(bad: tuple[Run, Planted]) -> None:
    run, _ = bad
    lines = {
        ("image.model-writable", "/app/model/w.safetensors"): 3,
        ("image.model-writable", "/app"): 3,  # where its owner changed, not a later COPY below
        ("image.world-writable", "/app/extra/x.safetensors"): 4,
        ("image.setuid", "/usr/local/bin/tool"): 5,
        ("image.world-writable", "/data"): 6,
        ("image.secret", "/root/key.pem"): 7,
        ("image.secret", "/app/app.ini"): 9,
        ("image.secret-env", "env:HF_TOKEN"): 10,
        ("image.exposed-port", "port 22/tcp"): 11,
    }
    for (id, subject), line in lines.items():
        f = run.one(id, subject)
        assert f["location"] == f"Dockerfile:{line}", f
        assert f["evidence"]["dockerfile_line"] == f"Dockerfile:{line}", f
    # The layer, too, for what is in a layer.
    key = run.one("image.secret", "/root/key.pem")
    assert key["evidence"]["created_by"] == "COPY key.pem /root/key.pem"
    assert key["evidence"]["diff_id"].startswith("sha256:")
    assert key["evidence"]["deleted"].startswith("yes")
    assert "deleted" not in run.one("image.secret", "/app/app.ini")["evidence"]
    # SARIF points at the Dockerfile line.
    sarif = json.loads((run.out / "modelseal.sarif").read_text())
    located = {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
         r["locations"][0]["physicalLocation"].get("region", {}).get("startLine"))
        for r in sarif["runs"][0]["results"]
    }  # fmt: skip
    assert ("image/image.setuid", "Dockerfile", 5) in located
    assert ("image/image.secret", "Dockerfile", 7) in located


def test_no_secret_reaches_a_report_or_the_log(bad: tuple[Run, Planted]) -> None:
    run, planted = bad
    assert run.decisions("image.secret")  # found ...
    # ... and carried by every report ...
    assert "image.secret" in (run.out / "summary.md").read_text()
    assert "image/image.secret" in (run.out / "modelseal.sarif").read_text()
    for t in _texts(run):
        for s in (planted.key_line, planted.github, planted.hf):
            assert s not in t  # ... but never shown
    env = run.one("image.secret-env", "env:HF_TOKEN")["evidence"]
    assert env["kind"] == "Hugging Face token"
    assert env["length"] == str(len(planted.hf))


@pytest.fixture(scope="module")
def root_user(busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("image-root")
    ctx = _context(root)
    (ctx / "Dockerfile").write_text("FROM base\nCOPY etc/ /etc/\nCOPY model/ /app/model/\n")
    return _run(ctx, _policy(root), busybox_base)


def test_no_user_means_root_and_fails(root_user: Run) -> None:
    assert root_user.code == 1, root_user.logs
    outcomes = root_user.outcomes()
    assert outcomes[("image.root-user", "USER")] == "fail"
    # The model check is the root finding's: nothing else is reported about it.
    assert not any(id == "image.model-writable" for id, _ in outcomes)


def test_the_example_image_passes_the_image_gate(example_base: str, tmp_path: Path) -> None:
    # `make demo`'s image under `make demo`'s policy: a non-root user, a read-only model, only
    # the ports the policy lists, no secret anywhere.
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "modelseal", "run", "examples/app", "--policy",
         "examples/modelseal.yml", "--gate", "build", "--gate", "image", "-o", str(out),
         "--build-context", f"base={example_base}", "--source-date-epoch", str(EPOCH)],
        capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"),
             "MODELSEAL_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = Run(proc.returncode, out, json.loads((out / "report.json").read_text()), "")
    assert {k: v for k, v in run.outcomes().items() if v != "ignored"} == {
        ("image.no-healthcheck", "HEALTHCHECK"): "warn",
        # models-image is not selected here, so nothing leaves the model paths to it: the
        # payload check scans the model too (benign: a model file no lock vouches for here).
        ("image.model-file", "/app/model/model.safetensors"): "warn",
    }


def test_without_trivy_the_gate_errors(busybox_base: str, tmp_path: Path) -> None:
    # Fail closed: a secret scan that could not run is never "no secrets".
    ctx = _context(tmp_path)
    (ctx / "Dockerfile").write_text("FROM base\nCOPY etc/ /etc/\nUSER app\n")
    run = _run(ctx, _policy(tmp_path), busybox_base, MODELSEAL_TRIVY=str(tmp_path / "no-trivy"))
    assert run.code == 3, run.logs
    (image,) = [g for g in run.report["gates"] if g["gate"] == "image"]
    assert image["evidence"]["status"] == "ERRORED"
    assert "trivy" in image["evidence"]["error"]


def _texts(run: Run) -> list[str]:
    """The run's log and every file it wrote but the image's blobs."""
    texts = [run.logs]
    for p in run.out.rglob("*"):
        if p.is_file() and not p.is_symlink() and "blobs" not in p.parts:
            texts.append(p.read_bytes().decode("utf-8", "replace"))
    return texts


def test_trivy_settings_from_the_environment_cannot_leak_a_secret(
    busybox_base: str, tmp_path: Path
) -> None:
    # TRIVY_EXIT_CODE=1 makes Trivy exit 1 when it finds something, with the JSON report (and
    # the secrets in it) on stdout and nothing on stderr: an error quoting "the output" would
    # publish the secret. The secret scan sets its own exit code.
    ctx = _context(tmp_path)
    token = _token("ghp_", 36)
    (ctx / "app.ini").write_text(f"token = {token}\n")
    (ctx / "Dockerfile").write_text("FROM base\nCOPY etc/ /etc/\nCOPY app.ini /app.ini\nUSER app\n")
    run = _run(ctx, _policy(tmp_path), busybox_base, TRIVY_EXIT_CODE="1")
    assert run.code == 1, run.logs
    assert run.outcomes() == {("image.secret", "/app.ini"): "fail",
                              ("image.no-healthcheck", "HEALTHCHECK"): "warn"}  # fmt: skip
    assert not any(token in t for t in _texts(run))
