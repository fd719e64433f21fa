"""The one place that makes the logger, the metrics and the tracer.

Logs are JSON lines on stderr (CloudWatch in Lambda, the terminal embedded); every line
carries `correlation_id`. Metrics are Powertools EMF on stdout. The tracer (X-Ray) exists only
inside Lambda with tracing on: the X-Ray SDK costs ~0.2 s to import, so it is never imported
elsewhere (the embedded stack, tests, the CLI).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from aws_lambda_powertools import Logger, Metrics, Tracer

from shared.settings import ObservabilitySettings

NO_CORRELATION = "-"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is *now* (test capture, redirected daemons)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@lru_cache(maxsize=1)
def get_logger() -> Logger:
    settings = ObservabilitySettings()
    logger = Logger(
        service=settings.service_name,
        level=settings.log_level,
        logger_handler=_StderrHandler(),
        correlation_id=NO_CORRELATION,
    )
    return logger


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    settings = ObservabilitySettings()
    return Metrics(namespace=settings.metrics_namespace, service=settings.service_name)


TRACED_MODULES = ("botocore", "httpx")
"""What X-Ray patches: our AWS calls (SQS, Secrets Manager, ECS) and our HTTP calls (the API)."""


def tracing_enabled() -> bool:
    """Inside Lambda (not SAM or Chalice emulating it) unless POWERTOOLS_TRACE_DISABLED: the variables
    Powertools' own Tracer reads, read here so nothing imports the X-Ray SDK only to learn it is off."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true", "yes", "on"):
        return False
    emulated = os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not emulated


@lru_cache(maxsize=1)
def get_tracer() -> Tracer:
    """Call only when `tracing_enabled()`: building it imports the X-Ray SDK."""
    tracer = Tracer(service=ObservabilitySettings().service_name, auto_patch=False)
    tracer.patch(modules=TRACED_MODULES)
    return tracer


@contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Log lines inside the block carry this correlation id; the previous one comes back after."""
    logger = get_logger()
    previous = logger.get_correlation_id() or NO_CORRELATION
    logger.set_correlation_id(correlation_id or NO_CORRELATION)
    try:
        yield
    finally:
        logger.set_correlation_id(previous)


TASK_METRICS = ("TasksStarted", "TasksCompleted", "TasksFailed", "TasksCancelled")
"""Counts the API publishes as tasks change state; TaskDuration and WorkerRunTime are seconds."""


_metrics_lock = threading.Lock()
"""The metric set is one dict per process: the embedded stack's threads must not flush it while
another thread adds to it."""


def count(name: str, value: float = 1.0) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    with _metrics_lock:
        get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def seconds(name: str, value: float) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    with _metrics_lock:
        get_metrics().add_metric(name=name, unit=MetricUnit.Seconds, value=max(0.0, value))


def flush_metrics() -> None:
    """Write what was recorded (one EMF line); nothing when nothing was recorded."""
    metrics = get_metrics()
    with _metrics_lock:
        if metrics.metric_set:
            metrics.flush_metrics()
