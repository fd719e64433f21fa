"""EventBridge schedule (or the embedded ticker) -> one job -> metrics of what it did."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.scheduler.jobs import JOBS
from shared.api_client import ApiClient
from shared.observability import get_logger, get_metrics


class UnknownJob(ValueError):
    pass


def run_job(name: str, api: ApiClient) -> dict[str, int]:
    job = JOBS.get(name)
    if job is None:
        raise UnknownJob(f"unknown job {name!r}; known: {', '.join(sorted(JOBS))}")
    return job(api)


def lambda_handler(event: dict[str, Any], context: Any, api: ApiClient | None = None) -> dict[str, Any]:
    name = str((event or {}).get("job", ""))
    logger, metrics = get_logger(), get_metrics()
    if api is None:
        from shared.service_client import build_service_client

        api = build_service_client()
    counts = run_job(name, api)
    for key, value in counts.items():
        metrics.add_metric(name=f"{name}.{key}", unit=MetricUnit.Count, value=value)
    metrics.flush_metrics()
    logger.info("scheduled job done", extra={"job": name, **counts})
    return {"job": name, **counts}
