"""Workers end to end on the embedded stack: a real commit on a real branch, or one failed response."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shared.contracts import (
    WORKER_COMMANDS,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendFileCommand,
    SendMessageCommand,
    SendMessageResponse,
    WorkerConfig,
)
from tests.integration.workers.conftest import StackHarness, make_repo

AGENT = (
    'cat > /dev/null; echo "change requested: $(head -c 40 "$ORCH_TASK_FILE")"; '
    'echo "feature" >> feature.txt; echo "done: feature added"'
)


def _create(
    stack: StackHarness, repo: str, command: str, request_id: str = "create-1"
) -> CreateWorkerCommand:
    task_id = stack.task()
    return CreateWorkerCommand(
        request_id=request_id,
        config=WorkerConfig(
            name="dev",
            agent="command",
            instructions="You are the developer.",
            agent_options={"command": command},
        ),  # type: ignore[call-arg]
        context={"task_id": task_id, "repo_url": repo, "branch": "orchestrator/feature", "step": "developer"},
    )


def _pid_of(handle: str) -> int:
    return int(handle.split(":")[1])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


def test_create_message_delete_makes_a_real_commit(stack: StackHarness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    create = _create(stack, repo, AGENT)
    stack.queue.publish(WORKER_COMMANDS, create)
    stack.queue.publish(WORKER_COMMANDS, create)  # a redelivered create starts no second worker
    created = stack.responses(1)
    time.sleep(1.0)
    created += stack.responses(1, timeout=1.0)  # a second delivery answers again, or stays silent
    assert created and all(isinstance(r, CreateWorkerResponse) and r.success for r in created), created
    worker_id = created[0].worker_id
    assert {r.worker_id for r in created} == {worker_id}
    assert len(stack.admin.list_workers(task_id=create.context["task_id"])) == 1

    # standard queues do not keep order: a caller that needs the file first waits for its answer
    stack.queue.publish(
        WORKER_COMMANDS, SendFileCommand(worker_id=worker_id, path="notes/spec.md", content="spec")
    )
    [file_reply] = stack.responses(1)
    assert file_reply.success, file_reply
    stack.queue.publish(
        WORKER_COMMANDS, SendMessageCommand(worker_id=worker_id, message="add a feature", timeout=60)
    )
    answers = stack.responses(1)
    reply = next(r for r in answers if isinstance(r, SendMessageResponse))
    assert reply.success, reply
    assert "done: feature added" in (reply.response or "")
    assert reply.result and reply.result["branch"] == "orchestrator/feature"
    assert set(reply.result["files_changed"]) == {"feature.txt", "notes/spec.md"}

    log = subprocess.run(
        ["git", "--git-dir", repo, "log", "--format=%H %s", "orchestrator/feature"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.splitlines()[0].startswith(reply.result["commit_sha"])
    assert "developer: add a feature" in log
    shown = subprocess.run(
        ["git", "--git-dir", repo, "show", "orchestrator/feature:feature.txt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == "feature\n"
    events = stack.admin.task_events(create.context["task_id"])
    assert any("change requested: add a feature" in e.message for e in events)
    assert all(e.current_step == "developer" for e in events if e.type == "progress")

    handle = stack.service.get_worker(worker_id).runtime_handle
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(worker_id=worker_id))
    [deleted] = stack.responses(1)
    assert isinstance(deleted, DeleteWorkerResponse) and deleted.success
    assert handle and _wait_gone(_pid_of(handle)), "no process is left behind"
    assert stack.service.get_worker(worker_id).status == "STOPPED"


@pytest.mark.parametrize(
    ("command", "timeout", "expected"),
    [
        ("echo working; exit 3", 60, "exit code 3"),
        ("echo started; sleep 120", 2, "timeout"),
    ],
)
def test_agent_failures_give_one_failed_response(
    stack: StackHarness, tmp_path: Path, command: str, timeout: int, expected: str
) -> None:
    create = _create(stack, make_repo(tmp_path), command, request_id=f"create-{expected}")
    stack.queue.publish(WORKER_COMMANDS, create)
    [created] = stack.responses(1)
    stack.queue.publish(
        WORKER_COMMANDS, SendMessageCommand(worker_id=created.worker_id, message="x", timeout=timeout)
    )
    [reply] = stack.responses(1, timeout=40)
    assert isinstance(reply, SendMessageResponse) and not reply.success
    assert expected in (reply.error or ""), reply
    assert reply.result and reply.result["output_tail"]
    assert stack.responses(1, timeout=1) == [], "exactly one response"


def test_a_worker_killed_by_hand_answers_with_a_failure(stack: StackHarness, tmp_path: Path) -> None:
    create = _create(stack, make_repo(tmp_path), "sleep 120", request_id="create-kill")
    stack.queue.publish(WORKER_COMMANDS, create)
    [created] = stack.responses(1)
    stack.queue.publish(
        WORKER_COMMANDS, SendMessageCommand(worker_id=created.worker_id, message="x", timeout=300)
    )
    time.sleep(2.0)
    handle = stack.service.get_worker(created.worker_id).runtime_handle
    assert handle
    os.killpg(_pid_of(handle), signal.SIGKILL)
    [reply] = stack.responses(1, timeout=20)
    assert isinstance(reply, SendMessageResponse) and not reply.success
    assert "killed by signal 9" in (reply.error or "")
    assert stack.service.get_worker(created.worker_id).status == "FAILED"
    assert _wait_gone(_pid_of(handle))


def test_deleting_an_unknown_worker_answers_false(stack: StackHarness) -> None:
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(worker_id="w-nope"))
    [reply] = stack.responses(1)
    assert (
        isinstance(reply, DeleteWorkerResponse)
        and not reply.success
        and "unknown worker" in (reply.error or "")
    )


def test_fake_claude_code_cli_commits_through_the_same_path(
    stack: StackHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = Path(__file__).parents[2] / "fakes" / "agents"
    monkeypatch.setenv("PATH", f"{fakes}{os.pathsep}{os.environ['PATH']}")
    repo = make_repo(tmp_path)
    task_id = stack.task("claude-demo")
    create = CreateWorkerCommand(
        config=WorkerConfig(name="dev", agent="claude-code", instructions="You are the developer."),
        context={"task_id": task_id, "repo_url": repo, "branch": "orchestrator/claude", "step": "developer"},
    )
    stack.queue.publish(WORKER_COMMANDS, create)
    [created] = stack.responses(1)
    stack.queue.publish(
        WORKER_COMMANDS, SendMessageCommand(worker_id=created.worker_id, message="add a log line", timeout=60)
    )
    [reply] = stack.responses(1)
    assert isinstance(reply, SendMessageResponse) and reply.success, reply
    assert reply.result and reply.result["files_changed"] == ["AGENT_LOG.md"]
    assert reply.result["output_tokens"] and reply.result["cost_usd"] and reply.result["session_id"]
    shown = subprocess.run(
        ["git", "--git-dir", repo, "show", "orchestrator/claude:AGENT_LOG.md"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "add a log line" in shown
    assert (
        "CLAUDE.md"
        not in subprocess.run(
            ["git", "--git-dir", repo, "ls-tree", "-r", "--name-only", "orchestrator/claude"],
            capture_output=True,
            text=True,
        ).stdout
    )
