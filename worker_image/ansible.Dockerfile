# The Ansible runner image, used by deploys: ansible-core + ansible-runner (the project's [ansible]
# extra), ssh, and the `worker_image.ansible_runner` entry module.
#
# Build from the repository root:
#   docker build -f worker_image/ansible.Dockerfile -t orchestrator-ansible-runner .
#
# No SSH key, vault password or other secret is baked in: the runner resolves secret references at
# run time and keeps what it resolves in its private data dir for the one run.
#
# BASE_IMAGE: as for the worker image (worker_image/Dockerfile, docs/images.md): Python >= 3.11 or
# Debian's python3 and python3-venv installed here; the project lives in a venv (/opt/venv). The
# optional BuildKit secret `build_ca` is the CA bundle the build's downloads trust (a TLS-inspecting proxy).

ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="orchestrator-ansible-runner" \
      org.opencontainers.image.description="Runs one Ansible playbook for a deploy, then exits" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANSIBLE_NOCOLOR=1 \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian package versions are not pinned: the mirror drops old ones, so a pin would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get install -y --no-install-recommends python3 python3-venv; \
    fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /opt/orchestrator
COPY pyproject.toml README.md ./
# The dependencies first (the core and the [ansible] extra, read from pyproject.toml): this layer is
# rebuilt only when they change. ansible-playbook lands in /opt/venv/bin, on PATH: ansible-runner
# needs it there. The versions are bounded by pyproject.toml, which hadolint cannot see.
# hadolint ignore=DL3013
RUN --mount=type=secret,id=build_ca \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["ansible"]))' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt "setuptools>=77" wheel \
    && rm -f /tmp/requirements.txt
COPY shared ./shared
COPY functions ./functions
COPY cli ./cli
COPY worker_image ./worker_image
RUN pip install --no-cache-dir --no-deps --no-build-isolation ".[ansible]" \
    && pip check \
    && rm -rf build ./*.egg-info \
    && ansible-playbook --version > /dev/null \
    && python -c "import ansible_runner"

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/worker --shell /bin/bash worker \
    && install -d -o worker -g worker -m 0700 /home/worker/.ssh \
    && mkdir -p /workspace \
    && chown worker:worker /workspace

# Numeric, so a platform can verify it is not root without reading /etc/passwd.
USER 10001:10001
ENV HOME=/home/worker
WORKDIR /workspace

# One run per container; its exit code is the result.
HEALTHCHECK NONE

ENTRYPOINT ["python", "-m", "worker_image.ansible_runner"]
