#!/usr/bin/env python3
"""`make demo`: the whole modelseal pipeline on examples/app, offline, on this machine.

1. a Docker engine: the one DOCKER_HOST points at if it answers, else a private dockerd that
   this script starts (containerd image store, no network) and stops again at the end;
2. the example's base image, built locally from Debian packages into an OCI layout (no registry);
3. a Trivy DB snapshot and an OSV service generated locally from real advisories;
4. a local OCI registry on 127.0.0.1 and an ephemeral ECDSA P-256 signing key (inside GitHub
   Actions, where an OIDC identity exists, the signing is keyless Sigstore instead);
5. `modelseal run` on examples/app under examples/modelseal.yml, publishing to that registry
   (push by digest, signature, SLSA provenance + SBOM + scan-report attestations, then the tag);
6. `modelseal verify` on the published image, as a deployer would;
7. `modelseal rebuild`: a third party (its own key) rebuilds the published image on a fresh
   private engine from a clean clone of this repository and the image's signed provenance, gets
   the same digest and attaches a signed rebuild attestation; `modelseal verify
   --require-rebuild-by` then passes only because that rebuild agrees. In keyless mode (GitHub
   Actions) the "rebuilder" signs with the same workflow identity as the image signer: that
   shows the mechanics, not independence — a real third party is another workflow or identity
   (workflows-examples/rebuild.yml);
8. where every output is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def main() -> int:
    from modelseal.errors import Error

    sys.path.insert(0, str(REPO))  # examples.offline
    try:
        with ExitStack() as stack:
            return _demo(stack)
    except (Error, DemoError) as e:
        text = e.diagnostics() if isinstance(e, Error) else str(e)
        print(f"modelseal demo: {text}", file=sys.stderr)
        return 3


class DemoError(Exception):
    """A demo step failed; the message says which."""


def _script(path: Path, *args: str, what: str) -> str:
    """Run one of the examples' scripts (its progress on stderr); its last stdout line."""
    proc = subprocess.run(
        [sys.executable, str(path), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise DemoError(f"{what} failed (see above).")
    return proc.stdout.strip().splitlines()[-1]


def _demo(stack: ExitStack) -> int:
    from examples.offline.osv_server import start_osv_server
    from examples.offline.registry import RegistryStartError, local_registry

    from modelseal.imagebuild.engine import engine_session
    from modelseal.sign.key import generate_ephemeral_key

    say("Docker engine")
    print(
        stack.enter_context(engine_session(Path(tempfile.gettempdir()) / "modelseal-demo-engine"))
    )

    say("Base image (Debian bookworm python3, built locally into an OCI layout)")
    base_ref = _script(HERE / "base" / "build_base.py", "--out", str(OUT / "base"),
                       what="building the base image")  # fmt: skip
    print(f"base: {base_ref}")

    say("Vulnerability DB snapshot (generated locally: real advisories, no network)")
    cache = OUT / "cache"
    os.environ["MODELSEAL_CACHE_DIR"] = str(cache)
    db = _script(HERE / "offline" / "trivydb.py", "--cache-dir", str(cache / "trivy"),
                 what="writing the Trivy DB snapshot")  # fmt: skip
    print(f"trivy DB: {db}")

    say("Local OSV service (real advisory records from examples/offline, on 127.0.0.1:8765)")
    try:
        osv_url, _ = stack.enter_context(start_osv_server(port=8765))
    except OSError as e:
        raise DemoError(f"cannot listen on 127.0.0.1:8765 ({e.strerror}).") from None
    print(f"serving {osv_url}")

    say("Local OCI registry (Debian's docker-registry on 127.0.0.1) and a signing key")
    try:
        host = stack.enter_context(local_registry(OUT / "registry"))
    except RegistryStartError as e:
        raise DemoError(str(e)) from None
    image = f"{host}/seal/example"
    keyless = os.environ.get("GITHUB_ACTIONS") == "true" and bool(
        os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    )
    if keyless:
        sign = ["--sign", "keyless"]
        who = [
            "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com",
            "--certificate-identity-regexp", "^https://github.com/.*$",
        ]  # fmt: skip
    else:
        private, public = generate_ephemeral_key(OUT / "keys")
        sign = ["--sign", "key", "--key", str(private)]
        who = ["--key", str(public)]
        print(f"registry {host}; ephemeral key {private.relative_to(REPO)} (0600)")

    say(f"modelseal run examples/app --push {image}:demo")
    code = subprocess.run(
        [
            sys.executable, "-m", "modelseal", "run", str(HERE / "app"),
            "--policy", str(HERE / "modelseal.yml"),
            "--build-context", f"base={base_ref}",
            "--out-dir", str(OUT / "seal"),
            "--push", f"{image}:demo", *sign,
        ],
        check=False, cwd=REPO,
    ).returncode  # fmt: skip
    if code == 0:
        say(f"modelseal verify {image}:demo")
        code = subprocess.run(
            [sys.executable, "-m", "modelseal", "verify", f"{image}:demo", *who],
            check=False, cwd=REPO,
        ).returncode  # fmt: skip
    if code == 0:
        code = _rebuild(f"{image}:demo", base_ref, who, keyless)

    say("Where everything is")
    for label, rel in (
        ("OCI image layout", "seal/oci"),
        ("SBOM (CycloneDX 1.6)", "seal/sbom.cdx.json"),
        ("model inventory", "seal/models.json"),
        ("report (JSON)", "seal/report.json"),
        ("job summary (Markdown)", "seal/summary.md"),
        ("SARIF", "seal/modelseal.sarif"),
        ("build log", "seal/build.log"),
        ("SLSA provenance", "seal/provenance.intoto.json"),
        ("signature bundles", "seal/bundles"),
        ("publish record", "seal/publish.json"),
        ("rebuild report", "rebuild/rebuild.json"),
        ("rebuild attestation", "rebuild/rebuild.sigstore.json"),
    ):
        path = OUT / rel
        mark = "" if path.exists() else "  (not written)"
        print(f"  {label:<24} {path.relative_to(REPO)}{mark}")
    print(f"\nmodelseal exited with {code}.")
    return code


def _rebuild(image: str, base_ref: str, who: list[str], keyless: bool) -> int:
    """Step 7: an independent rebuild of the published image, attested, then required."""
    from modelseal.sign.key import generate_ephemeral_key

    source = OUT / "rebuild-source"
    say("A third party rebuilds it: a clean clone of this repository at the recorded commit")
    if not (REPO / ".git").exists():
        raise DemoError(
            f"{REPO} is not a git checkout, so the image's provenance names no commit to "
            "rebuild from; clone the repository (git clone) and run `make demo` there."
        )
    subprocess.run(["rm", "-rf", "--", str(source)], check=True)
    clone = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(source)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if clone.returncode != 0:
        raise DemoError(f"git clone {REPO} failed: {clone.stderr.strip()[-300:]}")
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "examples/app"],
        check=False, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if dirty:
        print("note: examples/app has uncommitted changes; the image was built from them, the "
              "rebuild from the commit, so their digests will differ.")  # fmt: skip
    if keyless:
        workflow_ref = os.environ.get("GITHUB_WORKFLOW_REF", "")
        sign = ["--sign", "keyless"]
        rebuilder = [f"https://github.com/{workflow_ref}"]
        print(
            "note: keyless mode: this rebuild signs as the same workflow identity that signed "
            "the image, so it is not independent of it — it shows the mechanics only. A real "
            "third party rebuilds under another workflow or identity "
            "(workflows-examples/rebuild.yml), and verify requires that identity."
        )
    else:
        private, public = generate_ephemeral_key(OUT / "rebuilder-keys")
        sign = ["--sign", "key", "--signing-key", str(private)]
        rebuilder = [f"key:{public}"]
        print(f"the rebuilder's own ephemeral key: {private.relative_to(REPO)}")
    say(f"modelseal rebuild {image} --source {source.relative_to(REPO)} (fresh private engine)")
    code = subprocess.run(
        [
            sys.executable, "-m", "modelseal", "rebuild", image,
            "--source", str(source), "--build-context", f"base={base_ref}",
            *who, "-o", str(OUT / "rebuild"), "--attest", "--push", *sign,
        ],
        check=False, cwd=REPO,
    ).returncode  # fmt: skip
    if code != 0:
        return code
    say(f"modelseal verify {image} --require-rebuild-by {rebuilder[0]}")
    issuer = (
        ["--rebuild-oidc-issuer", "https://token.actions.githubusercontent.com"] if keyless else []
    )
    return subprocess.run(
        [sys.executable, "-m", "modelseal", "verify", image, *who,
         "--require-rebuild-by", rebuilder[0], *issuer],
        check=False, cwd=REPO,
    ).returncode  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
