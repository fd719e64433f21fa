"""The typed API client: how the CLI, the bot and the consumers talk to the API (DTOs, never the ORM).

`ApiClient` is the transport (shared.api_transport: session, Idempotency-Keys, errors) plus one
method per call; the worker and maintenance calls live in shared.api_client_workers, the release calls
in shared.api_client_releases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from shared.api_client_gates import GateCalls
from shared.api_client_incidents import IncidentCalls
from shared.api_client_news import NewsCalls
from shared.api_client_releases import ReleaseCalls
from shared.api_client_spend import SpendCalls
from shared.api_client_workers import WorkerCalls
from shared.api_transport import (
    ApiError,
    ApiTransport,
    ApiUnreachable,
    AuthError,
    ConflictError,
    GoneError,
    LimitExceededError,
    NotFoundError,
)
from shared.contracts.api import (
    PROJECTS_PAGE_MAX,
    ApiKey,
    ApiKeyCreated,
    Deployment,
    DeploymentRecord,
    HealthChange,
    HealthReport,
    Incident,
    NotificationClaim,
    NotificationRecord,
    Page,
    PortAllocation,
    Project,
    RepoSync,
    RepoSyncResult,
    SecretInfo,
    Server,
    ServerCheck,
    ServerCheckResult,
    Task,
    TaskEvent,
    TaskLeaseState,
    TaskNotification,
    User,
)
from shared.contracts.projects import ProjectDeleted
from shared.contracts.recovery import ServerRecovery, ServerRecoveryStart, ServerUpdated

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiTransport",
    "ApiUnreachable",
    "AuthError",
    "ConflictError",
    "GoneError",
    "LimitExceededError",
    "NotFoundError",
]


class ApiClient(WorkerCalls, ReleaseCalls, SpendCalls, GateCalls, NewsCalls, IncidentCalls):
    """Every API call, typed. With `idempotency_key` (the CLI makes one per invocation) each creating
    call carries an `Idempotency-Key` derived from it (see ApiTransport)."""

    def me(self) -> User:
        return self._as(User, self.request("GET", "/me"))

    # -- projects ----------------------------------------------------------------------

    def list_projects(self) -> list[Project]:
        """Every project the caller sees, oldest first (all the pages of `GET /projects`)."""
        found: list[Project] = []
        cursor: str | None = None
        while True:
            page: Page[Project] = self._as(
                Page[Project],
                self.request("GET", "/projects", params={"limit": PROJECTS_PAGE_MAX, "cursor": cursor}),
            )
            found.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                return found

    def create_project(
        self, name: str, description: str = "", modules: list[str] | None = None, agent: str | None = None
    ) -> Project:
        body = self._body(name=name, description=description, modules=modules, agent=agent)
        return self._as(Project, self.request("POST", "/projects", json=body, idempotent=True))

    def get_project(self, project: str) -> Project:
        return self._as(Project, self.request("GET", f"/projects/{project}"))

    def update_project(self, project: str, **changes: Any) -> Project:
        return self._as(Project, self.request("PATCH", f"/projects/{project}", json=changes))

    def archive_project(self, project: str) -> Project:
        return self._as(Project, self.request("DELETE", f"/projects/{project}"))

    def delete_project(self, project: str) -> ProjectDeleted:
        """Delete it for good (ports, secrets, tasks; the name is free again); the repository stays.
        ConflictError while a task runs or it is still deployed."""
        return self._as(ProjectDeleted, self.request("POST", f"/projects/{project}/delete"))

    def start_engineering(
        self,
        project: str,
        spec: str,
        agent: str | None = None,
        base_ref: str | None = None,
        parent_task_id: str | None = None,
        deploy_fix_attempt: int = 0,
        no_merge: bool = False,
    ) -> Task:
        body = self._body(
            spec=spec,
            agent=agent,
            base_ref=base_ref,
            parent_task_id=parent_task_id,
            deploy_fix_attempt=deploy_fix_attempt or None,
            no_merge=no_merge or None,
        )
        return self._as(
            Task, self.request("POST", f"/projects/{project}/engineering", json=body, idempotent=True)
        )

    def start_deploy(self, project: str, server: str, ref: str | None = None) -> Task:
        body = self._body(server=server, ref=ref)
        return self._as(Task, self.request("POST", f"/projects/{project}/deploy", json=body, idempotent=True))

    def start_undeploy(self, project: str) -> Task:
        return self._as(Task, self.request("POST", f"/projects/{project}/undeploy"))

    # -- sync, incidents ---------------------------------------------------------------

    def list_incidents(self, limit: int = 50) -> list[Incident]:
        return self._as(list[Incident], self.request("GET", "/incidents", params={"limit": limit}))

    def record_repo_sync(self, project: str, sync: RepoSync) -> RepoSyncResult:
        body = sync.model_dump(mode="json")
        return self._as(
            RepoSyncResult, self.request("POST", f"/internal/projects/{project}/repo-sync", json=body)
        )

    # -- deployments -------------------------------------------------------------------

    def list_deployments(self, status: str | None = None) -> list[Deployment]:
        return self._as(list[Deployment], self.request("GET", "/deployments", params={"status": status}))

    def get_deployment(self, project: str) -> Deployment:
        return self._as(Deployment, self.request("GET", f"/projects/{project}/deployment"))

    def record_deployment(self, project: str, record: DeploymentRecord) -> Deployment:
        return self._as(
            Deployment, self.request("PUT", f"/internal/deployments/{project}", json=self._body(record))
        )

    def report_health(self, project: str, health: str, detail: str = "") -> HealthChange:
        body = self._body(HealthReport(health=health, detail=detail))
        return self._as(
            HealthChange, self.request("POST", f"/internal/deployments/{project}/health", json=body)
        )

    # -- tasks -------------------------------------------------------------------------

    def list_tasks(
        self,
        project: str | None = None,
        status: str | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Task]:
        params = {"project_id": project, "status": status, "type": type, "limit": limit, "cursor": cursor}
        return self._as(Page[Task], self.request("GET", "/tasks", params=params))

    def iter_tasks(self, **filters: Any) -> Iterator[Task]:
        cursor = None
        while True:
            page = self.list_tasks(cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_task(self, task_id: str) -> Task:
        return self._as(Task, self.request("GET", f"/tasks/{task_id}"))

    def task_events(
        self, task_id: str, after: int = 0, limit: int = 500, latest: bool = False
    ) -> list[TaskEvent]:
        """Events after `after`, in order: the first `limit`, or with `latest` the last `limit`."""
        params: dict[str, Any] = {"after": after, "limit": limit, "latest": "true" if latest else None}
        data = self.request("GET", f"/tasks/{task_id}/events", params=params)
        return self._as(list[TaskEvent], data)

    def cancel_task(self, task_id: str) -> Task:
        return self._as(Task, self.request("POST", f"/tasks/{task_id}/cancel"))

    def retry_task(self, task_id: str) -> Task:
        return self._as(Task, self.request("POST", f"/tasks/{task_id}/retry"))

    # -- internal (service scope) ------------------------------------------------------

    def claim_task(self, task_id: str, worker: str | None = None) -> Task:
        return self._as(
            Task, self.request("POST", f"/internal/tasks/{task_id}/claim", json=self._body(worker=worker))
        )

    def take_lease(self, task_id: str, holder: str, seconds: int = 120) -> TaskLeaseState:
        """Raises ConflictError when someone else holds it."""
        body = {"holder": holder, "seconds": seconds}
        return self._as(TaskLeaseState, self.request("POST", f"/internal/tasks/{task_id}/lease", json=body))

    def release_lease(self, task_id: str, holder: str) -> TaskLeaseState:
        return self._as(
            TaskLeaseState,
            self.request("DELETE", f"/internal/tasks/{task_id}/lease", params={"holder": holder}),
        )

    def claim_notification(self, task_id: str, holder: str, seconds: int = 60) -> TaskNotification:
        """The task's Telegram status message, held by `holder`; ConflictError while someone else holds it."""
        body = self._body(NotificationClaim(holder=holder, seconds=seconds))
        data = self.request("POST", f"/internal/tasks/{task_id}/notification/claim", json=body)
        return self._as(TaskNotification, data)

    def record_notification(self, task_id: str, record: NotificationRecord) -> TaskNotification:
        """ConflictError if `record.holder` lost the claim, or the final message was already recorded."""
        data = self.request(
            "PUT", f"/internal/tasks/{task_id}/notification", json=record.model_dump(mode="json")
        )
        return self._as(TaskNotification, data)

    def release_notification(self, task_id: str, holder: str) -> TaskNotification:
        data = self.request(
            "DELETE", f"/internal/tasks/{task_id}/notification/claim", params={"holder": holder}
        )
        return self._as(TaskNotification, data)

    def heartbeat(self, task_id: str) -> Task:
        return self._as(Task, self.request("POST", f"/internal/tasks/{task_id}/heartbeat"))

    def wait_for_input(self, task_id: str, reason: str) -> Task:
        return self._as(
            Task, self.request("POST", f"/internal/tasks/{task_id}/wait", json={"reason": reason})
        )

    def input_arrived(self, task_id: str) -> Task:
        """A graph's task waiting for input (WAITING_INPUT) goes on: RUNNING (service scope)."""
        return self._as(Task, self.request("POST", f"/internal/tasks/{task_id}/resume"))

    def complete_task(self, task_id: str, result: dict[str, Any]) -> Task:
        return self._as(
            Task, self.request("POST", f"/internal/tasks/{task_id}/complete", json={"result": result})
        )

    def fail_task(
        self, task_id: str, error: str, result: dict[str, Any] | None = None, reason: str | None = None
    ) -> Task:
        """-> FAILED; `reason` is the machine-readable failure reason (e.g. "budget")."""
        body = self._body(error=error, result=result, reason=reason)
        return self._as(Task, self.request("POST", f"/internal/tasks/{task_id}/fail", json=body))

    def append_events(self, task_id: str, events: list[BaseModel | dict[str, Any]]) -> list[TaskEvent]:
        payload = [e.model_dump(mode="json") if isinstance(e, BaseModel) else e for e in events]
        data = self.request("POST", f"/internal/tasks/{task_id}/events", json={"events": payload})
        return self._as(list[TaskEvent], data)

    # -- servers -----------------------------------------------------------------------

    def list_servers(self) -> list[Server]:
        return self._as(list[Server], self.request("GET", "/servers"))

    def add_server(
        self,
        handle: str,
        host: str,
        ssh_user: str = "root",
        ssh_private_key: str | None = None,
        ssh_key_ref: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Server:
        body = self._body(
            handle=handle,
            host=host,
            ssh_user=ssh_user,
            ssh_private_key=ssh_private_key,
            ssh_key_ref=ssh_key_ref,
            labels=labels,
        )
        return self._as(Server, self.request("POST", "/servers", json=body, idempotent=True))

    def get_server(self, handle: str) -> Server:
        return self._as(Server, self.request("GET", f"/servers/{handle}"))

    def update_server(
        self, handle: str, host: str | None = None, ssh_user: str | None = None
    ) -> ServerUpdated:
        """A new `host` is a replaced machine: the API queues its recovery (provision, redeploy)."""
        body = self._body(host=host, ssh_user=ssh_user)  # the API validates (a 422 names the field)
        return self._as(
            ServerUpdated, self.request("PATCH", f"/servers/{handle}", json=body, idempotent=True)
        )

    def remove_server(self, handle: str) -> Server:
        return self._as(Server, self.request("DELETE", f"/servers/{handle}"))

    def allocate_port(
        self, handle: str, project_id: str, port: int | None = None, slot: str = ""
    ) -> PortAllocation:
        """The project's port on the server for `slot` ("" its stable port, "a" / "b" a release slot's):
        the one it holds, else a new one (`port` asks for a specific one and moves it there)."""
        body = self._body(project_id=project_id, port=port, slot=slot or None)
        return self._as(PortAllocation, self.request("POST", f"/servers/{handle}/ports", json=body))

    def list_ports(self, handle: str) -> list[PortAllocation]:
        return self._as(list[PortAllocation], self.request("GET", f"/servers/{handle}/ports"))

    def free_port(self, handle: str, port: int) -> PortAllocation:
        return self._as(PortAllocation, self.request("DELETE", f"/servers/{handle}/ports/{port}"))

    def record_server_check(
        self, handle: str, status: str, facts: dict[str, Any] | None = None
    ) -> ServerCheckResult:
        body = self._body(ServerCheck(status=status, facts=facts or {}))
        return self._as(
            ServerCheckResult, self.request("POST", f"/internal/servers/{handle}/check", json=body)
        )

    def recover_server(self, handle: str, recovery_id: str) -> ServerRecovery:
        """Internal: a redeploy task per project whose current release lives on the server; the same
        `recovery_id` again starts nothing and answers with the first call's tasks."""
        body = self._body(ServerRecoveryStart(recovery_id=recovery_id))
        return self._as(
            ServerRecovery, self.request("POST", f"/internal/servers/{handle}/recover", json=body)
        )

    # -- secrets -----------------------------------------------------------------------

    def list_secrets(self, project: str) -> list[SecretInfo]:
        return self._as(list[SecretInfo], self.request("GET", f"/projects/{project}/secrets"))

    def set_secret(self, project: str, name: str, value: str) -> SecretInfo:
        return self._as(
            SecretInfo, self.request("PUT", f"/projects/{project}/secrets/{name}", json={"value": value})
        )

    def delete_secret(self, project: str, name: str) -> SecretInfo:
        return self._as(SecretInfo, self.request("DELETE", f"/projects/{project}/secrets/{name}"))

    # -- users and keys ----------------------------------------------------------------

    def list_users(self) -> list[User]:
        return self._as(list[User], self.request("GET", "/users"))

    def add_user(self, name: str, telegram_id: int | None = None, is_admin: bool = False) -> User:
        body = self._body(name=name, telegram_id=telegram_id, is_admin=is_admin)
        return self._as(User, self.request("POST", "/users", json=body))

    def list_api_keys(self, user_id: str) -> list[ApiKey]:
        return self._as(list[ApiKey], self.request("GET", f"/users/{user_id}/api-keys"))

    def create_api_key(
        self, user_id: str, name: str = "cli", scopes: list[str] | None = None
    ) -> ApiKeyCreated:
        body = self._body(name=name, scopes=scopes)
        return self._as(ApiKeyCreated, self.request("POST", f"/users/{user_id}/api-keys", json=body))

    def revoke_api_key(self, key_id: str) -> ApiKey:
        return self._as(ApiKey, self.request("DELETE", f"/api-keys/{key_id}"))
