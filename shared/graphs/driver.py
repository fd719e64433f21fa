"""Driving a durable LangGraph graph from queue messages, shared by engineering and deploy.

One driver per task at a time (the API's task lease, unique per invocation); a graph waits with
`interrupt({"wait_for": request_id})` and `resume` feeds it only the answer it waits for, so a
duplicate or stray message is a no-op.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from shared.api_client import ApiClient, ConflictError, NotFoundError
from shared.contracts.api import Task, TaskLeaseState, TaskStatus
from shared.observability import get_logger

END = "__end__"
"""langgraph's END node (`langgraph.graph.END`), spelled here so that loading a graph function's handler
does not load langgraph: it loads when a graph is first built (tests/unit/test_import_hygiene.py holds
the two equal)."""


class LeaseBusy(RuntimeError):
    """Another driver holds the task: the message comes back after a short visibility timeout."""


def in_flight(task: Task) -> bool:
    """The task is the graph's (running, or parked at a wait): a redelivered start may have to carry
    it to its wait, e.g. after a crash between parking it at a gate and checkpointing the interrupt."""
    return task.status is TaskStatus.RUNNING or task.status.is_waiting


def waiting_for(value: Any) -> str | None:
    return value.get("wait_for") if isinstance(value, dict) else None


def answers(expected: str | None, request_id: str) -> bool:
    """`expected` is an exact request id, or a prefix ending in `*` (any wake-up of that kind)."""
    if not expected:
        return False
    if expected.endswith("*"):
        return request_id.startswith(expected[:-1])
    return expected == request_id


class GraphDriver:
    name = "graph"

    def __init__(self, api: ApiClient, graph: Any) -> None:
        self.api = api
        self.graph = graph
        self.holder = f"{self.name}@{socket.gethostname()}:{os.getpid()}"
        self.logger = get_logger()

    @staticmethod
    def config(task_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": task_id}}

    @contextmanager
    def leased(self, task_id: str) -> Iterator[TaskLeaseState]:
        # One holder per invocation, not per process: two threads of one process (two pollers, or
        # one Lambda container reused) must not both think they hold the task.
        holder = f"{self.holder}:{uuid.uuid4().hex[:8]}"
        try:
            lease = self.api.take_lease(task_id, holder, seconds=300)
        except ConflictError as exc:
            raise LeaseBusy(str(exc)) from None
        try:
            yield lease
        finally:
            try:
                self.api.release_lease(task_id, holder)
            except Exception:
                self.logger.exception("could not release the task lease", extra={"task_id": task_id})

    @staticmethod
    def pending_wait(snapshot: Any) -> str | None:
        for task in getattr(snapshot, "tasks", ()):
            for pending in getattr(task, "interrupts", ()):
                found = waiting_for(pending.value)
                if found:
                    return found
        return None

    def continue_claimed(self, task_id: str) -> str | None:
        """The task was claimed already (a redelivered start). Returns what happened, or None when the
        graph never got going (a crash before its first checkpoint) and the caller should start it."""
        snapshot = self.graph.get_state(self.config(task_id))
        if snapshot.next and self.pending_wait(snapshot):
            return "duplicate"
        if snapshot.values:
            self.logger.info("continuing an interrupted run", extra={"task_id": task_id})
            self.graph.invoke(None, self.config(task_id))
            return "continued"
        return None

    def ended(self, task_id: str) -> bool:
        """The task's graph has run to its end: its last checkpoint has values and no task at all. Read
        without the lease, which is safe only this way round: a graph that ended stays ended (a
        redelivered start finds it so and does nothing), while a graph not yet at its end may move on
        under another holder's lease at any moment, so anything short of the end is looked at again under
        the lease. Not `snapshot.next`: while a run goes on, a node that has finished (its writes stored,
        the next checkpoint not yet) is left out of `next`, which is then empty mid-run."""
        snapshot = self.graph.get_state(self.config(task_id))
        return bool(snapshot.values) and not snapshot.tasks

    def resume(self, request_id: str, payload: dict[str, Any]) -> str:
        """Feed an answer to the graph waiting for it; anything else (a duplicate, a stray) is dropped."""
        task_id = request_id.split(":", 1)[0]
        if ":" not in request_id:
            return "not-ours"
        if self.ended(task_id):
            # nothing waits at an end, ever: dropped without the lease (two requests; and no retry in
            # seconds when it comes while the run that ended the graph still holds it, as a worker's
            # answer to its own deletion does)
            self.logger.info("answer to an ended run", extra={"task_id": task_id, "request_id": request_id})
            return "ignored"
        try:
            with self.leased(task_id) as lease:
                snapshot = self.graph.get_state(self.config(task_id))
                expected = self.pending_wait(snapshot)
                if not answers(expected, request_id):
                    self.logger.info(
                        "answer nobody waits for",
                        extra={"task_id": task_id, "request_id": request_id, "waiting_for": expected},
                    )
                    return "ignored"
                # the status as the lease was taken (an older API does not say: asked for then)
                status = lease.status or self.api.get_task(task_id).status
                if status.is_final:  # cancelled by a person, or failed by the stuck-task reaper
                    return "ended"
                from langgraph.types import Command

                # LangGraph ignores a falsy resume value (the node would just wait again)
                self.graph.invoke(Command(resume=payload or {"resumed_by": request_id}), self.config(task_id))
                return "resumed"
        except NotFoundError:
            return "not-ours"


# -- what every graph and its handler share ---------------------------------------------------

LEASE_RETRY_S = 2


def request_id(task_id: str, *parts: object) -> str:
    """Deterministic: the same step of the same round always sends the same request id."""
    return ":".join([task_id, *map(str, parts)])


def last_lines(text: str, n: int = 5, limit: int = 500) -> str:
    """The end of a long output, on one line, for an event or an error."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[:limit]


def event_sender(api: ApiClient) -> Callable[..., None]:
    """`event(state, kind, message, step, pct, error=None)`: one progress event on the state's task, held
    until the graph next changes something (`shared.graphs.progress`)."""
    from shared.graphs.progress import holder_for

    send = holder_for(api)

    def event(
        state: Mapping[str, Any], kind: str, message: str, step: str, pct: int, error: str | None = None
    ) -> None:
        send(
            state["task_id"],
            {
                "type": kind,
                "message": message,
                "current_step": step,
                "progress_pct": pct,
                "error": error,
                "correlation_id": state.get("correlation_id"),
            },
        )

    return event


def route_ok(next_node: str, end: str = END) -> Callable[[Mapping[str, Any]], str]:
    """On to `next_node`, unless the state says failed (-> "fail") or cancelled (-> the end)."""

    def route(state: Mapping[str, Any]) -> str:
        outcome = state.get("outcome")
        if outcome == "cancelled":
            return end
        return "fail" if outcome == "failed" else next_node

    return route


def consume_graph_event(
    event: dict[str, Any],
    context: Any,
    function: str,
    queues: tuple[str, ...],
    queue_port: Callable[[], Any],
    handle: Callable[[str, Any], None],
) -> dict[str, Any]:
    """A Lambda SQS event for a graph function: the record's source queue picks the path (`handle(queue,
    message)`); a task another invocation drives right now comes back in seconds, not after the whole
    visibility timeout."""
    from shared.queues.consume import process_queue_event, source_queue

    queue = source_queue(event, queues, function)

    def record_handler(message: Any, record: Any) -> None:
        try:
            handle(queue, message)
        except LeaseBusy as exc:
            queue_port().release(
                queue, record.receipt_handle, reason=str(exc), visibility_timeout=LEASE_RETRY_S
            )
            raise

    return process_queue_event(event, queue, record_handler, context)
