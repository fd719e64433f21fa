"""A graph checkpoint over DynamoDB's 400 KB item limit saves and loads: the saver offloads it to S3.

Before: `build_checkpointer` built DynamoDBSaver without `s3_offload_config`, and a 600 KB value in the
graph state (a long agent transcript) failed with a ValidationException — that case is kept below, as
the control that proves the offload test can fail. moto stands in for DynamoDB and S3.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from shared.graphs import checkpoint
from shared.graphs.settings import CHECKPOINT_S3_KEY_PREFIX, CheckpointSettings

REGION = "us-east-1"
TABLE = "orch-checkpoints"
BUCKET = "orch-artifacts"
BIG = 600 * 1024


class State(TypedDict):
    transcript: str


def _graph(saver: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    graph.add_node("agent", lambda state: {"transcript": state["transcript"] + "x" * BIG})
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    return graph.compile(checkpointer=saver)


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        checkpoint.reset()
        yield s3
        checkpoint.reset()


def _settings(**extra: Any) -> CheckpointSettings:
    return CheckpointSettings(checkpointer="dynamodb", checkpoint_table=TABLE, aws_region=REGION, **extra)


def test_a_600kb_checkpoint_is_offloaded_to_s3_and_loads_back(aws: Any) -> None:
    graph = _graph(checkpoint.build_checkpointer(_settings(checkpoint_bucket=BUCKET)))
    config = {"configurable": {"thread_id": "task-big"}}

    graph.invoke({"transcript": "start:"}, config)

    # a fresh saver (another Lambda container) reads it back
    checkpoint.reset()
    again = _graph(checkpoint.build_checkpointer(_settings(checkpoint_bucket=BUCKET)))
    assert again.get_state(config).values["transcript"] == "start:" + "x" * BIG
    keys = [o["Key"] for o in aws.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys and all(k.startswith(f"{CHECKPOINT_S3_KEY_PREFIX}/") for k in keys), keys
    tags = aws.get_object_tagging(Bucket=BUCKET, Key=keys[0])["TagSet"]
    assert {"Key": "ttl-days", "Value": "30"} in tags  # what the stack's lifecycle rule expires on


def test_without_the_bucket_the_same_checkpoint_fails_in_dynamodb(aws: Any) -> None:
    graph = _graph(checkpoint.build_checkpointer(_settings()))
    with pytest.raises(ClientError, match="ValidationException"):
        graph.invoke({"transcript": "start:"}, {"configurable": {"thread_id": "task-big"}})


def test_the_saver_finds_the_stacks_lifecycle_rule_and_leaves_it(aws: Any) -> None:
    from infra_cdk.constants import checkpoint_lifecycle_rule_id

    rule = {
        "ID": checkpoint_lifecycle_rule_id(),
        "Status": "Enabled",
        "Filter": {"Prefix": "checkpoints/"},
        "Expiration": {"Days": 30},
    }
    aws.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [rule]})
    checkpoint.build_checkpointer(_settings(checkpoint_bucket=BUCKET))
    assert aws.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"] == [rule]


def test_the_key_prefix_is_the_one_the_stack_names_its_rule_after() -> None:
    # functions' code asset carries no infra_cdk: both keep the value, this keeps them equal
    from infra_cdk import constants

    assert constants.CHECKPOINT_S3_KEY_PREFIX == CHECKPOINT_S3_KEY_PREFIX
    assert CheckpointSettings().checkpoint_ttl_s == constants.CHECKPOINT_TTL_SECONDS
