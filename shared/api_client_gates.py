"""The API client's calls about gates: a graph parks its task at one, a person answers it."""

from __future__ import annotations

from shared.api_transport import ApiTransport
from shared.contracts.api import Task
from shared.contracts.spend import Gate, GateNeed, GateRequest


class GateCalls(ApiTransport):
    """Approvals (plan / deploy) and human reviews: request (internal), approve, reject, resume."""

    # -- the graphs (service scope) -------------------------------------------------------------

    def gate_needed(self, task_id: str, kind: str, server: str | None = None) -> GateNeed:
        """Must the task's graph stop for the owner's approval before its `kind` ("plan" or "deploy",
        to `server`; default: the deploy task's server)?"""
        params = {"kind": kind, "server": server}
        data = self.request("GET", f"/internal/tasks/{task_id}/gate-needed", params=params)
        return self._as(GateNeed, data)

    def request_gate(self, task_id: str, body: GateRequest) -> Gate:
        """Park the task at a gate (WAITING_APPROVAL / WAITING_HUMAN_REVIEW). Asked again for the same
        kind and round (a redelivery) it returns the same gate, answered or not, and moves nothing."""
        data = self.request("POST", f"/internal/tasks/{task_id}/gates", json=body.model_dump(mode="json"))
        return self._as(Gate, data)

    def get_gate(self, task_id: str, kind: str, round: int) -> Gate:
        """One gate (its answer's `status`, and `comment`: a review's guidance). NotFoundError if never asked."""
        return self._as(Gate, self.request("GET", f"/internal/tasks/{task_id}/gates/{kind}/{round}"))

    def expire_gates_report(self) -> dict[str, int]:
        """Fail the tasks whose gate nobody answered in time: `expired` (gates), `pending` (still waiting)."""
        data = self.request("POST", "/internal/gates/expire")
        return {str(k): int(v) for k, v in dict(data).items()}

    def expire_gates(self) -> int:
        """How many gates expired now (their tasks FAILED: approval_timeout / review_timeout)."""
        return self.expire_gates_report()["expired"]

    # -- people (the task's owner or an admin) ------------------------------------------------------

    def task_gates(self, task_id: str) -> list[Gate]:
        return self._as(list[Gate], self.request("GET", f"/tasks/{task_id}/gates"))

    def approve_task(self, task_id: str, comment: str | None = None, on_behalf_of: str | None = None) -> Task:
        """The pending plan or deploy approval: approved, the task RUNNING again. ConflictError when nothing
        waits for approval (its message says what the task is doing). `on_behalf_of` (service keys): the
        user who answered."""
        body = self._body(comment=comment, on_behalf_of=on_behalf_of)
        data = self.request("POST", f"/tasks/{task_id}/approve", json=body)
        return self._as(Task, data)

    def reject_task(self, task_id: str, comment: str | None = None, on_behalf_of: str | None = None) -> Task:
        """The pending approval: rejected, the task FAILED with failure_reason "rejected"."""
        body = self._body(comment=comment, on_behalf_of=on_behalf_of)
        data = self.request("POST", f"/tasks/{task_id}/reject", json=body)
        return self._as(Task, data)

    def resume_task(self, task_id: str, guidance: str, on_behalf_of: str | None = None) -> Task:
        """End the pending human review: the guidance goes to the next developer round."""
        body = self._body(guidance=guidance, on_behalf_of=on_behalf_of)
        data = self.request("POST", f"/tasks/{task_id}/resume", json=body)
        return self._as(Task, data)
