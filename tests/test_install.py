"""The install cannot rot: every lock is installed exactly, never resolved against an index.

A hash-locked install that still resolves dependencies asks the index which versions exist, so a
release there tomorrow can break it (it did: the stock pip of a fresh venv resolved
``pydantic[email]`` past the lock and refused it). These tests hold every install site to
``--require-hashes --no-deps`` and prove the runtime lock complete by installing it, offline and
with ``--no-deps``, into a venv made by the machine's stock ``python3 -m venv`` with its stock pip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import REPO, TEST_CACHE
from tests.support.tools import require

#: Every file that installs or downloads Python packages for users, CI or the tool image.
INSTALL_SITES = (
    "Makefile",
    "action.yml",
    "Dockerfile",
    ".ci/wheelhouse.py",
    "benchmarks/models.py",
    "workflows-examples/rebuild.yml",
)
#: Installed together into .venv (they must agree on shared packages).
LOCKS = (
    "requirements.lock",
    "requirements-dev.lock",
    "requirements-build.lock",
    "requirements-torch.lock",
)
#: Installed into a venv of its own (.venv-bench, the peer tools of benchmarks/models.py).
OTHER_LOCKS = ("benchmarks/requirements-bench.lock",)
_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\?$")


def _commands(text: str) -> list[str]:
    """Shell/Makefile/Python text as logical commands: backslash continuations joined, and a
    Python argv list (one quoted word per item) collapsed onto one line."""
    joined = re.sub(r"\\\n", " ", text)
    # Python argv lists span lines inside brackets: join each bracketed run of string items.
    joined = re.sub(
        r"\[\s*\n(.*?)\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", joined, flags=re.S
    )
    return joined.splitlines()


def lock_pins(path: Path) -> dict[str, str]:
    """``name -> version`` for every entry of a pip-compile style lock (names normalized)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _ENTRY.match(line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


@pytest.mark.parametrize("site", INSTALL_SITES)
def test_every_hash_locked_install_is_exact(site: str) -> None:
    """Wherever a lock is installed or downloaded with hashes, dependency resolution is off."""
    hashed = [
        cmd
        for cmd in _commands((REPO / site).read_text())
        if "require-hashes" in cmd and not cmd.lstrip().startswith(("#", "*")) and "``" not in cmd
    ]
    assert hashed, f"{site} installs nothing hash-locked: the test no longer looks at it"
    loose = [cmd.strip() for cmd in hashed if "no-deps" not in cmd and "LOCKED" not in cmd]
    assert not loose, f"{site}: a hash-locked install resolves dependencies: {loose}"


def test_makefile_installs_only_locks() -> None:
    """No `pip install` in the Makefile takes a requirement that is not a hash lock (except the
    project itself, from the checkout, with no index and no build isolation)."""
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^LOCKED\s*:=\s*--require-hashes --no-deps$", makefile, re.M)
    for cmd in _commands(makefile):
        if "$(PIP)" not in cmd or cmd.lstrip().startswith("PIP"):
            continue
        if " -e ." in cmd:
            assert "--no-deps" in cmd and "--no-index" in cmd and "--no-build-isolation" in cmd, cmd
        else:
            assert "$(LOCKED)" in cmd, cmd
            assert all(req.endswith(".lock") for req in re.findall(r"-r (\S+)", cmd)), cmd


@pytest.mark.parametrize("lock", LOCKS + OTHER_LOCKS)
def test_locks_pin_every_entry_with_hashes(lock: str) -> None:
    """Each entry is `name==version` followed by at least one sha256; no index or find-links
    line sends pip elsewhere."""
    text = (REPO / lock).read_text()
    assert not re.search(r"^\s*--(index-url|extra-index-url|find-links|trusted-host)", text, re.M)
    entries = re.findall(r"^(\S+==\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", text, re.M)
    requirements = [
        ln for ln in text.splitlines() if ln and not ln[0].isspace() and not ln.startswith("#")
    ]
    assert requirements and len(entries) == len(requirements), f"{lock}: an entry without a hash"


def test_locks_agree_on_shared_packages() -> None:
    """Installed one after another into one venv, the locks must not move each other's pins."""
    seen: dict[str, tuple[str, str]] = {}
    for lock in LOCKS:
        for name, version in lock_pins(REPO / lock).items():
            if name in seen and seen[name][0] != version:
                pytest.fail(f"{name}: {seen[name][1]} pins {seen[name][0]}, {lock} pins {version}")
            seen.setdefault(name, (version, lock))


def test_runtime_lock_matches_pyproject() -> None:
    """Each dependency pyproject.toml names is in requirements.lock at the same version."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = lock_pins(REPO / "requirements.lock")
    for dep in project["dependencies"]:
        name, version = dep.split("==")
        assert pins.get(re.sub(r"[-_.]+", "-", name).lower()) == version, dep


def _stock_python() -> str:
    """The machine's own python3 (what `make` uses), not this test run's venv interpreter."""
    explicit = os.environ.get("MODELSEAL_STOCK_PYTHON")
    if explicit:
        return explicit
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    found = shutil.which("python3", path=path)
    require(found is not None, "a stock python3 on PATH")
    assert found is not None
    return found


@pytest.mark.slow
def test_runtime_lock_installs_exactly_with_stock_pip(tmp_path: Path) -> None:
    """A fresh `python3 -m venv` with its stock pip installs requirements.lock offline with
    `--require-hashes --no-deps`; the result is exactly the lock (no other package, no other
    version) and `pip check` finds every dependency satisfied, i.e. the lock is complete."""
    sys.path.insert(0, str(REPO / ".ci"))
    try:
        import wheelhouse  # the prefetched wheels of the runtime lock (make test fills the cache)
    finally:
        sys.path.pop(0)
    try:
        wheels = wheelhouse.cached_deps(
            TEST_CACHE / "wheelhouse", wheelhouse.machine_arch(), tmp_path, offline=True
        )
    except wheelhouse.WheelhouseError as exc:
        require(False, f"the prefetched wheel cache ({exc})")
        raise
    venv = tmp_path / "venv"
    stock = _stock_python()
    subprocess.run([stock, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    stock_pip = subprocess.run(
        [python, "-m", "pip", "--version"], check=True, capture_output=True, text=True
    ).stdout
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-input", "--no-index",
         "--find-links", str(wheels), "--require-hashes", "--no-deps",
         "-r", str(REPO / "requirements.lock")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, f"stock pip ({stock_pip.strip()}): {install.stderr[-3000:]}"
    check = subprocess.run(
        [python, "-m", "pip", "check"], capture_output=True, text=True, env=env, timeout=120
    )
    assert check.returncode == 0, f"requirements.lock is not complete:\n{check.stdout}"
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"],
        check=True, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    installed = {
        re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in json.loads(listed.stdout)
    }
    expected = lock_pins(REPO / "requirements.lock")
    # setuptools may ship with an old venv's pip; it is not ours to pin, but nothing else may be.
    extra = {n: v for n, v in installed.items() if n not in expected and n != "setuptools"}
    wrong = {
        n: (v, expected[n]) for n, v in installed.items() if n in expected and v != expected[n]
    }
    missing = sorted(set(expected) - set(installed))
    assert not extra and not wrong and not missing, (extra, wrong, missing)
