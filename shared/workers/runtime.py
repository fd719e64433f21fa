"""The worker runtime port.

A runtime starts the worker wrapper (`orchestrator-worker --worker-id ID`) somewhere, stops it,
and says whether it still runs. Only ids and references cross this boundary (RunTask overrides
are limited to 8 KB): the wrapper fetches its job from the API itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

RuntimeState = Literal["STARTING", "RUNNING", "STOPPED"]


@dataclass(frozen=True)
class WorkerLaunch:
    """What a runtime needs to start one worker."""

    worker_id: str
    task_id: str | None
    env: dict[str, str] = field(default_factory=dict)
    """Plain settings and the worker's own token only (ORCH_API_URL, ORCH_WORKER_TOKEN, ...): never the
    stack's key or a reference to it; a worker reaches secrets and sessions through the API."""
    max_lifetime_s: int = 1800
    agent: str | None = None
    """The agent CLI it runs (WorkerConfig.agent): the Fargate runtime sizes the task by it."""


@dataclass(frozen=True)
class RuntimeStatus:
    handle: str
    state: RuntimeState
    exit_code: int | None = None
    reason: str | None = None


StoppedCallback = Callable[[str, RuntimeStatus], None]
"""Called with (worker_id, final status) when a worker's process ends, whatever the cause."""


@runtime_checkable
class WorkerRuntime(Protocol):
    backend: str

    def start(self, launch: WorkerLaunch) -> str:
        """Start the wrapper for this worker; returns the runtime handle (ECS task ARN, local pid handle)."""
        ...

    def stop(self, handle: str, reason: str) -> None:
        """Stop it (idempotent). The stopped callback / state-change event still reports the end."""
        ...

    def status(self, handle: str) -> RuntimeStatus: ...
