"""The checkpoint table and bucket the stack defines work with langgraph_checkpoint_aws.DynamoDBSaver.

The table is rebuilt in moto from the synthesized template, so a key-schema or TTL mismatch
between the stack and the library fails here, not in the first deployed graph run.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra_cdk import constants
from tests.infrastructure.conftest import Synthesized

saver_module = pytest.importorskip("langgraph_checkpoint_aws.checkpoint.dynamodb.saver")
strategy_module = pytest.importorskip("langgraph_checkpoint_aws.checkpoint.dynamodb.storage_strategy")

TABLE = "checkpoints"
REGION = "us-east-1"


def test_saver_round_trips_a_checkpoint_through_the_stack_table(default_app: Synthesized) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    (table,) = [t for k, t in default_app.resources("AWS::DynamoDB::Table").items() if "CheckpointTable" in k]
    props = table["Properties"]
    with mock_aws():
        # given the table exactly as the template declares it
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=TABLE,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props["BillingMode"],
        )
        client.update_time_to_live(TableName=TABLE, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        saver = saver_module.DynamoDBSaver(
            table_name=TABLE, region_name=REGION, ttl_seconds=constants.CHECKPOINT_TTL_SECONDS
        )
        checkpoint = empty_checkpoint()
        config: Any = {"configurable": {"thread_id": "task-1", "checkpoint_ns": ""}}

        # when
        saved = saver.put(config, checkpoint, {"source": "input", "step": -1}, {})
        loaded = saver.get_tuple(saved)

        # then
        assert loaded is not None
        assert loaded.checkpoint["id"] == checkpoint["id"]
        items = client.scan(TableName=TABLE)["Items"]
        assert items
        assert all(constants.CHECKPOINT_TTL_ATTRIBUTE in item for item in items)


class _LifecycleRecordingS3:
    """Just the two calls StorageStrategy makes at construction."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        self.rules = rules
        self.puts: list[dict[str, Any]] = []

    def get_bucket_lifecycle_configuration(self, Bucket: str) -> dict[str, Any]:
        return {"Rules": self.rules}

    def put_bucket_lifecycle_configuration(self, **kwargs: Any) -> None:
        self.puts.append(kwargs)


def test_saver_finds_the_stack_lifecycle_rule_and_leaves_the_bucket_alone(default_app: Synthesized) -> None:
    (artifacts,) = [b for k, b in default_app.resources("AWS::S3::Bucket").items() if "Artifacts" in k]
    # CloudFormation's `Id` is the S3 API's `ID`.
    rules = [{"ID": rule["Id"]} for rule in artifacts["Properties"]["LifecycleConfiguration"]["Rules"]]
    s3 = _LifecycleRecordingS3(rules)

    strategy_module.StorageStrategy(
        dynamodb_client=None,
        table_name=TABLE,
        s3_client=s3,
        s3_bucket="artifacts",
        s3_key_prefix=constants.CHECKPOINT_S3_KEY_PREFIX,
        ttl_seconds=constants.CHECKPOINT_TTL_SECONDS,
    )

    assert s3.puts == [], "DynamoDBSaver would rewrite the CloudFormation-owned lifecycle configuration"


def test_without_the_stack_rule_the_saver_would_rewrite_the_lifecycle() -> None:
    # The negative control: proves the test above can fail.
    s3 = _LifecycleRecordingS3([{"ID": "expire-artifacts"}])
    strategy_module.StorageStrategy(
        dynamodb_client=None,
        table_name=TABLE,
        s3_client=s3,
        s3_bucket="artifacts",
        s3_key_prefix=constants.CHECKPOINT_S3_KEY_PREFIX,
        ttl_seconds=constants.CHECKPOINT_TTL_SECONDS,
    )
    assert len(s3.puts) == 1
