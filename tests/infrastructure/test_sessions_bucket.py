"""The agent sessions bucket: private, encrypted, expiring, and reachable by the API function's role only
(workers load and save their session through presigned URLs the API signs, issue 20).

Reuses the session-scoped synthesized apps of conftest.py (one synth per variant for the whole run).
"""

from __future__ import annotations

import json
from typing import Any

from infra_cdk import constants
from shared.sessions.factory import DEFAULT_PREFIX, SessionSettings
from tests.infrastructure.conftest import Synthesized


def _sessions_bucket(app: Synthesized) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, b) for k, b in app.resources("AWS::S3::Bucket").items() if k.startswith("WorkersSessions")
    ]
    return found


def _task_definition(app: Synthesized, suffix: str) -> dict[str, Any]:
    return app.task_definition(suffix)


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


def _role_ids_granted(app: Synthesized, bucket_id: str) -> set[str]:
    return {
        role["Ref"]
        for policy in app.resources("AWS::IAM::Policy").values()
        if _mentions(policy["Properties"]["PolicyDocument"], bucket_id)
        for role in policy["Properties"]["Roles"]
    }


def test_no_role_but_the_api_function_s_can_touch_the_sessions_bucket(any_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(any_app)
    (api,) = [
        f["Properties"]
        for f in any_app.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName")
        == f"{any_app.stack.config.resource_prefix}-{constants.API_FUNCTION}"
    ]
    assert _role_ids_granted(any_app, bucket_id) == {api["Role"]["Fn::GetAtt"][0]}
    for suffix in ("worker", "ansible-runner"):
        assert not [s for s in _task_role_statements(any_app, suffix) if _mentions(s, bucket_id)], suffix
    for logical_id, role in any_app.resources("AWS::IAM::Role").items():
        assert not _mentions(role["Properties"].get("Policies", []), bucket_id), logical_id
    # only the API function is told about it (the worker container is not: it asks the API)
    told = [
        logical_id
        for logical_id, function in any_app.resources("AWS::Lambda::Function").items()
        if _mentions(function["Properties"].get("Environment", {}), bucket_id)
    ]
    assert [any_app.resources("AWS::Lambda::Function")[t]["Properties"]["FunctionName"] for t in told] == [
        api["FunctionName"]
    ]
    (container,) = _task_definition(any_app, "worker")["ContainerDefinitions"]
    assert not _mentions(container, bucket_id)
    assert constants.SESSIONS_KEY_PREFIX == DEFAULT_PREFIX
    # what the API will validate at start, with the bucket name CloudFormation gives the Ref
    settings = SessionSettings.model_validate(
        {
            "session_bucket": "codegen-orch-dev-workerssessionsbucket-abc123",
            "session_prefix": api["Environment"]["Variables"]["ORCH_SESSION_PREFIX"],
        }
    )
    assert settings.session_prefix == "sessions/"


def test_operators_find_the_sessions_bucket_in_the_outputs(default_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(default_app)
    assert default_app.template_json["Outputs"]["SessionsBucketName"]["Value"] == {"Ref": bucket_id}


def test_the_one_wildcard_is_acknowledged_by_its_exact_finding(default_app: Synthesized) -> None:
    bucket_id, _ = _sessions_bucket(default_app)
    metadata = (default_app.outdir / f"{default_app.stack.artifact_id}.metadata.json").read_text()
    assert f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/sessions/*]" in metadata
