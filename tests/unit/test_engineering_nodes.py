"""The engineering graph's nodes one at a time, and its paths end to end in memory.

A node is called with an `EngState` and checked for the keys it returns, the commands it publishes
(a real local queue) and the API calls it makes (the in-memory API). What a waiting node makes of an
answer is a plain method (`*_answered`), called here with the answer; the waits themselves, and the
deletion of each worker after its answer, are driven through the compiled graph over an in-memory
checkpointer, as the function's driver does it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from functions.engineering.graph import after_merge, no_developer
from functions.engineering.state import EngState, ScaffoldAnswer, WorkerCreated, WorkerReply
from shared.contracts import (
    SCAFFOLDER_QUEUE,
    CreateWorkerCommand,
    DeleteWorkerCommand,
    ScaffolderMessage,
    SendMessageCommand,
)
from shared.contracts.api import TaskStatus
from shared.repos.port import MergeOutcome
from tests.engineering_support import Run, World
from tests.factories import drain


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# -- state ------------------------------------------------------------------------------------------


def test_a_state_read_from_the_first_checkpoint_keys_takes_every_default() -> None:
    state = EngState.model_validate({"task_id": "t", "project_id": "p", "spec": "s", "agent": "codex"})

    assert (state.round, state.base, state.files_changed, state.outcome) == (1, "main", [], None)
    assert not no_developer(state)
    assert no_developer(state.model_copy(update={"agent": "none"}))


def test_an_answer_with_nulls_reads_as_its_defaults() -> None:
    reply = WorkerReply.model_validate({"success": False, "error": None, "result": None})

    assert reply.result.files_changed == [] and reply.result.status == ""
    run = WorkerReply.model_validate(
        {"success": True, "result": {"files_changed": None, "commit_sha": "abc"}}
    ).result
    assert (run.files_changed, run.commit_sha) == ([], "abc")


# -- prepare and scaffold ---------------------------------------------------------------------------


def test_prepare_names_the_work_branch_after_the_task(world: World) -> None:
    state = EngState(task_id=world.api.task.id, project_id="p1", agent="claude-code")

    update = world.nodes.prepare(state)

    assert update == {
        "project_name": "blog",
        "project_status": "draft",
        "repo_url": None,
        "repo_full_name": f"{world.settings.repo_owner}/blog",
        "branch": f"orchestrator/{world.api.task.id[:8]}",
        "round": 1,
        "files_changed": [],
    }
    assert world.steps() == [("prepare", "engineering blog: preparing")]


def test_prepare_without_a_developer_delivers_the_base_itself(world: World) -> None:
    state = EngState(task_id=world.api.task.id, project_id="p1", agent="none", base_ref="release")

    assert world.nodes.prepare(state)["branch"] == "release"


def test_scaffold_request_asks_the_scaffolder_once_per_task(world: World) -> None:
    world.nodes.scaffold_request(world.state(repo_url=None))

    [message] = drain(world.queue, SCAFFOLDER_QUEUE)
    assert isinstance(message, ScaffolderMessage)
    assert (message.request_id, message.task_id) == (f"{world.api.task.id}:scaffold", world.api.task.id)
    assert (message.repo_full_name, message.project_name, message.modules) == (
        "projects/blog",
        "blog",
        ["backend"],
    )
    assert world.api.project.status == "scaffolding"
    assert world.steps() == [("scaffold", "scaffolding the repository from the template")]


def test_a_scaffolded_repository_is_where_the_work_goes(world: World) -> None:
    answer = ScaffoldAnswer.model_validate({"status": "success", "repo_url": "/new.git", "commit_sha": "s0"})

    assert world.nodes.scaffold_answered(world.state(), answer) == {
        "repo_url": "/new.git",
        "commit_sha": "s0",
    }
    assert world.steps() == [("scaffold", "repository ready: /new.git")]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": "failed", "error": "template missing"}, "scaffold failed: template missing"),
        ({"status": "failed"}, "scaffold failed: unknown reason"),
    ],
)
def test_a_failed_scaffold_fails_the_task(world: World, answer: dict[str, Any], error: str) -> None:
    update = world.nodes.scaffold_answered(world.state(), ScaffoldAnswer.model_validate(answer))

    assert update == {"outcome": "failed", "error": error}


# -- developer ---------------------------------------------------------------------------------------


def test_developer_create_asks_for_a_committing_worker_with_the_task_s_agent(world: World) -> None:
    assert world.nodes.developer_create(world.state(base_ref="release")) == {}

    [create] = world.commands()
    assert isinstance(create, CreateWorkerCommand)
    assert create.request_id == f"{world.api.task.id}:developer:1:create"
    assert (create.config.name, create.config.agent, create.config.env_vars) == (
        "developer-blog-1",
        "claude-code",
        {"GITHUB_TOKEN": "secret://gh"},
    )
    assert create.context == {
        "task_id": world.api.task.id,
        "repo_url": "/r.git",
        "branch": f"orchestrator/{world.api.task.id[:8]}",
        "step": "developer",
        "base_branch": "release",
        "commit": "true",
    }
    assert world.steps() == [("developer", "developer (claude-code) starting")]


def test_a_fix_round_says_so_and_asks_with_the_round_s_request_id(world: World) -> None:
    world.nodes.developer_create(world.state(round=2))

    [create] = world.commands()
    assert create.request_id == f"{world.api.task.id}:developer:2:create"
    assert world.api.events[-1]["message"] == "developer (claude-code) starting (fix round 2)"
    assert world.api.events[-1]["progress_pct"] == 35


def test_a_cancelled_task_starts_no_worker(world: World) -> None:
    world.api.cancel()

    assert world.nodes.developer_create(world.state()) == {"outcome": "cancelled"}
    assert world.nodes.tester_create(world.state()) == {"outcome": "cancelled"}
    assert world.commands() == [] and world.api.events == []


def test_a_started_worker_is_remembered_under_its_role(world: World) -> None:
    started = WorkerCreated.model_validate({"success": True, "worker_id": "w-1"})
    refused = WorkerCreated.model_validate({"success": False, "error": "no capacity"})

    assert world.nodes.worker_created("developer", "worker_id", started) == {
        "worker_id": "w-1",
        "worker_open": True,  # the task's worker: kept for the tester's command
        "worker_busy_s": 0.0,
    }
    assert world.nodes.worker_created("tester", "tester_id", started) == {"tester_id": "w-1"}
    assert world.nodes.worker_created("tester", "tester_id", refused) == {
        "outcome": "failed",
        "error": "could not start the tester worker: no capacity",
    }


def test_developer_send_gives_the_spec_and_in_a_fix_round_the_failure(world: World) -> None:
    world.nodes.developer_send(world.state(worker_id="w-1"))
    world.nodes.developer_send(world.state(worker_id="w-2", round=2, last_failure="AssertionError: 1 != 2"))

    first, fix = world.commands()
    assert isinstance(first, SendMessageCommand) and isinstance(fix, SendMessageCommand)
    assert (first.worker_id, first.timeout, first.request_id) == (
        "w-1",
        world.settings.developer_timeout_s,
        f"{world.api.task.id}:developer:1:message",
    )
    assert "add a feature" in first.message and "tests failed" not in first.message
    assert "The tests failed after attempt 1" in fix.message and "AssertionError: 1 != 2" in fix.message


def test_a_developer_answer_adds_its_files_and_keeps_the_last_commit(world: World) -> None:
    state = world.state(round=2, commit_sha="c1", files_changed=["a.py", "b.py"])
    reply = WorkerReply.model_validate(
        {"success": True, "response": "fixed", "result": {"files_changed": ["c.py", "a.py"]}}
    )

    update = world.nodes.developer_answered(state, reply)

    assert update == {
        "commit_sha": "c1",
        "files_changed": ["a.py", "b.py", "c.py"],
        "developer_answer": "fixed",
        "merge_conflicts": [],
    }
    assert world.steps() == [("developer", "developer done: 2 file(s) changed")]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"success": False, "error": "crashed", "result": {"status": "failed"}}, "developer failed: crashed"),
        ({"success": False}, "developer failed: no reason given"),
    ],
)
def test_a_failed_developer_fails_the_task(world: World, answer: dict[str, Any], error: str) -> None:
    update = world.nodes.developer_answered(world.state(), WorkerReply.model_validate(answer))

    assert update == {"outcome": "failed", "error": error}


def test_a_blocked_developer_asks_for_a_person_s_review(world: World) -> None:
    answer = {"success": False, "error": "BLOCKED: no key", "result": {"status": "blocked"}}

    update = world.nodes.developer_answered(world.state(round=2), WorkerReply.model_validate(answer))

    assert update == {"review": "The developer is blocked (round 2): BLOCKED: no key"}


# -- tester ------------------------------------------------------------------------------------------


def test_the_tester_runs_the_test_command_and_commits_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, test_command="pytest -q")

    world.nodes.tester_create(world.state())
    world.nodes.tester_send(world.state(tester_id="t-1"))

    create, send = world.commands()
    assert (create.config.agent, create.config.agent_options) == ("command", {"command": "pytest -q"})
    assert (create.context["step"], create.context["commit"]) == ("tester", "false")
    assert (send.worker_id, send.message, send.timeout) == (
        "t-1",
        "run pytest -q",
        world.settings.tester_timeout_s,
    )
    assert world.steps() == [("tester", "tester: running `pytest -q`")]


def test_passing_tests_clear_the_last_failure(world: World) -> None:
    update = world.nodes.tester_answered(world.state(last_failure="old"), WorkerReply(success=True))

    assert update == {"last_failure": None}
    assert world.steps() == [("tester", "tests passed")]


def test_failing_tests_send_the_developer_another_round(world: World) -> None:
    reply = WorkerReply.model_validate({"success": False, "result": {"output_tail": "1 failed"}})

    update = world.nodes.tester_answered(world.state(round=1), reply)

    assert update == {"last_failure": "1 failed", "round": 2}
    assert world.api.events[-1]["message"] == "tests failed; back to the developer (round 2)"
    assert world.api.events[-1]["error"] == "1 failed"


def test_failing_tests_after_the_last_round_ask_for_a_person_s_review(world: World) -> None:
    reply = WorkerReply.model_validate({"success": False, "error": "exit 1"})
    last = world.settings.engineering_max_attempts

    update = world.nodes.tester_answered(world.state(round=last), reply)

    assert update == {
        "last_failure": "exit 1",
        "review": f"Tests still fail after {last} developer round(s). The last test output:\n\nexit 1",
    }


def test_failing_tests_without_a_developer_fail_at_once(world: World) -> None:
    update = world.nodes.tester_answered(world.state(agent="none"), WorkerReply(success=False))

    assert update["outcome"] == "failed" and update["last_failure"] == "tests failed"
    assert update["error"] == "tests fail and there is no developer to fix them (agent none): tests failed"


# -- the end -----------------------------------------------------------------------------------------


def test_finalize_completes_the_task_with_the_work(world: World) -> None:
    state = world.state(commit_sha="abcdef1234567", files_changed=["a.py"])

    assert world.nodes.finalize(state) == {"outcome": "completed", "pr_url": None}

    assert world.api.task.status is TaskStatus.COMPLETED
    assert world.api.task.result == {
        "request_id": world.api.task.id,
        "status": "success",
        "error": None,
        "duration_ms": None,
        "cost_usd": None,  # the API writes it from the ledger
        "files_changed": ["a.py"],
        "commit_sha": "abcdef1234567",
        "branch": state.branch,
        "pr_url": None,
        "repo_url": "/r.git",
        "merge_commit": None,
    }
    assert world.api.project.status == "active"
    assert world.steps() == [("finalize", f"done: commit abcdef1234 on branch {state.branch} of /r.git")]


def test_fail_records_the_error_and_what_was_done(world: World) -> None:
    state = world.state(outcome="failed", error="tests still fail", commit_sha="c1", files_changed=["a.py"])

    assert world.nodes.fail(state) == {"outcome": "failed"}

    assert (world.api.task.status, world.api.task.error) == (TaskStatus.FAILED, "tests still fail")
    assert world.api.task.result is not None
    assert (world.api.task.result["commit_sha"], world.api.task.result["branch"]) == ("c1", state.branch)
    assert world.api.events[-1]["type"] == "failed" and world.api.events[-1]["error"] == "tests still fail"


def test_fail_of_a_cancelled_task_leaves_the_task_alone(world: World) -> None:
    world.api.cancel()

    assert world.nodes.fail(world.state(outcome="failed", error="x")) == {"outcome": "cancelled"}
    assert world.nodes.fail(world.state(outcome="cancelled")) == {"outcome": "cancelled"}
    assert world.api.task.status is TaskStatus.CANCELLED and world.api.events == []


# -- paths through the graph ---------------------------------------------------------------------------


def test_a_scaffold_then_a_passing_round_completes(world: World) -> None:
    run = Run(world, repo_url=None).start()
    [scaffold] = drain(world.queue, SCAFFOLDER_QUEUE)
    assert scaffold.request_id == f"{run.task_id}:scaffold"

    [create] = run.answer("scaffold", {"status": "success", "repo_url": "/new.git"})
    assert create.context["repo_url"] == "/new.git"
    run.developer_round(1, ["a.py"])
    run.answer("tester:1:message", {"success": True})

    assert world.api.task.status is TaskStatus.COMPLETED
    assert world.api.task.result is not None and world.api.task.result["repo_url"] == "/new.git"
    assert run.deleted() == ["w-1"], "one worker for both rounds, gone once the tests passed"


def test_a_failing_round_then_a_fix_round_completes(world: World) -> None:
    run = Run(world).start()

    run.developer_round(1, ["a.py"])
    [create_developer] = run.answer(
        "tester:1:message", {"success": False, "result": {"output_tail": "1 failed"}}
    )[1:]
    assert create_developer.request_id == f"{run.task_id}:developer:2:create"
    [send] = run.answer("developer:2:create", {"success": True, "worker_id": "w-2"})
    assert "1 failed" in send.message
    run.answer(
        "developer:2:message", {"success": True, "result": {"commit_sha": "c2", "files_changed": ["b.py"]}}
    )
    run.answer("tester:2:message", {"success": True})

    assert world.api.task.status is TaskStatus.COMPLETED
    result = world.api.task.result or {}
    assert (result["commit_sha"], result["files_changed"]) == ("c2", ["a.py", "b.py"])
    # a fix round's 1800 s timeout does not fit in the first worker's 1800 s life: a new one
    assert run.deleted() == ["w-1", "w-2"]


def test_tests_that_keep_failing_park_the_task_for_a_person_after_the_last_round(tmp_path: Path) -> None:
    world = World(tmp_path, engineering_max_attempts=2)
    run = Run(world).start()

    for rnd in (1, 2):
        run.developer_round(rnd, [])
        run.answer(f"tester:{rnd}:message", {"success": False, "error": "exit 1"})

    assert run.waiting_for() == f"{run.task_id}:gate:review:2"
    assert world.api.task.status is TaskStatus.WAITING_HUMAN_REVIEW
    [review] = world.api.gate_requests
    assert (review.kind, review.round) == ("review", 2) and review.summary.endswith("exit 1")
    assert run.deleted() == ["w-1", "w-2"], "no worker waits with the task"


def test_without_a_developer_only_the_tester_runs(world: World) -> None:
    run = Run(world, agent="none").start()

    [create] = run.sent
    assert create.request_id == f"{run.task_id}:tester:1:create"
    assert create.context["branch"] == "main"
    run.answer("tester:1:create", {"success": True, "worker_id": "t-1"})
    run.answer("tester:1:message", {"success": True})

    assert world.api.task.status is TaskStatus.COMPLETED
    assert (world.api.task.result or {})["branch"] == "main"
    created = [c.context["step"] for c in run.sent if isinstance(c, CreateWorkerCommand)]
    assert created == ["tester"], "no developer was ever asked for"


def test_a_started_worker_gets_its_message_in_the_same_step(world: World) -> None:
    run = Run(world).start()

    [send] = run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})

    assert isinstance(send, SendMessageCommand)
    assert (send.worker_id, send.request_id) == ("w-1", f"{run.task_id}:developer:1:message")
    assert run.waiting_for() == f"{run.task_id}:developer:1:message"
    [tester_send] = run.answer("developer:1:message", {"success": True, "result": {"commit_sha": "c1"}})
    assert isinstance(tester_send, SendMessageCommand)
    assert (tester_send.worker_id, tester_send.kind, tester_send.message) == ("w-1", "command", "make test")
    assert run.waiting_for() == f"{run.task_id}:tester:1:message"


def test_a_worker_that_cannot_start_is_sent_nothing(world: World) -> None:
    run = Run(world).start()

    sent = run.answer("developer:1:create", {"success": False, "error": "no capacity"})

    assert not [c for c in sent if isinstance(c, SendMessageCommand)]
    assert world.api.task.status is TaskStatus.FAILED


def test_a_developer_that_fails_fails_the_task_and_its_worker_goes(world: World) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})

    sent = run.answer("developer:1:message", {"success": False, "error": "crashed"})

    assert [type(c) for c in sent] == [DeleteWorkerCommand]
    assert (world.api.task.status, world.api.task.error) == (TaskStatus.FAILED, "developer failed: crashed")


def test_a_worker_that_cannot_start_fails_the_task(world: World) -> None:
    run = Run(world).start()

    assert run.answer("developer:1:create", {"success": False, "error": "no capacity"}) == []

    assert world.api.task.error == "could not start the developer worker: no capacity"


def test_a_task_cancelled_while_the_developer_works_ends_quietly(world: World) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})

    # the person cancels while the developer works; the developer's answer still arrives
    world.api.cancel()
    assert run.engine.resume(f"{run.task_id}:developer:1:message", {"success": True}) == "ended"

    assert world.api.task.status is TaskStatus.CANCELLED
    assert world.commands() == [] and world.api.events[-1]["message"] == "developer at work"


def test_a_task_cancelled_as_the_developer_answers_stops_before_the_tester(world: World) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})

    # the cancel lands after the driver let the answer in: the graph itself sees it at its next step
    world.api.cancel()
    run.engine.graph.invoke(Command(resume={"success": True}), run.engine.config(run.task_id))

    assert [(type(c), c.worker_id) for c in world.commands()] == [(DeleteWorkerCommand, "w-1")]
    assert run.waiting_for() is None
    assert world.api.task.status is TaskStatus.CANCELLED, "a cancelled task is not failed on top"


# -- into main ----------------------------------------------------------------------------------------


def test_a_first_conflict_with_main_gives_the_developer_a_rebase_round(world: World) -> None:
    state = world.state(round=2, last_failure=None)

    update = world.nodes.merge_answered(
        state, MergeOutcome("conflict", conflicts=("app/server.py", "README.md"))
    )
    rebase = state.model_copy(update=update)

    assert update == {
        "merge_conflicts": ["app/server.py", "README.md"],
        "merge_rounds": 1,
        "round": 3,
        "last_failure": None,
    }
    assert after_merge(rebase) == "developer_create"
    world.nodes.developer_send(rebase)
    [send] = world.commands()
    prompt = send.message
    assert "# main moved" in prompt and "- `app/server.py`\n- `README.md`" in prompt


def test_a_merged_outcome_goes_on_to_finalize_with_the_merge_commit(world: World) -> None:
    state = world.state(merge_conflicts=["a.py"], merge_rounds=1)

    update = world.nodes.merge_answered(state, MergeOutcome("merged", sha="f" * 40, fast_forward=True))

    assert update == {"merge_commit": "f" * 40, "merge_conflicts": []}
    assert after_merge(state.model_copy(update=update)) == "finalize"
    assert world.steps()[-1] == ("merge", f"merged into main (fast-forward): {'f' * 10}")


def test_nothing_is_merged_without_a_host_a_developer_or_with_no_merge(world: World) -> None:
    assert world.nodes.merge(world.state()) == {}  # no repository host
    assert world.nodes.merge(world.state(agent="none")) == {}
    assert world.nodes.merge(world.state(no_merge=True)) == {}
