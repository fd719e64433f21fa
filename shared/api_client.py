"""The typed API client: how the CLI, the bot and the consumers talk to the API (DTOs, never the ORM)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from shared.contracts.api import (
    ApiKey,
    ApiKeyCreated,
    Deployment,
    DeploymentRecord,
    Health,
    HealthChange,
    HealthReport,
    Incident,
    NotificationClaim,
    NotificationRecord,
    OrphanWorkerCollect,
    OrphanWorkerReport,
    Page,
    PortAllocation,
    Project,
    RepoSync,
    RepoSyncResult,
    SecretInfo,
    Server,
    ServerCheck,
    ServerCheckResult,
    StuckTaskReap,
    StuckTaskReport,
    Task,
    TaskEvent,
    TaskLeaseState,
    TaskNotification,
    User,
    Worker,
    WorkerDetail,
    WorkerMessage,
)

M = TypeVar("M")


class ApiError(Exception):
    """The API answered with an error (4xx/5xx)."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []

    def __str__(self) -> str:
        return self.message


class NotFoundError(ApiError):
    """404: the thing does not exist, or belongs to someone else."""


class ConflictError(ApiError):
    """409: an illegal transition, a duplicate, or someone else got there first."""


class AuthError(ApiError):
    """401/403: no key, a wrong or revoked key, or a scope that does not allow this."""


class GoneError(ApiError):
    """The thing asked about has ended (e.g. a worker that was deleted)."""


class LimitExceededError(ApiError):
    """429: a per-person bound is reached; `fields` names it (e.g. `shared_ports_per_user`)."""


