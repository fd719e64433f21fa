"""Where the engineering and deploy graphs stop for money or for a person (issue 21), driven through the
compiled graphs over an in-memory checkpointer and the in-memory API: a spent budget fails the task
before any worker is asked for; the plan and deploy gates park the task until the API's wake-up after
a person's answer; a human review parks it and its guidance reaches the next developer round's TASK.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from functions.deploy.gates import GateNodes
from functions.deploy.graph import Ports as DeployPorts
from functions.deploy.logic import Deploy
from functions.deploy.settings import DeploySettings
from functions.deploy.state import DeployState
from functions.engineering import instructions
from functions.engineering.state import WorkerReply
from shared.api_client import NotFoundError
from shared.contracts import (
    ANSIBLE_DEPLOY_QUEUE,
    PROVISIONER_QUEUE,
    CreateWorkerCommand,
    DeployMessage,
    EngineeringMessage,
    SendMessageCommand,
)
from shared.contracts.api import TaskStatus, TaskType
from shared.contracts.servers import Server
from shared.contracts.spend import GateNeed
from shared.queues.local import LocalQueue
from tests.engineering_support import FakeApi, Run, World
from tests.factories import drain

BUDGET_NOTE = "the task budget $1.00 (spent $1.02)"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def created(run: Run) -> list[str]:
    """The steps (developer, tester) a worker was asked for, in order."""
    return [c.context["step"] for c in run.sent if isinstance(c, CreateWorkerCommand)]


# -- budgets ---------------------------------------------------------------------------------------


def test_a_spent_budget_fails_the_task_before_any_worker_is_asked_for(world: World) -> None:
    world.api.budget_note = BUDGET_NOTE

    run = Run(world).start()

    assert run.sent == [], "no worker command was published"
    task = world.api.task
    assert (task.status, task.failure_reason) == (TaskStatus.FAILED, "budget")
    assert task.error == f"budget: {BUDGET_NOTE}"
    assert world.api.events[-1]["type"] == "failed"


def test_the_budget_is_looked_at_again_before_the_tester_starts(world: World) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    world.api.budget_note = BUDGET_NOTE  # the developer's run spent the rest

    run.answer("developer:1:message", {"success": True, "result": {"commit_sha": "c1"}})

    assert created(run) == ["developer"]
    assert (world.api.task.failure_reason, world.api.task.error) == ("budget", f"budget: {BUDGET_NOTE}")


def test_a_developer_stopped_at_the_budget_fails_the_task_without_a_review_or_a_fix_round(
    world: World,
) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    stopped = {
        "success": False,
        "error": "budget: spent $0.60 of the $0.50 left (the task budget $1.00 (spent $1.10))",
        "result": {"status": "budget"},
    }

    run.answer("developer:1:message", stopped)

    task = world.api.task
    assert (task.status, task.failure_reason) == (TaskStatus.FAILED, "budget")
    assert task.error == stopped["error"], "the error names the budget, and is not prefixed twice"
    assert world.api.gate_requests == [] and created(run) == ["developer"]


# -- the plan gate ---------------------------------------------------------------------------------


def test_the_plan_gate_parks_the_task_until_the_owner_approves(world: World) -> None:
    world.api.gates_required = {"plan"}

    run = Run(world).start()

    # parked before any worker, with the spec to approve
    assert run.waiting_for() == f"{run.task_id}:gate:plan:0"
    assert world.api.task.status is TaskStatus.WAITING_APPROVAL and run.sent == []
    [asked] = world.api.gate_requests
    assert (asked.kind, asked.round) == ("plan", 0) and "add a feature" in asked.summary
    # a redelivered start changes nothing
    assert run.engine.start(run_message(run)) == "duplicate"

    # the owner approves: the API wakes the graph under the gate's request id
    wake = world.api.answer_gate("plan", 0, "approved", comment="go")
    assert run.wake(wake) == "resumed"

    assert created(run) == ["developer"]
    assert run.waiting_for() == f"{run.task_id}:developer:1:create"
    assert ("plan", "plan approved by ann: go") in world.steps()
    assert len(world.api.gate_requests) == 1, "the resume did not ask for the gate again"


def test_a_rejected_plan_ends_the_graph_with_the_task_the_api_failed(world: World) -> None:
    world.api.gates_required = {"plan"}
    run = Run(world).start()

    wake = world.api.answer_gate("plan", 0, "rejected")

    assert run.wake(wake) == "ended"
    assert run.sent == []
    assert (world.api.task.status, world.api.task.failure_reason) == (TaskStatus.FAILED, "rejected")


def test_a_gate_found_answered_after_the_wake_up_ends_quietly(world: World) -> None:
    # the expiry and the answer raced: the graph is resumed, then reads a gate that did not pass
    world.api.gates_required = {"plan"}
    run = Run(world).start()
    world.api.gates[("plan", 0)] = world.api.gates[("plan", 0)].model_copy(update={"status": "expired"})

    assert run.wake(f"{run.task_id}:gate:plan:0") == "resumed"

    assert run.waiting_for() is None and run.sent == []
    assert world.api.task.error is None, "the graph failed nothing on top of what the API recorded"


def test_a_replayed_plan_gate_asks_the_api_once_and_goes_on_once_approved(world: World) -> None:
    world.api.gates_required = {"plan"}
    state = world.state()

    assert world.nodes.plan_gate(state) == {"gate": "plan"}
    assert world.nodes.plan_gate(state) == {"gate": "plan"}, "a replay finds the same pending gate"
    assert len(world.api.gates) == 1
    world.api.answer_gate("plan", 0, "approved")

    assert world.nodes.plan_gate(state) == {"gate": None}, "a replay after the answer goes on"


def test_a_crash_after_parking_at_the_gate_is_carried_to_the_wait_by_the_redelivered_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the invocation dies right after the API parked the task, before the graph checkpointed
    world.api.gates_required = {"plan"}
    asked = world.api.request_gate

    def park_then_crash(task_id: str, body: Any) -> Any:
        asked(task_id, body)
        raise RuntimeError("the invocation died")

    monkeypatch.setattr(world.api, "request_gate", park_then_crash)
    run = Run(world)
    with pytest.raises(RuntimeError):
        run.start()
    assert world.api.task.status is TaskStatus.WAITING_APPROVAL and run.waiting_for() is None
    monkeypatch.setattr(world.api, "request_gate", asked)

    # when the start is redelivered, the graph goes on to the gate's wait (the same gate, asked again)
    assert run.engine.start(run_message(run)) == "continued"
    assert run.waiting_for() == f"{run.task_id}:gate:plan:0" and len(world.api.gates) == 1

    # then the owner's answer reaches it
    assert run.wake(world.api.answer_gate("plan", 0, "approved")) == "resumed"
    assert created(run) == ["developer"]


def test_no_plan_gate_without_a_developer(world: World) -> None:
    world.api.gates_required = {"plan"}

    run = Run(world, agent="none").start()

    assert created(run) == ["tester"] and world.api.gate_requests == []


def test_no_plan_gate_when_the_policy_does_not_ask(world: World) -> None:
    run = Run(world).start()

    assert created(run) == ["developer"] and world.api.gate_requests == []


# -- human review ----------------------------------------------------------------------------------


def test_a_blocked_developer_parks_for_review_and_the_guidance_reaches_the_next_round(world: World) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    blocked = {"success": False, "error": "need the API token", "result": {"status": "blocked"}}

    run.answer("developer:1:message", blocked)

    assert run.waiting_for() == f"{run.task_id}:gate:review:1"
    assert world.api.task.status is TaskStatus.WAITING_HUMAN_REVIEW
    [review] = world.api.gate_requests
    assert review.summary == "The developer is blocked (round 1): need the API token"
    assert run.deleted() == ["w-1"], "the blocked developer's worker does not wait with the task"

    wake = world.api.answer_gate("review", 1, "resumed", comment="Use the FAKE_TOKEN variable.")
    assert run.wake(wake) == "resumed"

    [create] = [c for c in run.sent if isinstance(c, CreateWorkerCommand)][1:]
    assert create.request_id == f"{run.task_id}:developer:2:create"
    [send] = run.answer("developer:2:create", {"success": True, "worker_id": "w-2"})
    assert isinstance(send, SendMessageCommand)
    assert f"{instructions.GUIDANCE}\n" in send.message and "Use the FAKE_TOKEN variable." in send.message
    run.answer("developer:2:message", {"success": True, "result": {"commit_sha": "c2"}})
    run.answer("tester:2:message", {"success": True})  # on w-2, the worker the review's resume started
    finished = world.api.task
    assert finished.status is TaskStatus.COMPLETED


def test_tests_failing_after_the_last_round_park_for_review_then_guidance_gives_another_round(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, engineering_max_attempts=1)
    run = Run(world).start()
    run.developer_round(1, ["a.py"])

    run.answer("tester:1:message", {"success": False, "result": {"output_tail": "FAILED test_x - 1 != 2"}})

    assert world.api.task.status is TaskStatus.WAITING_HUMAN_REVIEW
    assert world.api.gate_requests[0].summary.endswith("FAILED test_x - 1 != 2")
    wake = world.api.answer_gate("review", 1, "resumed", comment="test_x expects 2: fix the adder")
    assert run.wake(wake) == "resumed"
    [send] = run.answer("developer:2:create", {"success": True, "worker_id": "w-2"})
    assert "FAILED test_x - 1 != 2" in send.message and "fix the adder" in send.message


def test_a_review_that_expires_leaves_the_failure_to_the_api(world: World) -> None:
    run = Run(world).start()
    run.answer("developer:1:create", {"success": True, "worker_id": "w-1"})
    run.answer("developer:1:message", {"success": False, "error": "stuck", "result": {"status": "blocked"}})

    wake = world.api.answer_gate("review", 1, "expired")

    assert run.wake(wake) == "ended"
    assert world.api.task.error == "the review was expired" and created(run) == ["developer"]


def test_a_stray_wake_up_for_another_gate_is_ignored(world: World) -> None:
    world.api.gates_required = {"plan"}
    run = Run(world).start()

    assert run.wake(f"{run.task_id}:gate:review:3") == "ignored"
    assert run.waiting_for() == f"{run.task_id}:gate:plan:0"


def test_guidance_follows_the_round_s_own_instructions() -> None:
    prompt = instructions.developer_prompt("add X", "1 failed", 2, guidance="  do Y  ")

    assert prompt.index("# The tests failed after attempt 1") < prompt.index(instructions.GUIDANCE)
    assert prompt.rstrip().endswith("do Y")
    assert instructions.GUIDANCE not in instructions.developer_prompt("add X", None, 1, guidance=" ")


def test_a_review_summary_without_output_still_says_why(world: World) -> None:
    reply = WorkerReply.model_validate({"success": False})
    last = world.settings.engineering_max_attempts

    update = world.nodes.tester_answered(world.state(round=last), reply)

    assert update["review"].endswith("tests failed")


def run_message(run: Run) -> EngineeringMessage:
    return EngineeringMessage(task_id=run.task_id, project_id="p1", user_id=1)


# -- the deploy gate -------------------------------------------------------------------------------


def _server(handle: str, host: str, labels: dict[str, str]) -> Server:
    return Server(
        id=f"s-{handle}",
        handle=handle,
        host=host,
        ssh_user="deploy",
        ssh_key_ref=None,
        status="up",
        labels=labels,
        owner_id="u",
        created_at=datetime.now(UTC),
    )


class DeployApi(FakeApi):
    """FakeApi with the servers (the built-in localhost and an ssh one), ports and releases the deploy
    graph's steps from allocate to the server touch; the deploy gate follows the default policy."""

    def __init__(self) -> None:
        super().__init__()
        self.task = self.task.model_copy(update={"type": TaskType.DEPLOY, "status": TaskStatus.RUNNING})
        self.servers = {
            "localhost": _server("localhost", "127.0.0.1", {"builtin": "true", "connection": "local"}),
            "vps": _server("vps", "203.0.113.7", {}),
        }
        self.gates_required = {"deploy"}
        self.gate_asked_for: list[str | None] = []
        self.ports = {("vps", 8000), ("vps", 8001)}
        self.releases: dict[str, str] = {"r-1": "deploying"}
        self.checked: list[str] = []

    def gate_needed(self, task_id: str, kind: str, server: str | None = None) -> GateNeed:
        self.gate_asked_for.append(server)
        builtin = self.servers[server or ""].labels.get("builtin") == "true"
        required = kind in self.gates_required and not builtin
        return GateNeed(required=required, reason="the project's policy is deploy")

    def get_server(self, handle: str) -> Server:
        return self.servers[handle]

    def record_server_check(self, handle: str, status: str, facts: dict[str, Any] | None = None) -> None:
        self.checked.append(handle)

    def get_deployment(self, project_id: str) -> Any:
        raise NotFoundError(404, "not_found", "not deployed")

    def list_ports(self, handle: str) -> list[Any]:
        return [SimpleNamespace(project_id="p1", port=p) for h, p in sorted(self.ports) if h == handle]

    def free_port(self, handle: str, port: int) -> None:
        self.ports.discard((handle, port))

    def list_releases(self, project_id: str, status: str | None = None) -> Any:
        items = [SimpleNamespace(id=r, task_id=self.task.id) for r, s in self.releases.items() if s == status]
        return SimpleNamespace(items=items)

    def finish_release(
        self, release_id: str, status: str, error: str | None = None, url: str | None = None
    ) -> None:
        self.releases[release_id] = status


