"""The engineering department end to end, through the real CLI on the embedded stack:
scaffold -> developer (a fake agent making a real change) -> tester (the template's tests) -> finalize."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.contracts import ENGINEERING_QUEUE, EngineeringMessage
from shared.queues.local import LocalQueue
from tests.e2e.conftest import CliRunner
from tests.e2e.test_local_stack import Stack
from tests.process_hygiene import kill_workers

FAKES = Path(__file__).parents[1] / "fakes" / "agents"


def _stack(home: Path, mode: str, sleep: float = 0) -> Stack:
    return Stack(
        home,
        env={
            "ORCH_AGENT_COMMAND": str(FAKES / "dev-agent"),
            "FAKE_DEV_MODE": mode,
            "FAKE_DEV_SLEEP": str(sleep),
            "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
            "ORCH_QUEUE_VISIBILITY_TIMEOUT": "10",
        },
    )


@pytest.fixture
def make_stack() -> Iterator:  # type: ignore[type-arg]
    started: list[Stack] = []

    def make(mode: str = "good", sleep: float = 0) -> Stack:
        stack = _stack(Path(os.environ["ORCH_HOME"]), mode, sleep)
        stack.start()
        started.append(stack)
        return stack

    yield make
    for stack in started:
        if stack.process and stack.process.poll() is None:
            stack.stop()
    kill_workers(Path(os.environ["ORCH_HOME"]))


def _run(cli: CliRunner, spec: str = "add an answer() function") -> dict:  # type: ignore[type-arg]
    created = cli("project", "create", "--name", "blog", "--description", "a blog", "--json")
    assert created.returncode == 0, created.stderr
    started = cli("engineering", "start", "blog", "--spec", spec, "--agent", "command", "--json")
    assert started.returncode == 0, started.stderr
    return json.loads(started.stdout)  # type: ignore[no-any-return]


def _follow(cli: CliRunner, task_id: str) -> subprocess.CompletedProcess[str]:
    return cli("task", "logs", task_id, "--follow", "--interval", "0.3")


def _workers(cli: CliRunner, task_id: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(cli("worker", "list", "--task", task_id, "--json").stdout)  # type: ignore[no-any-return]


def test_spec_to_commit_through_scaffold_developer_tester(make_stack, cli: CliRunner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_stack("good")
    task = _run(cli)
    follow = _follow(cli, task["id"])
    assert follow.returncode == 0, follow.stdout + follow.stderr
    steps = [line for line in follow.stdout.splitlines() if "[" in line]
    order = [
        s
        for s in ("[prepare]", "[scaffold]", "[developer]", "[tester]", "[finalize]")
        if any(s in line for line in steps)
    ]
    assert order == ["[prepare]", "[scaffold]", "[developer]", "[tester]", "[finalize]"], follow.stdout

    done = json.loads(cli("task", "show", task["id"], "--json").stdout)
    assert done["status"] == "COMPLETED"
    result = done["result"]
    assert result["commit_sha"] and result["branch"] and "app/feature.py" in result["files_changed"]
    project = json.loads(cli("project", "show", "blog", "--json").stdout)
    assert project["status"] == "active" and project["repo_url"]

    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "-b", result["branch"], project["repo_url"], str(clone)], check=True
    )
    assert (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
        ).stdout.strip()
        == result["commit_sha"]
    )
    assert (clone / "app" / "feature.py").exists() and (clone / "orchestrator.env.json").exists()
    assert not (clone / "TASK.md").exists(), "the worker's files stay out of the history"
    tests = subprocess.run(["make", "-C", str(clone), "test"], capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    workers = _workers(cli, task["id"])
    assert len(workers) == 1 and all(w["status"] == "STOPPED" for w in workers)  # one for both rounds


def test_fix_loop_takes_a_second_developer_round(make_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    make_stack("fix")
    task = _run(cli)
    follow = _follow(cli, task["id"])
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "tests failed; back to the developer (round 2)" in follow.stdout
    developers = [w for w in _workers(cli, task["id"]) if w["agent"] == "command"]
    assert len(developers) == 2, "one worker per developer round, its tests run on it"


def test_a_permanently_broken_agent_asks_the_person_with_the_test_output(make_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: when the fix rounds run out the task does not just fail: it waits for a person's review
    with the last test output, and `task cancel` still ends it."""
    make_stack("broken")
    task = _run(cli)
    deadline = time.monotonic() + 240
    shown: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        shown = json.loads(cli("task", "show", task["id"], "--json").stdout)
        if shown["status"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.5)
    assert shown["status"] == "WAITING_HUMAN_REVIEW", shown
    gate = shown["gate"]
    assert (gate["kind"], gate["status"]) == ("review", "pending"), gate
    assert "42" in gate["summary"] or "AssertionError" in gate["summary"], gate["summary"]
    assert len([w for w in _workers(cli, task["id"]) if w["agent"] == "command"]) == 3, "three rounds ran"
    cancelled = cli("task", "cancel", task["id"], "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cli("task", "show", task["id"], "--json").stdout)["status"] == "CANCELLED"


def test_the_same_message_three_times_is_one_run(make_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    make_stack("good")
    task = _run(cli)
    queue = LocalQueue(Path(os.environ["ORCH_HOME"]) / "queue.db")
    duplicate = EngineeringMessage(
        task_id=task["id"], project_id=task["project_id"], user_id=0, correlation_id=task["correlation_id"]
    )
    queue.publish(ENGINEERING_QUEUE, duplicate)
    queue.publish(ENGINEERING_QUEUE, duplicate)
    assert _follow(cli, task["id"]).returncode == 0
    shown = json.loads(cli("task", "show", task["id"], "--json").stdout)
    assert shown["attempt"] == 1
    assert len(_workers(cli, task["id"])) == 1, "one worker for both rounds, not three"


def test_killing_the_stack_mid_task_then_restarting_finishes_it(make_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack("good", sleep=4)
    task = _run(cli)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(w["status"] == "RUNNING" for w in _workers(cli, task["id"])):
            break
        time.sleep(0.3)
    else:
        pytest.fail("the developer worker never started")
    port = int(stack.url.rsplit(":", 1)[1])
    stack.kill()
    time.sleep(1)
    stack.start(port)  # the same address, as `orchestrator local up` (port 8787) would have
    follow = _follow(cli, task["id"])
    assert follow.returncode == 0, follow.stdout + follow.stderr
    workers = _workers(cli, task["id"])
    assert len(workers) == 1, f"exactly one worker for both rounds: {workers}"


def test_a_developer_worker_killed_by_hand_fails_the_task_with_the_reason(make_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    import signal

    make_stack("good", sleep=30)
    task = _run(cli)
    deadline = time.monotonic() + 60
    handle = None
    while time.monotonic() < deadline and handle is None:
        running = [w for w in _workers(cli, task["id"]) if w["status"] == "RUNNING" and w["runtime_handle"]]
        handle = running[0]["runtime_handle"] if running else None
        time.sleep(0.3)
    assert handle, "the developer worker never started"
    os.killpg(int(handle.split(":")[1]), signal.SIGKILL)
    killed_at = time.monotonic()
    follow = _follow(cli, task["id"])
    assert follow.returncode == 1
    assert time.monotonic() - killed_at < 60
    failed = json.loads(cli("task", "show", task["id"], "--json").stdout)
    assert failed["status"] == "FAILED" and "killed by signal 9" in failed["error"], failed["error"]
    assert kill_workers(Path(os.environ["ORCH_HOME"])) == 0, "no worker process is left behind"
