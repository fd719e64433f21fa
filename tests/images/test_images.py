"""The worker and Ansible runner images, built for real (docs/images.md) and run as Fargate would run them:
the worker with its task definition's environment and RunTask overrides against the embedded stack's API
(an engineering round: developer and tester in containers), the runner with a deploy job in its
environment variable (a real Ansible run, connection local, inside the container)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible_support import free_port, make_app_repo
from tests.e2e.conftest import orchestrator_executable
from tests.images import docker_build
from tests.images.conftest import LABEL, run_container

pytestmark = [pytest.mark.images, pytest.mark.slow, pytest.mark.timeout(900)]

FAKES = Path(__file__).parents[1] / "fakes" / "agents"
IMAGE_UID = 10001
# The stack (root, on the host) works on repositories the image's user owns once a worker has pushed:
# git 2.39 honours safe.directory only in the system or global file (not GIT_CONFIG_COUNT), hence a global file.
GITCONFIG = "[include]\n\tpath = ~/.gitconfig\n[safe]\n\tdirectory = *\n"
# What the developer agent leaves in its commit: where it ran (read back from the pushed branch).
PROOF = ("{ id -u; . /etc/os-release; echo \"$PRETTY_NAME\"; test -f /.dockerenv && echo in-container; "
         "tr '\\0' ' ' < /proc/1/cmdline; echo; } > where-the-agent-ran.txt; exec " + str(FAKES / "dev-agent"))  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    gitconfig = Path(os.environ["ORCH_HOME"]).parent / "gitconfig-trusting-all"
    if not gitconfig.exists():
        gitconfig.write_text(GITCONFIG)
    return {**env, "ORCH_HOME": os.environ["ORCH_HOME"], "GIT_CONFIG_GLOBAL": str(gitconfig), **extra}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*orchestrator_executable(), *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout, check=False)  # fmt: skip


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return json.loads(done.stdout)


@pytest.fixture
def container_stack(images: dict[str, docker_build.Built], task_definitions: dict[str, dict[str, Any]],
                    tmp_path: Path) -> Iterator[str]:  # fmt: skip
    """The embedded stack with the worker image in the Fargate task's place; yields its API URL."""
    worker = task_definitions["worker"]
    scratch = tmp_path / "images"
    scratch.mkdir()
    config = scratch / "config.json"
    config.write_text(json.dumps({
        "docker": docker_build.docker_client(), "image": images["worker"].tag, "label": LABEL,
        "task_environment": worker["environment"], "cpus": worker["cpus"], "memory_mib": worker["memory_mib"],
        "scratch": str(scratch), "read_only_mounts": [str(FAKES)],
    }))  # fmt: skip
    env = _env(ORCH_AGENT_COMMAND=PROOF, ORCH_WORKER_IDLE_TIMEOUT_S="30", ORCH_QUEUE_VISIBILITY_TIMEOUT="10",
               ORCH_IMAGES_CONFIG=str(config))  # fmt: skip
    stderr = tmp_path / "stack.err"
    with stderr.open("ab") as err:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("stack_with_container_workers.py")),
             "local", "up", "--port", "0", "--json"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"stack did not start: {stderr.read_text()[-3000:]}"
        yield json.loads(line)["url"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_worker_image_does_an_engineering_round_against_the_embedded_stack(container_stack: str,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    # given: a project on the embedded stack whose workers are containers of the worker image
    _json(_cli("project", "create", "--name", "blog", "--description", "a blog", "--json"))

    # when: an engineering task runs: scaffold (host), developer and tester (containers), finalize (host)
    task = _json(_cli("engineering", "start", "blog", "--spec", "add an answer() function", "--agent", "command",
                      "--json"))  # fmt: skip
    follow = _cli("task", "logs", task["id"], "--follow", "--interval", "0.5", timeout=600)
    logs = sorted((Path(os.environ["ORCH_HOME"]) / "logs" / "workers").glob("*.log"))
    worker_logs = "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in logs)

    # then: completed, with the developer's commit pushed from the container
    assert follow.returncode == 0, follow.stdout[-3000:] + follow.stderr[-2000:] + worker_logs
    assert "[tester]" in follow.stdout and "tests passed" in follow.stdout, follow.stdout
    done = _json(_cli("task", "show", task["id"], "--json"))
    assert done["status"] == "COMPLETED"
    result = done["result"]
    assert (
        "app/feature.py" in result["files_changed"] and "where-the-agent-ran.txt" in result["files_changed"]
    )
    workers = _json(_cli("worker", "list", "--task", task["id"], "--json"))
    assert len(workers) == 2 and all(w["status"] == "STOPPED" for w in workers), workers
    assert len(logs) == 2 and all(f"{docker_build.WORKER_TAG} --worker-id" in p.read_text() for p in logs), (
        worker_logs
    )

    project = _json(_cli("project", "show", "blog", "--json"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", result["branch"], project["repo_url"], str(clone)], check=True,
                   env=_env())  # fmt: skip
    uid, system, marker, pid1 = (clone / "where-the-agent-ran.txt").read_text().splitlines()[:4]
    assert uid == str(IMAGE_UID), "the agent runs as the image's user, not root"
    assert system.startswith("Debian GNU/Linux 12") and marker == "in-container"
    assert "orchestrator-worker --worker-id" in pid1, "the wrapper is the container's first process"
    print(f"\nthe developer agent ran as uid {uid} on {system}, PID 1 `{pid1.strip()}`", file=sys.stderr)


def test_ansible_runner_image_deploys_an_app_with_a_real_playbook(
    images: dict[str, docker_build.Built], task_definitions: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # given: a rendered app in a bare repository the image's user can read, and a deploy job for localhost
    repo = make_app_repo(tmp_path / "app")
    subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(repo.bare)], check=True)
    runner = task_definitions["ansible-runner"]
    port = free_port()
    job = {"request_id": str(uuid.uuid4()), "correlation_id": "images-test", "kind": "deploy",
           "target": {"handle": "localhost", "host": "127.0.0.1", "connection": "local"},
           "project_id": "p1", "project_name": "demo_app", "repo_url": str(repo.bare), "ref": "main",
           "port": port, "timeout_s": 180}  # fmt: skip
    env = {**runner["environment"], "ORCH_ANSIBLE_JOB": json.dumps(job)}

    # when: the runner image runs it as the Fargate task would (job in the env var; no --publish: no SQS here)
    args = ["--cpus", str(runner["cpus"]), "--memory", f"{runner['memory_mib']}m",
            "-v", f"{repo.bare}:{repo.bare}:ro"]  # fmt: skip
    for name, value in sorted(env.items()):
        args += ["-e", f"{name}={value}"]
    done = run_container(*args, images["ansible"].tag, "--job-env", "ORCH_ANSIBLE_JOB", timeout=300)

    # then: the playbook deployed the app inside the container and its health check answered
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "success", outcome
    assert outcome["deployed_url"] == f"http://127.0.0.1:{port}"
    assert outcome["health_url"] == f"http://127.0.0.1:{port}/health"
