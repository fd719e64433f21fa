"""The undeploy path of the deploy graph: stop the project's service (both slots and its stable address)
on its server, free every port it holds there, record it stopped; or clean up after a deploy that failed
before the project was ever deployed."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from functions.deploy.base import NodeBase, Update, failed
from functions.deploy.messages import ansible_message, deployment_record, failure_text, tail
from functions.deploy.releases import free_all_ports, ports_text
from functions.deploy.state import DeployState
from shared.api_client import NotFoundError
from shared.contracts import ANSIBLE_DEPLOY_QUEUE, DeployResult
from shared.contracts.api import Project, TaskStatus, TaskType
from shared.graphs.driver import request_id


class UndeployNodes(NodeBase):
    """prepare's undeploy half and the undeploy nodes."""

    def _prepare_undeploy(self, state: DeployState, project: Project, base: Update) -> Update:
        try:
            current = self.api.get_deployment(project.id)
        except NotFoundError:
            return self._prepare_cleanup(state, project, base)
        where = f"{base['server_handle']}:{current.port}"
        self.progress(state, f"undeploying {project.name} from {where}", "undeploy", 10)
        return {
            **base,
            "port": current.port,
            "slot": current.slot,
            "ref": current.ref or "main",
            "repo_url": project.repo_url or "",
        }

    def _prepare_cleanup(self, state: DeployState, project: Project, base: Update) -> Update:
        """Never deployed, but a deploy failed: remove what it left on the server (its directory with
        the service log; its service and port, if a deploy from before failures freed them left them)."""
        handle = base["server_handle"]
        held = [p.port for p in self.api.list_ports(handle) if p.project_id == project.id]
        page = self.api.list_tasks(
            project=project.id, type=TaskType.DEPLOY.value, status=TaskStatus.FAILED.value, limit=1
        )
        last = next(iter(page.items), None)
        port = held[0] if held else int((last.result or {}).get("port") or 0) if last else 0
        if not port:
            return failed(f"{project.name} has never been deployed: nothing to stop")
        after = f" after its failed deploy (task {last.id[:8]})" if last else ""
        self.progress(
            state, f"{project.name} is not deployed: cleaning up{after} on {handle}", "undeploy", 10
        )
        return {**base, "port": port, "ref": "main", "repo_url": project.repo_url or "", "cleanup": True}

    def undeploy_request(self, state: DeployState) -> Update:
        self.queue.publish(ANSIBLE_DEPLOY_QUEUE, ansible_message(state, "undeploy", 0, self.github_token_ref))
        return {}

    def undeploy_wait(self, state: DeployState) -> Update:
        return self.undeployed(state, interrupt({"wait_for": request_id(state.task_id, "undeploy", 0)}))

    def undeployed(self, state: DeployState, result: dict[str, Any]) -> Update:
        """The runner stopped the service: free its port, record it stopped, complete the task."""
        if result.get("status") != "success":
            return failed(f"undeploy failed: {tail(failure_text(result))}")
        if state.cleanup:
            return self._cleaned_up(state)
        current = self.api.get_deployment(state.project_id)
        freed = free_all_ports(self.api, state)  # the stable port and both slots'; a replay finds none
        stopped = deployment_record(state, "stopped", current.url, current.health_url, current.ref)
        self.api.record_deployment(state.project_id, stopped)
        result_json = DeployResult(
            request_id=state.task_id, status="success", server_ip=state.server_host, port=state.port
        ).model_dump(mode="json")
        self.api.complete_task(state.task_id, result_json | {"stopped_url": current.url})
        ports = f"; {ports_text(freed)} freed" if freed else ""
        self.event(state, "completed", f"stopped {state.project_name}{ports}", "undeploy", 100)
        return {"outcome": "completed"}

    def _cleaned_up(self, state: DeployState) -> Update:
        freed = free_all_ports(self.api, state)
        port = f"{ports_text(freed)} freed" if freed else f"port {state.port} was already free"
        done = f"cleaned up {state.project_name} on {state.server_handle}: service stopped, its directory removed, {port}"
        result = DeployResult(
            request_id=state.task_id, status="success", server_ip=state.server_host, port=state.port
        ).model_dump(mode="json")
        self.api.complete_task(state.task_id, result | {"cleaned_up": done})
        self.event(state, "completed", done, "undeploy", 100)
        return {"outcome": "completed"}
