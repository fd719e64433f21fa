"""What the worker manager does with each command. Redelivery-safe: a repeated command is a no-op
or re-sends the same answer; it never starts a second worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.api_client import ApiClient, ConflictError, NotFoundError
from shared.contracts import (
    WORKER_RESPONSES,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendFileCommand,
    SendMessageCommand,
)
from shared.contracts.api import WorkerDetail
from shared.observability import get_logger
from shared.queues.port import QueuePort
from shared.workers.local import WORKER_TOKEN_ENV
from shared.workers.runtime import RuntimeStatus, WorkerLaunch, WorkerRuntime

START_STALL = timedelta(minutes=5)
TOKEN_GRACE_S = 300
"""A worker's token outlives its wall-time limit by this much: the wrapper still reports its end."""
REMEMBERED_DELETES = 4096
TOKEN_TTL_RANGE = (60, 7 * 86400)
"""What the API accepts for a token's lifetime (WorkerTokenRequest.ttl_s)."""


def new_worker_id() -> str:
    """Random: duplicates of one create are found by its request id (the API's create_request_id), and
    a worker id is never reused, so a stray process can never answer for a newer worker."""
    return "w-" + uuid.uuid4().hex[:20]


class WorkerManager:
    def __init__(
        self,
        api: ApiClient,
        runtime: WorkerRuntime,
        queue: QueuePort,
        launch_env: dict[str, str],
        max_lifetime_s: int = 1800,
    ) -> None:
        self.api = api
        self.runtime = runtime
        self.queue = queue
        self.launch_env = launch_env
        self.max_lifetime_s = max_lifetime_s
        self.logger = get_logger()
        self._stopped_by_delete: dict[str, None] = {}
        """Workers this manager recorded STOPPED and then stopped (oldest first, at most
        `REMEMBERED_DELETES`): their runtime's report of the stop it was asked for has nothing to add."""

    def handle(self, command: Any) -> None:
        if isinstance(command, CreateWorkerCommand):
            self.create(command)
        elif isinstance(command, SendMessageCommand):
            self.api.send_worker_message(
                command.worker_id,
                command.request_id,
                command.message,
                kind=command.kind,
                timeout_s=command.timeout,
                correlation_id=command.correlation_id,
            )
        elif isinstance(command, SendFileCommand):
            self.api.send_worker_message(
                command.worker_id,
                command.request_id,
                command.content,
                kind="file",
                path=command.path,
                correlation_id=command.correlation_id,
            )
        elif isinstance(command, DeleteWorkerCommand):
            self.delete(command)
        else:  # the contract's union has no other member; a new one must be handled here
            raise TypeError(f"unhandled worker command {type(command).__name__}")

    def _reply(
        self,
        command: CreateWorkerCommand | DeleteWorkerCommand,
        success: bool,
        worker_id: str | None,
        error: str | None = None,
        reply_queue: str | None = None,
    ) -> None:
        """Answer on worker:responses, or on the queue the worker's config names (`reply_queue`)."""
        kind = CreateWorkerResponse if isinstance(command, CreateWorkerCommand) else DeleteWorkerResponse
        if isinstance(command, CreateWorkerCommand):
            reply_queue = command.config.reply_queue
        self.queue.publish(
            reply_queue or WORKER_RESPONSES,
            kind(
                request_id=command.request_id,
                success=success,
                worker_id=worker_id,
                error=error,
                correlation_id=command.correlation_id,
            ),
        )

    def create(self, command: CreateWorkerCommand) -> None:
        worker_id = new_worker_id()
        config = {**command.config.model_dump(mode="json"), "context": dict(command.context)}
        detail = self.api.record_worker(
            worker_id,
            command.config.agent,
            task_id=command.typed_context().task_id,
            config=config,
            create_request_id=command.request_id,
        )
        if detail.status == "CREATED":
            self._start(command, detail)
            return
        self._answer_again(command, detail)

    def _token_ttl_s(self) -> int:
        low, high = TOKEN_TTL_RANGE
        return min(max(self.max_lifetime_s + TOKEN_GRACE_S, low), high)

    def _start(self, command: CreateWorkerCommand, detail: WorkerDetail) -> None:
        """Win CREATED -> STARTING and mint the worker's own token, in one request, then launch it with that
        token as its only credential.

        Only the delivery that wins the start gets a token, so exactly one process is launched with it:
        minting rotates (the worker's previous token stops working), which a second delivery racing this
        one must not do to a worker already running."""
        try:
            token = self.api.issue_worker_token(detail.id, ttl_s=self._token_ttl_s(), claim_start=True)
        except ConflictError:
            self.logger.info("another delivery is starting this worker", extra={"worker_id": detail.id})
            return
        except Exception as exc:
            self._failed_start(command, detail, exc)
            return
        try:
            launch = WorkerLaunch(
                worker_id=detail.id,
                task_id=detail.task_id,
                env={**self.launch_env, WORKER_TOKEN_ENV: token.token},
                max_lifetime_s=self.max_lifetime_s,
                agent=detail.agent,
            )
            handle = self.runtime.start(launch)
        except Exception as exc:
            self._failed_start(command, detail, exc)
            return
        self.api.update_worker(detail.id, "RUNNING", runtime_handle=handle)
        self.logger.info("worker started", extra={"worker_id": detail.id, "handle": handle})
        self._reply(command, True, detail.id)

    def _failed_start(self, command: CreateWorkerCommand, detail: WorkerDetail, exc: Exception) -> None:
        reason = f"could not start the worker: {type(exc).__name__}: {exc}"
        self.logger.exception("worker start failed", extra={"worker_id": detail.id})
        self.api.worker_stopped(detail.id, reason, status="FAILED")
        self._reply(command, False, detail.id, reason)

    def _answer_again(self, command: CreateWorkerCommand, detail: WorkerDetail) -> None:
        """A redelivered create: repeat the answer the first delivery gave (or should have)."""
        if detail.status in ("RUNNING",) or (detail.status == "STARTING" and detail.runtime_handle):
            self._reply(command, True, detail.id)
        elif detail.status in ("STOPPED", "FAILED"):
            self._reply(command, False, detail.id, detail.exit_reason or f"worker {detail.status.lower()}")
        elif datetime.now(UTC) - detail.started_at > START_STALL:
            reason = "worker start was interrupted (no runtime handle after 5 minutes)"
            self.api.worker_stopped(detail.id, reason, status="FAILED")
            self._reply(command, False, detail.id, reason)
        else:
            raise RuntimeError(f"worker {detail.id} is still starting; will look again on redelivery")

    def delete(self, command: DeleteWorkerCommand) -> None:
        try:
            detail = self.api.get_worker(command.worker_id)
        except NotFoundError:
            self._reply(command, False, command.worker_id, f"unknown worker {command.worker_id}")
            return
        still_running = detail.status not in ("STOPPED", "FAILED")
        self.api.worker_stopped(
            detail.id, "deleted", status="STOPPED"
        )  # recorded first: the kill reports later
        if detail.runtime_handle and still_running:
            self._remember_delete(detail.id)
            self.runtime.stop(detail.runtime_handle, "deleted")
        self._reply(command, True, detail.id, reply_queue=detail.config.get("reply_queue"))

    def _remember_delete(self, worker_id: str) -> None:
        self._stopped_by_delete[worker_id] = None
        while len(self._stopped_by_delete) > REMEMBERED_DELETES:
            self._stopped_by_delete.pop(next(iter(self._stopped_by_delete)), None)

    def runtime_stopped(self, worker_id: str, status: RuntimeStatus) -> None:
        """The runtime says the process ended (local monitor or ECS task-state event)."""
        reason = status.reason or ""
        intended = reason.startswith("stopped:")
        if intended and worker_id in self._stopped_by_delete:
            # its delete recorded STOPPED already, and a second report changes nothing (an ended worker's
            # row is not written again): one request saved per deleted worker. A report that reaches
            # another process (ECS's task-state event in AWS) is still made, and is as harmless.
            self._stopped_by_delete.pop(worker_id, None)
            self.logger.info("deleted worker's process ended", extra={"worker_id": worker_id})
            return
        failed = not intended and (status.exit_code not in (0, None) or reason.startswith("timeout"))
        self.api.worker_stopped(
            worker_id,
            status.reason or "stopped",
            exit_code=status.exit_code,
            status="FAILED" if failed else "STOPPED",
        )
