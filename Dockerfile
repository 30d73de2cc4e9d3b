# modelseal's tool image: the `modelseal` CLI with its pinned scanners (syft, Trivy, pip-audit),
# for CI systems other than GitHub Actions and for Kubernetes Jobs.
#
# The build is offline and reproducible: RUN steps get no network, so every input is either the
# base image or the build context, and the same inputs give the same image digest (the test suite
# builds it twice and compares, then runs modelseal's own gates on it).
#
#   1. Fill the wheelhouse (the only step that downloads; it uses pip's configured index), with
#      the project's venv (`make dev`), whose pip pins the build backend of the modelseal wheel:
#        .venv/bin/python .ci/wheelhouse.py     # → dist/wheelhouse/ (lock's wheels + modelseal's)
#   2. Build it with modelseal, from a base pinned by digest — any Debian-based CPython 3.11
#      whose `python3` has the venv module, e.g. the official slim image:
#        modelseal build . -o dist/tool-image --build-context \
#          base=docker-image://docker.io/library/python:3.11-slim@sha256:<digest>
#      or, with no registry at all, an OCI layout (examples/base/build_base.py makes one):
#        modelseal build . -o dist/tool-image \
#          --build-context base=oci-layout:///path/to/layout@sha256:<digest>
#      Plain buildx works too, reproducible with SOURCE_DATE_EPOCH in the environment and these
#      flags (its digest is its own: modelseal asks BuildKit for uncompressed layers and its
#      layout finalizer clamps the times and compresses them, zstd by default):
#        SOURCE_DATE_EPOCH=<t> docker buildx build --pull=false --network none \
#          --provenance=false --sbom=false --build-context base=… \
#          --output type=oci,dest=out,tar=false,rewrite-timestamp=true .
#
# What works inside the image: everything that does not build — `modelseal models
# lock|verify|scan`, `judge`, `policy validate|schema` — with syft, Trivy and pip-audit next to
# modelseal in /opt/modelseal/bin. `modelseal run` and `build` also need the docker CLI with the
# buildx plugin and an engine that exports OCI layouts (containerd image store, or a buildx
# `docker-container`/remote BuildKit builder); the image carries neither. Mount them in (and
# set DOCKER_HOST), or derive an image that adds them; the scan gates read the OCI layout the
# build gate writes, so there is no scan-only `run` of an image built elsewhere yet.
#
# No `# syntax=` line: it would make BuildKit pull a frontend image. The built-in frontend
# understands RUN --mount.
FROM base

# Declared (modelseal would add it otherwise) so that RUN steps see the build's timestamp, like
# the layers do; the .pyc files below are hash-checked explicitly, so they embed no time at all.
ARG SOURCE_DATE_EPOCH

# The wheels are bind-mounted from the context, never copied: no layer carries them.
# - pip runs from its own wheel (`python pip-….whl/pip`): the base needs no pip, only `venv`;
# - every wheel is hash-checked against requirements.lock (scanners.txt holds the lock's own
#   entries for syft and Trivy; modelseal.txt the hash of the modelseal wheel), installed exactly
#   (`--no-deps`, `--no-index`: nothing is resolved), then `pip check` fails the build when the
#   lock misses a dependency;
# - PYTHONDONTWRITEBYTECODE: running pip must not leave timestamped .pyc files of the stdlib.
#
# Step 1, a layer of its own: the syft and Trivy binaries are ~210 MB of the image's ~320 MB and
# change less often than the Python code around them (and two layers compress in parallel).
RUN --mount=type=bind,source=dist/wheelhouse,target=/mnt/modelseal/wheelhouse \
    set -eu; \
    export PYTHONDONTWRITEBYTECODE=1 PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1; \
    python3 -m venv --without-pip /opt/modelseal; \
    set -- /mnt/modelseal/wheelhouse/pip-*.whl; \
    /opt/modelseal/bin/python "$1/pip" install \
        --no-index --find-links /mnt/modelseal/wheelhouse --require-hashes --no-deps \
        --no-compile --no-cache-dir --disable-pip-version-check --progress-bar off \
        --root-user-action ignore \
        --requirement /mnt/modelseal/wheelhouse/scanners.txt

# Step 2: everything else, then
# - the venv byte-compiled once, in one process, with a fixed hash seed: set and frozenset
#   constants are marshalled in hash order, which a random seed changes from build to build;
# - /home/modelseal and /workspace given to the unprivileged user the image runs as.
RUN --mount=type=bind,source=requirements.lock,target=/mnt/modelseal/requirements.lock \
    --mount=type=bind,source=dist/wheelhouse,target=/mnt/modelseal/wheelhouse \
    set -eu; \
    export PYTHONDONTWRITEBYTECODE=1 PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1; \
    set -- /mnt/modelseal/wheelhouse/pip-*.whl; \
    /opt/modelseal/bin/python "$1/pip" install \
        --no-index --find-links /mnt/modelseal/wheelhouse --require-hashes --no-deps \
        --no-compile --no-cache-dir --disable-pip-version-check --progress-bar off \
        --root-user-action ignore \
        --requirement /mnt/modelseal/requirements.lock \
        --requirement /mnt/modelseal/wheelhouse/modelseal.txt; \
    /opt/modelseal/bin/python "$1/pip" check --disable-pip-version-check; \
    PYTHONHASHSEED=0 /opt/modelseal/bin/python -m compileall -q -j 1 \
        --invalidation-mode checked-hash /opt/modelseal/lib; \
    /opt/modelseal/bin/modelseal --version; \
    mkdir -p /home/modelseal /workspace; \
    chown 10001:10001 /home/modelseal /workspace

# PATH is spelled out (not "$PATH"-extended): a base without PATH in its config would otherwise
# leave only the venv on it.
ENV PATH=/opt/modelseal/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/modelseal \
    HOME=/home/modelseal \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

LABEL org.opencontainers.image.title="modelseal" \
      org.opencontainers.image.description="Seal ML model-serving container images: verify models, SBOM, scan, judge on one policy." \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric: the base need not have an /etc/passwd entry for it.
USER 10001:10001
WORKDIR /workspace
ENTRYPOINT ["modelseal"]
CMD ["--help"]
