"""Write a small, real Trivy vulnerability DB (schema v2) for offline demos and tests.

Trivy keeps its DB in a bbolt file (``db/trivy.db``) next to ``db/metadata.json``. This module
holds a write-once bbolt writer in pure standard-library Python (page size 4096: meta pages 0
and 1, an empty freelist on page 2, then one leaf page — plus overflow pages when it does not
fit — per bucket, nested buckets as element flag 0x01 with a ``<QQ`` root/sequence value) and
the advisories Trivy needs to report two real vulnerabilities:

* ``requests`` 2.19.0 (PyPI): CVE-2018-18074 / GHSA-x84v-xcm2-53pg, fixed in 2.20.0;
* ``zlib`` (Debian 12 source package of ``zlib1g``): CVE-2023-45853, which Debian will not fix.

Usage: ``python examples/offline/trivydb.py --cache-dir DIR [--age-days N]``; then run Trivy
with ``--cache-dir DIR --skip-db-update --offline-scan``.
"""

from __future__ import annotations

import argparse
import json
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Union

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
LEAF_FLAG = 0x02
META_FLAG = 0x04
FREELIST_FLAG = 0x10
BUCKET_LEAF_FLAG = 0x01
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
ELEMENT = struct.Struct("<IIII")  # flags, pos (from the element), ksize, vsize
META = struct.Struct("<IIIIQQQQQ")  # magic … txid (checksum follows)

