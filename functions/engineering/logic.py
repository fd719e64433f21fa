"""Driving the graph from messages: start on engineering:queue, resume on worker:responses and
scaffolder:results. One driver per task at a time (the API's task lease); redelivered messages
are no-ops."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph.types import Command

from functions.engineering.graph import EngState, Ports, build_graph, waiting_for
from shared.api_client import ApiClient, ConflictError, NotFoundError
from shared.contracts import EngineeringMessage
from shared.contracts.api import TaskStatus
from shared.observability import get_logger


class LeaseBusy(RuntimeError):
    """Another driver holds the task: the message comes back after its visibility timeout."""


class Engineering:
    def __init__(self, ports: Ports, checkpointer: Any) -> None:
        self.ports = ports
        self.api: ApiClient = ports.api
        self.graph = build_graph(ports, checkpointer)
        self.holder = f"engineering@{socket.gethostname()}:{os.getpid()}"
        self.logger = get_logger()

    @staticmethod
    def config(task_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": task_id}}

    @contextmanager
    def _leased(self, task_id: str) -> Iterator[None]:
        # One holder per invocation, not per process: two threads of one process (two pollers, or
        # one Lambda container reused) must not both think they hold the task.
        holder = f"{self.holder}:{uuid.uuid4().hex[:8]}"
        try:
            self.api.take_lease(task_id, holder, seconds=300)
        except ConflictError as exc:
            raise LeaseBusy(str(exc)) from None
        try:
            yield
        finally:
            try:
                self.api.release_lease(task_id, holder)
            except Exception:
                self.logger.exception("could not release the task lease", extra={"task_id": task_id})

    def start(self, message: EngineeringMessage) -> str:
        """Claim and run until the first wait. A redelivered message for a claimed task is a no-op,
        unless the graph never got going (a crash before its first checkpoint): then it continues."""
        task_id = message.task_id
        with self._leased(task_id):
            try:
                task = self.api.claim_task(task_id, worker=self.holder)
            except ConflictError:
                task = self.api.get_task(task_id)
                if task.status is not TaskStatus.RUNNING:
                    self.logger.info(
                        "task already handled", extra={"task_id": task_id, "status": task.status}
                    )
                    return "duplicate"
                snapshot = self.graph.get_state(self.config(task_id))
                if snapshot.next and self._pending_wait(snapshot):
                    return "duplicate"
                if snapshot.values:
                    self.logger.info("continuing an interrupted run", extra={"task_id": task_id})
                    self.graph.invoke(None, self.config(task_id))
                    return "continued"
            spec = task.spec or ""
            agent = task.params.get("agent") or self.api.get_project(task.project_id).agent or (
                self.ports.settings.default_agent
            )  # fmt: skip
            initial: EngState = {"task_id": task_id, "project_id": task.project_id, "spec": spec, "agent": agent,
                                 "correlation_id": task.correlation_id}  # fmt: skip
            self.graph.invoke(initial, self.config(task_id))
            return "started"

    @staticmethod
    def _pending_wait(snapshot: Any) -> str | None:
        for task in getattr(snapshot, "tasks", ()):
            for pending in getattr(task, "interrupts", ()):
                found = waiting_for(pending.value)
                if found:
                    return found
        return None

    def resume(self, request_id: str, payload: dict[str, Any]) -> str:
        """Feed an answer to the graph waiting for it; anything else (a duplicate, a stray) is dropped."""
        task_id = request_id.split(":", 1)[0]
        if ":" not in request_id:
            return "not-ours"
        try:
            with self._leased(task_id):
                snapshot = self.graph.get_state(self.config(task_id))
                expected = self._pending_wait(snapshot)
                if expected != request_id:
                    self.logger.info("answer nobody waits for", extra={"task_id": task_id, "request_id": request_id,
                                                                        "waiting_for": expected})  # fmt: skip
                    return "ignored"
                task = self.api.get_task(task_id)
                if task.status.is_final:  # cancelled by a person, or failed by the stuck-task reaper
                    return "ended"
                self.graph.invoke(Command(resume=payload), self.config(task_id))
                return "resumed"
        except NotFoundError:
            return "not-ours"
