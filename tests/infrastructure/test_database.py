"""The database: Aurora Serverless v2 that pauses at 0 ACU by default, one RDS instance with -c database=rds
(the variant app); IAM login for the API, an RDS-managed master secret for the deploy hook."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra_cdk import constants
from infra_cdk.config import ConfigError, StackConfig
from tests.infrastructure.conftest import Synthesized

STACK_UUID_HEAD = {
    "Fn::Select": [
        0,
        {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]},
    ]
}


def _database(app: Synthesized) -> tuple[str, dict[str, Any]]:
    """The cluster (Aurora) or the instance (RDS) that holds the data."""
    clusters = app.resources("AWS::RDS::DBCluster")
    if clusters:
        ((logical_id, cluster),) = clusters.items()
        return logical_id, cluster
    ((logical_id, instance),) = app.resources("AWS::RDS::DBInstance").items()
    return logical_id, instance


def _function(app: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    prefix = app.stack.config.resource_prefix
    ((logical_id, function),) = [
        (k, f)
        for k, f in app.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("FunctionName") == f"{prefix}-{name}"
    ]
    return logical_id, function["Properties"]


def _statements(app: Synthesized, role_ref: dict[str, Any]) -> list[dict[str, Any]]:
    role_id = role_ref["Fn::GetAtt"][0]
    return [
        statement
        for policy in app.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_default_is_aurora_serverless_v2_that_pauses_when_idle(default_app: Synthesized) -> None:
    default_app.template.has_resource(
        "AWS::RDS::DBCluster",
        {
            "Properties": Match.object_like(
                {
                    "Engine": "aurora-postgresql",
                    "EngineVersion": constants.DB_AURORA_POSTGRES_VERSION,
                    "ServerlessV2ScalingConfiguration": {
                        "MinCapacity": 0,
                        "MaxCapacity": constants.DB_MAX_ACU,
                        "SecondsUntilAutoPause": constants.DB_SECONDS_UNTIL_AUTO_PAUSE,
                    },
                    "StorageEncrypted": True,
                    "EnableIAMDatabaseAuthentication": True,
                    "ManageMasterUserPassword": True,
                    "MasterUsername": constants.DB_USERNAME,
                    "DatabaseName": constants.DB_NAME,
                    "BackupRetentionPeriod": constants.DB_BACKUP_RETENTION_DAYS,
                }
            ),
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
        },
    )
    (writer,) = default_app.resources("AWS::RDS::DBInstance").values()
    assert writer["Properties"]["DBInstanceClass"] == "db.serverless"
    assert writer["Properties"]["PubliclyAccessible"] is False


def test_the_rds_option_keeps_one_small_always_on_instance(variant_app: Synthesized) -> None:
    assert variant_app.stack.config.database == constants.DATABASE_RDS
    assert not variant_app.resources("AWS::RDS::DBCluster")
    variant_app.template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": Match.object_like(
                {
                    "Engine": "postgres",
                    "DBInstanceClass": f"db.{constants.DB_INSTANCE_TYPE}",
                    "StorageType": "gp3",
                    "AllocatedStorage": str(constants.DB_ALLOCATED_STORAGE_GB),
                    "StorageEncrypted": True,
                    "PubliclyAccessible": False,
                    "MultiAZ": False,
                    "EnableIAMDatabaseAuthentication": True,
                    "ManageMasterUserPassword": True,
                    "BackupRetentionPeriod": constants.DB_BACKUP_RETENTION_DAYS,
                }
            ),
            "DeletionPolicy": "Snapshot",
        },
    )


def test_the_database_flag_takes_only_known_kinds() -> None:
    class Node:
        def __init__(self, context: dict[str, str]) -> None:
            self.context = context

        def try_get_context(self, key: str) -> str | None:
            return self.context.get(key)

    assert StackConfig.from_context(Node({"github_owner": "o"})).database == constants.DATABASE_AURORA  # type: ignore[arg-type]
    assert StackConfig.from_context(Node({"github_owner": "o", "database": "RDS"})).database == "rds"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="database='mysql' must be one of aurora, rds"):
        StackConfig.from_context(Node({"github_owner": "o", "database": "mysql"}))  # type: ignore[arg-type]


def test_no_rotation_function_the_master_password_is_rds_managed(any_app: Synthesized) -> None:
    assert not any_app.resources("AWS::SecretsManager::RotationSchedule")
    assert not any_app.resources("AWS::Serverless::Application")
    assert not any_app.resources("AWS::SecretsManager::SecretTargetAttachment")


def test_database_name_is_unique_per_stack_and_its_logs_expire(any_app: Synthesized) -> None:
    # A failed first deploy leaves the deletion-protected database behind; a fixed identifier made the next
    # stack collide with it. The identifier ends in the stack id's first UUID group instead.
    logical_id, database = _database(any_app)
    aurora = database["Type"] == "AWS::RDS::DBCluster"
    identifier = database["Properties"]["DBClusterIdentifier" if aurora else "DBInstanceIdentifier"]
    prefix = any_app.stack.config.resource_prefix
    suffix = constants.DB_CLUSTER_SUFFIX if aurora else constants.DB_INSTANCE_SUFFIX
    assert identifier == {"Fn::Join": ["", [f"{prefix}-{suffix}-", STACK_UUID_HEAD]]}
    assert 2 * constants.NAME_PART_MAX_LENGTH + 1 + len(f"-{suffix}-") + 8 <= 63
    # RDS exports into /aws/rds/<cluster|instance>/<identifier>/<log>: that group is ours (retention,
    # deleted with the stack), made before the database so RDS never creates it with infinite retention
    kind = "cluster" if aurora else "instance"
    groups = {
        k: g
        for k, g in any_app.resources("AWS::Logs::LogGroup").items()
        if "/aws/rds/" in json.dumps(g["Properties"].get("LogGroupName"))
    }
    assert len(groups) == len(constants.DB_LOG_EXPORTS)
    for (group_id, group), export in zip(sorted(groups.items()), constants.DB_LOG_EXPORTS, strict=True):
        assert group["Properties"]["LogGroupName"] == {
            "Fn::Join": ["", [f"/aws/rds/{kind}/{prefix}-{suffix}-", STACK_UUID_HEAD, f"/{export}"]]
        }
        assert group["Properties"]["RetentionInDays"] == 30 and group["DeletionPolicy"] == "Delete"
        assert group_id in database["DependsOn"], logical_id


def test_database_accepts_connections_only_from_the_function_security_group(any_app: Synthesized) -> None:
    _, database = _database(any_app)
    key = "VpcSecurityGroupIds" if database["Type"] == "AWS::RDS::DBCluster" else "VPCSecurityGroups"
    (db_group,) = database["Properties"][key]
    db_group_id = db_group["Fn::GetAtt"][0]
    ingress = [
        rule["Properties"]
        for rule in any_app.resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": [db_group_id, "GroupId"]}
    ]
    (function_group,) = [
        k for k in any_app.resources("AWS::EC2::SecurityGroup") if "FunctionSecurityGroup" in k
    ]
    assert [rule["SourceSecurityGroupId"]["Fn::GetAtt"][0] for rule in ingress] == [function_group]
    assert (
        "SecurityGroupIngress" not in any_app.resources("AWS::EC2::SecurityGroup")[db_group_id]["Properties"]
    )


def test_the_api_logs_in_as_its_own_user_with_iam_and_never_reads_the_master_secret(
    any_app: Synthesized,
) -> None:
    db_id, database = _database(any_app)
    aurora = database["Type"] == "AWS::RDS::DBCluster"
    _, api = _function(any_app, constants.API_FUNCTION)
    env = api["Environment"]["Variables"]
    assert env["ORCH_DATABASE_IAM_USER"] == constants.DB_IAM_USER
    assert env["ORCH_DATABASE_WAKE_TIMEOUT_S"] == str(constants.DB_WAKE_TIMEOUT_SECONDS)
    assert constants.DB_WAKE_TIMEOUT_SECONDS < constants.API_TIMEOUT_SECONDS
    assert env["ORCH_DATABASE_IDLE_SESSION_S"] == str(constants.DB_IDLE_SESSION_SECONDS)  # lets Aurora pause
    assert "ORCH_DATABASE_SECRET_REF" not in env
    statements = _statements(any_app, api["Role"])
    connects = [s for s in statements if "rds-db:connect" in json.dumps(s["Action"])]
    (connect,) = connects
    assert connect["Action"] == "rds-db:connect"
    resource = json.dumps(connect["Resource"])
    resource_id = "DBClusterResourceId" if aurora else "DbiResourceId"
    assert json.dumps({"Fn::GetAtt": [db_id, resource_id]}) in resource
    assert resource.endswith(f'"/{constants.DB_IAM_USER}"]]}}') or f"/{constants.DB_IAM_USER}" in resource
    assert "*" not in resource
    assert "MasterUserSecret" not in json.dumps(statements)


def test_only_the_deploy_hook_reads_the_master_secret_and_it_creates_the_api_login(
    any_app: Synthesized,
) -> None:
    db_id, _ = _database(any_app)
    master = {"Fn::GetAtt": [db_id, "MasterUserSecret.SecretArn"]}
    readers = []
    for logical_id, function in any_app.resources("AWS::Lambda::Function").items():
        role = function["Properties"]["Role"]
        if not isinstance(role, dict) or "Fn::GetAtt" not in role:
            continue
        if json.dumps(master) in json.dumps(_statements(any_app, role)):
            readers.append(logical_id)
    hook_id, hook = _function(any_app, constants.DEPLOY_HOOK_FUNCTION)
    assert readers == [hook_id]
    env = hook["Environment"]["Variables"]
    assert env["ORCH_DATABASE_SECRET_REF"] == {"Fn::Join": ["", ["secret://", master]]}
    assert env["ORCH_DATABASE_APP_USER"] == constants.DB_IAM_USER
