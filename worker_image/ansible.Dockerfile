# The Ansible runner image, used by deploys: ansible-core + ansible-runner (the project's [ansible]
# extra), ssh, and the `worker_image.ansible_runner` entry module.
#
# Build from the repository root:
#   docker build -f worker_image/ansible.Dockerfile -t orchestrator-ansible-runner .
#
# No SSH key, vault password or other secret is baked in: the runner resolves secret references at
# run time and keeps what it resolves in its private data dir for the one run.

FROM python:3.12-slim

LABEL org.opencontainers.image.title="orchestrator-ansible-runner" \
      org.opencontainers.image.description="Runs one Ansible playbook for a deploy, then exits" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANSIBLE_NOCOLOR=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian package versions are not pinned: the mirror drops old ones, so a pin would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/orchestrator
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY functions ./functions
COPY cli ./cli
COPY worker_image ./worker_image
# ansible-playbook lands in /usr/local/bin, on PATH: ansible-runner needs it there. The versions
# are bounded by pyproject.toml's [ansible] extra, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[ansible]" \
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
