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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.secrets.local import LocalSecrets
from tests.ansible_support import free_port, make_app_repo
from tests.e2e.conftest import orchestrator_executable
from tests.fakes.model_server import ModelServer, Script, text, tool
from tests.images import docker_build
from tests.images.conftest import LABEL, run_container
from tests.integration.real_agents import TEST_KEY, claude_env

pytestmark = [pytest.mark.images, pytest.mark.slow, pytest.mark.timeout(900)]

FAKES = Path(__file__).parents[1] / "fakes" / "agents"
IMAGE_UID = 10001
# The stack (root, on the host) works on repositories the image's user owns once a worker has pushed:
# git 2.39 honours safe.directory only in the system or global file (not GIT_CONFIG_COUNT), hence a global file.
GITCONFIG = "[include]\n\tpath = ~/.gitconfig\n[safe]\n\tdirectory = *\n"
# What the developer agent leaves in its commit: where it ran (read back from the pushed branch).
PROOF = (
    '{ id -u; . /etc/os-release; echo "$PRETTY_NAME"; test -f /.dockerenv && echo in-container; '
    "tr '\\0' ' ' < /proc/1/cmdline; echo; } > where-the-agent-ran.txt; exec " + str(FAKES / "dev-agent")
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    gitconfig = Path(os.environ["ORCH_HOME"]).parent / "gitconfig-trusting-all"
    if not gitconfig.exists():
        gitconfig.write_text(GITCONFIG)
    return {**env, "ORCH_HOME": os.environ["ORCH_HOME"], "GIT_CONFIG_GLOBAL": str(gitconfig), **extra}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*orchestrator_executable(), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return json.loads(done.stdout)


@contextmanager
def _stack_with_container_workers(
    image: str,
    task: dict[str, Any],
    scratch: Path,
    stack_env: dict[str, str],
    task_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The embedded stack with `image` in the Fargate task's place; yields its API URL. `task_env` is what
    `-c agent_env` adds to the worker task definition's environment."""
    scratch.mkdir()
    config = scratch / "config.json"
    config.write_text(
        json.dumps(
            {
                "docker": docker_build.docker_client(),
                "image": image,
                "label": LABEL,
                "task_environment": {**task["environment"], **(task_env or {})},
                "cpus": task["cpus"],
                "memory_mib": task["memory_mib"],
                "scratch": str(scratch),
                "read_only_mounts": [str(FAKES)],
            }
        )
    )
    env = _env(
        ORCH_WORKER_IDLE_TIMEOUT_S="30",
        ORCH_QUEUE_VISIBILITY_TIMEOUT="10",
        ORCH_IMAGES_CONFIG=str(config),
        **stack_env,
    )
    stderr = scratch / "stack.err"
    with stderr.open("ab") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("stack_with_container_workers.py")),
                "--port",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
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


@pytest.fixture
def container_stack(
    images: dict[str, docker_build.Built], task_definitions: dict[str, dict[str, Any]], tmp_path: Path
) -> Iterator[str]:
    """The embedded stack with the worker image in the Fargate task's place; yields its API URL."""
    with _stack_with_container_workers(
        images["worker"].tag, task_definitions["worker"], tmp_path / "images", {"ORCH_AGENT_COMMAND": PROOF}
    ) as url:
        yield url


def _engineering_round(spec: str, agent: str) -> tuple[dict[str, Any], list[Path], str]:
    """A project `blog` and one engineering task on it, followed to its end: the finished task, the worker
    logs and their tails; asserts it completed."""
    _json(_cli("project", "create", "--name", "blog", "--description", "a blog", "--json"))
    task = _json(_cli("engineering", "start", "blog", "--spec", spec, "--agent", agent, "--json"))
    follow = _cli("task", "logs", task["id"], "--follow", "--interval", "0.5", timeout=600)
    logs = sorted((Path(os.environ["ORCH_HOME"]) / "logs" / "workers").glob("*.log"))
    worker_logs = "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in logs)
    assert follow.returncode == 0, follow.stdout[-3000:] + follow.stderr[-2000:] + worker_logs
    assert "[tester]" in follow.stdout and "tests passed" in follow.stdout, follow.stdout
    done = _json(_cli("task", "show", task["id"], "--json"))
    assert done["status"] == "COMPLETED", done
    return {**done, "logs_text": follow.stdout}, logs, worker_logs


def _clone_branch(result: dict[str, Any], into: Path) -> Path:
    project = _json(_cli("project", "show", "blog", "--json"))
    subprocess.run(
        ["git", "clone", "-q", "-b", result["branch"], project["repo_url"], str(into)], check=True, env=_env()
    )
    return into


def test_worker_image_does_an_engineering_round_against_the_embedded_stack(
    container_stack: str, tmp_path: Path
) -> None:
    # given: the embedded stack whose workers are containers of the worker image (the fixture)
    # when: an engineering task runs: scaffold (host), developer and tester (one container: the tester's
    # run is a command message to the developer's worker), finalize (host)
    done, logs, worker_logs = _engineering_round("add an answer() function", "command")

    # then: completed, with the developer's commit pushed from the container
    result = done["result"]
    assert (
        "app/feature.py" in result["files_changed"] and "where-the-agent-ran.txt" in result["files_changed"]
    )
    workers = _json(_cli("worker", "list", "--task", done["id"], "--json"))
    assert len(workers) == 1 and all(w["status"] == "STOPPED" for w in workers), workers
    assert len(logs) == 1 and all(f"{docker_build.WORKER_TAG} --worker-id" in p.read_text() for p in logs), (
        worker_logs
    )

    clone = _clone_branch(result, tmp_path / "clone")
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
    job = {
        "request_id": str(uuid.uuid4()),
        "correlation_id": "images-test",
        "kind": "deploy",
        "target": {"handle": "localhost", "host": "127.0.0.1", "connection": "local"},
        "project_id": "p1",
        "project_name": "demo_app",
        "repo_url": str(repo.bare),
        "ref": "main",
        "port": port,
        "timeout_s": 180,
    }
    env = {**runner["environment"], "ORCH_ANSIBLE_JOB": json.dumps(job)}

    # when: the runner image runs it as the Fargate task would (job in the env var; no --publish: no SQS here)
    args = [
        "--cpus",
        str(runner["cpus"]),
        "--memory",
        f"{runner['memory_mib']}m",
        "-v",
        f"{repo.bare}:{repo.bare}:ro",
    ]
    for name, value in sorted(env.items()):
        args += ["-e", f"{name}={value}"]
    done = run_container(*args, images["ansible"].tag, "--job-env", "ORCH_ANSIBLE_JOB", timeout=300)

    # then: the playbook deployed the app inside the container and its health check answered
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "success", outcome
    assert outcome["deployed_url"] == f"http://127.0.0.1:{port}"
    assert outcome["health_url"] == f"http://127.0.0.1:{port}/health"


# The scripted model's tool calls for the claude round: a Write (the file the test looks for in the pushed
# branch), then a Bash call that records where claude ran and how the adapter started it (its argv, read
# from /proc: the process whose argv[0] is claude).
CLAUDE_PROOF = (
    "{ id -u; test -f /.dockerenv && echo in-container; for p in /proc/[0-9]*; do "
    "a0=$(tr '\\0' '\\n' < \"$p/cmdline\" 2>/dev/null | head -n 1); "
    'case "$(basename "$a0" 2>/dev/null)" in claude|claude.exe) tr \'\\0\' \' \' < "$p/cmdline"; echo;; esac; '
    "done; } > where-claude-ran.txt"
)
CLAUDE_SCRIPT = Script(
    "images_claude",
    [
        [
            text("Writing the feature."),
            tool("Write", file_path="{cwd}/hello.txt", content="hello from claude\n"),
        ],
        [tool("Bash", command=CLAUDE_PROOF, description="record where this runs")],
    ],
    final="Wrote hello.txt.",
)


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer(CLAUDE_SCRIPT) as server:
        yield server


def test_real_claude_in_the_worker_image_does_an_engineering_round(
    claude_worker_image: docker_build.Built,
    task_definitions: dict[str, dict[str, Any]],
    model: ModelServer,
    tmp_path: Path,
) -> None:
    # given: the stack's key for the agents by reference (its secrets file, as the task role reads Secrets
    # Manager), the scripted model on the host as the endpoint (what `-c agent_env` puts on the worker task),
    # and workers that are containers of the image with the real claude
    LocalSecrets(Path(os.environ["ORCH_HOME"]) / "secrets.json").put("secret://agents/anthropic", TEST_KEY)
    agent_env = {
        k: v
        for k, v in claude_env(tmp_path / "unused-home", model.url).items()
        if k not in ("PATH", "HOME", "ANTHROPIC_API_KEY")
    }
    refs = json.dumps({"ANTHROPIC_API_KEY": "secret://agents/anthropic"})
    with _stack_with_container_workers(
        claude_worker_image.tag,
        task_definitions["worker"],
        tmp_path / "images",
        {"ORCH_AGENT_SECRET_REFS": refs},
        agent_env,
    ):
        # when: an engineering task with the default agent: developer (real claude) and tester in containers
        done, logs, worker_logs = _engineering_round("add hello.txt", "claude-code")

        # then: completed; the real claude asked the scripted model with the key it was granted
        assert "[developer] tool: Write" in done["logs_text"], done["logs_text"]
        turns = model.agent_requests()
        assert len(turns) >= 3 and {r["key_end"] for r in turns} == {TEST_KEY[-4:]}, turns
        assert all(f"{docker_build.CLAUDE_WORKER_TAG} --worker-id" in p.read_text() for p in logs), (
            worker_logs
        )

        # the files its tool calls wrote are in the pushed branch
        result = done["result"]
        assert {"hello.txt", "where-claude-ran.txt"} <= set(result["files_changed"]), result
        clone = _clone_branch(result, tmp_path / "clone")
    assert (clone / "hello.txt").read_text() == "hello from claude\n"
    proof = (clone / "where-claude-ran.txt").read_text()
    uid, marker = proof.splitlines()[:2]
    # non-root in the container, so `permissions=auto` chose bypassPermissions (which claude refuses for root)
    assert (uid, marker) == (str(IMAGE_UID), "in-container"), proof
    assert "--permission-mode bypassPermissions" in proof and "dontAsk" not in proof, proof
    print(
        f"\nreal claude ran in the worker image as uid {uid}: "
        f"{claude_worker_image.line()}; {len(turns)} model turns",
        file=sys.stderr,
    )
