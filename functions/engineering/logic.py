"""Driving the graph from messages: start on engineering:queue, resume on worker:responses and
scaffolder:results. One driver per task at a time (the API's task lease); redelivered messages
are no-ops.

engineering:queue carries two kinds of EngineeringMessage: a task's start (any request id) and a
wake-up for a task that waits at a gate (`<task>:gate:<kind>:<round>`, once a person answered it),
which the API's outbox sends."""

from __future__ import annotations

from typing import Any

from functions.engineering.graph import Ports, build_graph
from functions.engineering.state import EngState, requested_agent
from shared.api_client import ConflictError
from shared.contracts import EngineeringMessage
from shared.graphs.driver import GraphDriver, LeaseBusy, in_flight

__all__ = ["Engineering", "LeaseBusy"]


class Engineering(GraphDriver):
    name = "engineering"

    def __init__(self, ports: Ports, checkpointer: Any) -> None:
        super().__init__(ports.api, build_graph(ports, checkpointer))
        self.ports = ports

    def handle(self, message: EngineeringMessage) -> str:
        if message.request_id.startswith(f"{message.task_id}:"):
            return self.resume(message.request_id, {"woken_by": message.request_id})
        return self.start(message)

    def start(self, message: EngineeringMessage) -> str:
        """Claim and run until the first wait. A redelivered message for a claimed task is a no-op,
        unless the graph never got going (a crash before its first checkpoint): then it continues."""
        task_id = message.task_id
        with self.leased(task_id):
            try:
                task = self.api.claim_task(task_id, worker=self.holder)
            except ConflictError:
                task = self.api.get_task(task_id)
                if not in_flight(task):
                    self.logger.info(
                        "task already handled", extra={"task_id": task_id, "status": task.status}
                    )
                    return "duplicate"
                outcome = self.continue_claimed(task_id)
                if outcome:
                    return outcome
            agent = (
                requested_agent(task)
                or self.api.get_project(task.project_id).agent
                or self.ports.settings.default_agent
            )
            self.graph.invoke(EngState.starting(task, agent), self.config(task_id))
            return "started"
