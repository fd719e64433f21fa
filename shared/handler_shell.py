"""The one handler shell: every Lambda entry point gets the same Powertools decorators, and a
function's dependencies are built once per container, lazily, behind one lock.

A handler module is then a build function and a record handler:

    container = PerContainer(build_infra)
    reset = container.reset  # the embedded stack calls it on start and stop (shared.topology.RESETTERS)

    @lambda_entry
    def lambda_handler(event, context, infra: Infra | None = None) -> dict[str, Any]:
        active = infra or container.get()  # tests pass a fake as the optional argument
        queue = source_queue(event, (ANSIBLE_DEPLOY_QUEUE, PROVISIONER_QUEUE), "infra")
        return process_queue_event(event, queue, handle_one_record, context)

An SQS consumer returns `process_queue_event`'s partial batch response: a record whose handler raises
fails alone, and the shell still flushes what the others counted.

Inside Lambda (a context is given) the entry runs under `Tracer.capture_lambda_handler` (when tracing
is on), `Logger.inject_lambda_context` (function name, request id, cold start on every log line) and
`Metrics.log_metrics(capture_cold_start_metric=True)`, which flushes what the invocation counted. The
embedded stack and direct calls pass no context: there is no Lambda context to log, no cold start
and no X-Ray, and what was counted is still flushed.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from shared.observability import (
    correlation,
    flush_metrics,
    get_logger,
    get_metrics,
    get_tracer,
    tracing_enabled,
)

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

Entry = Callable[Concatenate[Any, Any, P], R]
"""`(event, context, *injected) -> response`: a Lambda handler with its optional test-only arguments."""

EMPTY_METRICS_WARNING = "No application metrics to publish"
LAMBDA_CONTEXT_KEYS = (
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
)
"""What `inject_lambda_context` adds to every log line; taken off again after the invocation."""


class PerContainer(Generic[T]):
    """One lazily built object per Lambda container (per process, embedded); thread-safe.

    `close` releases a built object when it is reset (a bot session, an event loop); `on_reset`
    runs on every reset, built or not (state the object shares with others, like checkpointers).
    """

    def __init__(
        self,
        build: Callable[[], T],
        *,
        close: Callable[[T], None] | None = None,
        on_reset: Callable[[], None] | None = None,
    ) -> None:
        self._build = build
        self._close = close
        self._on_reset = on_reset
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def reset(self) -> None:
        """Forget the object (tests; the embedded stack on start and stop); the next `get` builds anew."""
        with self._lock:
            value, self._value = self._value, None
        try:
            if value is not None and self._close is not None:
                self._close(value)
        finally:
            if self._on_reset is not None:
                self._on_reset()


@overload
def lambda_entry(handler: Entry[P, R], /) -> Entry[P, R]: ...


@overload
def lambda_entry(*, correlation_id_path: str | None = None) -> Callable[[Entry[P, R]], Entry[P, R]]: ...


def lambda_entry(
    handler: Entry[P, R] | None = None, /, *, correlation_id_path: str | None = None
) -> Entry[P, R] | Callable[[Entry[P, R]], Entry[P, R]]:
    """The decorator stack for a Lambda entry point (see the module docstring).

    `correlation_id_path` is a JMESPath into the event for the invocation's correlation id (an
    EventBridge event's `id`); without it, log lines keep the correlation id of whatever runs inside
    (a queue record's, set by `process_queue_event`). It is restored afterwards, so one invocation's
    id never leaks into the next.
    """

    def decorate(inner: Entry[P, R]) -> Entry[P, R]:
        @functools.wraps(inner)
        def entry(event: Any, context: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
            def invoke(event: Any, context: Any) -> R:
                with _correlated(event, correlation_id_path):
                    return inner(event, context, *args, **kwargs)

            if context is None:
                return _without_lambda(invoke, event)
            return _in_lambda(invoke, event, context)

        return entry

    return decorate if handler is None else decorate(handler)


def _in_lambda(invoke: Callable[[Any, Any], R], event: Any, context: Any) -> R:
    stack: Callable[..., R] = get_metrics().log_metrics(invoke, capture_cold_start_metric=True)
    stack = get_logger().inject_lambda_context(stack)
    if tracing_enabled():
        stack = get_tracer().capture_lambda_handler(stack)
    try:
        with warnings.catch_warnings():  # an invocation that counted nothing is not worth a warning
            warnings.filterwarnings("ignore", message=EMPTY_METRICS_WARNING)
            return stack(event, context)
    finally:
        get_logger().remove_keys(LAMBDA_CONTEXT_KEYS)


def _without_lambda(invoke: Callable[[Any, Any], R], event: Any) -> R:
    try:
        return invoke(event, None)
    finally:
        flush_metrics()


@contextmanager
def _correlated(event: Any, path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    from aws_lambda_powertools.utilities.jmespath_utils import query

    found = query(data=event, envelope=path) if isinstance(event, dict) else None
    with correlation(str(found) if found else None):
        yield
