"""The deploy graph's steps, one method per node; `graph.py` wires them.

Each node reads the `DeployState` and returns the keys it changes. A node that needs outside work
publishes a message and the *next* node waits with `interrupt({"wait_for": request_id})`; request ids
come from the task, the step and the attempt, so a replayed node re-sends the same message and
receivers drop it.

The deploy nodes live here; the undeploy and cleanup nodes in `undeploy.py`, what they share (ports,
progress events) in `base.py`; a deploy's release (the commit, the slot, its ports) in `releases.py`.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from functions.deploy.base import Update, failed
from functions.deploy.gates import GateNodes
from functions.deploy.messages import (
    ansible_message,
    cause_text,
    deployment_record,
    failure_text,
    provision_message,
    tail,
)
from functions.deploy.probes import smoke_test
from functions.deploy.releases import (
    UnknownRef,
    allocate_release,
    finish_failed,
    free_after_failure,
    shipped_commit,
    short,
)
from functions.deploy.state import DeployState
from functions.deploy.undeploy import UndeployNodes
from shared.api_client import ConflictError, NotFoundError
from shared.contracts import ANSIBLE_DEPLOY_QUEUE, PROVISIONER_QUEUE, DeployResult
from shared.contracts.api import TaskStatus, TaskType
from shared.contracts.payloads import (
    DeployParams,
    EngineeringParams,
    EngineeringTaskResult,
    UndeployParams,
    params_as,
    result_as,
)
from shared.contracts.workers import NO_AGENT
from shared.env_contract import CONTRACT_FILE, EnvContractError, parse_env_contract
from shared.graphs.driver import request_id


class DeployNodes(UndeployNodes, GateNodes):
    """The deploy graph's nodes over their ports: the API, the queue, the repository host."""

    # -- prepare ------------------------------------------------------------------------------------

    def prepare(self, state: DeployState) -> Update:
        task = self.api.get_task(state.task_id)
        project = self.api.get_project(task.project_id)
        handle = params_as(UndeployParams, task.params).server  # deploys and undeploys both name it
        try:
            server = self.api.get_server(handle)
        except NotFoundError:
            return failed(f"server {handle!r} not found (add it with `orchestrator server add`)")
        base: Update = {
            "kind": "undeploy" if task.type == TaskType.UNDEPLOY else "deploy",
            "project_name": project.name,
            "server_handle": server.handle,
            "server_host": server.host,
            "connection": server.connection,
            "repo_full_name": f"{self.settings.repo_owner}/{project.name}",
            "attempt": state.attempt,
            "agent": project.agent or self.settings.default_agent,
        }
        if base["kind"] == "undeploy":
            return self._prepare_undeploy(state, project, base)
        if not project.repo_url:
            return failed(
                f"{project.name} has no repository yet: run engineering first (`orchestrator engineering start`)"
            )
        params = params_as(DeployParams, task.params)
        ref = params.ref or "main"
        try:
            sha = shipped_commit(self.repo_host, base["repo_full_name"], ref)
        except UnknownRef as exc:
            return failed(str(exc))
        base["agent"] = self._fix_agent(project.id) or base["agent"]
        what = f"release {params.rollback_of}'s commit" if params.rollback_of else ref
        verb = "rolling back" if params.rollback_of else "deploying"
        self.progress(
            state, f"{verb} {project.name} to {what} ({short(sha)}) on {server.handle}", "prepare", 5
        )
        return {
            **base,
            "ref": ref,
            "commit_sha": sha,
            "repo_url": project.repo_url,
            "domain": project.domain or "",
            "rollback_of": params.rollback_of,
        }

    def _fix_agent(self, project_id: str) -> str | None:
        """The agent the project's last completed engineering task used: fix rounds use the same."""
        page = self.api.list_tasks(
            project=project_id, type=TaskType.ENGINEERING.value, status=TaskStatus.COMPLETED.value, limit=1
        )
        last = next(iter(page.items), None)
        return params_as(EngineeringParams, last.params).agent or None if last else None

    # -- env analyzer -------------------------------------------------------------------------------

    def analyze_env(self, state: DeployState) -> Update:
        raw = self.repo_host.read_file(state.repo_full_name, state.commit_sha or state.ref, CONTRACT_FILE)
        if raw is None:
            return failed(
                f"{CONTRACT_FILE} not found at {state.ref} of {state.repo_full_name}: the deploy needs it "
                "to know how to run the service (the default template ships one)"
            )
        try:
            contract = parse_env_contract(raw)
        except EnvContractError as exc:
            return failed(str(exc))
        env = {v.name: str(v.default) for v in contract.variables if v.default is not None}
        if "HOST" in env:
            env["HOST"] = "127.0.0.1" if state.connection == "local" else "0.0.0.0"  # noqa: S104 - the service must answer other machines
        env.pop(contract.port_variable, None)  # the runner sets the allocated port
        # required variables with no default are provided like secrets (`orchestrator secret set`)
        unset = [v.name for v in contract.variables if v.required and v.default is None]
        required = set(contract.required_secrets) | set(unset)
        port, health = contract.port_variable, contract.health_path
        summary = f"env contract: port variable {port}, health {health}, {len(required)} required secret(s)"
        self.progress(state, summary, "env", 15)
        return {
            "port_variable": contract.port_variable,
            "health_path": contract.health_path,
            "run_command": contract.run,
            "env": env,
            "secret_names": [s.name for s in contract.secrets] + unset,
            "required_secrets": sorted(required),
        }

    # -- secrets ------------------------------------------------------------------------------------

    def resolve_secrets(self, state: DeployState) -> Update:
        if self.ended(state):
            return {"outcome": "cancelled"}
        known = {s.name: s.reference for s in self.api.list_secrets(state.project_id)}
        refs = {name: known[name] for name in state.secret_names if name in known}
        missing = sorted(name for name in state.required_secrets if name not in known)
        if not missing:
            if refs:
                resolved = ", ".join(sorted(refs))
                self.progress(state, f"secrets resolved by reference: {resolved}", "secrets", 20)
            return {"secret_refs": refs, "missing": []}
        reason = (
            f"waiting for secret(s) {', '.join(missing)}: set them with "
            f"`orchestrator secret set {state.project_name} NAME`"
        )
        try:
            self.api.wait_for_input(state.task_id, reason)
        except ConflictError:
            pass  # a replay: already waiting
        return {"secret_refs": refs, "missing": missing}

    def secrets_wait(self, state: DeployState) -> Update:
        interrupt({"wait_for": request_id(state.task_id, "secrets", "*")})
        return self.secrets_set(state)

    def secrets_set(self, state: DeployState) -> Update:
        """Woken by `secret set`: the task runs again, and resolve_secrets looks at what is set now."""
        try:
            self.api.input_arrived(state.task_id)
        except ConflictError:
            pass  # already RUNNING (a replay)
        return {}

    # -- readiness ----------------------------------------------------------------------------------

    def readiness(self, state: DeployState) -> Update:
        """The server answers and is ready for this service: for an ssh server an idempotent provision
        run (base packages, the service user, the firewall open for the allocated port), which also
        proves it answers and reports its facts; the built-in local server answers by definition."""
        if self.ended(state):
            return {"outcome": "cancelled"}
        server = self.api.get_server(state.server_handle)
        if server.connection == "local":
            self.api.record_server_check(server.handle, "up")
            return {}
        what = f"packages, service user, firewall for port {state.stable_port or state.port}"
        self.progress(state, f"preparing {server.handle} ({server.host}): {what}", "readiness", 30)
        self.queue.publish(PROVISIONER_QUEUE, provision_message(state))
        return {"error": "provision"}  # marker: route to provision_wait

    def provision_wait(self, state: DeployState) -> Update:
        return self.provisioned(
            state, interrupt({"wait_for": request_id(state.task_id, "provision", state.attempt)})
        )

    def provisioned(self, state: DeployState, result: dict[str, Any]) -> Update:
        """The provisioner's answer (a ProvisionerResult as JSON)."""
        if result.get("status") != "success" or result.get("reachable") is False:
            why = result.get("error") or "; ".join(result.get("errors") or []) or "no answer"
            return failed(f"server {state.server_handle} ({state.server_host}) is not ready: {why}")
        return {"error": None}

    def allocate(self, state: DeployState) -> Update:
        """The ports (the stable one, the new slot's) and the release recording this deploy."""
        update = allocate_release(self.api, state)
        if "release_number" in update:
            what = f"release {update['release_number']}: {short(state.commit_sha)} to slot {update['slot']}"
            where = f"port {update['port']}; {update['deployed_url']} switches to it once healthy"
            self.progress(state, f"{what} ({where})", "release", 25)
        return update

    # -- deployer -----------------------------------------------------------------------------------

    def deploy_request(self, state: DeployState) -> Update:
        if self.ended(state):
            return {"outcome": "cancelled"}
        note = f" (after fix round {state.attempt})" if state.attempt else ""
        ref = short(state.commit_sha or state.ref)
        slot = f" (slot {state.slot})" if state.slot else ""
        where = f"{state.server_handle}:{state.port}{slot}"
        self.progress(state, f"ansible: deploying {ref} to {where}{note}", "deploy", 40 + 15 * state.attempt)
        self.queue.publish(
            ANSIBLE_DEPLOY_QUEUE, ansible_message(state, "deploy", state.attempt, self.github_token_ref)
        )
        return {}

    def deploy_wait(self, state: DeployState) -> Update:
        return self.deployed(
            state, interrupt({"wait_for": request_id(state.task_id, "ansible", state.attempt)})
        )

    def deployed(self, state: DeployState, result: dict[str, Any]) -> Update:
        """The Ansible runner's answer (an AnsibleDeployResult as JSON): a failure goes to a fix round."""
        log_path = str(result.get("service_log_path") or "")
        if result.get("status") == "success":
            seconds = f" in {int(result['duration_ms']) / 1000:.1f} s" if result.get("duration_ms") else ""
            self.progress(state, f"ansible: deployed{seconds}", "deploy", 80)
            return {"last_failure": None, "last_cause": None, "service_log_path": log_path}
        cause = cause_text(result)
        self.progress(state, "ansible deploy failed", "deploy", 50 + 15 * state.attempt, cause)
        return {"last_failure": failure_text(result), "last_cause": cause, "service_log_path": log_path}

    def smoke(self, state: DeployState) -> Update:
        ok, detail = smoke_test(state.health_url, self.settings)
        if ok:
            self.progress(state, f"smoke test passed: {state.health_url} ({detail})", "smoke", 90)
            return {"last_failure": None, "last_cause": None}
        failure = f"smoke test failed: {detail}"
        if state.service_log_path:
            failure += f"\nservice log: {state.service_log_path}"
        self.progress(state, "smoke test failed", "smoke", 80, error=failure)
        # the runner had switched the stable address to this slot: a fix round's release takes the other
        moved = {"slot": "b" if state.slot == "a" else "a"} if state.slot else {}
        return {"last_failure": failure, "last_cause": failure, **moved}

    # -- fix loop -----------------------------------------------------------------------------------

    def fix_request(self, state: DeployState) -> Update:
        attempt, failure = state.attempt, state.last_failure or "the deploy failed"
        cause = state.last_cause or tail(failure)
        if attempt >= self.settings.deploy_max_fix_attempts:
            rounds = f"after {attempt} fix round(s)" if attempt else "and no fix round is allowed"
            return failed(f"deploy failed {rounds}: {cause}")
        if state.agent == NO_AGENT:
            return failed(f"deploy failed and there is no coding agent to fix it (agent none): {cause}")
        if state.rollback_of:  # a known-good commit that fails now: no change of code is the answer
            return failed(
                f"rollback to release {state.rollback_of} failed (no fix round for a rollback): {cause}"
            )
        child = self._existing_fix(state, attempt + 1)
        if child is None:
            spec = (
                f"The deploy of {state.project_name} ({state.ref}) to {state.server_handle} failed. "
                f"Fix the service so it starts and answers {state.health_path} with 200.\n\n"
                f"What the deploy saw:\n\n```\n{failure[-6000:]}\n```\n"
            )
            child = self.api.start_engineering(
                state.project_id,
                spec,
                agent=state.agent or None,
                base_ref=state.ref,
                parent_task_id=state.task_id,
                deploy_fix_attempt=attempt + 1,
            ).id
        round_ = f"engineering fix round {attempt + 1} (task {child[:8]})"
        self.progress(state, f"deploy failed: {round_}", "fix", 60 + 10 * attempt, cause)
        return {"fix_task_id": child}

    def _existing_fix(self, state: DeployState, attempt: int) -> str | None:
        """The fix task this deploy already opened for `attempt` (a replayed node must not open two)."""
        for task in self.api.iter_tasks(project=state.project_id, type=TaskType.ENGINEERING.value):
            params = params_as(EngineeringParams, task.params)
            if params.parent_task_id == state.task_id and params.deploy_fix_attempt == attempt:
                return task.id
        return None

    def fix_wait(self, state: DeployState) -> Update:
        interrupt({"wait_for": request_id(state.task_id, "fix", state.attempt + 1)})
        return self.fixed(state)

    def fixed(self, state: DeployState) -> Update:
        """Woken when the fix task ended: deploy the commit it merged into main (or its branch's, left
        unmerged), or fail with the reason it ended."""
        next_attempt = state.attempt + 1
        child = self.api.get_task(state.fix_task_id or "")
        if child.status is not TaskStatus.COMPLETED:
            return failed(
                f"fix round {next_attempt} ended {child.status.value}: {child.error or 'no reason given'}"
            )
        work = result_as(EngineeringTaskResult, child.result)
        ref = "main" if work.merge_commit else work.branch or state.ref
        try:
            sha = work.merge_commit or shipped_commit(self.repo_host, state.repo_full_name, ref)
        except UnknownRef as exc:
            return failed(f"fix round {next_attempt}: {exc}")
        done = f"fix round {next_attempt} done: redeploying {ref} ({short(sha)})"
        self.progress(state, done, "fix", 65 + 10 * next_attempt)
        return {"ref": ref, "commit_sha": sha, "attempt": next_attempt, "last_failure": None}

    # -- end ----------------------------------------------------------------------------------------

    def finalize(self, state: DeployState) -> Update:
        """The new release serves: it becomes the current one (the previous is superseded), the
        deployment row switches to its slot, the task completes."""
        if state.release_id:
            self.api.finish_release(state.release_id, "serving", url=state.deployed_url)
        what = state.commit_sha or state.ref
        deployed = deployment_record(state, "deployed", state.deployed_url, state.health_url, what)
        self.api.record_deployment(state.project_id, deployed)
        result = DeployResult(
            request_id=state.task_id,
            status="success",
            deployed_url=state.deployed_url,
            server_ip=state.server_host,
            port=state.stable_port or state.port,
        )
        release = {"commit_sha": state.commit_sha, "release": state.release_number, "slot": state.slot}
        self.api.complete_task(
            state.task_id,
            result.model_dump(mode="json")
            | {"health_url": state.health_url, "ref": state.ref, "deploy_fix_attempt": state.attempt}
            | (release if state.release_id else {}),
        )
        self.event(state, "completed", f"live at {state.deployed_url}", "done", 100)
        return {"outcome": "completed"}

    def fail(self, state: DeployState) -> Update:
        """The task fails with the cause; its release is recorded FAILED with it (the previous release
        keeps serving: the deployment row stays), and a first deploy gives back what it allocated."""
        if state.outcome == "cancelled" or self.ended(state):
            finish_failed(
                self.api, state, "cancelled"
            )  # what it allocated stays: the runner may still use it
            return {"outcome": "cancelled"}
        error = state.error or "deploy failed"
        finish_failed(self.api, state, error)
        freed = free_after_failure(self.api, state)
        if freed:
            error += f"\n{freed}"
        # before prepare knew them, the server and port are unknown (None), as in the result model
        result = DeployResult(
            request_id=state.task_id,
            status="failed",
            error=error,
            server_ip=state.server_host or None,
            port=state.stable_port or state.port or None,
        )
        try:
            self.api.fail_task(state.task_id, error, result.model_dump(mode="json"))
        finally:
            self.event(state, "failed", f"{state.kind} failed", "done", 100, error=error)
        return {"outcome": "failed"}
