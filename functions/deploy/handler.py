"""Lambda entry point for deploy:queue, ansible:deploy:results and provisioner:results (one function,
three event sources); the record's source queue picks the path. A provisioner result no graph waits for
(a scheduled ping, a recovery) is recorded with an API client alone: the graph, and LangGraph with it, are
built for the first message that needs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.deploy.server_checks import record_server_check
from functions.deploy.settings import DeploySettings
from shared.contracts import ANSIBLE_DEPLOY_RESULTS, DEPLOY_QUEUE, PROVISIONER_RESULTS, is_server_check
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


def build_checks_client() -> Any:
    """The API client of server checks that wake no graph (`is_server_check`)."""
    from shared.service_client import build_service_client

    return build_service_client(DeploySettings())


container = PerContainer(build_deploy, on_reset=reset_checkpointers)
checks_client = PerContainer(build_checks_client, close=lambda client: client.close())


def reset() -> None:
    container.reset()
    checks_client.reset()


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deploy: Deploy | None = None) -> dict[str, Any]:
    def active() -> Deploy:
        return deploy or container.get()

    def handle(queue: str, message: Any) -> None:
        if queue == DEPLOY_QUEUE:
            active().handle(message)
            return
        if queue == PROVISIONER_RESULTS:
            if is_server_check(message.request_id):
                # a scheduled ping or a recovery: no graph waits for it, so the graph is not built for it
                record_server_check(deploy.api if deploy else checks_client.get(), message)
                return
            record_server_check(active().api, message)
        active().resume(message.request_id, message.model_dump(mode="json"))

    return consume_graph_event(
        event,
        context,
        "deploy",
        (DEPLOY_QUEUE, ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS),
        lambda: active().ports.queue,
        handle,
    )
