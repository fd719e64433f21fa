"""Building the worker and Ansible runner images from a debootstrapped Debian base (docs/images.md).

Registry pulls fail on the project's machines, so `python:3.12-slim` cannot be the base there: a
`debootstrap --variant=minbase bookworm` tree imported with `docker import` stands in through the
Dockerfiles' BASE_IMAGE argument. The base is reused when its tag exists (~30 s saved); the engine's
BuildKit cache keeps the image layers between runs on the same machine.

`python -m tests.images.docker_build` (`make images`) builds all three and prints sizes and times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = os.environ.get("ORCH_IMAGES_BASE", "orchestrator-base:bookworm")
WORKER_TAG = "orchestrator-worker:test"
ANSIBLE_TAG = "orchestrator-ansible-runner:test"
CLAUDE_WORKER_TAG = "orchestrator-worker:test-claude"
# The worker image as AWS builds it by default (infra_cdk's DEFAULT_WORKER_AGENT_PACKAGES), with Node and
# npm from the npm registry (NODE_FROM=npm): of the places Node can come from, only that registry answers here.
CLAUDE_BUILD_ARGS = {"AGENT_NPM_PACKAGES": "@anthropic-ai/claude-code@2.1.332", "NODE_FROM": "npm"}
DEBIAN_MIRROR = os.environ.get("ORCH_IMAGES_MIRROR", "http://deb.debian.org/debian")
# The CA bundle the build's downloads trust: this machine's, which knows a TLS-inspecting proxy if there is one.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass
class Built:
    tag: str
    seconds: float
    size_bytes: int
    cached: bool = False

    def line(self) -> str:
        how = "reused" if self.cached else f"{self.seconds:.1f} s"
        return f"{self.tag}: {self.size_bytes / 1e6:.0f} MB ({how})"


def docker_client() -> str:
    """A docker CLI that can drive BuildKit: with the buildx plugin, or a 20.x client (BuildKit built in).
    A newer client without buildx (e.g. /usr/local/bin/docker 28 here) would fall back to the legacy
    builder, which ignores `<Dockerfile>.dockerignore` and `RUN --mount`."""
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and Path(c).exists()]
    for client in dict.fromkeys(candidates):
        if subprocess.run([client, "buildx", "version"], capture_output=True).returncode == 0:
            return client
        version = subprocess.run(
            [client, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return client
    raise RuntimeError(
        f"no docker CLI able to build with BuildKit among {candidates}: install docker.io or buildx"
    )


def engine_problem() -> str | None:
    """Why images cannot be built here, or None."""
    if not shutil.which("docker") and not Path("/usr/bin/docker").exists():
        return "no docker CLI (install docker.io; .ci/run does)"
    try:
        client = docker_client()
    except RuntimeError as exc:
        return str(exc)
    info = subprocess.run([client, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"the Docker engine does not answer: {info.stderr.strip()[:300]}"
    if not shutil.which("debootstrap") and not image_exists(BASE_TAG):
        return f"no debootstrap to make the base image and no {BASE_TAG} image"
    return None


def docker(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker_client(), *args], check=check, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def image_exists(tag: str) -> bool:
    client = shutil.which("docker") or "/usr/bin/docker"
    return subprocess.run([client, "image", "inspect", tag], capture_output=True).returncode == 0


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", tag, "--format", "{{.Size}}").stdout.strip())


def ensure_base(tag: str = BASE_TAG, rebuild: bool = False) -> Built:
    """A minimal Debian bookworm image made with debootstrap, reused when the tag exists."""
    if image_exists(tag) and not rebuild:
        return Built(tag, 0.0, image_size(tag), cached=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="orch-base-", dir="/var/tmp") as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
            check=True,
            capture_output=True,
            timeout=600,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [docker_client(), "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrapped tree failed")
    return Built(tag, time.monotonic() - started, image_size(tag))


def build(dockerfile: str, tag: str, base: str = BASE_TAG, build_args: dict[str, str] | None = None) -> Built:
    """`docker build` from the repository root with BuildKit; the host's CA bundle as the `build_ca` secret."""
    args = [
        "build",
        "--progress=plain",
        "-f",
        f"worker_image/{dockerfile}",
        "-t",
        tag,
        "--build-arg",
        f"BASE_IMAGE={base}",
    ]
    for name, value in (build_args or {}).items():
        args += ["--build-arg", f"{name}={value}"]
    if HOST_CA_BUNDLE.exists():
        args += ["--secret", f"id=build_ca,src={HOST_CA_BUNDLE}"]
    started = time.monotonic()
    done = docker(*args, ".", cwd=ROOT, check=False, env={**os.environ, "DOCKER_BUILDKIT": "1"}, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"docker build -f worker_image/{dockerfile} failed:\n{done.stderr[-4000:]}")
    return Built(tag, time.monotonic() - started, image_size(tag))


def build_all(with_claude: bool = False) -> dict[str, Built]:
    base = ensure_base()
    built = {
        "base": base,
        "worker": build("Dockerfile", WORKER_TAG),
        "ansible": build("ansible.Dockerfile", ANSIBLE_TAG),
    }
    if with_claude:
        built["worker-claude"] = build_claude_worker()
    return built


def build_claude_worker() -> Built:
    """The worker image with the real Claude Code CLI in it (shares the plain worker's first layers)."""
    ensure_base()
    return build("Dockerfile", CLAUDE_WORKER_TAG, build_args=CLAUDE_BUILD_ARGS)


def main() -> int:
    problem = engine_problem()
    if problem:
        print(f"cannot build the images: {problem}", file=sys.stderr)
        return 1
    built = build_all(with_claude=True)
    for name, item in built.items():
        print(f"{name:8} {item.line()}")
    print(
        json.dumps(
            {
                k: {"tag": v.tag, "seconds": round(v.seconds, 1), "bytes": v.size_bytes, "cached": v.cached}
                for k, v in built.items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
