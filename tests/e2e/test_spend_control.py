"""Spend and control (issue 21) through the real CLI on one embedded stack with the fake developer:
the ledger sums the agents' reported costs to the cent; a runaway agent is stopped at its task's budget
and the task says `budget`; a plan waits for approval, is approved or rejected from the CLI, and its
approval survives kill -9 of the stack; a developer whose tests keep failing parks for human review
and `task resume --guidance` brings the guidance into its next round and onto main.

One stack serves the module (CI time); each task picks its own fake-developer behaviour with
`FAKE_DEV_*=value` lines in its spec, which a small shim (written by the fixture) exports before it
hands over to tests/fakes/agents/dev-agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CliRunner, cli_runner, orchestrator_executable
from tests.e2e.test_local_stack import Stack
from tests.process_hygiene import kill_workers

pytestmark = pytest.mark.slow

DEV_AGENT = Path(__file__).parents[1] / "fakes" / "agents" / "dev-agent"
SHIM = f"""#!{sys.executable}
# Exports the FAKE_DEV_*=value lines of the task's TASK.md, then runs the fake developer.
import os, re, sys
from pathlib import Path

task = Path(os.environ.get("ORCH_TASK_FILE", "TASK.md")).read_text()
os.environ.update(dict(re.findall(r"^(FAKE_DEV_[A-Z_]+)=(\\S+)$", task, re.M)))
os.execv({str(DEV_AGENT)!r}, [{str(DEV_AGENT)!r}, *sys.argv[1:]])
"""
WAIT_S = 240.0


@dataclass
class World:
    home: Path
    stack: Stack
    cli: CliRunner

    def json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"{args}: exit {done.returncode}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout)

    def project(self, name: str, approval: str | None = None) -> None:
        self.json("project", "create", "--name", name, "--agent", "command")
        if approval is not None:
            changed = self.json("project", "set", name, "--approval", approval)
            assert changed["approval"] == approval

    def engineering(self, project: str, *fake: str) -> str:
        spec = "\n".join(["add an answer() function", "", *fake])
        return str(self.json("engineering", "start", project, "--spec", spec)["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.json("task", "show", task_id))

    def wait(self, task_id: str, *statuses: str) -> dict[str, Any]:
        """The task once it is in one of `statuses`; fails if it ends in another or takes too long."""
        deadline = time.monotonic() + WAIT_S
        task = self.task(task_id)
        while task["status"] not in statuses:
            assert task["status"] not in ("COMPLETED", "FAILED", "CANCELLED"), (
                f"task ended {task['status']} waiting for {statuses}: {task['error']}"
            )
            assert time.monotonic() < deadline, f"task still {task['status']}, waiting for {statuses}"
            time.sleep(0.3)
            task = self.task(task_id)
        return task

    def follow(self, task_id: str) -> subprocess.CompletedProcess[str]:
        return self.cli("task", "logs", task_id, "--follow", "--interval", "0.3", timeout=WAIT_S)

    def repo(self, project: str) -> str:
        return str(self.json("project", "show", project)["repo_url"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("spend-control")
    home = root / "orch-home"
    home.mkdir()
    shim = root / "dev-agent-shim"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    stack = Stack(
        home,
        env={
            "ORCH_AGENT_COMMAND": str(shim),
            "ORCH_ENGINEERING_MAX_ATTEMPTS": "1",  # a failing round parks for human review at once
            "ORCH_WORKER_IDLE_TIMEOUT_S": "15",
            "ORCH_QUEUE_VISIBILITY_TIMEOUT": "10",
        },
    )
    stack.start()
    try:
        yield World(home, stack, cli_runner(home))
    finally:
        if stack.process and stack.process.poll() is None:
            stack.stop()
        kill_workers(home)


def test_the_ledger_sums_the_agents_reported_costs_to_the_cent(world: World) -> None:
    # given two projects whose developers report $0.37 and $0.25 (one run each)
    world.project("ledger-a")
    world.project("ledger-b")
    first = world.engineering("ledger-a", "FAKE_DEV_COST=0.37")
    second = world.engineering("ledger-b", "FAKE_DEV_COST=0.25")

    # when both are done
    for task_id in (first, second):
        followed = world.follow(task_id)
        assert followed.returncode == 0, followed.stdout + followed.stderr

    # then the person's agent spend is exactly their sum, per project and per task too
    usage = world.json("usage")
    assert usage["total"]["agent_cost_usd"] == 0.62
    assert usage["total"]["runs"] == 2
    assert {g["label"]: g["agent_cost_usd"] for g in usage["by_project"]} == {
        "ledger-a": 0.37,
        "ledger-b": 0.25,
    }
    assert {g["key"]: g["agent_cost_usd"] for g in usage["by_task"]} == {first: 0.37, second: 0.25}
    assert world.json("usage", "--project", "ledger-a")["total"]["agent_cost_usd"] == 0.37
    today = datetime.now(UTC).date().isoformat()
    assert world.json("usage", "--since", today)["total"]["agent_cost_usd"] == 0.62
    # the task's own cost adds its workers' running time (fractions of a cent here)
    for task_id, cost in ((first, 0.37), (second, 0.25)):
        shown = world.task(task_id)["cost_usd"]
        assert cost <= shown < cost + 0.01, shown
    text = world.cli("usage")
    assert text.returncode == 0 and "spend of you: $0.6" in text.stdout, text.stdout + text.stderr
    refused = world.cli("usage", "--since", "last week")
    assert refused.returncode == 2 and "--since" in refused.stderr, refused.stderr


def test_a_runaway_agent_is_stopped_at_the_task_budget_and_the_task_says_budget(world: World) -> None:
    # given a project whose tasks may spend $1 each, and an agent that spends $0.30 every 0.2 s
    world.project("runaway")
    budget = world.json("budget", "set", "--project", "runaway", "--usd", "1", "--per", "task")
    assert (budget["usd"], budget["period"], budget["source"]) == (1.0, "task", "set")
    shown = world.json("budget", "show", "--project", "runaway")
    assert any(b["period"] == "task" and b["usd"] == 1.0 and b["source"] == "set" for b in shown), shown
    task_id = world.engineering("runaway", "FAKE_DEV_SPEND=0.3")

    # when it runs
    followed = world.follow(task_id)

    # then it is stopped: FAILED for its budget, the error naming the budget and the spend
    assert followed.returncode == 1, followed.stdout + followed.stderr
    task = world.task(task_id)
    assert (task["status"], task["failure_reason"]) == ("FAILED", "budget"), task["error"]
    assert "budget" in task["error"] and "$1.00" in task["error"] and "spent" in task["error"], task["error"]
    spent = world.json("usage", "--project", "runaway")["total"]["agent_cost_usd"]
    assert 1.0 <= spent <= 3.0, spent  # recorded, and stopped within a few reports of the limit
    assert task["cost_usd"] >= spent
    # and cleared, the settings' default task budget applies again
    world.json("budget", "clear", "--project", "runaway", "--per", "task")
    shown = world.json("budget", "show", "--project", "runaway")
    assert [b["source"] for b in shown if b["period"] == "task"] == ["default"], shown


def test_a_plan_waits_for_approval_and_is_approved_or_rejected_from_the_cli(world: World) -> None:
    # given a project whose plans wait for approval, and a person following its task
    world.project("planned", approval="plan")
    task_id = world.engineering("planned")
    with _follow_in_background(world, task_id) as follower:
        # when the plan waits: `task show` says what and how to answer, the follower says it once
        waiting = world.wait(task_id, "WAITING_APPROVAL")
        assert waiting["gate"]["kind"] == "plan" and waiting["gate"]["status"] == "pending", waiting["gate"]
        shown = world.cli("task", "show", task_id)
        assert f"orchestrator task approve {task_id}" in shown.stdout, shown.stdout
        hint = _wait_for_line(follower, "waiting for your approval")
        assert f"orchestrator task approve {task_id} (or reject)" in hint

        # then approving it lets it finish, and the follower ends with it
        approved = world.json("task", "approve", task_id, "--comment", "looks right")
        assert approved["status"] == "RUNNING"
        assert follower.process.wait(timeout=WAIT_S) == 0
    assert world.task(task_id)["status"] == "COMPLETED"
    assert follower.stderr().count("waiting for your approval") == 1
    again = world.cli("task", "approve", task_id)
    assert again.returncode == 4, again.stderr  # nothing waits any more: a conflict

    # and a rejected plan ends the task FAILED, reason rejected
    rejected_id = world.engineering("planned")
    world.wait(rejected_id, "WAITING_APPROVAL")
    rejected = world.json("task", "reject", rejected_id, "--comment", "not now")
    assert (rejected["status"], rejected["failure_reason"]) == ("FAILED", "rejected")
    assert "not now" in rejected["error"], rejected["error"]
    assert world.follow(rejected_id).returncode == 1


def test_an_approval_survives_kill_9_of_the_stack(world: World) -> None:
    # given a task waiting for approval
    world.project("restarts", approval="plan")
    task_id = world.engineering("restarts")
    world.wait(task_id, "WAITING_APPROVAL")

    # when the whole stack is killed (no clean shutdown) and started again on the same data
    port = int(world.stack.url.rsplit(":", 1)[1])
    world.stack.kill()
    kill_workers(world.home)
    world.stack.start(port)
    assert world.task(task_id)["status"] == "WAITING_APPROVAL"

    # then approving it finishes the task
    assert world.json("task", "approve", task_id)["status"] == "RUNNING"
    followed = world.follow(task_id)
    assert followed.returncode == 0, followed.stdout + followed.stderr


def test_a_developer_out_of_rounds_waits_for_guidance_which_reaches_main(world: World) -> None:
    # given a developer whose tests fail until TASK.md carries the person's guidance
    world.project("guided")
    task_id = world.engineering("guided", "FAKE_DEV_MODE=needs-guidance")

    # when its rounds run out it waits for a person, with the test output
    waiting = world.wait(task_id, "WAITING_HUMAN_REVIEW")
    assert waiting["gate"]["kind"] == "review" and waiting["gate"]["summary"], waiting["gate"]
    shown = world.cli("task", "show", task_id)
    assert f"orchestrator task resume {task_id} --guidance" in shown.stdout, shown.stdout

    # then the guidance resumes it, the next round follows it, and the work lands on main
    assert world.json("task", "resume", task_id, "--guidance", "use 42")["status"] == "RUNNING"
    followed = world.follow(task_id)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    guidance = subprocess.run(
        ["git", "--git-dir", world.repo("guided"), "show", "main:app/guidance.txt"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "use 42" in guidance.stdout, guidance.stderr


@dataclass
class Follower:
    process: subprocess.Popen[str]
    err: Path

    def stderr(self) -> str:
        return self.err.read_text()


@contextlib.contextmanager
def _follow_in_background(world: World, task_id: str) -> Iterator[Follower]:
    """`task logs --follow` left running while the test answers the task (as a person's terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_HOME"] = str(world.home)
    err = world.home.parent / f"follow-{task_id}.err"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [*orchestrator_executable(), "task", "logs", task_id, "--follow", "--interval", "0.3"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env=env,
        )
    try:
        yield Follower(process, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _wait_for_line(follower: Follower, text: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [line for line in follower.stderr().splitlines() if text in line]
        if found:
            return found[0]
        assert follower.process.poll() is None, f"the follower ended: {follower.stderr()}"
        time.sleep(0.2)
    pytest.fail(f"the follower never printed {text!r}: {follower.stderr()}")
