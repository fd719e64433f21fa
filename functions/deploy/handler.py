"""Lambda entry point for deploy:queue, ansible:deploy:results and provisioner:results (one function,
three event sources); the record's source queue picks the path."""

from __future__ import annotations

import threading
from typing import Any

from functions.deploy.logic import Deploy
from functions.deploy.settings import DeploySettings
from shared.contracts import ANSIBLE_DEPLOY_RESULTS, DEPLOY_QUEUE, PROVISIONER_RESULTS
from shared.graphs.driver import consume_graph_event

_deploy: Deploy | None = None
_lock = threading.Lock()


def build_deploy(settings: DeploySettings | None = None) -> Deploy:
    from functions.deploy.graph import Ports
    from shared.graphs.checkpoint import build_checkpointer
    from shared.queues import build_queue
    from shared.repos.factory import RepoHostSettings, build_repo_host
    from shared.service_client import build_service_client

    settings = settings or DeploySettings()
    repo_settings = RepoHostSettings()
    ports = Ports(build_service_client(settings), build_queue(settings, settings), settings,
                  build_repo_host(repo_settings), repo_settings.github_token_ref)  # fmt: skip
    return Deploy(ports, build_checkpointer(settings))


def get_deploy() -> Deploy:
    global _deploy
    with _lock:
        if _deploy is None:
            _deploy = build_deploy()
        return _deploy


def reset() -> None:
    from shared.graphs.checkpoint import reset as reset_checkpointers

    global _deploy
    with _lock:
        _deploy = None
    reset_checkpointers()


def lambda_handler(event: dict[str, Any], context: Any, deploy: Deploy | None = None) -> dict[str, Any]:
    active = deploy or get_deploy()

    def handle(queue: str, message: Any) -> None:
        if queue == DEPLOY_QUEUE:
            active.handle(message)
            return
        if queue == PROVISIONER_RESULTS:
            active.server_checked(message)
        active.resume(message.request_id, message.model_dump(mode="json"))

    return consume_graph_event(event, context, "deploy", (DEPLOY_QUEUE, ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS),
                               lambda: active.ports.queue, handle)  # fmt: skip
