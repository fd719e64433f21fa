"""Builds the configured work-signal adapter from settings: the only place that chooses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from shared.settings import AwsSettings, HomeSettings
from shared.work_signal.port import WorkSignalPort


class WorkSignalSettings(HomeSettings, AwsSettings):
    work_signal_backend: Annotated[
        Literal["local", "dynamodb"], Field(description="local (SQLite in ORCH_HOME) or dynamodb (AWS).")
    ] = "local"
    work_signal_table: Annotated[
        str | None, Field(description="DynamoDB table (partition key pk: S) holding the one marks item.")
    ] = None
    work_signal_file: Annotated[
        Path | None, Field(description="Local store; default $ORCH_HOME/work-signal.db.")
    ] = None

    @property
    def effective_work_signal_file(self) -> Path:
        return (self.work_signal_file or self.home / "work-signal.db").expanduser()


def build_work_signal(settings: WorkSignalSettings | None = None) -> WorkSignalPort:
    """The configured adapter; boto3 is imported only for DynamoDB."""
    settings = settings or WorkSignalSettings()
    if settings.work_signal_backend == "dynamodb":
        if not settings.work_signal_table:
            raise ValueError("ORCH_WORK_SIGNAL_TABLE is required when ORCH_WORK_SIGNAL_BACKEND=dynamodb")
        import boto3
        from botocore.config import Config

        from shared.work_signal.dynamodb import DynamoDbWorkSignal

        # IPv4 whatever AWS_USE_DUALSTACK_ENDPOINT says: from the VPC, the free gateway endpoint carries it
        client = boto3.client(
            "dynamodb",
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            config=Config(use_dualstack_endpoint=False),
        )
        return DynamoDbWorkSignal(settings.work_signal_table, client)
    from shared.work_signal.local import SqliteWorkSignal

    return SqliteWorkSignal(settings.effective_work_signal_file)
