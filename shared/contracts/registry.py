"""Logical queue names, their message models, and the one parser every consumer uses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts.base import new_id, utc_now
from shared.contracts.jobs import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    DeployMessage,
    EngineeringMessage,
    ProvisionerMessage,
    ProvisionerResult,
    ScaffolderMessage,
    ScaffolderResult,
)
from shared.contracts.notices import ProgressStreamMessage
from shared.contracts.telegram import ProductOwnerMessage, TelegramUpdateMessage
from shared.contracts.workers import WorkerCommand, WorkerResponse

ENGINEERING_QUEUE = "engineering:queue"
DEPLOY_QUEUE = "deploy:queue"
SCAFFOLDER_QUEUE = "scaffolder:queue"
SCAFFOLDER_RESULTS = "scaffolder:results"
"""Added: scaffold completions, consumed by the engineering function to resume its graph."""
PROVISIONER_QUEUE = "provisioner:queue"
ANSIBLE_DEPLOY_QUEUE = "ansible:deploy:queue"
ANSIBLE_DEPLOY_RESULTS = "ansible:deploy:results"
"""Added: deploy / undeploy playbook outcomes, consumed by the deploy function to resume its graph."""
PROVISIONER_RESULTS = "provisioner:results"
"""Added: provision / ping outcomes, consumed by the scheduler's server_sync and the deploy graph."""
WORKER_COMMANDS = "worker:commands"
WORKER_RESPONSES = "worker:responses"
TELEGRAM_UPDATES = "telegram:updates"
"""Added: Telegram updates from the webhook / long polling to the bot consumer."""
PO_INBOX = "po:inbox"
"""Added: a person's free text from the bot consumer to their Product Owner agent."""
PO_RESPONSES = "po:responses"
"""Added: worker responses for Product Owner workers (their config's `reply_queue`), consumed by the PO."""
PROGRESS_EVENTS = "progress:events"
"""The progress-event stream; the seed's per-task `task_progress:{task_id}` streams map onto it."""

_LEGACY_PROGRESS_PREFIX = "task_progress:"


@dataclass
class QueueContract:
    """A logical queue and the type its messages must validate as."""

    name: str
    message_type: Any
    description: str

    @cached_property
    def adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.message_type)

    @property
    def model_types(self) -> tuple[type[BaseModel], ...]:
        """The concrete models a message on this queue may be (several for a union)."""
        found: list[type[BaseModel]] = []

        def walk(tp: Any) -> None:
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                found.append(tp)
                return
            for arg in get_args(tp):
                walk(arg)

        walk(self.message_type)
        return tuple(found)


QUEUES: Mapping[str, QueueContract] = {
    c.name: c
    for c in (
        QueueContract(ENGINEERING_QUEUE, EngineeringMessage, "API -> engineering consumer"),
        QueueContract(DEPLOY_QUEUE, DeployMessage, "API -> deploy consumer"),
        QueueContract(SCAFFOLDER_QUEUE, ScaffolderMessage, "engineering graph -> scaffolder"),
        QueueContract(SCAFFOLDER_RESULTS, ScaffolderResult, "scaffolder -> engineering graph (resume)"),
        QueueContract(PROVISIONER_QUEUE, ProvisionerMessage, "scheduler, graphs -> infra"),
        QueueContract(ANSIBLE_DEPLOY_QUEUE, AnsibleDeployMessage, "deploy graph -> infra"),
        QueueContract(ANSIBLE_DEPLOY_RESULTS, AnsibleDeployResult, "ansible runner -> deploy graph (resume)"),
        QueueContract(PROVISIONER_RESULTS, ProvisionerResult, "ansible runner -> server sync / deploy"),
        QueueContract(WORKER_COMMANDS, WorkerCommand, "graphs -> worker manager"),
        QueueContract(WORKER_RESPONSES, WorkerResponse, "worker manager -> graphs"),
        QueueContract(TELEGRAM_UPDATES, TelegramUpdateMessage, "telegram webhook -> bot consumer"),
        QueueContract(PO_INBOX, ProductOwnerMessage, "bot consumer -> product owner"),
        QueueContract(PO_RESPONSES, WorkerResponse, "worker manager, API -> product owner"),
        QueueContract(
            PROGRESS_EVENTS, ProgressStreamMessage, "everyone -> task event stream; API -> incidents"
        ),
    )
}


class ContractError(ValueError):
    """A message that does not satisfy its queue's contract. Never worth retrying."""

    def __init__(self, queue: str, reason: str, fields: list[str] | None = None) -> None:
        self.queue = queue
        self.reason = reason
        self.fields = fields or []
        super().__init__(f"{queue}: {reason}")


def resolve_queue(queue_name: str) -> QueueContract:
    """The contract of a logical queue; `task_progress:<id>` streams resolve to the progress stream."""
    if queue_name.startswith(_LEGACY_PROGRESS_PREFIX):
        queue_name = PROGRESS_EVENTS
    try:
        return QUEUES[queue_name]
    except KeyError:
        known = ", ".join(QUEUES)
        raise ContractError(queue_name, f"unknown queue {queue_name!r}; known queues: {known}") from None


def _unwrap(queue: str, raw: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, (str, bytes)):
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(queue, f"body is not JSON ({exc})") from None
    else:
        payload = dict(raw)
    # The seed's legacy wire form: {"data": "<json string>"}
    if isinstance(payload, dict) and set(payload) == {"data"} and isinstance(payload["data"], (str, dict)):
        inner = payload["data"]
        if isinstance(inner, str):
            try:
                inner = json.loads(inner)
            except ValueError as exc:
                raise ContractError(queue, f"legacy 'data' field is not JSON ({exc})") from None
        payload = inner
    if not isinstance(payload, dict):
        raise ContractError(queue, f"body must be a JSON object, got {type(payload).__name__}")
    return payload


def _fill_legacy_envelope(payload: dict[str, Any]) -> dict[str, Any]:
    payload.setdefault("version", "1")
    if not payload.get("correlation_id"):
        payload["correlation_id"] = new_id()
    if not payload.get("timestamp"):
        payload["timestamp"] = utc_now().isoformat()
    return payload


def parse_message(queue_name: str, raw: str | bytes | Mapping[str, Any]) -> Any:
    """Validate a raw body from `queue_name` into its model.

    Accepts the current wire form and the seed's legacy form (`{"data": "<json>"}`,
    missing `version` / `correlation_id` / `timestamp`, `null` for empty lists, progress events on
    `task_progress:<task_id>` without `task_id`). Raises `ContractError` otherwise.
    """
    contract = resolve_queue(queue_name)
    payload = _fill_legacy_envelope(_unwrap(contract.name, raw))
    if queue_name.startswith(_LEGACY_PROGRESS_PREFIX) and not payload.get("task_id"):
        # the seed named an event's task by its stream only
        payload["task_id"] = queue_name.removeprefix(_LEGACY_PROGRESS_PREFIX)
    try:
        return contract.adapter.validate_python(payload)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in err["loc"]) or "<body>" for err in exc.errors()]
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ContractError(contract.name, f"invalid message: {problems}", fields) from None


def dump_message(message: BaseModel) -> str:
    """The wire form of a message."""
    return message.model_dump_json(exclude_none=False)
