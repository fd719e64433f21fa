"""The engineering graph: scaffold (if needed) -> plan gate (when the policy or the cost estimate
wants the owner's approval) -> developer -> tester -> (fix loop) -> merge into main (a conflict: one
rebase round of developer -> tester) -> finalize. A blocked developer, or tests that still fail after
the last fix round, park the task for a person's review, whose guidance starts another developer round;
a spent budget fails the task before any worker starts.

One worker per task serves the developer round and the tester's command after it (and a fix round
when it fits in the worker's life): a `*_create` step sends the round's message to it when it is open,
or asks for a new worker, whose `*_created` step sends the message once it is up; the `*_wait` step
takes the answer and keeps the worker for the next round or releases (deletes) it. No worker waits at a
gate: one parked for a person is released, and the next round starts a new one.

Durable: a node that needs outside work publishes a command and the *next* node calls
`interrupt()`; the consumer of worker:responses / scaffolder:results resumes the thread
(`thread_id = task_id`) with `Command(resume=...)`. Publishing nodes never re-run on resume
(only the waiting node does), and every command's request id is derived from the task, the
step and the round, so a replayed node re-sends the same command, which the receivers treat
as a duplicate: no second worker, no second scaffold.

The steps are `EngineeringNodes` methods (nodes.py); the state is `EngState` (state.py); this module
only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph import END, START, StateGraph

from functions.engineering.nodes import EngineeringNodes
from functions.engineering.settings import EngineeringSettings
from functions.engineering.state import EngState
from shared.api_client import ApiClient
from shared.queues.port import QueuePort
from shared.repos.port import RepoHost

__all__ = ["EngState", "Ports", "build_graph", "no_developer"]


@dataclass
class Ports:
    api: ApiClient
    queue: QueuePort
    settings: EngineeringSettings
    repo_host: RepoHost | None = None
    worker_env_refs: dict[str, str] = field(default_factory=dict)
    """Secret references a worker resolves itself (GITHUB_TOKEN for pushes to GitHub)."""


def no_developer(state: EngState) -> bool:
    """`--agent none`: skip the developer; the template (or the base ref) alone is tested and delivered."""
    return state.no_developer


def ok(next_node: str | Callable[[EngState], str]) -> Callable[[EngState], str]:
    """On to `next_node` (a name, or a route choosing one), unless the state says failed (-> "fail")
    or cancelled (-> the end)."""

    def route(state: EngState) -> str:
        if state.outcome == "cancelled":
            return END
        if state.outcome == "failed":
            return "fail"
        return next_node(state) if callable(next_node) else next_node

    return route


def first_worker(state: EngState) -> str:
    """Without a developer the tester goes first; otherwise the plan gate (which may wave it through)."""
    return "tester_create" if state.no_developer else "plan_gate"


def at_gate(kind: str, wait: str, on: str) -> Callable[[EngState], str]:
    """After a gate's asking (or waiting) step: wait while the gate is pending, else on to `on`."""
    return ok(lambda state: wait if state.gate == kind else on)


def on_open_worker(wait: str, created: str) -> Callable[[EngState], str]:
    """After a `*_create` step: its round's message went to the task's open worker (wait for the answer),
    or a new worker was asked for (wait for it to be up)."""
    return lambda state: wait if state.worker_open else created


def after_developer(state: EngState) -> str:
    """A blocked developer parks the task for a person's review; otherwise the tester runs."""
    return "review_gate" if state.review else "tester_create"


def after_prepare(state: EngState) -> str:
    return first_worker(state) if state.repo_url else "scaffold_request"


def after_tests(state: EngState) -> str:
    """Passed: into main (a checkpoint from before the merge step exists goes there too). Failed: a fix
    round, or a person's review once the rounds are used up."""
    if state.outcome == "failed":
        return "fail"
    if state.review:
        return "review_gate"
    return "developer_create" if state.last_failure else "merge"


def after_merge(state: EngState) -> str:
    """A conflict with main sends the developer a rebase round; otherwise the task is done."""
    return "developer_create" if state.merge_conflicts else "finalize"


NODES = (
    "prepare",
    "scaffold_request",
    "scaffold_wait",
    "developer_create",
    "developer_created",
    "developer_send",
    "developer_wait",
    "tester_create",
    "tester_created",
    "tester_send",
    "tester_wait",
    "merge",
    "finalize",
    "fail",
    "plan_gate",
    "plan_gate_wait",
    "review_gate",
    "review_wait",
)


def build_graph(ports: Ports, checkpointer: Any) -> Any:
    nodes = EngineeringNodes(ports.api, ports.queue, ports.settings, ports.repo_host, ports.worker_env_refs)
    graph = StateGraph(EngState)
    for name in NODES:
        graph.add_node(name, getattr(nodes, name))
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges(
        "prepare", after_prepare, ["developer_create", "tester_create", "plan_gate", "scaffold_request"]
    )
    graph.add_edge("scaffold_request", "scaffold_wait")
    graph.add_conditional_edges(
        "scaffold_wait", ok(first_worker), ["developer_create", "tester_create", "plan_gate", "fail", END]
    )
    plan_next = at_gate("plan", "plan_gate_wait", "developer_create")
    for step in ("plan_gate", "plan_gate_wait"):
        graph.add_conditional_edges(step, plan_next, ["plan_gate_wait", "developer_create", "fail", END])
    review_next = at_gate("review", "review_wait", "developer_create")
    for step in ("review_gate", "review_wait"):
        graph.add_conditional_edges(step, review_next, ["review_wait", "developer_create", "fail", END])
    # a `*_create` step on the task's open worker sends its message itself (on to the wait); otherwise
    # it asks for a worker, and the `*_created` step sends the message once it is up. The `*_send` steps
    # stay only for checkpoints written before that (a task stopped between the two goes on from there)
    for role in ("developer", "tester"):
        created, wait = f"{role}_created", f"{role}_wait"
        graph.add_conditional_edges(
            f"{role}_create", ok(on_open_worker(wait, created)), [wait, created, "fail", END]
        )
        graph.add_conditional_edges(created, ok(wait), [wait, "fail", END])
    graph.add_edge("developer_send", "developer_wait")
    graph.add_edge("tester_send", "tester_wait")
    graph.add_conditional_edges(
        "developer_wait", ok(after_developer), ["tester_create", "review_gate", "fail", END]
    )
    graph.add_conditional_edges(
        "tester_wait", after_tests, ["developer_create", "review_gate", "merge", "fail"]
    )
    graph.add_conditional_edges("merge", ok(after_merge), ["developer_create", "finalize", "fail", END])
    graph.add_edge("finalize", END)
    graph.add_edge("fail", END)
    return graph.compile(checkpointer=checkpointer)
