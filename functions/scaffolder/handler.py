"""Lambda entry point for scaffolder:queue."""

from __future__ import annotations

import threading
from typing import Any

from functions.scaffolder.logic import scaffold
from functions.scaffolder.settings import ScaffolderSettings
from shared.contracts import SCAFFOLDER_QUEUE
from shared.queues.consume import process_queue_event

_ports: dict[str, Any] = {}
_lock = threading.Lock()


def _get_ports() -> dict[str, Any]:
    with _lock:
        if not _ports:
            from shared.queues import build_queue
            from shared.repos.factory import build_repo_host
            from shared.service_client import build_service_client

            settings = ScaffolderSettings()
            _ports.update(api=build_service_client(settings), queue=build_queue(settings, settings),
                          repo_host=build_repo_host(), settings=settings)  # fmt: skip
        return _ports


def reset() -> None:
    with _lock:
        _ports.clear()


def lambda_handler(
    event: dict[str, Any], context: Any, ports: dict[str, Any] | None = None
) -> dict[str, Any]:
    active = ports or _get_ports()
    settings = active.get("settings")

    def handle(message: Any, _record: Any) -> None:
        scaffold(message, active["api"], active["repo_host"], active["queue"],
                 template=getattr(settings, "template", None), template_ref=getattr(settings, "template_ref", None))  # fmt: skip

    return process_queue_event(event, SCAFFOLDER_QUEUE, handle, context)
