# mnog: the reproducibility artifact of "Machine Unlearning under Overparameterization" (NeurIPS 2025).
#
#   docker build --build-arg UID=$(id -u) -t mnog .        # GPU image: CUDA 13.0 runtime, driver >= 580
#   mkdir -p data results
#   docker run --gpus all -v "$PWD/data:/mnog/data" -v "$PWD/results:/mnog/results" mnog make all
#   docker build --build-arg VARIANT=cpu --build-arg UID=$(id -u) -t mnog:cpu .    # CPU image, no CUDA base
#   docker run -v "$PWD/data:/mnog/data" -v "$PWD/results:/mnog/results" mnog:cpu make all
#
# The image declares /mnog/data (downloads) and /mnog/results (records, caches, REPORT.html) as
# volumes: mount both, or the results stay in anonymous volumes. The container runs as user mnog
# (UID 1000 unless built with --build-arg UID=$(id -u)), so a bind-mounted folder must be
# writable by that UID. docs/reproducing.md#docker has the rest.
#
# Pinned: both base images by digest; Python 3.11 from the deadsnakes PPA, whose signing key is
# checked against its fingerprint; every Python package by version and SHA-256 from
# requirements.lock (`pip install --require-hashes`; `make lock` regenerates it from
# pyproject.toml). The lock targets Linux x86_64 and CPython 3.11: build for linux/amd64.
# The digests were taken from public build files that pin them, not from the registry; check
# or renew one with
#   docker buildx imagetools inspect nvidia/cuda:13.0.1-runtime-ubuntu24.04
# and replace the sha256 after the "@".

ARG VARIANT=cuda

# torch 2.14.1's cu130 wheels bring their own CUDA 13.0 libraries (nvidia-* wheels in the lock);
# the base image supplies the matching runtime environment for the NVIDIA container toolkit.
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04@sha256:c3fde347d52d578c84fd644bc177bc7ec333feaf11550d990da4084d7612e4c7 AS base-cuda

# The same Ubuntu without CUDA. It installs the same lock (torch's CUDA wheels included, unused
# without a GPU): one locked environment for both images, at the cost of ~4 GB of image size.
FROM ubuntu:noble-20260905@sha256:a61567bd31828687156d735ea8eb01ba4e37636e225dd6a48ba94136a70d9d61 AS base-cpu

# MKL's fast kernels on AMD CPUs (mnog/mkl.py): its one-function library, compiled in a stage of
# its own so that the image carries no compiler; it needs no libc, so either base runs it.
FROM base-cpu AS mkl-intel
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc \
    && rm -rf /var/lib/apt/lists/*
COPY mnog/mkl_intel.c /tmp/
RUN gcc -shared -fPIC -O2 -nostdlib -o /tmp/mkl_intel.so /tmp/mkl_intel.c

# The image: one of the two base stages above (both pinned by digest, which hadolint cannot see).
# hadolint ignore=DL3006
FROM base-${VARIANT}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLBACKEND=Agg

# Python 3.11 (Ubuntu 24.04 ships 3.12) from the deadsnakes PPA; make and git for the targets
# and the provenance records. Ubuntu's packages are not version-pinned: the base digest fixes
# the release, and apt serves its current security updates.
ARG DEADSNAKES_KEY=F23C5A6CF475977595C89F51BA6932366A755776
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg make git \
    && curl -fsSL "https://keyserver.ubuntu.com/pks/lookup?op=get&search=0x${DEADSNAKES_KEY}" -o /tmp/deadsnakes.asc \
    && test "$(gpg --show-keys --with-colons /tmp/deadsnakes.asc | awk -F: '/^fpr/ {print $10; exit}')" = "${DEADSNAKES_KEY}" \
    && gpg --dearmor -o /usr/share/keyrings/deadsnakes.gpg /tmp/deadsnakes.asc \
    && echo "deb [signed-by=/usr/share/keyrings/deadsnakes.gpg] https://ppa.launchpadcontent.net/deadsnakes/ppa/ubuntu noble main" \
        > /etc/apt/sources.list.d/deadsnakes.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* /tmp/deadsnakes.asc /root/.gnupg

# The user that runs the targets; Ubuntu's images already hold a user "ubuntu" with UID 1000.
# --non-unique: a host UID that the image already has (0 for root) is fine too.
ARG UID=1000
RUN userdel --remove ubuntu 2>/dev/null; useradd --create-home --non-unique --uid "${UID}" --shell /bin/bash mnog

WORKDIR /mnog

# The locked environment first, so that a code change does not reinstall torch.
COPY requirements.lock ./
RUN python3.11 -m venv .venv \
    && .venv/bin/pip install --require-hashes -r requirements.lock

# The project, installed editable (the scripts write results/ next to the code) with the locked
# setuptools; .venv/.installed tells `make` that the environment is complete.
COPY . .
RUN .venv/bin/pip install --no-deps --no-build-isolation -e . \
    && touch .venv/.installed \
    && mkdir -p data results \
    && chown mnog:mnog data results \
    && git config --system --add safe.directory /mnog

# Preloaded only on an AMD CPU, by the Makefile and the scripts (mnog/mkl.py).
COPY --from=mkl-intel /tmp/mkl_intel.so /usr/local/lib/mnog/mkl_intel.so
ENV MNOG_MKL_INTEL=/usr/local/lib/mnog/mkl_intel.so

USER ${UID}
VOLUME ["/mnog/data", "/mnog/results"]
CMD ["make", "help"]
