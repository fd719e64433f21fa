"""Budgets and gates as the engineering and deploy graphs use them (issue 21).

A gate parks the task for a person: the graph asks the API for it (`request_gate`, idempotent per
(task, kind, round), which moves the task to WAITING_APPROVAL or WAITING_HUMAN_REVIEW), then waits with
`interrupt({"wait_for": <task>:gate:<kind>:<round>})`. The person's answer (approve, reject, resume,
or the expiry) wakes the graph under that request id from the API's outbox, so the wait survives any
restart: the checkpoint holds the interrupt, the API holds the gate. The graph then reads the gate:
approved (or resumed, for a review) goes on; anything else means the API already ended the task.

Each gate is two nodes: one asks (and may find the gate already answered, on a replay), the next waits.
A resume re-runs only the waiting node, so the gate is never asked for twice.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from shared.api_client import ApiClient
from shared.contracts.spend import BUDGET, BudgetCheck, Gate, GateKind, GateRequest
from shared.graphs.driver import request_id

SUMMARY_CHARS = 20_000
"""The longest summary a gate takes (GateRequest.summary)."""

GOES_ON = {"approved", "resumed"}
"""Gate statuses after which the graph goes on; any other answer ended the task."""


def gate_request_id(task_id: str, kind: GateKind, round_: int) -> str:
    """What the API's wake-up carries once a person answered the gate."""
    return request_id(task_id, "gate", kind, round_)


def spent_update(check: BudgetCheck) -> dict[str, Any] | None:
    """Before a worker starts: the failed update (reason `budget`, "budget: <what binds>") when the
    task's budget check says it may spend nothing more; None while money is left."""
    if not check.exhausted:
        return None
    return over_budget(check.note or "no budget left")


def over_budget(why: str) -> dict[str, Any]:
    """The update that fails a task on a spent budget, never silently: the error names the budget."""
    error = why if why.startswith(f"{BUDGET}:") else f"{BUDGET}: {why}"
    return {"outcome": "failed", "error": error, "failure_reason": BUDGET}


def ask(
    api: ApiClient,
    task_id: str,
    kind: GateKind,
    round_: int,
    summary: str,
    details: dict[str, Any] | None = None,
) -> Gate:
    """Park the task at a gate (or find the one a replay of this step asked for already)."""
    body = GateRequest(kind=kind, round=round_, summary=summary[-SUMMARY_CHARS:], details=details or {})
    return api.request_gate(task_id, body)


def await_answer(api: ApiClient, task_id: str, kind: GateKind, round_: int) -> Gate:
    """Pause until the API wakes the graph for this gate; the gate as the person left it."""
    interrupt({"wait_for": gate_request_id(task_id, kind, round_)})
    return api.get_gate(task_id, kind, round_)


def answered_by(gate: Gate) -> str:
    who = gate.answered_by or "the owner"
    return f"{who}: {gate.comment}" if gate.comment else who