#: A bucket: keys → either bytes (a value) or a nested bucket.
Bucket = dict[bytes, Union[bytes, "Bucket"]]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits (bbolt's meta checksum)."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def _leaf(elements: list[tuple[int, bytes, bytes]]) -> tuple[int, bytes]:
    """A leaf page body (without its header): element headers, then keys and values.
    Returns (count, body)."""
    count = len(elements)
    if count > 0xFFFF:
        raise ValueError("too many keys in one bucket for a single leaf")
    headers = bytearray()
    data = bytearray()
    data_start = count * ELEMENT.size
    for i, (flags, key, value) in enumerate(elements):
        pos = data_start + len(data) - i * ELEMENT.size  # relative to element i
        headers += ELEMENT.pack(flags, pos, len(key), len(value))
        data += key + value
    return count, bytes(headers + data)


def bbolt_bytes(root: Bucket) -> bytes:
    """Serialize ``root`` (top-level buckets only: every value must be a nested bucket) into a
    complete bbolt file, deterministically."""
    for k, v in root.items():
        if not isinstance(v, dict):
            raise ValueError(f"top-level key {k!r} must be a bucket")
    pages: dict[int, bytes] = {}
    next_id = 3  # 0, 1 meta; 2 freelist

    def place(bucket: Bucket) -> int:
        nonlocal next_id
        # Children first get their pages; this bucket's page id is reserved first so that the
        # layout is stable (parent before children).
        elements_pending = sorted(bucket.items())
        body_probe: list[tuple[int, bytes, bytes]] = []
        # Reserve this bucket's pages after computing its size (values of sub-buckets are 16
        # bytes whatever their root ids, so the size is known up front).
        for k, v in elements_pending:
            body_probe.append((BUCKET_LEAF_FLAG if isinstance(v, dict) else 0, k,
                               b"\0" * 16 if isinstance(v, dict) else v))  # fmt: skip
        _, probe = _leaf(body_probe)
        npages = -(-(PAGE_HEADER.size + len(probe)) // PAGE_SIZE)
        my_id = next_id
        next_id += npages
        elements: list[tuple[int, bytes, bytes]] = []
        for k, v in elements_pending:
            if isinstance(v, dict):
                elements.append((BUCKET_LEAF_FLAG, k, struct.pack("<QQ", place(v), 0)))
            else:
                elements.append((0, k, v))
        count, body = _leaf(elements)
        raw = PAGE_HEADER.pack(my_id, LEAF_FLAG, count, npages - 1) + body
        pages[my_id] = raw.ljust(npages * PAGE_SIZE, b"\0")
        return my_id

    root_id = place(root)
    high_water = next_id
    out = bytearray()
    for txid, pid in ((0, 0), (1, 1)):
        body = META.pack(MAGIC, VERSION, PAGE_SIZE, 0, root_id, 0, 2, high_water, txid)
        meta = PAGE_HEADER.pack(pid, META_FLAG, 0, 0) + body + struct.pack("<Q", fnv1a64(body))
        out += meta.ljust(PAGE_SIZE, b"\0")
    out += PAGE_HEADER.pack(2, FREELIST_FLAG, 0, 0).ljust(PAGE_SIZE, b"\0")
    pid = 3
    while pid < high_water:
        page = pages[pid]
        out += page
        pid += len(page) // PAGE_SIZE
    assert len(out) == high_water * PAGE_SIZE
    return bytes(out)


# --- the advisories ------------------------------------------------------------------------

PIP_BUCKET = "pip::GitHub Security Advisory pip"
DEBIAN_BUCKET = "debian 12"

#: Each: (bucket, package, vulnerability id, advisory value, vulnerability detail).
Advisory = tuple[str, str, str, Mapping[str, Any], Mapping[str, Any]]

DEFAULT: tuple[Advisory, ...] = (
    (
        PIP_BUCKET,
        "requests",
        "CVE-2018-18074",
        {
            "VendorIDs": ["GHSA-x84v-xcm2-53pg"],
            "PatchedVersions": ["2.20.0"],
            "VulnerableVersions": ["<2.20.0"],
        },
        {
            "Title": "python-requests: Redirect from HTTPS to HTTP does not remove "
            "Authorization header",
            "Description": "The Requests package before 2.20.0 for Python sends an HTTP "
            "Authorization header to an http URI upon receiving a same-hostname https-to-http "
            "redirect, which makes it easier for remote attackers to discover credentials by "
            "sniffing the network.",
            "Severity": "HIGH",
            "CweIDs": ["CWE-522"],
            "VendorSeverity": {"ghsa": 3, "nvd": 3, "redhat": 2},
            "CVSS": {
                "ghsa": {
                    "V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
                    "V3Score": 7.5,
                },
                "nvd": {
                    "V2Vector": "AV:N/AC:L/Au:N/C:P/I:N/A:N",
                    "V3Vector": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
                    "V2Score": 5,
                    "V3Score": 7.5,
                },
            },
            "References": [
                "https://github.com/advisories/GHSA-x84v-xcm2-53pg",
                "https://github.com/psf/requests/pull/4718",
                "https://nvd.nist.gov/vuln/detail/CVE-2018-18074",
            ],
            "PublishedDate": "2018-10-09T17:29:00Z",
            "LastModifiedDate": "2024-11-21T03:55:00Z",
        },
    ),
    (
        DEBIAN_BUCKET,
        "zlib",
        "CVE-2023-45853",
        {"Status": 5, "Severity": 0},  # will_not_fix; no Debian severity → NVD's
        {
            "Title": "zlib: integer overflow and resultant heap-based buffer overflow in "
            "zipOpenNewFileInZip4_6",
            "Description": "MiniZip in zlib through 1.3 has an integer overflow and resultant "
            "heap-based buffer overflow in zipOpenNewFileInZip4_64 via a long filename, "
            "comment, or extra field.",
            "Severity": "CRITICAL",
            "CweIDs": ["CWE-190"],
            "VendorSeverity": {"nvd": 4, "redhat": 2},
            "CVSS": {
                "nvd": {
                    "V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                    "V3Score": 9.8,
                },
            },
            "References": [
                "https://github.com/madler/zlib/pull/843",
                "https://nvd.nist.gov/vuln/detail/CVE-2023-45853",
            ],
            "PublishedDate": "2023-10-14T02:15:09Z",
            "LastModifiedDate": "2024-12-20T17:41:31Z",
        },
    ),
)

DATA_SOURCES: Mapping[str, Mapping[str, str]] = {
    PIP_BUCKET: {
        "ID": "ghsa",
        "Name": "GitHub Security Advisory pip",
        "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
    },
    DEBIAN_BUCKET: {
        "ID": "debian",
        "Name": "Debian Security Tracker",
        "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
    },
}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def db_buckets(advisories: tuple[Advisory, ...] = DEFAULT) -> Bucket:
    """The schema v2 buckets for ``advisories``."""
    root: Bucket = {}
    vulns: Bucket = {}
    sources: Bucket = {}
    for bucket, package, vuln_id, advisory, detail in advisories:
        top = root.setdefault(bucket.encode(), {})
        assert isinstance(top, dict)
        pkg = top.setdefault(package.encode(), {})
        assert isinstance(pkg, dict)
        pkg[vuln_id.encode()] = _json(advisory)
        vulns[vuln_id.encode()] = _json(detail)
        if bucket in DATA_SOURCES:
            sources[bucket.encode()] = _json(DATA_SOURCES[bucket])
    root[b"vulnerability"] = vulns
    root[b"data-source"] = sources
    return root


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_trivy_db(
    cache_dir: Path,
    *,
    updated_at: datetime,
    advisories: tuple[Advisory, ...] = DEFAULT,
) -> Path:
    """Write ``cache_dir/db/trivy.db`` and ``cache_dir/db/metadata.json``; returns the db dir.
    The same inputs give the same bytes."""
    db_dir = cache_dir / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    (db_dir / "trivy.db").write_bytes(bbolt_bytes(db_buckets(advisories)))
    metadata = {
        "Version": 2,
        "NextUpdate": _stamp(updated_at + timedelta(hours=24)),
        "UpdatedAt": _stamp(updated_at),
        "DownloadedAt": _stamp(updated_at),
    }
    (db_dir / "metadata.json").write_text(json.dumps(metadata) + "\n")
    return db_dir


def main(argv: list[str] | None = None) -> int:
    """CLI: write the DB into ``--cache-dir``, ``--age-days`` old (default 0: now)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--age-days", type=float, default=0.0)
    args = p.parse_args(argv)
    now = datetime.now(UTC)
    db_dir = write_trivy_db(args.cache_dir, updated_at=now - timedelta(days=args.age_days))
    print(db_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
