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
7. where every output is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def main() -> int:
    from modelseal.engine import PrivateEngine, probe_engine
    from modelseal.errors import Error

    engine: PrivateEngine | None = None
    say("Docker engine")
    try:
        if os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists():
            try:
                info = probe_engine()
                print(f"using the engine at {info.docker_host} (Docker {info.server_version})")
            except Error:
                info = None
        else:
            info = None
        if info is None:
            engine = PrivateEngine(Path(tempfile.gettempdir()) / "modelseal-demo-engine").start()
            os.environ["DOCKER_HOST"] = engine.docker_host
            print(f"started a private engine: DOCKER_HOST={engine.docker_host}")
    except Error as e:
        print(f"modelseal demo: {e.diagnostics()}", file=sys.stderr)
        return 3
    try:
        say("Base image (Debian bookworm python3, built locally into an OCI layout)")
        base = subprocess.run(
            [sys.executable, str(HERE / "base" / "build_base.py"), "--out", str(OUT / "base")],
            stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        if base.returncode != 0:
            print("modelseal demo: the base image could not be built (see above).", file=sys.stderr)
            return 3
        base_ref = base.stdout.strip().splitlines()[-1]
        print(f"base: {base_ref}")

        say("Vulnerability DB snapshot (generated locally: real advisories, no network)")
        cache = OUT / "cache"
        os.environ["MODELSEAL_CACHE_DIR"] = str(cache)
        db = subprocess.run(
            [sys.executable, str(HERE / "offline" / "trivydb.py"), "--cache-dir", str(cache / "trivy")],
            stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        if db.returncode != 0:
            print("modelseal demo: the Trivy DB snapshot could not be written.", file=sys.stderr)
            return 3
        print(f"trivy DB: {db.stdout.strip().splitlines()[-1]}")

        say("Local OSV service (real advisory records from examples/offline, on 127.0.0.1:8765)")
        sys.path.insert(0, str(REPO))
        import threading

        from examples.offline.osv_server import DEFAULT_RECORDS, make_server

        try:
            osv = make_server(DEFAULT_RECORDS, 8765)
        except OSError as e:
            print(
                f"modelseal demo: cannot listen on 127.0.0.1:8765 ({e.strerror}).", file=sys.stderr
            )
            return 3
        threading.Thread(target=osv.serve_forever, daemon=True).start()
        print("serving http://127.0.0.1:8765")

        say("Local OCI registry (Debian's docker-registry on 127.0.0.1) and a signing key")
        from contextlib import ExitStack

        from examples.offline.registry import RegistryStartError, local_registry

        from modelseal.sign.key import generate_ephemeral_key

        stack = ExitStack()
        try:
            host = stack.enter_context(local_registry(OUT / "registry"))
        except RegistryStartError as e:
            print(f"modelseal demo: {e}", file=sys.stderr)
            return 3
        image = f"{host}/seal/example"
        keyless = os.environ.get("GITHUB_ACTIONS") == "true" and bool(
            os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
        )
        sign = ["--sign", "keyless"] if keyless else []
        public = None
        if not keyless:
            private, public = generate_ephemeral_key(OUT / "keys")
            sign = ["--sign", "key", "--key", str(private)]
            print(f"registry {host}; ephemeral key {private.relative_to(REPO)} (0600)")
        with stack:
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
                who = (
                    ["--key", str(public)]
                    if public is not None
                    else [
                        "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com",
                        "--certificate-identity-regexp", "^https://github.com/.*$",
                    ]
                )  # fmt: skip
                code = subprocess.run(
                    [sys.executable, "-m", "modelseal", "verify", f"{image}:demo", *who],
                    check=False,
                    cwd=REPO,
                ).returncode

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
        ):
            path = OUT / rel
            mark = "" if path.exists() else "  (not written)"
            print(f"  {label:<24} {path.relative_to(REPO)}{mark}")
        print(f"\nmodelseal exited with {code}.")
        return code
    finally:
        if engine is not None:
            engine.stop(remove=True)


if __name__ == "__main__":
    raise SystemExit(main())
