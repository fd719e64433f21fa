"""What every durable graph (engineering, deploy) is configured with: the API, the queues, the checkpointer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from shared.service_client import ServiceApiSettings
from shared.settings import QueueSettings

CHECKPOINT_S3_KEY_PREFIX = "checkpoints"
"""Where in the checkpoint bucket DynamoDBSaver offloads large values (s3_offload_config["key_prefix"]).
The stack's lifecycle rule is named after it (`infra_cdk.constants.checkpoint_lifecycle_rule_id`): the
functions' code asset does not carry infra_cdk, so both keep the value and a test checks they agree."""


class CheckpointSettings(ServiceApiSettings, QueueSettings):
    """What every durable graph (engineering, deploy) needs: the API, the queues, the checkpointer."""

    checkpointer: Annotated[
        Literal["sqlite", "dynamodb"], Field(description="Where graph checkpoints live.")
    ] = "sqlite"
    checkpoint_file: Annotated[Path | None, Field(description="SQLite checkpoints; default $ORCH_HOME.")] = (
        None
    )
    checkpoint_table: Annotated[str | None, Field(description="DynamoDB table (AWS).")] = None
    checkpoint_ttl_s: Annotated[int, Field(gt=0)] = 30 * 24 * 3600
    checkpoint_bucket: Annotated[
        str | None,
        Field(
            description=(
                "S3 bucket for checkpoint values too large for a DynamoDB item (over ~350 KB; DynamoDB's "
                "limit is 400 KB). Without it, a large checkpoint fails with a ValidationException."
            )
        ),
    ] = None
    checkpoint_key_prefix: Annotated[
        str, Field(description="Key prefix of offloaded checkpoint values in checkpoint_bucket.")
    ] = CHECKPOINT_S3_KEY_PREFIX
    repo_owner: Annotated[str, Field(description="Owner part of new repositories' owner/name.")] = (
        "orchestrator"
    )

    @property
    def effective_checkpoint_file(self) -> Path:
        return (self.checkpoint_file or self.home / "checkpoints.db").expanduser()
