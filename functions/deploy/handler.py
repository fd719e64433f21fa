"""Lambda entry point for deploy:queue, ansible:deploy:results and provisioner:results (one function,
three event sources); the record's source queue picks the path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.deploy.settings import DeploySettings
from shared.contracts import ANSIBLE_DEPLOY_RESULTS, DEPLOY_QUEUE, PROVISIONER_RESULTS
from shared.graphs.checkpoint import reset as reset_checkpointers
from shared.graphs.driver import consume_graph_event
from shared.handler_shell import PerContainer, lambda_entry

if TYPE_CHECKING:  # the graph (and langgraph with it) loads when the first message needs it
    from functions.deploy.logic import Deploy


def build_deploy(settings: DeploySettings | None = None) -> Deploy:
    from functions.deploy.graph import Ports
    from functions.deploy.logic import Deploy
    from shared.graphs.checkpoint import build_checkpointer
    from shared.queues import build_queue
    from shared.repos.factory import RepoHostSettings, build_repo_host
    from shared.service_client import build_service_client

    settings = settings or DeploySettings()
    repo_settings = RepoHostSettings()
    ports = Ports(
        build_service_client(settings),
        build_queue(settings, settings),
        settings,
        build_repo_host(repo_settings),
        repo_settings.github_token_ref,
    )
    return Deploy(ports, build_checkpointer(settings))


container = PerContainer(build_deploy, on_reset=reset_checkpointers)
reset = container.reset


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deploy: Deploy | None = None) -> dict[str, Any]:
    active = deploy or container.get()

    def handle(queue: str, message: Any) -> None:
        if queue == DEPLOY_QUEUE:
            active.handle(message)
            return
        if queue == PROVISIONER_RESULTS:
            active.server_checked(message)
        active.resume(message.request_id, message.model_dump(mode="json"))

    return consume_graph_event(
        event,
        context,
        "deploy",
        (DEPLOY_QUEUE, ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS),
        lambda: active.ports.queue,
        handle,
    )
