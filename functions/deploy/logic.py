"""Driving the deploy graph from messages.

deploy:queue carries two kinds of DeployMessage: a task's start (any request id) and a wake-up for a
task that waits (`<task>:secrets:<n>` after `secret set`, `<task>:fix:<n>` when its fix task ended,
`<task>:gate:deploy:0` once the owner answered the deploy's approval), which the API's outbox sends. Results come back on ansible:deploy:results and provisioner:results.
"""

from __future__ import annotations

from typing import Any

from functions.deploy.gates import waits_for_deploy_approval
from functions.deploy.graph import Ports, build_graph
from functions.deploy.releases import free_after_failure
from functions.deploy.state import DeployState
from shared.api_client import ConflictError
from shared.contracts import DeployMessage
from shared.graphs.driver import GraphDriver, LeaseBusy, in_flight

__all__ = ["Deploy", "LeaseBusy"]


class Deploy(GraphDriver):
    name = "deploy"

    def __init__(self, ports: Ports, checkpointer: Any) -> None:
        super().__init__(ports.api, build_graph(ports, checkpointer))
        self.ports = ports

    def handle(self, message: DeployMessage) -> str:
        if message.request_id.startswith(f"{message.task_id}:"):
            return self.resume(
                message.request_id, {"woken_by": message.request_id}
            )  # a falsy resume value is ignored
        return self.start(message)

    def start(self, message: DeployMessage) -> str:
        """Claim and run until the first wait; a redelivered start is a no-op."""
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
            initial = DeployState(
                task_id=task_id,
                project_id=task.project_id,
                correlation_id=task.correlation_id,
                attempt=message.deploy_fix_attempt,
            )
            self.graph.invoke(initial, self.config(task_id))
            return "started"

    def resume(self, request_id: str, payload: dict[str, Any]) -> str:
        outcome = super().resume(request_id, payload)
        if outcome == "ended":
            task_id = request_id.split(":", 1)[0]
            self.end_release(task_id)
            self.give_back_unapproved(task_id)
        return outcome

    def end_release(self, task_id: str) -> None:
        """The task ended while its graph waited (cancelled by a person, failed by the stuck-task reaper):
        its release, if it has one still deploying, ends FAILED with it."""
        task = self.api.get_task(task_id)
        for release in self.api.list_releases(task.project_id, status="deploying").items:
            if release.task_id == task_id:
                why = task.error or f"the deploy task was {task.status.value.lower()}"
                try:
                    self.api.finish_release(release.id, "failed", error=why)
                except ConflictError:
                    pass  # ended meanwhile

    def give_back_unapproved(self, task_id: str) -> None:
        """The task ended while it waited for the deploy's approval (rejected, expired, cancelled):
        nothing reached the server, so a first deploy's ports go back at once."""
        snapshot = self.graph.get_state(self.config(task_id))
        if waits_for_deploy_approval(task_id, self.pending_wait(snapshot)):
            free_after_failure(self.api, DeployState.model_validate(snapshot.values))
