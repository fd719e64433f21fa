"""Message envelope shared by every queue contract (see ../shared/CONTRACTS.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

CONTRACT_VERSION: Literal["1"] = "1"

_Item = TypeVar("_Item")


def _empty_list_if_null(value: Any) -> Any:
    return [] if value is None else value


def _empty_dict_if_null(value: Any) -> Any:
    return {} if value is None else value


SeedList = Annotated[list[_Item], BeforeValidator(_empty_list_if_null)]
"""A list field the seed sent as `null` when empty: read as `[]` (the legacy wire form stays readable)."""

SeedDict = Annotated[dict[str, _Item], BeforeValidator(_empty_dict_if_null)]
"""A mapping field the seed sent as `null` when empty: read as `{}`."""


def new_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base for every DTO on the wire: unknown fields are kept (forward compatible).

    `defer_build`: a model's validator and serializer are built when it is first used, not when its module
    is imported, so a process (a Lambda's cold start, the embedded stack's start) builds only the contracts
    it touches."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False, defer_build=True)


class QueueMeta(Contract):
    """Envelope metadata carried by every message."""

    version: Annotated[Literal["1"], Field(description="Contract version; '1' today.")] = CONTRACT_VERSION
    correlation_id: Annotated[
        str, Field(description="Carried end to end into every log line of the work it starts.")
    ] = Field(default_factory=new_id)
    timestamp: Annotated[AwareDatetime, Field(description="When the message was created, UTC.")] = Field(
        default_factory=utc_now
    )

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class BaseMessage(QueueMeta):
    """A unit of work put on a queue."""

    request_id: Annotated[str, Field(description="Identifies this request; results echo it.")] = Field(
        default_factory=new_id
    )
    callback_stream: Annotated[
        str | None, Field(description="Where progress events for this work go, e.g. task_progress:{task_id}.")
    ] = None


ResultStatus = Literal["success", "failed", "error"]


class BaseResult(Contract):
    """The outcome of a unit of work."""

    request_id: Annotated[str, Field(description="The request_id of the message this answers.")]
    status: Annotated[ResultStatus, Field(description="success | failed | error")]
    error: Annotated[str | None, Field(description="Why it failed, in plain words.")] = None
    duration_ms: Annotated[int | None, Field(ge=0, description="Wall time of the work.")] = None
