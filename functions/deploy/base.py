"""What every deploy-graph node class shares: its ports and its progress events."""

from __future__ import annotations

from typing import Any

from functions.deploy.settings import DeploySettings
from functions.deploy.state import DeployState
from shared.api_client import ApiClient
from shared.graphs.driver import event_sender
from shared.queues.port import QueuePort
from shared.repos.port import RepoHost

Update = dict[str, Any]
"""The state keys a node changes."""


def failed(error: str) -> Update:
    return {"outcome": "failed", "error": error}


class NodeBase:
    """The ports (the API, the queue, the repository host) and the task's progress events."""

    def __init__(
        self,
        api: ApiClient,
        queue: QueuePort,
        settings: DeploySettings,
        repo_host: RepoHost,
        github_token_ref: str | None = None,
    ) -> None:
        self.api, self.queue, self.settings, self.repo_host = api, queue, settings, repo_host
        self.github_token_ref = github_token_ref
        self._send_event = event_sender(api)

    def event(
        self, state: DeployState, kind: str, message: str, step: str, pct: int, error: str | None = None
    ) -> None:
        who = {"task_id": state.task_id, "correlation_id": state.correlation_id or None}
        self._send_event(who, kind, message, step, pct, error=error)

    def progress(
        self, state: DeployState, message: str, step: str, pct: int, error: str | None = None
    ) -> None:
        self.event(state, "progress", message, step, pct, error)

    def ended(self, state: DeployState) -> bool:
        """Cancelled by a person or failed by the stuck-task reaper while the graph waited."""
        return self.api.get_task(state.task_id).status.is_final
