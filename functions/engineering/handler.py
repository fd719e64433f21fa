"""Lambda entry point for engineering:queue, worker:responses and scaffolder:results (one function,
three event sources); the record's source queue picks the path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.engineering.settings import EngineeringSettings
from shared.contracts import ENGINEERING_QUEUE, SCAFFOLDER_RESULTS, WORKER_RESPONSES, WorkerActivity
from shared.graphs.checkpoint import reset as reset_checkpointers
from shared.graphs.driver import consume_graph_event
from shared.handler_shell import PerContainer, lambda_entry

if TYPE_CHECKING:  # the engine (and langgraph with it) loads when the first message needs it
    from functions.engineering.logic import Engineering


def build_engine(settings: EngineeringSettings | None = None) -> Engineering:
    from functions.engineering.graph import Ports
    from functions.engineering.logic import Engineering
    from shared.graphs.checkpoint import build_checkpointer
    from shared.queues import build_queue
    from shared.repos.factory import RepoHostSettings, build_repo_host
    from shared.service_client import build_service_client
    from shared.settings import AgentCredentialSettings

    settings = settings or EngineeringSettings()
    repo_settings = RepoHostSettings()
    repo_host = build_repo_host(repo_settings)
    env_refs = dict(AgentCredentialSettings().agent_secret_refs)
    if repo_settings.github_token_ref:
        env_refs["GITHUB_TOKEN"] = repo_settings.github_token_ref
    ports = Ports(
        build_service_client(settings), build_queue(settings, settings), settings, repo_host, env_refs
    )
    return Engineering(ports, build_checkpointer(settings))


container = PerContainer(build_engine, on_reset=reset_checkpointers)
reset = container.reset


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, engine: Engineering | None = None) -> dict[str, Any]:
    active = engine or container.get()

    def handle(queue: str, message: Any) -> None:
        if queue == ENGINEERING_QUEUE:
            active.handle(message)
        elif isinstance(message, WorkerActivity):  # "still working" is never the answer a graph waits for
            active.logger.info("activity response ignored", extra={"request_id": message.request_id})
        else:
            active.resume(message.request_id, message.model_dump(mode="json"))

    return consume_graph_event(
        event,
        context,
        "engineering",
        (ENGINEERING_QUEUE, WORKER_RESPONSES, SCAFFOLDER_RESULTS),
        lambda: active.ports.queue,
        handle,
    )
