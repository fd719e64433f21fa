"""Pieces both adapters share: validating what is published, attributes on the wire."""

from __future__ import annotations

from pydantic import BaseModel

from shared.contracts import ContractError, dump_message, resolve_queue


def encode(queue: str, message: BaseModel) -> tuple[str, dict[str, str]]:
    """The body and attributes of a message, after checking it belongs on `queue`."""
    contract = resolve_queue(queue)
    if not isinstance(message, contract.model_types):
        allowed = ", ".join(t.__name__ for t in contract.model_types)
        raise ContractError(
            contract.name, f"{type(message).__name__} does not belong on this queue (expected {allowed})"
        )
    attributes = {"message_type": type(message).__name__}
    correlation_id = getattr(message, "correlation_id", None)
    if correlation_id:
        attributes["correlation_id"] = str(correlation_id)
    return dump_message(message), attributes
