"""What every engineering-graph node class shares: its ports, its progress events, and its waits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.types import interrupt

from functions.engineering.settings import EngineeringSettings
from functions.engineering.state import EngState
from shared.api_client import ApiClient
from shared.contracts.api import TaskStatus
from shared.graphs.driver import event_sender, request_id
from shared.queues.port import QueuePort
from shared.repos.port import RepoHost

Update = dict[str, Any]
"""The state keys a node changes."""


def failed(error: str | None) -> Update:
    return {"outcome": "failed", "error": error}


def pct(base: int, state: EngState, cap: int) -> int:
    """Progress climbs 15 points a fix round, up to `cap`."""
    return min(base + 15 * (state.round - 1), cap)


class NodeBase:
    """The ports (the API, the queue, the repository host) and the task's progress events."""

    def __init__(
        self,
        api: ApiClient,
        queue: QueuePort,
        settings: EngineeringSettings,
        repo_host: RepoHost | None = None,
        worker_env_refs: Mapping[str, str] | None = None,
    ) -> None:
        self.api, self.queue, self.settings, self.repo_host = api, queue, settings, repo_host
        self.worker_env_refs = dict(worker_env_refs or {})
        """Secret references a worker resolves itself (GITHUB_TOKEN for pushes to GitHub)."""
        self._send_event = event_sender(api)

    def event(
        self, state: EngState, kind: str, message: str, step: str, pct: int, error: str | None = None
    ) -> None:
        who = {"task_id": state.task_id, "correlation_id": state.correlation_id}
        self._send_event(who, kind, message, step, pct, error=error)

    def ended(self, state: EngState, said: TaskStatus | None = None) -> bool:
        """The task ended outside the graph (cancelled, or failed by the stuck-task reaper): stop quietly.
        `said`: the status an answer just carried (the budget check, the gate need); an API older than
        that field says None, and the task is asked for."""
        status = said if said is not None else self.api.get_task(state.task_id).status
        return status.is_final

    @staticmethod
    def wait_for(state: EngState, *step: object) -> dict[str, Any]:
        """Pause until the answer to `request_id(task, *step)` resumes the graph; returns that answer."""
        answer: dict[str, Any] = interrupt({"wait_for": request_id(state.task_id, *step)})
        return answer
