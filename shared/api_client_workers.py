"""The API client's calls about workers and their messages, and the scheduler's maintenance calls."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from shared.api_transport import ApiError, ApiTransport, ApiUnreachable
from shared.contracts.api import (
    OrphanWorkerCollect,
    OrphanWorkerReport,
    StuckTaskReap,
    StuckTaskReport,
    Worker,
    WorkerDetail,
    WorkerMessage,
    WorkerSecrets,
    WorkerSecretsRequest,
    WorkerSessionAccess,
    WorkerSessionArchive,
    WorkerSessionRequest,
    WorkerToken,
    WorkerTokenRequest,
)
from shared.sessions.port import MAX_SESSION_BYTES, SessionTooLarge

PRESIGNED_TIMEOUT_S = 120.0
"""A session archive (up to 64 MB) to or from S3 through a presigned URL."""


class WorkerCalls(ApiTransport):
    """Workers (internal: the worker manager and the wrapper) and maintenance (the scheduler)."""

    def record_worker(
        self,
        worker_id: str,
        agent: str,
        task_id: str | None = None,
        runtime_handle: str | None = None,
        status: str = "CREATED",
        config: dict[str, Any] | None = None,
        create_request_id: str | None = None,
    ) -> WorkerDetail:
        body = self._body(
            id=worker_id,
            agent=agent,
            task_id=task_id,
            runtime_handle=runtime_handle,
            status=status,
            config=config,
            create_request_id=create_request_id,
        )
        return self._as(WorkerDetail, self.request("POST", "/internal/workers", json=body))

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return self._as(WorkerDetail, self.request("GET", f"/internal/workers/{worker_id}"))

    def update_worker(
        self,
        worker_id: str,
        status: str,
        runtime_handle: str | None = None,
        exit_reason: str | None = None,
        expected_status: str | None = None,
    ) -> Worker:
        body = self._body(
            status=status,
            runtime_handle=runtime_handle,
            exit_reason=exit_reason,
            expected_status=expected_status,
        )
        return self._as(Worker, self.request("PATCH", f"/internal/workers/{worker_id}", json=body))

    def worker_stopped(
        self, worker_id: str, reason: str, exit_code: int | None = None, status: str = "STOPPED"
    ) -> Worker:
        body = self._body(status=status, exit_code=exit_code, reason=reason)
        return self._as(Worker, self.request("POST", f"/internal/workers/{worker_id}/stopped", json=body))

    def send_worker_message(
        self,
        worker_id: str,
        request_id: str,
        body: str,
        kind: str = "message",
        path: str | None = None,
        timeout_s: int = 1800,
        correlation_id: str | None = None,
    ) -> WorkerMessage:
        payload = self._body(
            request_id=request_id,
            kind=kind,
            body=body,
            path=path,
            timeout_s=timeout_s,
            correlation_id=correlation_id,
        )
        return self._as(
            WorkerMessage, self.request("POST", f"/internal/workers/{worker_id}/messages", json=payload)
        )

    def next_worker_message(self, worker_id: str) -> WorkerMessage | None:
        """The wrapper's next message, or None. Raises GoneError when the worker has ended."""
        data = self.request("POST", f"/internal/workers/{worker_id}/messages/next")
        return self._as(WorkerMessage, data) if data else None

    def worker_message_result(
        self,
        message_id: int,
        success: bool,
        response: str | None = None,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> WorkerMessage:
        body = self._body(response=response, error=error, result=result)
        body["success"] = success
        return self._as(
            WorkerMessage, self.request("POST", f"/internal/worker-messages/{message_id}/result", json=body)
        )

    def worker_message_activity(self, message_id: int) -> None:
        """The agent is still working on this message (the wrapper, every `activity_every_s`). Raises
        ConflictError when the message is no longer RUNNING or the worker does not report activity."""
        self.request("POST", f"/internal/worker-messages/{message_id}/activity")

    def issue_worker_token(self, worker_id: str, ttl_s: int = 2100, claim_start: bool = False) -> WorkerToken:
        """A new per-task token for the worker (service scope; the previous one stops working). With
        `claim_start`, only if this call moves the worker CREATED -> STARTING (ConflictError otherwise)."""
        body = WorkerTokenRequest(ttl_s=ttl_s, claim_start=claim_start).model_dump(mode="json")
        return self._as(WorkerToken, self.request("POST", f"/internal/workers/{worker_id}/token", json=body))

    # -- a worker's own calls with its token (issue 20) ----------------------------------------

    def resolve_worker_secrets(self, worker_id: str, refs: Sequence[str]) -> dict[str, str]:
        """The values of secret references the worker's own job names (403 for any other)."""
        body = WorkerSecretsRequest(refs=list(refs)).model_dump(mode="json")
        data = self.request("POST", f"/internal/workers/{worker_id}/secrets", json=body)
        return dict(self._as(WorkerSecrets, data).values)

    def worker_session_access(self, worker_id: str, op: Literal["load", "save"]) -> WorkerSessionAccess:
        """Where to load or save the worker's conversation session (a presigned URL or an API path)."""
        body = WorkerSessionRequest(op=op).model_dump(mode="json")
        data = self.request("POST", f"/internal/workers/{worker_id}/session", json=body)
        return self._as(WorkerSessionAccess, data)

    def get_worker_session_archive(self, worker_id: str) -> bytes | None:
        """The session archive through the API (a store without presigned URLs); None when there is none."""
        data = self.request("GET", f"/internal/workers/{worker_id}/session/archive")
        archive: WorkerSessionArchive = self._as(WorkerSessionArchive, data)
        return None if archive.data_b64 is None else base64.b64decode(archive.data_b64)

    def put_worker_session_archive(self, worker_id: str, data: bytes) -> None:
        body = {"data_b64": base64.b64encode(data).decode("ascii")}
        self.request("PUT", f"/internal/workers/{worker_id}/session/archive", json=body)

    def load_worker_session(self, worker_id: str) -> bytes | None:
        """The worker's saved conversation session, or None: through a presigned URL (fetched without the
        token) or, for a store without one, through the API."""
        access = self.worker_session_access(worker_id, "load")
        if access.url.startswith("/"):
            return self.get_worker_session_archive(worker_id)
        response = self._presigned(access, None)
        if response.status_code == 404:
            return None
        return response.content

    def save_worker_session(self, worker_id: str, data: bytes) -> None:
        """Save the worker's conversation session (refused above the store's size limit, before sending)."""
        if len(data) > MAX_SESSION_BYTES:
            raise SessionTooLarge(f"worker {worker_id}", len(data), MAX_SESSION_BYTES)
        access = self.worker_session_access(worker_id, "save")
        if access.url.startswith("/"):
            self.put_worker_session_archive(worker_id, data)
        else:
            self._presigned(access, data)

    def _presigned(self, access: WorkerSessionAccess, data: bytes | None) -> httpx.Response:
        """One request to a presigned URL, with its signed headers and never the API token. A 404 of a
        GET is returned (no archive); any other failure raises without the URL (it carries a signature)."""
        try:
            with httpx.Client(timeout=PRESIGNED_TIMEOUT_S) as plain:
                response = plain.request(access.method, access.url, headers=access.headers, content=data)
        except httpx.TransportError as exc:
            raise ApiUnreachable("the session store", str(exc) or type(exc).__name__) from None
        if response.is_success or (access.method == "GET" and response.status_code == 404):
            return response
        raise ApiError(
            response.status_code,
            "session_store_error",
            f"the session store refused the {access.method} of the session archive (HTTP {response.status_code})",
        )

    def stop_worker(self, worker_id: str) -> Worker:
        return self._as(Worker, self.request("POST", f"/workers/{worker_id}/stop"))

    def list_worker_messages(self, worker_id: str) -> list[WorkerMessage]:
        return self._as(list[WorkerMessage], self.request("GET", f"/workers/{worker_id}/messages"))

    def list_workers(
        self, task_id: str | None = None, status: str | None = None, name: str | None = None
    ) -> list[Worker]:
        """`status`: one, or several comma-separated (`CREATED,STARTING,RUNNING`); `name`: the config's."""
        params = {"task_id": task_id, "status": status, "name": name}
        return self._as(list[Worker], self.request("GET", "/workers", params=params))

    # -- maintenance (service scope; the scheduler's repair jobs) --------------------------

    def sweep_outbox(self) -> dict[str, int]:
        """Publish outbox rows older than a few seconds (the API publishes fresh ones itself): claimed, sent,
        failed counts."""
        data = self.request("POST", "/internal/outbox/sweep")
        return {str(k): int(v) for k, v in dict(data).items()}

    def reap_stuck_tasks(self, limit_s: int = 900, max_retries: int = 0, batch: int = 50) -> StuckTaskReport:
        body = StuckTaskReap(limit_s=limit_s, max_retries=max_retries, batch=batch).model_dump(mode="json")
        data = self.request("POST", "/internal/maintenance/reap-stuck-tasks", json=body)
        return self._as(StuckTaskReport, data)

    def collect_orphan_workers(
        self, max_lifetime_s: int = 2100, unseen_s: int = 900, ended_grace_s: int = 60, batch: int = 50
    ) -> OrphanWorkerReport:
        request = OrphanWorkerCollect(
            max_lifetime_s=max_lifetime_s, unseen_s=unseen_s, ended_grace_s=ended_grace_s, batch=batch
        )
        data = self.request(
            "POST", "/internal/maintenance/collect-orphan-workers", json=request.model_dump(mode="json")
        )
        return self._as(OrphanWorkerReport, data)
