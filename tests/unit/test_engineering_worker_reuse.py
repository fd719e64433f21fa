"""Issue 24: one worker per engineering task for the developer round and the tests after it.

The tests go to the developer's worker as a `command` message (no second create); the worker is released
when no round of it comes next (tests passed, a gate, the budget, a failure) and kept for a fix round only
when that round's timeout still fits in its life; a replayed step sends the same request ids, so it never
starts a second worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from functions.engineering.nodes import WORKER_START_MARGIN_S
from functions.engineering.state import WorkerReply
from functions.worker_manager.logic import WorkerManager
from shared.contracts import CreateWorkerCommand, DeleteWorkerCommand, SendMessageCommand
from shared.contracts.api import TaskStatus
from shared.graphs.driver import LeaseBusy
from tests.engineering_support import Run, World

DONE = {"success": True, "result": {"commit_sha": "c1", "files_changed": ["a.py"], "duration_ms": 4000}}


def _creates(run: Run) -> list[str]:
    return [c.request_id for c in run.sent if isinstance(c, CreateWorkerCommand)]


def test_the_tests_go_to_the_developers_worker_and_it_is_released_once_they_pass(tmp_path: Path) -> None:
    world = World(tmp_path)
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})

    [tests] = run.answer("developer:1:message", DONE)

    assert isinstance(tests, SendMessageCommand)
    assert (tests.worker_id, tests.kind, tests.message) == ("w-1", "command", world.settings.test_command)
    assert tests.timeout == world.settings.tester_timeout_s
    [released] = run.answer("tester:1:message", {"success": True})
    assert isinstance(released, DeleteWorkerCommand) and released.worker_id == "w-1"
    assert world.api.task.status is TaskStatus.COMPLETED
    assert _creates(run) == [f"{run.task_id}:developer:1:create"], "one worker for both rounds"


def test_an_answer_to_an_ended_run_is_dropped_without_the_lease(tmp_path: Path) -> None:
    """The deleted worker's answer comes after the graph ended (often while the run that ended it still
    holds the lease): nothing can wait for it, so it costs no lease and no retry."""
    world = World(tmp_path)
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    run.answer("developer:1:message", DONE)
    [released] = run.answer("tester:1:message", {"success": True})
    assert isinstance(released, DeleteWorkerCommand) and run.waiting_for() is None
    takes = world.api.lease_takes

    world.api.lease = "the run that ended it"
    assert run.engine.resume(f"{run.task_id}:tester:1:delete", {"success": True}) == "ignored"
    assert world.api.lease_takes == takes, "no lease taken (and none refused: no retry)"
    assert world.commands() == []

    # never "ended" while a run goes on, e.g. between a node's stored writes and the next checkpoint,
    # where LangGraph's `next` is empty (seen: two of 50 tasks lost their worker's answer that way)
    looked: list[bool] = []
    mid = Run(World(tmp_path / "mid"))
    saver = mid.engine.graph.checkpointer
    put_writes = saver.put_writes

    def looking(config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        put_writes(config, writes, task_id, task_path)
        looked.append(mid.engine.ended(mid.task_id))

    saver.put_writes = looking
    mid.start()
    mid.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    mid.answer("developer:1:message", DONE)
    mid.answer("tester:1:message", {"success": True})
    assert looked and not any(looked), looked
    assert mid.engine.ended(mid.task_id)

    # not ended: an answer nobody waits for still waits for the lease (the graph may be about to wait)
    other = Run(World(tmp_path / "other")).start()
    with pytest.raises(LeaseBusy):
        other.world.api.lease = "another driver"
        other.engine.resume(f"{other.task_id}:developer:9:create", {"success": True})


def test_the_budget_spent_between_the_rounds_stops_the_task_and_its_worker(tmp_path: Path) -> None:
    world = World(tmp_path)
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    world.api.budget_note = "the task budget $1.00 (spent $1.02)"  # the developer's run spent it

    sent = run.answer("developer:1:message", DONE)

    assert world.api.task.status is TaskStatus.FAILED
    assert world.api.task.failure_reason == "budget"
    assert [type(c) for c in sent] == [DeleteWorkerCommand], "no tests sent; the worker stopped"
    assert run.deleted() == ["w-1"]


@pytest.mark.parametrize("api_says_status", [True, False], ids=["one-request", "older-api"])
def test_a_task_cancelled_before_a_round_stops_with_its_worker_after_one_request(
    tmp_path: Path, api_says_status: bool
) -> None:
    world = World(tmp_path)
    world.api.budget_says_status = api_says_status
    state = world.state(worker_id="w-1", worker_open=True, commit_sha="c1")
    world.api.task = world.api.task.model_copy(update={"status": TaskStatus.CANCELLED})  # a person cancelled

    update = world.nodes.tester_create(state)

    assert update["outcome"] == "cancelled"
    [stop] = world.commands()
    assert isinstance(stop, DeleteWorkerCommand) and stop.worker_id == "w-1", (
        "no tests sent; the worker stopped"
    )
    assert world.api.budget_checks == 1
    # the budget check carries the task's status; an API older than that field is asked for the task too
    assert world.api.task_reads == (0 if api_says_status else 1)


@pytest.mark.parametrize("api_says_status", [True, False], ids=["one-request", "older-api"])
@pytest.mark.parametrize("status", [TaskStatus.RUNNING, TaskStatus.CANCELLED])
def test_the_plan_gate_learns_the_tasks_status_from_the_same_request(
    tmp_path: Path, api_says_status: bool, status: TaskStatus
) -> None:
    world = World(tmp_path)
    world.api.budget_says_status = api_says_status
    world.api.task = world.api.task.model_copy(update={"status": status})

    update = world.nodes.plan_gate(world.state())

    assert (update.get("outcome") == "cancelled") is (status is TaskStatus.CANCELLED)
    assert world.api.task_reads == (0 if api_says_status else 1)


def test_a_replayed_round_start_sends_the_same_message_and_creates_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    state = world.state(worker_id="w-1", worker_open=True, commit_sha="c1")

    world.nodes.tester_create(state)
    world.nodes.tester_create(state)  # the step ran again (its checkpoint was lost)

    first, second = world.commands()
    assert isinstance(first, SendMessageCommand) and isinstance(second, SendMessageCommand)
    assert first.request_id == second.request_id == f"{state.task_id}:tester:1:message"
    assert first.worker_id == second.worker_id == "w-1"


def test_a_redelivered_answer_to_the_developer_sends_the_tests_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    run.answer("developer:1:message", DONE)

    again = run.engine.resume(f"{run.task_id}:developer:1:message", DONE)

    assert again == "ignored" and world.commands() == []
    assert _creates(run) == [f"{run.task_id}:developer:1:create"]


def test_a_fix_round_stays_on_the_worker_when_its_timeout_fits(tmp_path: Path) -> None:
    # given a worker life long enough for two developer rounds and the tests
    life = 2 * 1800 + 900 + WORKER_START_MARGIN_S
    world = World(tmp_path, worker_max_lifetime_s=life)
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    run.answer("developer:1:message", DONE)

    [fix] = run.answer("tester:1:message", {"success": False, "result": {"output_tail": "1 failed"}})

    assert isinstance(fix, SendMessageCommand) and fix.kind == "message" and fix.worker_id == "w-1"
    assert fix.request_id == f"{run.task_id}:developer:2:message" and "1 failed" in fix.message
    [tests] = run.answer("developer:2:message", DONE)
    assert isinstance(tests, SendMessageCommand) and (tests.worker_id, tests.kind) == ("w-1", "command")
    run.answer("tester:2:message", {"success": True})
    assert world.api.task.status is TaskStatus.COMPLETED
    assert len(_creates(run)) == 1 and run.deleted() == ["w-1"]


def test_a_round_that_would_outlive_the_worker_gets_a_new_one(tmp_path: Path) -> None:
    # given: the developer took 20 of the worker's 30 minutes; the tests may take 15
    world = World(tmp_path)
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    slow = {**DONE, "result": {**DONE["result"], "duration_ms": 20 * 60 * 1000}}  # type: ignore[dict-item]

    sent = run.answer("developer:1:message", slow)

    released, create = sent
    assert isinstance(released, DeleteWorkerCommand) and released.worker_id == "w-1"
    assert isinstance(create, CreateWorkerCommand) and create.request_id == f"{run.task_id}:tester:1:create"
    [tests] = run.answer("tester:1:create", {"success": True, "worker_id": "t-1"})
    assert isinstance(tests, SendMessageCommand) and (tests.worker_id, tests.kind) == ("t-1", "command")
    run.answer("tester:1:message", {"success": True})
    assert run.deleted() == ["w-1", "t-1"] and world.api.task.status is TaskStatus.COMPLETED


def test_a_checkpoint_from_before_reuse_ends_each_worker_after_its_answer(tmp_path: Path) -> None:
    """A task stopped mid-tester by the old code (worker_open unset): its tester worker still goes."""
    world = World(tmp_path)
    state = world.state(worker_id="w-1", tester_id="t-1", commit_sha="c1")

    update = world.nodes.round_over(state, "tester", WorkerReply.model_validate({"success": True}), None)

    assert update == {}
    [delete] = world.commands()
    assert isinstance(delete, DeleteWorkerCommand) and delete.worker_id == "t-1"


def test_the_worker_manager_passes_a_commands_kind_to_the_api(tmp_path: Path) -> None:
    sent: list[dict[str, object]] = []

    class _Api:
        def send_worker_message(self, worker_id: str, request_id: str, body: str, **fields: object) -> None:
            sent.append({"worker_id": worker_id, "request_id": request_id, "body": body, **fields})

    manager = WorkerManager(_Api(), runtime=None, queue=None, launch_env={})  # type: ignore[arg-type]
    manager.handle(
        SendMessageCommand(
            request_id="t:tester:1:message", worker_id="w-1", message="make test", kind="command", timeout=900
        )
    )
    manager.handle(SendMessageCommand(request_id="t:developer:1:message", worker_id="w-1", message="# Task"))

    assert [(m["kind"], m["timeout_s"]) for m in sent] == [("command", 900), ("message", 1800)]


@pytest.mark.parametrize("status", ["draft", "active"])
def test_a_finished_task_sets_its_project_active_unless_it_is(tmp_path: Path, status: str) -> None:
    world = World(tmp_path)
    world.api.project = world.api.project.model_copy(update={"status": status})
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    run.answer("developer:1:message", DONE)
    run.answer("tester:1:message", {"success": True})

    assert world.api.task.status is TaskStatus.COMPLETED
    assert world.api.project_updates == ([] if status == "active" else [{"status": "active"}])
