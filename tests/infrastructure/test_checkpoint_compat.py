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
from tests.infrastructure.test_compute import _actions, _function, _policy_statements, _resources

saver_module = pytest.importorskip("langgraph_checkpoint_aws.checkpoint.dynamodb.saver")
strategy_module = pytest.importorskip("langgraph_checkpoint_aws.checkpoint.dynamodb.storage_strategy")

TABLE = "checkpoints"
REGION = "us-east-1"


def _create_stack_table(app: Synthesized) -> Any:
    """The checkpoint table as the template declares it (inside mock_aws); returns the DynamoDB client."""
    (table,) = [t for k, t in app.resources("AWS::DynamoDB::Table").items() if "CheckpointTable" in k]
    props = table["Properties"]
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName=TABLE,
        KeySchema=props["KeySchema"],
        AttributeDefinitions=props["AttributeDefinitions"],
        BillingMode=props["BillingMode"],
    )
    client.update_time_to_live(TableName=TABLE, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    return client


def test_saver_round_trips_a_checkpoint_through_the_stack_table(default_app: Synthesized) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    with mock_aws():
        # given the table exactly as the template declares it
        client = _create_stack_table(default_app)
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


# -- large checkpoints offload to the artifacts bucket -------------------------------------------------

S3_ACTIONS_OF = {
    # what each S3 operation the saver makes is authorised as (AWS: "Actions, resources, and condition keys
    # for Amazon S3"); PutObject with a Tagging header needs s3:PutObjectTagging as well
    "GetBucketLifecycleConfiguration": ("bucket", ("s3:GetLifecycleConfiguration",)),
    "PutObject": ("object", ("s3:PutObject", "s3:PutObjectTagging")),
    "GetObject": ("object", ("s3:GetObject",)),
}


def _graph_function(app: Synthesized, name: str) -> dict[str, Any]:
    return _function(app, name)[1]


def _s3_statements(app: Synthesized, role_id: str) -> list[dict[str, Any]]:
    return [s for s in _policy_statements(app, role_id) if any(a.startswith("s3:") for a in _actions(s))]


def _granted(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """action -> the resources it is granted on (JSON of each resource expression)."""
    import json

    granted: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _actions(statement):
            granted.setdefault(action, set()).update(json.dumps(r) for r in _resources(statement))
    return granted


def _record_s3_operations_of_a_large_checkpoint(
    app: Synthesized, bucket_rules: list[dict[str, Any]]
) -> list[str]:
    """A 600 KB checkpoint written and read back through DynamoDBSaver with S3 offload, in moto: the S3
    operations it made, in order."""
    import botocore.client
    from langgraph.checkpoint.base import empty_checkpoint

    operations: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation_name: str, api_params: Any) -> Any:
        if client.meta.service_model.service_name == "s3":
            operations.append(operation_name)
        return original(client, operation_name, api_params)

    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        _create_stack_table(app)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="artifacts")
        s3.put_bucket_lifecycle_configuration(
            Bucket="artifacts", LifecycleConfiguration={"Rules": bucket_rules}
        )
        patch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
        saver = saver_module.DynamoDBSaver(
            table_name=TABLE,
            region_name=REGION,
            ttl_seconds=constants.CHECKPOINT_TTL_SECONDS,
            s3_offload_config={"bucket_name": "artifacts", "key_prefix": constants.CHECKPOINT_S3_KEY_PREFIX},
        )
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"transcript": "x" * 600_000}
        config: Any = {"configurable": {"thread_id": "task-1", "checkpoint_ns": ""}}
        saved = saver.put(config, checkpoint, {"source": "loop", "step": 1}, {"transcript": 1})
        loaded = saver.get_tuple(saved)
        assert loaded is not None and loaded.checkpoint["channel_values"]["transcript"] == "x" * 600_000
        patch.undo()  # the saver's calls only
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts").get("Contents", [])]
    assert keys and all(k.startswith(f"{constants.CHECKPOINT_S3_KEY_PREFIX}/") for k in keys)
    return operations


def test_graphs_offload_large_checkpoints_to_the_artifacts_bucket_with_exactly_the_saver_s_s3_calls(
    any_app: Synthesized,
) -> None:
    import json

    (bucket_id,) = [k for k in any_app.resources("AWS::S3::Bucket") if "Artifacts" in k]
    (artifacts,) = [b for k, b in any_app.resources("AWS::S3::Bucket").items() if k == bucket_id]
    rules = [
        {
            "ID": r["Id"],
            "Status": "Enabled",
            "Filter": {"Prefix": r.get("Prefix", "")},
            "Expiration": {"Days": 1},
        }
        for r in artifacts["Properties"]["LifecycleConfiguration"]["Rules"]
        if r["Id"] == constants.checkpoint_lifecycle_rule_id()
    ]
    operations = _record_s3_operations_of_a_large_checkpoint(any_app, rules)
    assert set(operations) == set(S3_ACTIONS_OF), operations  # the saver's calls are the ones mapped above
    bucket = json.dumps({"Fn::GetAtt": [bucket_id, "Arn"]})
    objects = json.dumps(
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{constants.CHECKPOINT_S3_KEY_PREFIX}/*"]]}
    )
    expected = {
        action: {bucket if scope == "bucket" else objects}
        for scope, actions in S3_ACTIONS_OF.values()
        for action in actions
    }
    for name in (constants.ENGINEERING_FUNCTION, constants.DEPLOY_FUNCTION):
        props = _graph_function(any_app, name)
        assert props["Environment"]["Variables"]["ORCH_CHECKPOINT_BUCKET"] == {"Ref": bucket_id}, name
        assert _granted(_s3_statements(any_app, props["Role"]["Fn::GetAtt"][0])) == expected, name
    # nobody else touches the bucket
    for props in (r["Properties"] for r in any_app.resources("AWS::Lambda::Function").values()):
        if props.get("FunctionName") not in {
            f"{any_app.stack.config.resource_prefix}-{n}"
            for n in (constants.ENGINEERING_FUNCTION, constants.DEPLOY_FUNCTION)
        } and "Fn::GetAtt" in json.dumps(props.get("Role")):
            assert bucket_id not in json.dumps(_s3_statements(any_app, props["Role"]["Fn::GetAtt"][0]))


def test_the_graph_settings_read_the_bucket_and_the_prefix_the_grant_is_for(
    default_app: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.graphs.checkpoint import s3_offload_config
    from shared.graphs.settings import CheckpointSettings

    env = _graph_function(default_app, constants.ENGINEERING_FUNCTION)["Environment"]["Variables"]
    for variable, value in env.items():
        monkeypatch.setenv(variable, value if isinstance(value, str) else "the-artifacts-bucket")
    config = s3_offload_config(CheckpointSettings())
    assert config is not None
    assert config["bucket_name"] == "the-artifacts-bucket"
    assert config["key_prefix"].strip("/") == constants.CHECKPOINT_S3_KEY_PREFIX
