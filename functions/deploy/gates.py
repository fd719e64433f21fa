"""The deploy gate (issue 21): before anything touches a server other than the built-in one, the
owner approves the release (when the project's policy, by default "deploy", says so).

It sits after `allocate` (the release and its ports exist, so the person sees the release number and
the address) and before `readiness` (the first step that touches the server). One approval covers the
task: a fix round's redeploy of the same task does not ask again. A rejected or expired gate ended the
task already (the API failed it); the release it allocated ends FAILED and, on a first deploy there,
its ports are given back: nothing of it ever reached the server.
"""

from __future__ import annotations

from functions.deploy.base import NodeBase, Update
from functions.deploy.releases import finish_failed, free_after_failure, serving_here, short
from functions.deploy.state import DeployState
from shared.api_client import ApiClient
from shared.contracts.api import Deployment
from shared.contracts.spend import Gate
from shared.graphs.gates import GOES_ON, answered_by, ask, await_answer, gate_request_id

DEPLOY_ROUND = 0


def deploy_summary(state: DeployState, serving: Deployment | None) -> str:
    """What the person approves: which release of which commit goes where, and what it replaces."""
    what = f"release {state.rollback_of}'s commit (a rollback)" if state.rollback_of else state.ref or "main"
    now = (
        f"it replaces what serves there now ({serving.ref or 'unknown ref'}, slot {serving.slot or '-'})"
        if serving is not None
        else f"nothing of {state.project_name} serves there yet"
    )
    return (
        f"Deploy {state.project_name} release {state.release_number} to server {state.server_handle} "
        f"({state.server_host}): commit {short(state.commit_sha)} from {what}, at {state.deployed_url}; {now}."
    )


def waits_for_deploy_approval(task_id: str, waiting_for: str | None) -> bool:
    return waiting_for == gate_request_id(task_id, "deploy", DEPLOY_ROUND)


def release_unapproved(api: ApiClient, state: DeployState, why: str) -> None:
    """The task ended at the deploy gate: its release ends FAILED and a first deploy's ports go back
    (nothing reached the server, so no runner can still use them)."""
    finish_failed(api, state, why)
    free_after_failure(api, state)


class GateNodes(NodeBase):
    """The deploy gate: `deploy_gate` asks (when the API says the policy wants it), `deploy_gate_wait`
    waits for the answer."""

    def deploy_gate(self, state: DeployState) -> Update:
        if state.gate_passed:
            return {}
        if self.ended(state):
            return {"outcome": "cancelled"}
        need = self.api.gate_needed(state.task_id, "deploy", server=state.server_handle)
        if not need.required:
            return {"gate_passed": True}
        summary = deploy_summary(state, serving_here(self.api, state))
        details = {
            "release": state.release_number,
            "commit_sha": state.commit_sha,
            "ref": state.ref,
            "server": state.server_handle,
            "server_ip": state.server_host,
            "url": state.deployed_url,
        }
        return self.deploy_answered(
            state, ask(self.api, state.task_id, "deploy", DEPLOY_ROUND, summary, details)
        )

    def deploy_gate_wait(self, state: DeployState) -> Update:
        return self.deploy_answered(state, await_answer(self.api, state.task_id, "deploy", DEPLOY_ROUND))

    def deploy_answered(self, state: DeployState, gate: Gate) -> Update:
        """Approved: on to the server. Pending: wait. Anything else: the task ended already."""
        if gate.status == "pending":
            return {"gate": "deploy"}
        if gate.status not in GOES_ON:
            task = self.api.get_task(state.task_id)
            release_unapproved(self.api, state, task.error or f"the deploy gate was {gate.status}")
            return {"gate": "", "outcome": "cancelled"}
        self.progress(state, f"deploy approved by {answered_by(gate)}", "approval", 28)
        return {"gate": "", "gate_passed": True}
