"""Lambda entry point for scaffolder:queue."""

from __future__ import annotations

from typing import Any

from functions.scaffolder.logic import scaffold
from functions.scaffolder.settings import ScaffolderSettings
from shared.contracts import SCAFFOLDER_QUEUE
from shared.handler_shell import PerContainer, lambda_entry
from shared.queues.consume import process_queue_event


def build_ports() -> dict[str, Any]:
    from shared.queues import build_queue
    from shared.repos.factory import build_repo_host
    from shared.service_client import build_service_client

    settings = ScaffolderSettings()
    return {
        "api": build_service_client(settings),
        "queue": build_queue(settings, settings),
        "repo_host": build_repo_host(),
        "settings": settings,
    }


container = PerContainer(build_ports)
reset = container.reset


@lambda_entry
def lambda_handler(
    event: dict[str, Any], context: Any, ports: dict[str, Any] | None = None
) -> dict[str, Any]:
    active = ports or container.get()
    settings = active.get("settings")

    def handle(message: Any, _record: Any) -> None:
        scaffold(
            message,
            active["api"],
            active["repo_host"],
            active["queue"],
            template=getattr(settings, "template", None),
            template_ref=getattr(settings, "template_ref", None),
        )

    return process_queue_event(event, SCAFFOLDER_QUEUE, handle, context)
