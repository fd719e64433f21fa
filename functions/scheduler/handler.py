"""EventBridge schedule (or the embedded ticker) -> one job -> metrics of what it did."""

from __future__ import annotations

from typing import Any

from functions.scheduler.jobs import IDLE, JOBS, Job, JobPorts
from functions.scheduler.settings import SchedulerSettings
from shared.api_client import ApiClient
from shared.handler_shell import lambda_entry
from shared.observability import count, get_logger
from shared.queues.port import QueuePort
from shared.work_signal import WorkSignalPort

SCHEDULER_METRICS: dict[str, dict[str, tuple[str, ...]]] = {
    "outbox_sweep": {"Repairs": ("sent",), "RepairFailures": ("failed",)},
    "stuck_task_reaper": {"StuckTasks": ("failed", "requeued")},
    "orphan_worker_collector": {"Repairs": ("stopped",)},
    "health_checker": {"HealthFlips": ("changed",)},
    "github_sync": {"SyncFailures": ("missing", "errors")},
    "dlq_watch": {"DeadLetters": ("dead_total",)},
}
"""The scheduler's custom metrics: a few aggregates a person acts on, each the sum of some jobs' counts,
plus `ScheduledRuns` (jobs that found work). Every count is in the job's log line; queue depths come
from SQS's own metrics. Only non-zero values are emitted: a custom metric is billed for the hours it
receives data, so a quiet system pays for none."""
SCHEDULED_RUNS = "ScheduledRuns"


def metric_values(name: str, counts: dict[str, int]) -> dict[str, int]:
    """The aggregates one run adds to (zero ones left out)."""
    values = {SCHEDULED_RUNS: 0 if counts.get(IDLE) else 1}
    for metric, keys in SCHEDULER_METRICS.get(name, {}).items():
        values[metric] = values.get(metric, 0) + sum(int(counts.get(key, 0)) for key in keys)
    return {metric: value for metric, value in values.items() if value}


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
    settings: SchedulerSettings,
    api: ApiClient | None = None,
    queue: QueuePort | None = None,
    signal: WorkSignalPort | None = None,
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

    return JobPorts(settings, api_factory, queue_factory, (lambda: signal) if signal is not None else None)


@lambda_entry
def lambda_handler(
    event: dict[str, Any],
    context: Any,
    api: ApiClient | None = None,
    queue: QueuePort | None = None,
    settings: SchedulerSettings | None = None,
    signal: WorkSignalPort | None = None,
) -> dict[str, Any]:
    """The job's counts are logged; their aggregates (`SCHEDULER_METRICS`) become metrics the shell flushes."""
    name = str((event or {}).get("job", ""))
    job = find_job(name)
    # Read per invocation, not cached: the embedded stack may restart in one process with another ORCH_HOME.
    ports = build_ports(settings or SchedulerSettings(), api, queue, signal)
    try:
        counts = job(ports)
    finally:
        if api is None and "api" in ports.__dict__:
            ports.api.close()
    for metric, value in metric_values(name, counts).items():
        count(metric, value)
    if not counts.get(IDLE):  # an idle tick is one read of the work signal: nothing worth a log line
        get_logger().info("scheduled job done", extra={"job": name, **counts})
    return {"job": name, **counts}