class DeployRun:
    """A deploy driven through the compiled deploy graph from just after `allocate`."""

    def __init__(self, tmp_path: Path, server: str) -> None:
        self.api = DeployApi()
        self.queue = LocalQueue(tmp_path / "deploy-queue.db")
        settings = DeploySettings(home=tmp_path, checkpointer="sqlite")
        ports = DeployPorts(self.api, self.queue, settings, None)  # type: ignore[arg-type]
        self.deploy = Deploy(ports, InMemorySaver())
        self.task_id = self.api.task.id
        host = self.api.servers[server].host
        allocated = DeployState(
            task_id=self.task_id,
            project_id="p1",
            project_name="blog",
            server_handle=server,
            server_host=host,
            connection=self.api.servers[server].connection,
            ref="main",
            commit_sha="a" * 40,
            repo_full_name="projects/blog",
            port=8001,
            stable_port=8000,
            slot="a",
            release_id="r-1",
            release_number=1,
            deployed_url=f"http://{host}:8000",
            health_url=f"http://{host}:8000/health",
        )
        config = self.deploy.config(self.task_id)
        self.deploy.graph.update_state(config, allocated.model_dump(), as_node="allocate")
        self.deploy.graph.invoke(None, config)

    def waiting_for(self) -> str | None:
        return self.deploy.pending_wait(self.deploy.graph.get_state(self.deploy.config(self.task_id)))

    def wake(self, request_id: str) -> str:
        return self.deploy.handle(
            DeployMessage(task_id=self.task_id, project_id="p1", user_id=1, request_id=request_id)
        )


