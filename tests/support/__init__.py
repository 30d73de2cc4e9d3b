"""Test support shared by every test folder: import from here, never from another test module
or a conftest.

* :mod:`tests.support.tools` — :func:`~tests.support.tools.require` (skip on a developer machine,
  fail in CI), the docker CLI, OCI layouts built with BuildKit;
* :mod:`tests.support.reports` — report.json as the code under test wrote it, schema-checked;
* :mod:`tests.support.layouts` — crafted OCI layouts, member by member;
* :mod:`tests.support.layers` — seeded weights, USTAR layer tars, a one-image OCI layout, a
  layout pushed to the local registry;
* :mod:`tests.support.httpd` — an HTTP server double on 127.0.0.1;
* :mod:`tests.support.registry_double` — a registry double serving indexes, manifests and configs;
* :mod:`tests.support.standins` — ``modelseal build`` with and without stand-ins, models.lock;
* :mod:`tests.support.model_files` — model files in every format, built byte by byte;
* :mod:`tests.support.sigstore_local` — a local Sigstore (OIDC issuer with a GitHub-style token
  endpoint, Fulcio, Rekor v1): the one OIDC stub of the suite;
* :mod:`tests.support.github_runner` — action.yml's composite steps run the way a runner would;
* :mod:`tests.support.statements` — the in-toto statements a run attaches;
* :mod:`tests.support.rootfs` — a Debian root filesystem with one vulnerable Python package;
* :mod:`tests.support.gitrepo` — ``git`` without user configuration, two policies to commit;
* :mod:`tests.support.gates` — stand-in gates for pipeline tests.

The constants below are what several folders need.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root."""
EPOCH = 1700000000
"""``SOURCE_DATE_EPOCH`` of every build the tests make."""
TEST_CACHE = Path(os.environ.get("MODELSEAL_TEST_CACHE", "/var/tmp/modelseal-test-cache"))
"""Kept across sessions (Makefile ``TEST_CACHE``): the example base, prefetched wheels."""
