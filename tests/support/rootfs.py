"""A Debian root filesystem with one vulnerable Python package (requests 2.19.0), for Trivy and
the Action's vulnerable example."""

from __future__ import annotations

from pathlib import Path

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
DPKG_STATUS = """\
Package: zlib1g
Status: install ok installed
Priority: required
Section: libs
Installed-Size: 168
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Depends: libc6 (>= 2.14)
Description: compression library - runtime

"""
REQUESTS_METADATA = """\
Metadata-Version: 2.1
Name: requests
Version: 2.19.0
Summary: Python HTTP for Humans.
License: Apache 2.0

"""
DIST_INFO = "usr/lib/python3/dist-packages/requests-2.19.0.dist-info"


def debian_rootfs(root: Path) -> Path:
    """Write the files Trivy reads (os-release, dpkg status, the requests dist-info) under
    ``root``; returns ``root``."""
    files = {
        "etc/os-release": OS_RELEASE,
        "etc/debian_version": "12.5\n",
        "var/lib/dpkg/status": DPKG_STATUS,
        f"{DIST_INFO}/METADATA": REQUESTS_METADATA,
        f"{DIST_INFO}/RECORD": "requests/__init__.py,,\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root
