"""syft's configuration in the SBOM gate (:data:`modelseal.sbom.gate.SYFT_CONFIG`): no file
metadata — syft would otherwise hash every file a package owns — and the same CycloneDX
document as syft's defaults give. Real syft on a crafted OCI layout whose packages own files:
a Python dist-info with a RECORD and a dpkg package with its file list and md5sums."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.layers import image_layout, ustar

from modelseal._tools import find_tool
from modelseal.sbom.gate import SYFT_CONFIG, SYFT_ENV, SYFT_ENV_OFFLINE, scan

MODULE = b"def get(url):\n    return url\n" * 50
DPKG_BIN = b"\x7fELF" + bytes(range(256)) * 64


def _record(files: dict[str, bytes]) -> bytes:
    lines = [
        f"{name},sha256={hashlib.sha256(data).hexdigest()},{len(data)}"
        for name, data in files.items()
    ]
    return ("\n".join(lines) + "\n").encode()


def _layer() -> bytes:
    site = "usr/lib/python3/dist-packages"
    owned = {"requests/__init__.py": MODULE, "requests/api.py": MODULE + b"#api\n"}
    dist = "requests-2.19.0.dist-info"
    metadata = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\nLicense: Apache 2.0\n\n"
    record = _record({**owned, f"{dist}/METADATA": metadata}) + f"{dist}/RECORD,,\n".encode()
    status = (
        b"Package: acme-tool\nStatus: install ok installed\nPriority: optional\n"
        b"Section: utils\nInstalled-Size: 17\nMaintainer: Acme <ops@acme.invalid>\n"
        b"Architecture: amd64\nVersion: 1.2.3-1\nDescription: a tool\n\n"
    )
    md5 = hashlib.md5(DPKG_BIN, usedforsecurity=False).hexdigest()
    members = [
        (f"{site}/requests/__init__.py", owned["requests/__init__.py"]),
        (f"{site}/requests/api.py", owned["requests/api.py"]),
        (f"{site}/{dist}/METADATA", metadata),
        (f"{site}/{dist}/RECORD", record),
        ("etc/os-release", b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n'),
        ("var/lib/dpkg/status", status),
        ("var/lib/dpkg/info/acme-tool.list", b"/.\n/usr\n/usr/bin\n/usr/bin/acme-tool\n"),
        ("var/lib/dpkg/info/acme-tool.md5sums", f"{md5}  usr/bin/acme-tool\n".encode()),
        ("usr/bin/acme-tool", DPKG_BIN),
    ]
    return ustar(*members)


def _normal(doc: dict[str, Any]) -> str:
    """The document without what varies run to run (the gate's enrich() replaces those)."""
    doc = dict(doc)
    doc.pop("serialNumber", None)
    doc["metadata"] = {k: v for k, v in doc["metadata"].items() if k != "timestamp"}
    return json.dumps(doc, sort_keys=True, indent=1)


def test_syft_without_file_metadata_writes_what_its_defaults_write(tmp_path: Path) -> None:
    layer = _layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}  # fmt: skip
    layout = tmp_path / "oci"
    image_layout(layout, config, [layer])
    syft = find_tool("syft", env_var=SYFT_ENV)

    work = tmp_path / "gate"
    work.mkdir()
    ours = scan(syft, layout, work, None)
    assert (work / "syft.yaml").read_text() == SYFT_CONFIG

    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("{}\n")
    out = tmp_path / "defaults.cdx.json"
    argv = [syft, "scan", f"oci-dir:{layout}", "-o", f"cyclonedx-json@1.6={out}",
            "--config", str(defaults), "--quiet"]  # fmt: skip
    env = {**os.environ, **SYFT_ENV_OFFLINE, "TMPDIR": str(tmp_path)}
    res = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = json.loads(out.read_text())

    # The setting is applied (syft ignores a key it does not know): its own format, which
    # carries file metadata, has no file digests with it and some without it.
    def digests(config: Path) -> int:
        out = tmp_path / f"{config.stem}.syft.json"
        argv = [syft, "scan", f"oci-dir:{layout}", "-o", f"syft-json={out}",
                "--config", str(config), "--quiet"]  # fmt: skip
        res = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        return sum(len(f.get("digests") or []) for f in json.loads(out.read_text())["files"] or [])

    assert digests(work / "syft.yaml") == 0
    assert digests(defaults) > 0

    names = {(c.get("name"), c.get("version")) for c in ours["components"]}
    # The packages that own files are found, as with syft's defaults.
    assert ("requests", "2.19.0") in names
    assert ("acme-tool", "1.2.3-1") in names
    assert _normal(ours) == _normal(theirs)
