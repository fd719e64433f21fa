"""Lambda entry points: worker:commands (SQS) and ECS task-state-change events (EventBridge)."""

from __future__ import annotations

from typing import Any

from functions.worker_manager.logic import WorkerManager
from functions.worker_manager.settings import WorkerManagerSettings
from shared.contracts import WORKER_COMMANDS
from shared.handler_shell import PerContainer, lambda_entry
from shared.queues.consume import process_queue_event


def launch_env(settings: WorkerManagerSettings) -> dict[str, str]:
    """What every worker gets: where the API is, and plain settings. No credential and no way to reach the
    stack's secrets: each launch adds the worker's own token (ORCH_WORKER_TOKEN, see `WorkerManager`), and
    the wrapper asks the API for the secrets and the session its job names."""
    env = {
        "ORCH_API_URL": settings.api_url,
        "ORCH_WORKER_IDLE_TIMEOUT_S": str(settings.worker_idle_timeout_s),
    }
    if settings.worker_runtime == "local":
        env["ORCH_HOME"] = str(settings.home)  # not a credential: a stack's workers are told apart by it
    if settings.agent_command:
        env["ORCH_AGENT_COMMAND"] = settings.agent_command
    return env


def build_manager(settings: WorkerManagerSettings | None = None) -> WorkerManager:
    from shared.queues import build_queue
    from shared.service_client import build_service_client

    settings = settings or WorkerManagerSettings()
    api = build_service_client(settings)
    queue = build_queue(settings, settings)
    holder: dict[str, WorkerManager] = {}
    if settings.worker_runtime == "fargate":
        from shared.workers.fargate import FargateRuntime

        if not (settings.fargate_cluster and settings.fargate_task_definition):
            raise ValueError("ORCH_FARGATE_CLUSTER and ORCH_FARGATE_TASK_DEFINITION are required for fargate")
        runtime: Any = FargateRuntime(
            cluster=settings.fargate_cluster,
            task_definition=settings.fargate_task_definition,
            container_name=settings.fargate_container_name,
            subnets=[s for s in settings.fargate_subnets.split(",") if s],
            security_groups=[s for s in settings.fargate_security_groups.split(",") if s],
        )
    else:
        from shared.workers.local import LocalRuntime

        runtime = LocalRuntime(
            settings.home / "logs" / "workers",
            on_stopped=lambda wid, st: holder["m"].runtime_stopped(wid, st),
        )
    manager = WorkerManager(api, runtime, queue, launch_env(settings), settings.worker_max_lifetime_s)
    holder["m"] = manager
    return manager


def _close(manager: WorkerManager) -> None:
    """The local runtime's fork server takes no more launches (its running workers are still reported)."""
    close = getattr(manager.runtime, "close", None)
    if close is not None:
        close()


container = PerContainer(build_manager, close=_close)
"""One per container (Lambda) / process (embedded): the local runtime's monitors live in it."""
reset = container.reset


@lambda_entry
def lambda_handler(
    event: dict[str, Any], context: Any, manager: WorkerManager | None = None
) -> dict[str, Any]:
    active = manager or container.get()
    return process_queue_event(
        event, WORKER_COMMANDS, lambda command, _record: active.handle(command), context
    )


@lambda_entry
def ecs_event_handler(
    event: dict[str, Any], context: Any, manager: WorkerManager | None = None
) -> dict[str, Any]:
    """EventBridge 'ECS Task State Change': a worker task that STOPPED is reported to the API."""
    from shared.workers.ecs_events import parse_task_state_change

    active = manager or container.get()
    parsed = parse_task_state_change(event)
    if parsed is None:
        return {"handled": False}
    worker_id, status = parsed
    active.runtime_stopped(worker_id, status)
    return {"handled": True, "worker_id": worker_id, "exit_code": status.exit_code, "reason": status.reason}
