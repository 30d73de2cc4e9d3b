"""The least-privilege runtime profile an image needs, from the image and the policy.

:func:`runtime_profile` reads one platform image (:class:`~modelseal.imagegate.view.ImageView`:
the config's ``User``, ``ExposedPorts`` and ``Volumes``, and the user resolved through the
image's ``/etc/passwd`` and ``/etc/group``) and the policy's ``image.runtime`` section, and says
how to run it with the least privilege, as a Kubernetes container ``securityContext`` and as
the equivalent ``docker run`` flags:

* the process runs as the image's user, by number (``runAsUser``/``runAsGroup``, ``--user
  uid:gid``), with ``runAsNonRoot: true`` only when that user is resolved and is not uid 0. A
  root user (``USER`` missing, ``0``, ``root``) or one that cannot be resolved (a name that is
  not in ``/etc/passwd``) gets a profile that says ``runAsNonRoot: false`` and ``nonRoot:
  false`` with the reason: nothing can claim the image runs unprivileged (fail closed); the
  image gate's ``image.require_non_root`` check refuses such an image by default;
* the root filesystem is read-only (``readOnlyRootFilesystem: true``, ``--read-only``); the
  paths the process may write are ``image.runtime.writable_paths`` and the image's own
  ``VOLUME``\\s (Docker mounts a writable anonymous volume there even with ``--read-only``;
  Kubernetes ignores them, so each gets an ``emptyDir``), as ``emptyDir`` volumes and
  ``--tmpfs`` mounts;
* no privilege escalation (``allowPrivilegeEscalation: false``, ``--security-opt
  no-new-privileges``), never privileged, every capability dropped (``drop: [ALL]``,
  ``--cap-drop ALL``) and only ``image.runtime.add_capabilities`` added back. Nothing is added
  for an exposed port below 1024: a non-root process gets no capability from its bounding set
  (Kubernetes sets no ambient capabilities), so ``NET_BIND_SERVICE`` would not help it; the
  profile lowers ``net.ipv4.ip_unprivileged_port_start`` to the lowest such port instead (a
  pod ``sysctls`` entry Kubernetes counts as safe, ``--sysctl``);
* the runtime's default seccomp filter (``seccompProfile: RuntimeDefault``; Docker applies its
  default profile unless told otherwise, ``--security-opt seccomp=unconfined`` is what the
  profile never says).

The profile is a JSON object (:meth:`RuntimeProfile.to_json`, the predicate of the
runtime-profile attestation, :data:`modelseal.publish.statements.RUNTIME_PROFILE_PREDICATE`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal.findings import Finding, Severity
from modelseal.imagegate.user import RuntimeUser, runtime_user
from modelseal.imagegate.view import ImageView
from modelseal.pipeline import Context
from modelseal.untrusted import untrusted

#: The profile's file in the output directory.
PROFILE_FILE = "runtime-profile.json"
#: Version of the profile's JSON shape (``version`` in the predicate).
PROFILE_VERSION = 1
#: Exposed ports and volumes read from one config at most (each becomes part of the profile).
MAX_PORTS = 256
MAX_VOLUMES = 64
#: Ports below this need privilege to bind (Linux ``ip_unprivileged_port_start`` default).
PRIVILEGED_PORTS = 1024
UNPRIVILEGED_PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"


@dataclass(frozen=True)
class RuntimeProfile:
    """How to run one image with the least privilege (see the module doc)."""

    user: RuntimeUser
    ports: tuple[str, ...]  # "8080/tcp", sorted
    writable_paths: tuple[str, ...]  # absolute, sorted, distinct
    add_capabilities: tuple[str, ...]  # without "CAP_", sorted
    problems: tuple[str, ...] = ()  # what was left out of the image's config, and why

    @property
    def non_root(self) -> bool:
        """The profile can claim the process runs as a resolved, non-root user."""
        return self.user.uid is not None and self.user.uid != 0 and not self.user.problem

    @property
    def low_port(self) -> int | None:
        """The lowest exposed port below :data:`PRIVILEGED_PORTS`, if any."""
        low = [int(p.split("/")[0]) for p in self.ports if int(p.split("/")[0]) < PRIVILEGED_PORTS]
        return min(low) if low else None

    def security_context(self) -> dict[str, Any]:
        """The Kubernetes container ``securityContext``."""
        sc: dict[str, Any] = {"runAsNonRoot": self.non_root}
        if self.user.uid is not None and not self.user.problem:
            sc["runAsUser"] = self.user.uid
            if self.user.gid is not None:
                sc["runAsGroup"] = self.user.gid
        caps: dict[str, Any] = {"drop": ["ALL"]}
        if self.add_capabilities:
            caps["add"] = list(self.add_capabilities)
        sc |= {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": caps,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        return sc

    def kubernetes(self) -> dict[str, Any]:
        """The container ``securityContext``, the pod ``securityContext`` it needs (only a
        sysctl, for a port below 1024) and the ``emptyDir`` volumes of the writable paths."""
        out: dict[str, Any] = {"securityContext": self.security_context()}
        if self.low_port is not None:
            out["podSecurityContext"] = {
                "sysctls": [{"name": UNPRIVILEGED_PORT_SYSCTL, "value": str(self.low_port)}]
            }
        names = [f"writable-{i}" for i in range(len(self.writable_paths))]
        out["volumes"] = [{"name": n, "emptyDir": {}} for n in names]
        out["volumeMounts"] = [
            {"name": n, "mountPath": p} for n, p in zip(names, self.writable_paths, strict=True)
        ]
        return out

    def docker_run(self) -> list[str]:
        """The ``docker run`` flags of the same profile (argv words, before the image)."""
        argv = []
        if self.user.uid is not None and not self.user.problem:
            argv += [
                "--user",
                f"{self.user.uid}:{self.user.gid if self.user.gid is not None else 0}",
            ]
        argv += ["--read-only", "--cap-drop", "ALL"]
        for cap in self.add_capabilities:
            argv += ["--cap-add", cap]
        argv += ["--security-opt", "no-new-privileges"]
        for path in self.writable_paths:
            # Docker gives a tmpfs the mode of the image's directory there (often 0755 root):
            # as writable as Kubernetes' emptyDir (0777), with the sticky bit.
            argv += ["--tmpfs", f"{path}:mode=1777"]
        if self.low_port is not None:
            argv += ["--sysctl", f"{UNPRIVILEGED_PORT_SYSCTL}={self.low_port}"]
        return argv

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON (the runtime-profile attestation's predicate; key order fixed)."""
        user: dict[str, Any] = {"configured": self.user.raw, "uid": self.user.uid,
                                "gid": self.user.gid, "name": self.user.name}  # fmt: skip
        if self.user.problem:
            user["problem"] = self.user.problem
        out: dict[str, Any] = {
            "version": PROFILE_VERSION,
            "nonRoot": self.non_root,
            "user": user,
            "exposedPorts": list(self.ports),
            "writablePaths": list(self.writable_paths),
            "kubernetes": self.kubernetes(),
            "docker": {"run": self.docker_run()},
        }
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def profile_json_bytes(profile: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a profile (sorted keys, no whitespace): what its digest is of."""
    return json.dumps(profile, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def profile_sha256(profile: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`profile_json_bytes`."""
    return hashlib.sha256(profile_json_bytes(profile)).hexdigest()


def write_profile(
    ctx: Context, profiles: Mapping[str, Mapping[str, Any]]
) -> tuple[Path, str] | Finding:
    """Write the image's profile (every platform's, which must be one and the same) to
    :data:`PROFILE_FILE` in the output directory: its path and hex SHA-256
    (:func:`profile_sha256`). Platforms that need different profiles get no profile: a
    finding ``image.runtime_profile`` (fails unless the policy admits it) says so."""
    distinct = {profile_sha256(p): p for p in profiles.values()}
    if len(distinct) != 1:
        shown = ", ".join(
            f"{k} {'root' if not p.get('nonRoot') else 'uid ' + str(p['user']['uid'])}"
            for k, p in sorted(profiles.items())
        )
        return Finding(
            "image", "image.runtime_profile", Severity.HIGH,
            "the platforms of the image need different runtime profiles; none was written",
            "runtime profile", evidence={"platforms": untrusted(shown, markup=False, limit=400)},
        )  # fmt: skip
    ((sha, profile),) = distinct.items()
    out = ctx.out_dir / PROFILE_FILE
    fsio.write_text_atomic(out, json.dumps(profile, indent=2, ensure_ascii=False) + "\n")
    return out, sha


def runtime_profile(
    view: ImageView, *, writable_paths: Sequence[str] = (), add_capabilities: Sequence[str] = ()
) -> RuntimeProfile:
    """The profile of ``view``'s image under the policy's ``image.runtime`` settings."""
    config = view.config.get("config")
    config = config if isinstance(config, dict) else {}
    problems: list[str] = []
    ports = _ports(config.get("ExposedPorts"), problems)
    volumes = _paths(config.get("Volumes"), "Volumes", problems)
    writable = sorted({*(_clean(p) for p in writable_paths), *volumes})
    return RuntimeProfile(
        user=runtime_user(view),
        ports=tuple(ports),
        writable_paths=tuple(writable),
        add_capabilities=tuple(sorted(set(add_capabilities))),
        problems=tuple(problems),
    )


def _ports(raw: object, problems: list[str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        problems.append("ExposedPorts is not an object (ignored)")
        return []
    out = set()
    for key in list(raw)[:MAX_PORTS]:
        number, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        if not (number.isascii() and number.isdigit() and 0 < int(number) < 65536
                and proto in ("tcp", "udp", "sctp")):  # fmt: skip
            problems.append(f"exposed port {untrusted(key, markup=False, limit=40)} ignored")
            continue
        out.add(f"{int(number)}/{proto}")
    if len(raw) > MAX_PORTS:
        problems.append(f"only the first {MAX_PORTS} exposed ports were read")
    return sorted(out, key=lambda p: (int(p.split("/")[0]), p))


def _paths(raw: object, what: str, problems: list[str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        problems.append(f"{what} is not an object (ignored)")
        return []
    out = []
    for key in list(raw)[:MAX_VOLUMES]:
        path = str(key)
        if (not path.startswith("/") or not path.isprintable() or len(path) > 4096
                or any(c in path for c in ":, ")):  # fmt: skip
            problems.append(f"volume {untrusted(path, markup=False, limit=60)} ignored")
            continue
        out.append(_clean(path))
    if len(raw) > MAX_VOLUMES:
        problems.append(f"only the first {MAX_VOLUMES} volumes were read")
    return out


def _clean(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))
