"""The one place that makes the logger and the metrics.

Logs are JSON lines on stderr (CloudWatch in Lambda, the terminal embedded); every line
carries `correlation_id`. Metrics are Powertools EMF.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from aws_lambda_powertools import Logger, Metrics

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


def count(name: str, value: float = 1.0) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def seconds(name: str, value: float) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    get_metrics().add_metric(name=name, unit=MetricUnit.Seconds, value=max(0.0, value))


def flush_metrics() -> None:
    """Write what was recorded (one EMF line); nothing when nothing was recorded."""
    metrics = get_metrics()
    if metrics.metric_set:
        metrics.flush_metrics()
