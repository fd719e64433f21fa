"""EventBridge schedule (or the embedded ticker) -> one job -> metrics of what it did."""

from __future__ import annotations

from typing import Any

from functions.scheduler.jobs import JOBS, Job, JobPorts
from functions.scheduler.settings import SchedulerSettings
from shared.api_client import ApiClient
from shared.handler_shell import lambda_entry
from shared.observability import count, get_logger
from shared.queues.port import QueuePort


class UnknownJob(ValueError):
    """The schedule named a job this function does not have."""


def find_job(name: str) -> Job:
    job = JOBS.get(name)
    if job is None:
        raise UnknownJob(f"unknown job {name!r}; known: {', '.join(sorted(JOBS))}")
    return job


def run_job(name: str, ports: JobPorts) -> dict[str, int]:
    return find_job(name)(ports)


def build_ports(
    settings: SchedulerSettings, api: ApiClient | None = None, queue: QueuePort | None = None
) -> JobPorts:
    def api_factory() -> ApiClient:
        if api is not None:
            return api
        from shared.service_client import build_service_client

        return build_service_client(settings)

    def queue_factory() -> QueuePort:
        if queue is not None:
            return queue
        from shared.queues import build_queue

        return build_queue(settings, settings)

    return JobPorts(settings, api_factory, queue_factory)


@lambda_entry
def lambda_handler(
    event: dict[str, Any],
    context: Any,
    api: ApiClient | None = None,
    queue: QueuePort | None = None,
    settings: SchedulerSettings | None = None,
) -> dict[str, Any]:
    """The job's counts become metrics named `<job>.<count>`; the shell flushes them."""
    name = str((event or {}).get("job", ""))
    job = find_job(name)
    # Read per invocation, not cached: the embedded stack may restart in one process with another ORCH_HOME.
    ports = build_ports(settings or SchedulerSettings(), api, queue)
    try:
        counts = job(ports)
    finally:
        if api is None and "api" in ports.__dict__:
            ports.api.close()
    for key, value in counts.items():
        count(f"{name}.{key}", value)
    get_logger().info("scheduled job done", extra={"job": name, **counts})
    return {"job": name, **counts}
