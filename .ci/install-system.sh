#!/usr/bin/env bash
# Installs the system tools modelseal's demo and tests drive for real: Docker 26 + buildx
# (BuildKit with the containerd image store), skopeo, umoci, mmdebstrap, busybox-static (the
# machine's own suite) and
# docker-registry, cosign (Debian trixie). Idempotent; does nothing that is already done.
#
# The trixie suite is added by copying the machine's own Debian sources entry (never a mirror
# host written here) and pinned at priority 100, so only what we ask for with -t trixie moves.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 && dockerd --version 2>/dev/null | grep -q ' 26\.' || need+=(docker)
[ -x /usr/libexec/docker/cli-plugins/docker-buildx ] && [ -x /usr/bin/docker ] || need+=(buildx)
# shellcheck: actionlint runs it on the run: scripts of action.yml and the example workflows.
for t in skopeo umoci mmdebstrap cosign shellcheck zstd; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
[ -x /usr/bin/docker-registry ] || need+=(registry)
# busybox-static: a one-binary base image for the tests' RUN steps.
[ -x /bin/busybox ] || need+=(busybox)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "modelseal: missing system tools (${need[*]}); run this script as root to install them." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "modelseal: missing system tools (${need[*]}) and no apt-get: install Docker >= 26 with buildx, skopeo, umoci, mmdebstrap, cosign, shellcheck and docker-registry by hand." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Ubuntu has no Debian trixie mirror to borrow: take Docker, buildx and the registry from
# Ubuntu's own archive (noble ships Docker 26 and buildx); cosign may be missing there.
if grep -qi '^ID=ubuntu' /etc/os-release 2>/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io docker-buildx docker-registry \
    skopeo umoci mmdebstrap busybox-static git python3-venv shellcheck zstd >/dev/null
  apt-get install -y -qq --no-install-recommends cosign >/dev/null 2>&1 \
    || echo "modelseal: cosign is not in this Ubuntu archive; the cosign interop tests need it." >&2
  systemctl disable --now docker.service docker.socket docker-registry.service >/dev/null 2>&1 || true
  echo "modelseal: system tools installed: $(dockerd --version)"
  exit 0
fi
trixie_src=/etc/apt/sources.list.d/modelseal-trixie.sources
if [ ! -f "$trixie_src" ]; then
  # Take the first deb822 entry whose Suites line names the machine's main Debian suite.
  python3 - "$trixie_src" <<'PY'
import glob, re, sys
out = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    text = open(path).read()
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (m.group(1).lower(), m.group(2).strip())
            for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M)
        )
        suites = fields.get("suites", "").split()
        if fields.get("types") == "deb" and "security" not in " ".join(suites) and any(
            s in ("bookworm", "trixie", "sid", "stable") for s in suites
        ) and "debian" in fields.get("uris", ""):
            lines = [
                f"Types: deb",
                f"URIs: {fields['uris']}",
                "Suites: trixie",
                f"Components: {fields.get('components', 'main')}",
            ]
            if "signed-by" in fields:
                lines.append(f"Signed-By: {fields['signed-by']}")
            open(out, "w").write("\n".join(lines) + "\n")
            sys.exit(0)
# One-line format fallback (sources.list).
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(bookworm|stable)\s+(.*)$", line.strip())
        if m and "debian" in m.group(2):
            opts = m.group(1) or ""
            open(out.replace(".sources", ".list"), "w").write(f"deb {opts}{m.group(2)} trixie main\n")
            sys.exit(0)
sys.exit("modelseal: found no Debian sources entry to derive a trixie suite from")
PY
  cat > /etc/apt/preferences.d/modelseal-trixie <<'PREF'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PREF
fi
apt-get update -qq
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
apt-get install -y -qq --no-install-recommends skopeo umoci mmdebstrap busybox-static git shellcheck zstd >/dev/null
apt-get install -y -qq --no-install-recommends -t trixie docker.io docker-cli docker-buildx docker-registry cosign >/dev/null
# The distribution's service units are not ours to start; modelseal starts private daemons.
systemctl disable --now docker.service docker.socket docker-registry.service >/dev/null 2>&1 || true
echo "modelseal: system tools installed: $(dockerd --version)"
