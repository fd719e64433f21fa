"""Where the engineering graph stops for a person or for money (issue 21).

- The plan gate, after prepare/scaffold and before the first developer round (never without a
  developer): the API says whether the project's policy (or the cost estimate) wants an approval.
- Human review instead of a silent failure: a developer that answers `blocked`, or tests that still
  fail after the last fix round, park the task in WAITING_HUMAN_REVIEW; the person's guidance goes into
  the next developer round's TASK.md.
- The budget, looked at before every worker starts.

Each gate is an asking node and a waiting node (see shared/graphs/gates.py): a resume re-runs only the
waiting one.
"""

from __future__ import annotations

from functions.engineering.base import NodeBase, Update
from functions.engineering.state import EngState
from shared.contracts.spend import Gate, GateNeed
from shared.graphs.gates import GOES_ON, answered_by, ask, await_answer

PLAN_ROUND = 0
"""A task's plan is approved once, before its first developer round."""


def plan_summary(state: EngState, need: GateNeed) -> str:
    """What the person approves: the spec the developer will get, and what it may cost."""
    estimate = f"${need.estimate_usd:.2f}" if need.estimate_usd is not None else "no estimate yet"
    return (
        f"Plan for {state.project_name or state.project_id}: the developer ({state.agent}) implements\n\n"
        f"{state.spec.strip()}\n\non branch {state.branch}, from {state.base}. "
        f"Estimated cost: {estimate}. Approval asked because {need.reason}."
    )


class GateNodes(NodeBase):
    """The plan and review gates of the engineering graph."""

    # -- the plan gate ------------------------------------------------------------------------------

    def plan_gate(self, state: EngState) -> Update:
        need = self.api.gate_needed(state.task_id, "plan")
        if self.ended(state, said=need.task_status):
            return {"outcome": "cancelled"}
        if not need.required:
            return {}
        details = {"estimate_usd": need.estimate_usd, "branch": state.branch, "agent": state.agent}
        gate = ask(self.api, state.task_id, "plan", PLAN_ROUND, plan_summary(state, need), details)
        return self.plan_answered(state, gate)

    def plan_gate_wait(self, state: EngState) -> Update:
        return self.plan_answered(state, await_answer(self.api, state.task_id, "plan", PLAN_ROUND))

    def plan_answered(self, state: EngState, gate: Gate) -> Update:
        """Approved: on to the developer. Still pending: wait. Anything else: the task ended already
        (rejected, expired or cancelled: the API failed it), so the graph ends quietly."""
        if gate.status == "pending":
            return {"gate": "plan"}
        if gate.status not in GOES_ON:
            return {"gate": None, "outcome": "cancelled"}
        self.event(state, "progress", f"plan approved by {answered_by(gate)}", "plan", 18)
        return {"gate": None}

    # -- human review -------------------------------------------------------------------------------

    def review_gate(self, state: EngState) -> Update:
        if self.ended(state):
            return {"outcome": "cancelled"}
        summary = state.review or "the work needs a person's look"
        gate = ask(self.api, state.task_id, "review", state.round, summary, {"round": state.round})
        return self.reviewed(state, gate)

    def review_wait(self, state: EngState) -> Update:
        return self.reviewed(state, await_answer(self.api, state.task_id, "review", state.round))

    def reviewed(self, state: EngState, gate: Gate) -> Update:
        """Resumed: the guidance goes to a new developer round. Pending: wait. Anything else: the task
        ended already (cancelled or expired), so the graph ends quietly."""
        if gate.status == "pending":
            return {"gate": "review"}
        if gate.status not in GOES_ON:
            return {"gate": None, "outcome": "cancelled"}
        guidance = gate.comment or ""
        rnd = state.round + 1
        message = f"guidance from {gate.answered_by or 'the owner'}: back to the developer (round {rnd})"
        self.event(state, "progress", message, "review", 60)
        return {"gate": None, "review": None, "guidance": guidance or state.guidance, "round": rnd}