class ApiUnreachable(Exception):
    """No answer from the API at all."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the API at {url}: {reason}")
        self.url = url


@cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    """Built once per response type: a TypeAdapter costs far more than the validation it does."""
    return TypeAdapter(model)


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        code, message, fields = (
            body.get("code", "error"),
            body.get("message", response.text),
            body.get("fields", []),
        )
    except ValueError:
        code, message, fields = "error", response.text or response.reason_phrase, []
    kind = {404: NotFoundError, 409: ConflictError, 401: AuthError, 403: AuthError, 410: GoneError,
            429: LimitExceededError}.get(response.status_code, ApiError)  # fmt: skip
    raise kind(response.status_code, code, message, fields)


class ApiClient:
    """With `idempotency_key` (the CLI makes one per invocation), every creating call carries an
    `Idempotency-Key` derived from it (`<key>.<n>` for the client's n-th creating call) and is
    retried on a dropped connection with the same key, so the API creates the thing once."""

    CREATE_ATTEMPTS = 3

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self._idempotency_key = idempotency_key
        self._creates = 0
        headers = {"user-agent": "orchestrator-client/0.1"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if correlation_id:
            headers["x-correlation-id"] = correlation_id
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------

    def request(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None,
                idempotent: bool = False) -> Any:  # fmt: skip
        """One call; `idempotent` (a creating call) sends the next Idempotency-Key when the client has
        one, and then a dropped connection is retried with that same key."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        headers: dict[str, str] = {}
        attempts = 1
        if idempotent and self._idempotency_key:
            self._creates += 1
            headers["idempotency-key"] = f"{self._idempotency_key}.{self._creates}"
            attempts = self.CREATE_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, path, json=json, params=clean, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from None
        _raise_for(response)
        return response.json() if response.content else None

    def _as(self, model: type[M] | Any, data: Any) -> M:
        return _adapter(model).validate_python(data)  # type: ignore[no-any-return, arg-type]

    @staticmethod
    def _body(model: BaseModel | None = None, **fields: Any) -> dict[str, Any]:
        if model is not None:
            return model.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in fields.items() if v is not None}

    # -- health, me --------------------------------------------------------------------

    def health(self) -> Health:
        try:
            response = self._http.get("/health")
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from None
        if response.status_code not in (200, 503):
            _raise_for(response)
        return Health.model_validate(response.json())

    def me(self) -> User:
        return self._as(User, self.request("GET", "/me"))

    # -- projects ----------------------------------------------------------------------

    def list_projects(self) -> list[Project]:
        return self._as(list[Project], self.request("GET", "/projects"))

    def create_project(self, name: str, description: str = "", modules: list[str] | None = None,
                       agent: str | None = None) -> Project:  # fmt: skip
        body = self._body(name=name, description=description, modules=modules, agent=agent)
        return self._as(Project, self.request("POST", "/projects", json=body, idempotent=True))

    def get_project(self, project: str) -> Project:
        return self._as(Project, self.request("GET", f"/projects/{project}"))

    def update_project(self, project: str, **changes: Any) -> Project:
        return self._as(Project, self.request("PATCH", f"/projects/{project}", json=changes))

    def archive_project(self, project: str) -> Project:
        return self._as(Project, self.request("DELETE", f"/projects/{project}"))

    def start_engineering(self, project: str, spec: str, agent: str | None = None, base_ref: str | None = None,
                          parent_task_id: str | None = None, deploy_fix_attempt: int = 0) -> Task:  # fmt: skip
        body = self._body(spec=spec, agent=agent, base_ref=base_ref, parent_task_id=parent_task_id,
                          deploy_fix_attempt=deploy_fix_attempt or None)  # fmt: skip
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

    def list_tasks(self, project: str | None = None, status: str | None = None, type: str | None = None,
                   limit: int = 50, cursor: str | None = None) -> Page[Task]:  # fmt: skip
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
        return self._as(TaskLeaseState, self.request("DELETE", f"/internal/tasks/{task_id}/lease",
                                                     params={"holder": holder}))  # fmt: skip

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

    def resume_task(self, task_id: str) -> Task:
        return self._as(Task, self.request("POST", f"/internal/tasks/{task_id}/resume"))

    def complete_task(self, task_id: str, result: dict[str, Any]) -> Task:
        return self._as(
            Task, self.request("POST", f"/internal/tasks/{task_id}/complete", json={"result": result})
        )

    def fail_task(self, task_id: str, error: str, result: dict[str, Any] | None = None) -> Task:
        body = self._body(error=error, result=result)
        return self._as(Task, self.request("POST", f"/internal/tasks/{task_id}/fail", json=body))

    def append_events(self, task_id: str, events: list[BaseModel | dict[str, Any]]) -> list[TaskEvent]:
        payload = [e.model_dump(mode="json") if isinstance(e, BaseModel) else e for e in events]
        data = self.request("POST", f"/internal/tasks/{task_id}/events", json={"events": payload})
        return self._as(list[TaskEvent], data)

    def record_worker(self, worker_id: str, agent: str, task_id: str | None = None,
                      runtime_handle: str | None = None, status: str = "CREATED",
                      config: dict[str, Any] | None = None, create_request_id: str | None = None) -> WorkerDetail:  # fmt: skip
        body = self._body(id=worker_id, agent=agent, task_id=task_id, runtime_handle=runtime_handle, status=status,
                          config=config, create_request_id=create_request_id)  # fmt: skip
        return self._as(WorkerDetail, self.request("POST", "/internal/workers", json=body))

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return self._as(WorkerDetail, self.request("GET", f"/internal/workers/{worker_id}"))

    def update_worker(self, worker_id: str, status: str, runtime_handle: str | None = None,
                      exit_reason: str | None = None, expected_status: str | None = None) -> Worker:  # fmt: skip
        body = self._body(status=status, runtime_handle=runtime_handle, exit_reason=exit_reason,
                          expected_status=expected_status)  # fmt: skip
        return self._as(Worker, self.request("PATCH", f"/internal/workers/{worker_id}", json=body))

    def worker_stopped(self, worker_id: str, reason: str, exit_code: int | None = None,
                       status: str = "STOPPED") -> Worker:  # fmt: skip
        body = self._body(status=status, exit_code=exit_code, reason=reason)
        return self._as(Worker, self.request("POST", f"/internal/workers/{worker_id}/stopped", json=body))

    def send_worker_message(self, worker_id: str, request_id: str, body: str, kind: str = "message",
                            path: str | None = None, timeout_s: int = 1800,
                            correlation_id: str | None = None) -> WorkerMessage:  # fmt: skip
        payload = self._body(request_id=request_id, kind=kind, body=body, path=path, timeout_s=timeout_s,
                             correlation_id=correlation_id)  # fmt: skip
        return self._as(
            WorkerMessage, self.request("POST", f"/internal/workers/{worker_id}/messages", json=payload)
        )

    def next_worker_message(self, worker_id: str) -> WorkerMessage | None:
        """The wrapper's next message, or None. Raises GoneError when the worker has ended."""
        data = self.request("POST", f"/internal/workers/{worker_id}/messages/next")
        return self._as(WorkerMessage, data) if data else None

    def worker_message_result(self, message_id: int, success: bool, response: str | None = None,
                              error: str | None = None, result: dict[str, Any] | None = None) -> WorkerMessage:  # fmt: skip
        body = self._body(response=response, error=error, result=result)
        body["success"] = success
        return self._as(
            WorkerMessage, self.request("POST", f"/internal/worker-messages/{message_id}/result", json=body)
        )

    def worker_message_activity(self, message_id: int) -> None:
        """The agent is still working on this message (the wrapper, every `activity_every_s`). Raises
        ConflictError when the message is no longer RUNNING or the worker does not report activity."""
        self.request("POST", f"/internal/worker-messages/{message_id}/activity")

    def stop_worker(self, worker_id: str) -> Worker:
        return self._as(Worker, self.request("POST", f"/workers/{worker_id}/stop"))

    def list_worker_messages(self, worker_id: str) -> list[WorkerMessage]:
        return self._as(list[WorkerMessage], self.request("GET", f"/workers/{worker_id}/messages"))

    def list_workers(self, task_id: str | None = None, status: str | None = None,
                     name: str | None = None) -> list[Worker]:  # fmt: skip
        """`status`: one, or several comma-separated (`CREATED,STARTING,RUNNING`); `name`: the config's."""
        params = {"task_id": task_id, "status": status, "name": name}
        return self._as(list[Worker], self.request("GET", "/workers", params=params))

    # -- servers -----------------------------------------------------------------------

    def list_servers(self) -> list[Server]:
        return self._as(list[Server], self.request("GET", "/servers"))

    def add_server(self, handle: str, host: str, ssh_user: str = "root", ssh_private_key: str | None = None,
                   ssh_key_ref: str | None = None, labels: dict[str, str] | None = None) -> Server:  # fmt: skip
        body = self._body(handle=handle, host=host, ssh_user=ssh_user, ssh_private_key=ssh_private_key,
                          ssh_key_ref=ssh_key_ref, labels=labels)  # fmt: skip
        return self._as(Server, self.request("POST", "/servers", json=body, idempotent=True))

    def get_server(self, handle: str) -> Server:
        return self._as(Server, self.request("GET", f"/servers/{handle}"))

    def remove_server(self, handle: str) -> Server:
        return self._as(Server, self.request("DELETE", f"/servers/{handle}"))

    def allocate_port(self, handle: str, project_id: str, port: int | None = None) -> PortAllocation:
        body = self._body(project_id=project_id, port=port)
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

    # -- maintenance (service scope; the scheduler's repair jobs) --------------------------

    def reap_stuck_tasks(self, limit_s: int = 900, max_retries: int = 0, batch: int = 50) -> StuckTaskReport:
        body = StuckTaskReap(limit_s=limit_s, max_retries=max_retries, batch=batch).model_dump(mode="json")
        data = self.request("POST", "/internal/maintenance/reap-stuck-tasks", json=body)
        return self._as(StuckTaskReport, data)

    def collect_orphan_workers(self, max_lifetime_s: int = 2100, unseen_s: int = 900, ended_grace_s: int = 60,
                               batch: int = 50) -> OrphanWorkerReport:  # fmt: skip
        request = OrphanWorkerCollect(max_lifetime_s=max_lifetime_s, unseen_s=unseen_s,
                                      ended_grace_s=ended_grace_s, batch=batch)  # fmt: skip
        data = self.request(
            "POST", "/internal/maintenance/collect-orphan-workers", json=request.model_dump(mode="json")
        )
        return self._as(OrphanWorkerReport, data)
