"""The agent sessions bucket: private, encrypted, expiring, and reachable by the worker task role only.

Reuses the session-scoped synthesized apps of conftest.py (one synth per variant for the whole run).
"""

from __future__ import annotations

import json
from typing import Any

from infra_cdk import constants
from shared.sessions.factory import DEFAULT_PREFIX, SessionSettings
from tests.infrastructure.conftest import Synthesized

ARCHIVE_ACTIONS = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]


def _sessions_bucket(app: Synthesized) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, b) for k, b in app.resources("AWS::S3::Bucket").items() if k.startswith("WorkersSessions")
    ]
    return found


def _task_definition(app: Synthesized, suffix: str) -> dict[str, Any]:
    family = f"{app.stack.config.resource_prefix}-{suffix}"
    found: list[dict[str, Any]] = [
        r["Properties"]
        for r in app.resources("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["Family"] == family
    ]
    (props,) = found
    return props


def _task_role_statements(app: Synthesized, suffix: str) -> list[dict[str, Any]]:
    role_id = _task_definition(app, suffix)["TaskRoleArn"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in app.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return sorted([action] if isinstance(action, str) else action)


def _mentions(value: Any, logical_id: str) -> bool:
    return f'"{logical_id}"' in json.dumps(value)


def test_sessions_bucket_is_encrypted_private_ssl_only_logged_and_retained(any_app: Synthesized) -> None:
    bucket_id, bucket = _sessions_bucket(any_app)
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "VersioningConfiguration" not in props  # an overwritten session is gone, not kept as a version
    (log_bucket_id,) = [k for k in any_app.resources("AWS::S3::Bucket") if k.startswith("AuditLogs")]
    assert props["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": log_bucket_id},
        "LogFilePrefix": constants.SESSIONS_ACCESS_LOGS_PREFIX,
    }
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in any_app.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    # the bucket policy only refuses plain HTTP: it grants nobody anything
    assert [(s["Effect"], s["Condition"]) for s in policy] == [
        ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    ]


def test_sessions_expire_after_30_days_and_stale_uploads_after_one(any_app: Synthesized) -> None:
    _, bucket = _sessions_bucket(any_app)
    assert bucket["Properties"]["LifecycleConfiguration"]["Rules"] == [
        {
            "Id": "expire-sessions",
            "Status": "Enabled",
            "ExpirationInDays": 30,
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
    assert (constants.SESSION_RETENTION_DAYS, constants.SESSION_ABORT_INCOMPLETE_UPLOAD_DAYS) == (30, 1)


def test_worker_task_role_gets_puts_and_deletes_only_under_the_sessions_prefix(any_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(any_app)
    bucket_arn = {"Fn::GetAtt": [bucket_id, "Arn"]}
    statements = [s for s in _task_role_statements(any_app, "worker") if _mentions(s, bucket_id)]
    assert [(s["Effect"], _actions(s), s["Resource"], s.get("Condition")) for s in statements] == [
        ("Allow", ARCHIVE_ACTIONS, {"Fn::Join": ["", [bucket_arn, "/sessions/*"]]}, None),
        # without ListBucket S3 answers a missing archive (a first session) with 403 instead of 404
        ("Allow", ["s3:ListBucket"], bucket_arn, None),
    ]
    # and no other S3 permission anywhere in the worker's task role
    s3_actions = sorted(
        a for s in _task_role_statements(any_app, "worker") for a in _actions(s) if a.startswith("s3:")
    )
    assert s3_actions == sorted([*ARCHIVE_ACTIONS, "s3:ListBucket"])


def test_worker_container_names_the_bucket_and_prefix_the_session_store_reads(any_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(any_app)
    (container,) = _task_definition(any_app, "worker")["ContainerDefinitions"]
    env = {pair["Name"]: pair["Value"] for pair in container["Environment"]}
    assert env == {"ORCH_SESSION_BUCKET": {"Ref": bucket_id}, "ORCH_SESSION_PREFIX": "sessions/"}
    assert constants.SESSIONS_KEY_PREFIX == DEFAULT_PREFIX
    # what the worker will validate at start, with the bucket name CloudFormation gives the Ref
    settings = SessionSettings.model_validate(
        {
            "session_bucket": "codegen-orch-dev-workerssessionsbucket-abc123",
            "session_prefix": env["ORCH_SESSION_PREFIX"],
        }
    )
    assert settings.session_prefix == "sessions/"


def test_no_role_but_the_worker_task_role_can_touch_the_sessions_bucket(any_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(any_app)
    worker_role = _task_definition(any_app, "worker")["TaskRoleArn"]["Fn::GetAtt"][0]
    ansible_role = _task_definition(any_app, "ansible-runner")["TaskRoleArn"]["Fn::GetAtt"][0]
    granted = {
        role["Ref"]
        for policy in any_app.resources("AWS::IAM::Policy").values()
        if _mentions(policy["Properties"]["PolicyDocument"], bucket_id)
        for role in policy["Properties"]["Roles"]
    }
    assert granted == {worker_role}
    assert ansible_role not in granted
    assert not [s for s in _task_role_statements(any_app, "ansible-runner") if _mentions(s, bucket_id)]
    for logical_id, role in any_app.resources("AWS::IAM::Role").items():
        assert not _mentions(role["Properties"].get("Policies", []), bucket_id), logical_id
    # the functions are not told about it either (only the worker container is)
    for logical_id, function in any_app.resources("AWS::Lambda::Function").items():
        assert not _mentions(function["Properties"].get("Environment", {}), bucket_id), logical_id


def test_operators_find_the_sessions_bucket_in_the_outputs(default_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(default_app)
    assert default_app.template_json["Outputs"]["SessionsBucketName"]["Value"] == {"Ref": bucket_id}


def test_the_one_wildcard_is_acknowledged_by_its_exact_finding(default_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(default_app)
    metadata = (default_app.outdir / f"{default_app.stack.artifact_id}.metadata.json").read_text()
    assert f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/sessions/*]" in metadata
