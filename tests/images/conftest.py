"""The real images (marker `images`): built once per session from a debootstrapped Debian base, with the
task definitions' environment read from the synthesized stack. Skipped, with the reason, when no Docker
engine answers or the tests do not run as root (the worker's bare repositories are handed to the image's
user with chown). Containers this session started are removed at the end, whatever happened."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.images import docker_build

LABEL = f"orch-images-test={uuid.uuid4().hex[:12]}"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the image tests hand the embedded repositories to the image's user (chown): run as root"
    return docker_build.engine_problem()


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, docker_build.Built]]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    built = docker_build.build_all()
    print("\nimages: " + "; ".join(f"{k} {v.line()}" for k, v in built.items()), file=sys.stderr)
    yield built
    leftover = docker_build.docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if leftover:
        docker_build.docker("rm", "-f", *leftover, check=False)


@pytest.fixture(scope="session")
def claude_worker_image(images: dict[str, docker_build.Built]) -> docker_build.Built:
    """The worker image with the pinned real Claude Code CLI (AGENT_NPM_PACKAGES), built after the others."""
    built = docker_build.build_claude_worker()
    print(f"\nimages: worker-claude {built.line()}", file=sys.stderr)
    return built


def _resolved(value: Any) -> str:
    """A template value off AWS: refs to resources (a bucket's name, the region) become stand-ins."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("Ref") == "AWS::Region":
        return "us-east-1"
    if isinstance(value, dict) and "Ref" in value:
        return f"images-test-{str(value['Ref']).lower()[:40]}"
    raise ValueError(f"unexpected template value {value!r}")


@pytest.fixture(scope="session")
def task_definitions() -> dict[str, dict[str, Any]]:
    """Per container name: its environment, cpu (vCPUs) and memory (MiB), as the template sets them."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra_cdk.app import build_app

    with tempfile.TemporaryDirectory(prefix="orch-images-synth-") as outdir:
        app, stack = build_app(outdir=outdir, context={"github_owner": "acme"})
        template = app.synth().get_stack_by_name(stack.stack_name).template
    found = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        props = resource["Properties"]
        for container in props["ContainerDefinitions"]:
            found[container["Name"]] = {
                "environment": {e["Name"]: _resolved(e["Value"]) for e in container.get("Environment", [])},
                "cpus": int(props["Cpu"]) / 1024,
                "memory_mib": int(props["Memory"]),
            }
    return found


def run_container(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return docker_build.docker("run", "--rm", "--label", LABEL, *args, check=False, timeout=timeout)