def test_a_deploy_to_the_built_in_server_never_waits_for_approval(tmp_path: Path) -> None:
    run = DeployRun(tmp_path, "localhost")

    assert run.api.gate_requests == [] and run.api.checked == ["localhost"]
    assert [m.job_type for m in drain(run.queue, ANSIBLE_DEPLOY_QUEUE)] == ["deploy"]
    assert run.waiting_for() == f"{run.task_id}:ansible:0"


def test_a_deploy_to_an_ssh_server_waits_for_approval_before_touching_it(tmp_path: Path) -> None:
    run = DeployRun(tmp_path, "vps")

    assert run.waiting_for() == f"{run.task_id}:gate:deploy:0"
    assert run.api.task.status is TaskStatus.WAITING_APPROVAL
    assert drain(run.queue, PROVISIONER_QUEUE) == [] and run.api.checked == []
    [asked] = run.api.gate_requests
    assert (asked.kind, asked.round) == ("deploy", 0)
    for named in ("release 1", "vps", "203.0.113.7", "a" * 12):
        assert named in asked.summary
    assert run.api.gate_asked_for == ["vps"]

    wake = run.api.answer_gate("deploy", 0, "approved")
    assert run.wake(wake) == "resumed"

    [provision] = drain(run.queue, PROVISIONER_QUEUE)
    assert provision.server_handle == "vps"
    assert run.waiting_for() == f"{run.task_id}:provision:0"
    assert len(run.api.gate_requests) == 1


def test_a_rejected_deploy_ends_its_release_and_gives_its_ports_back(tmp_path: Path) -> None:
    run = DeployRun(tmp_path, "vps")

    wake = run.api.answer_gate("deploy", 0, "rejected", comment="not today")

    assert run.wake(wake) == "ended"
    assert run.api.releases == {"r-1": "failed"}
    assert run.api.ports == set(), "nothing reached the server: its ports go back at once"
    assert drain(run.queue, PROVISIONER_QUEUE) == []


def test_a_fix_round_s_redeploy_does_not_ask_again(tmp_path: Path) -> None:
    run = DeployRun(tmp_path, "vps")
    run.wake(run.api.answer_gate("deploy", 0, "approved"))
    snapshot = run.deploy.graph.get_state(run.deploy.config(run.task_id))
    state = DeployState.model_validate(snapshot.values)

    assert state.gate_passed
    gate_nodes = GateNodes(run.api, run.queue, DeploySettings(home=tmp_path), None)  # type: ignore[arg-type]
    assert gate_nodes.deploy_gate(state.model_copy(update={"attempt": 1})) == {}
    assert run.api.gate_asked_for == ["vps"], "the policy was not asked again"
