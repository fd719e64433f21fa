"""The cloud rehearsal's IAM enforcement (tests/cloud/iam.py): evaluator, call mapping, in-process guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.cloud import iam
from tests.cloud.iam import AuthRequest, Env, UnmappedOperation, authorization_requests, evaluate

REGION = "us-east-1"
ACCOUNT = "123456789012"
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/RehearsalRole/function"
ENV = Env(region=REGION, account=ACCOUNT)


def allow(
    action: Any, resource: Any, condition: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Action": action, "Resource": resource, **extra}
    if condition:
        statement["Condition"] = condition
    return statement


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


# ============================================================================================
# evaluator
# ============================================================================================


def test_default_deny_names_action_and_resource() -> None:
    decision = evaluate([], "sqs:SendMessage", queue_arn("q"))
    assert not decision.allowed
    assert decision.reason == f"no statement allows sqs:SendMessage on {queue_arn('q')}"


def test_allow_names_the_statement() -> None:
    decision = evaluate(
        [allow("sqs:SendMessage", queue_arn("q"), Sid="Publish")], "sqs:SendMessage", queue_arn("q")
    )
    assert decision.allowed
    assert "statement #0 (Publish)" in decision.reason


def test_actions_are_case_insensitive_with_wildcards() -> None:
    statements = [allow(["SQS:send*", "dynamodb:?etItem"], "*")]
    assert evaluate(statements, "sqs:SendMessage", queue_arn("q")).allowed
    assert evaluate(statements, "dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/t").allowed
    assert not evaluate(statements, "dynamodb:BatchGetItem", "arn:aws:dynamodb:us-east-1:1:table/t").allowed
    assert not evaluate(statements, "sqs:ReceiveMessage", queue_arn("q")).allowed


def test_resources_are_case_sensitive_with_wildcards() -> None:
    statements = [
        allow(
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/token-??????",
        )
    ]
    base = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
    assert evaluate(statements, "secretsmanager:GetSecretValue", base + "app/token-AbCdEf").allowed
    assert not evaluate(statements, "secretsmanager:GetSecretValue", base + "app/token-AbCdE").allowed
    assert not evaluate(statements, "secretsmanager:GetSecretValue", base + "app/token-extra-AbCdEf").allowed
    assert not evaluate(statements, "secretsmanager:GetSecretValue", base + "APP/token-AbCdEf").allowed


def test_arn_wildcard_does_not_cross_the_region_or_account_segment() -> None:
    statements = [allow("sqs:SendMessage", "arn:aws:sqs:*:123456789012:q")]
    assert evaluate(statements, "sqs:SendMessage", "arn:aws:sqs:eu-west-1:123456789012:q").allowed
    assert not evaluate(statements, "sqs:SendMessage", "arn:aws:sqs:eu-west-1:999:123456789012:q").allowed
    # in the resource part a wildcard does span ":" and "/" (log streams under a log group)
    logs = [allow("logs:PutLogEvents", "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f:*")]
    assert evaluate(
        logs, "logs:PutLogEvents", "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f:log-stream:2024/x"
    ).allowed


def test_explicit_deny_wins_over_any_allow() -> None:
    statements = [
        allow("sqs:*", "*"),
        {"Effect": "Deny", "Action": "sqs:SendMessage", "Resource": queue_arn("po-inbox"), "Sid": "NoInbox"},
    ]
    decision = evaluate(statements, "sqs:SendMessage", queue_arn("po-inbox"))
    assert not decision.allowed and decision.explicit_deny
    assert "explicitly denies" in decision.reason and "NoInbox" in decision.reason
    assert evaluate(statements, "sqs:SendMessage", queue_arn("other")).allowed


def test_not_action_and_not_resource() -> None:
    statements = [{"Effect": "Allow", "NotAction": "sqs:Delete*", "NotResource": queue_arn("secret-q")}]
    assert evaluate(statements, "sqs:SendMessage", queue_arn("q")).allowed
    assert not evaluate(statements, "sqs:DeleteMessage", queue_arn("q")).allowed
    assert not evaluate(statements, "sqs:SendMessage", queue_arn("secret-q")).allowed


def test_string_and_arn_conditions() -> None:
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/workers"
    statements = [allow("ecs:RunTask", "*", {"ArnEquals": {"ecs:cluster": cluster}})]
    assert evaluate(statements, "ecs:RunTask", "td", {"ecs:cluster": cluster}).allowed
    assert not evaluate(statements, "ecs:RunTask", "td", {"ecs:cluster": cluster + "-other"}).allowed
    assert not evaluate(statements, "ecs:RunTask", "td", {}).allowed, (
        "a missing key makes the condition false"
    )

    like = [allow("ecs:RunTask", "*", {"ArnLike": {"ecs:cluster": "arn:aws:ecs:*:*:cluster/work*"}})]
    assert evaluate(like, "ecs:RunTask", "td", {"ecs:cluster": cluster}).allowed

    passed = [
        allow(
            "iam:PassRole", "*", {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com", "x"]}}
        )
    ]
    assert evaluate(passed, "iam:PassRole", "r", {"iam:PassedToService": "ecs-tasks.amazonaws.com"}).allowed
    assert not evaluate(passed, "iam:PassRole", "r", {"iam:PassedToService": "lambda.amazonaws.com"}).allowed
    assert evaluate(
        passed, "iam:PassRole", "r", {"IAM:PassedToService": "ecs-tasks.amazonaws.com"}
    ).allowed, "condition keys are case-insensitive"

    prefix = [allow("s3:ListBucket", "*", {"StringLike": {"s3:prefix": ["sessions/*"]}})]
    assert evaluate(prefix, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "sessions/a"}).allowed
    assert not evaluate(prefix, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "po/a"}).allowed


def test_negated_operators_hold_when_the_key_is_missing() -> None:
    statements = [
        allow("s3:PutObject", "*", {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}})
    ]
    assert evaluate(statements, "s3:PutObject", "arn:aws:s3:::b/k", {}).allowed
    assert not evaluate(
        statements, "s3:PutObject", "arn:aws:s3:::b/k", {"s3:x-amz-server-side-encryption": "aws:kms"}
    ).allowed
    assert evaluate(
        statements, "s3:PutObject", "arn:aws:s3:::b/k", {"s3:x-amz-server-side-encryption": "AES256"}
    ).allowed


def test_if_exists_and_bool_and_null() -> None:
    statements = [allow("ecs:RunTask", "*", {"BoolIfExists": {"ecs:enable-execute-command": "false"}})]
    assert evaluate(statements, "ecs:RunTask", "td", {}).allowed
    assert evaluate(statements, "ecs:RunTask", "td", {"ecs:enable-execute-command": "false"}).allowed
    assert not evaluate(statements, "ecs:RunTask", "td", {"ecs:enable-execute-command": "true"}).allowed

    strict = [allow("ecs:RunTask", "*", {"Bool": {"ecs:enable-execute-command": "false"}})]
    assert not evaluate(strict, "ecs:RunTask", "td", {}).allowed

    null = [allow("ecs:RunTask", "*", {"Null": {"aws:RequestTag/owner": "false"}})]
    assert evaluate(null, "ecs:RunTask", "td", {"aws:RequestTag/owner": "me"}).allowed
    assert not evaluate(null, "ecs:RunTask", "td", {}).allowed


def test_set_operators() -> None:
    any_value = [allow("ecs:TagResource", "*", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}})]
    all_values = [allow("ecs:TagResource", "*", {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}})]
    assert evaluate(any_value, "ecs:TagResource", "t", {"aws:TagKeys": ["a", "z"]}).allowed
    assert not evaluate(any_value, "ecs:TagResource", "t", {"aws:TagKeys": ["z"]}).allowed
    assert not evaluate(any_value, "ecs:TagResource", "t", {}).allowed
    assert not evaluate(all_values, "ecs:TagResource", "t", {"aws:TagKeys": ["a", "z"]}).allowed
    assert evaluate(all_values, "ecs:TagResource", "t", {"aws:TagKeys": ["a", "b"]}).allowed
    assert evaluate(all_values, "ecs:TagResource", "t", {}).allowed, "ForAllValues over no values is true"


def test_multiple_conditions_are_anded() -> None:
    statements = [
        allow(
            "ecs:TagResource", "*", {"StringEquals": {"ecs:CreateAction": "RunTask", "aws:RequestTag/a": "b"}}
        )
    ]
    assert evaluate(
        statements, "ecs:TagResource", "t", {"ecs:CreateAction": "RunTask", "aws:RequestTag/a": "b"}
    ).allowed
    assert not evaluate(statements, "ecs:TagResource", "t", {"ecs:CreateAction": "RunTask"}).allowed


def test_malformed_statements_fail_loudly() -> None:
    with pytest.raises(iam.PolicyError):
        evaluate([{"Effect": "Allow", "Resource": "*"}], "sqs:SendMessage", "x")
    with pytest.raises(iam.PolicyError):
        evaluate([{"Effect": "allow", "Action": "*", "Resource": "*"}], "sqs:SendMessage", "x")
    with pytest.raises(iam.PolicyError):
        evaluate([allow("*", "*", {"DateGreaterThan": {"aws:CurrentTime": "2020"}})], "sqs:SendMessage", "x")


# ============================================================================================
# mapping
# ============================================================================================


def one(service: str, operation: str, params: dict[str, Any], env: Env = ENV) -> AuthRequest:
    requests = authorization_requests(service, operation, params, env)
    assert len(requests) == 1, requests
    return requests[0]


def test_sqs_queue_arn_from_url_or_name() -> None:
    moto_url = f"http://127.0.0.1:5000/{ACCOUNT}/orch-po-inbox"
    real_url = "https://sqs.eu-west-1.amazonaws.com/210987654321/orch-po-inbox"
    assert one("sqs", "SendMessage", {"QueueUrl": moto_url, "MessageBody": "x"}) == AuthRequest(
        "sqs:SendMessage", queue_arn("orch-po-inbox"), {"aws:RequestedRegion": REGION}
    )
    assert one("sqs", "SendMessageBatch", {"QueueUrl": real_url}).resource == (
        "arn:aws:sqs:eu-west-1:210987654321:orch-po-inbox"
    )
    assert one("sqs", "GetQueueUrl", {"QueueName": "orch-x"}).resource == queue_arn("orch-x")
    assert one("sqs", "GetQueueUrl", {"QueueName": "x", "QueueOwnerAWSAccountId": "555"}).resource == (
        f"arn:aws:sqs:{REGION}:555:x"
    )
    for operation, action in [
        ("ReceiveMessage", "sqs:ReceiveMessage"),
        ("DeleteMessageBatch", "sqs:DeleteMessage"),
        ("ChangeMessageVisibility", "sqs:ChangeMessageVisibility"),
        ("GetQueueAttributes", "sqs:GetQueueAttributes"),
    ]:
        assert one("sqs", operation, {"QueueUrl": moto_url}).action == action
    created = authorization_requests("sqs", "CreateQueue", {"QueueName": "q", "tags": {"team": "a"}}, ENV)
    assert [r.action for r in created] == ["sqs:CreateQueue", "sqs:TagQueue"]
    assert created[1].context["aws:TagKeys"] == ["team"]


def test_dynamodb_tables_indexes_and_batches() -> None:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/checkpoints"
    assert one("dynamodb", "PutItem", {"TableName": "checkpoints"}).resource == table
    assert one("dynamodb", "GetItem", {"TableName": table}).resource == table, "a table ARN is taken as is"
    assert (
        one("dynamodb", "Query", {"TableName": "checkpoints", "IndexName": "gsi1"}).resource
        == table + "/index/gsi1"
    )
    batch = authorization_requests("dynamodb", "BatchWriteItem", {"RequestItems": {"a": [], "b": []}}, ENV)
    assert [(r.action, r.resource.rsplit("/", 1)[1]) for r in batch] == [
        ("dynamodb:BatchWriteItem", "a"),
        ("dynamodb:BatchWriteItem", "b"),
    ]
    get = authorization_requests("dynamodb", "BatchGetItem", {"RequestItems": {"a": {"Keys": []}}}, ENV)
    assert [r.action for r in get] == ["dynamodb:BatchGetItem"]
    transact = authorization_requests(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "a"}},
                {"ConditionCheck": {"TableName": "b"}},
                {"Put": {"TableName": "a"}},
            ]
        },
        ENV,
    )
    assert [r.action for r in transact] == ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]


def test_s3_operation_names_become_iam_actions() -> None:
    obj = "arn:aws:s3:::bkt/sessions/a.tar.gz"
    cases = {
        "GetObject": "s3:GetObject",
        "HeadObject": "s3:GetObject",
        "DeleteObject": "s3:DeleteObject",
        "CreateMultipartUpload": "s3:PutObject",
        "UploadPart": "s3:PutObject",
        "CompleteMultipartUpload": "s3:PutObject",
        "AbortMultipartUpload": "s3:AbortMultipartUpload",
    }
    for operation, action in cases.items():
        request = one("s3", operation, {"Bucket": "bkt", "Key": "sessions/a.tar.gz"})
        assert (request.action, request.resource) == (action, obj), operation
    assert (
        one("s3", "GetObject", {"Bucket": "bkt", "Key": "k", "VersionId": "v"}).action
        == "s3:GetObjectVersion"
    )
    listing = one("s3", "ListObjectsV2", {"Bucket": "bkt", "Prefix": "sessions/"})
    assert (listing.action, listing.resource, listing.context["s3:prefix"]) == (
        "s3:ListBucket",
        "arn:aws:s3:::bkt",
        "sessions/",
    )
    assert (
        one("s3", "GetBucketLifecycleConfiguration", {"Bucket": "bkt"}).action
        == "s3:GetLifecycleConfiguration"
    )
    assert (
        one("s3", "PutBucketLifecycleConfiguration", {"Bucket": "bkt"}).action
        == "s3:PutLifecycleConfiguration"
    )
    deleted = authorization_requests(
        "s3", "DeleteObjects", {"Bucket": "bkt", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b"}]}}, ENV
    )
    assert [(r.action, r.resource) for r in deleted] == [
        ("s3:DeleteObject", "arn:aws:s3:::bkt/a"),
        ("s3:DeleteObject", "arn:aws:s3:::bkt/b"),
    ]


def test_s3_put_with_tagging_needs_put_object_tagging() -> None:
    plain = authorization_requests(
        "s3", "PutObject", {"Bucket": "b", "Key": "k", "ServerSideEncryption": "AES256"}, ENV
    )
    assert [r.action for r in plain] == ["s3:PutObject"]
    assert plain[0].context["s3:x-amz-server-side-encryption"] == "AES256"
    tagged = authorization_requests(
        "s3", "PutObject", {"Bucket": "b", "Key": "k", "Tagging": "ttl-days=1"}, ENV
    )
    assert [r.action for r in tagged] == ["s3:PutObject", "s3:PutObjectTagging"]


def test_secrets_manager_resolves_names_to_real_arns() -> None:
    real = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:orch/github/token-AbCdEf"
    env = Env(
        region=REGION,
        account=ACCOUNT,
        secret_arn=lambda s: real if s in ("orch/github/token", real) else None,
    )
    got = one("secretsmanager", "GetSecretValue", {"SecretId": "orch/github/token"}, env)
    assert (got.action, got.resource, got.note) == ("secretsmanager:GetSecretValue", real, "")
    assert one("secretsmanager", "DescribeSecret", {"SecretId": real}, env).resource == real

    missing = one("secretsmanager", "DescribeSecret", {"SecretId": "orch/po/chat-1"}, env)
    assert missing.resource == f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:orch/po/chat-1"
    assert "partial ARN" in missing.note

    created = one("secretsmanager", "CreateSecret", {"Name": "orch/po/chat-1", "SecretString": "x"}, env)
    assert created.resource.endswith(":secret:orch/po/chat-1-XXXXXX") and "placeholder" in created.note
    pattern = [
        allow(
            "secretsmanager:CreateSecret",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:orch/po/chat-1-??????",
        )
    ]
    assert evaluate(pattern, created.action, created.resource).allowed


def test_ecs_run_task_needs_pass_role_and_tag_resource() -> None:
    td_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/worker:3"
    roles = {
        "taskDefinitionArn": td_arn,
        "taskRoleArn": "arn:aws:iam::1:role/task",
        "executionRoleArn": "arn:aws:iam::1:role/exec",
    }
    env = Env(
        region=REGION,
        account=ACCOUNT,
        task_definition=lambda value: roles if value in ("worker", td_arn) else None,
    )
    requests = authorization_requests(
        "ecs",
        "RunTask",
        {"cluster": "workers", "taskDefinition": "worker", "tags": [{"key": "k", "value": "v"}]},
        env,
    )
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/workers"
    assert [(r.action, r.resource) for r in requests] == [
        ("ecs:RunTask", td_arn),
        ("ecs:TagResource", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/workers/{iam.RUN_TASK_TAG_PLACEHOLDER}"),
        ("iam:PassRole", "arn:aws:iam::1:role/task"),
        ("iam:PassRole", "arn:aws:iam::1:role/exec"),
    ]
    assert requests[0].context["ecs:cluster"] == cluster
    assert requests[1].context["ecs:CreateAction"] == "RunTask"
    assert requests[2].context["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    untagged = authorization_requests("ecs", "RunTask", {"cluster": cluster, "taskDefinition": td_arn}, env)
    assert [r.action for r in untagged] == ["ecs:RunTask", "iam:PassRole", "iam:PassRole"]


def test_ecs_task_operations() -> None:
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/workers"
    stop = one("ecs", "StopTask", {"cluster": "workers", "task": "abc"})
    assert (stop.resource, stop.context["ecs:cluster"]) == (
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/workers/abc",
        cluster,
    )
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/workers/def"
    described = authorization_requests(
        "ecs", "DescribeTasks", {"cluster": cluster, "tasks": ["abc", task]}, ENV
    )
    assert [r.resource for r in described] == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/workers/abc", task]
    listing = one("ecs", "ListTasks", {"cluster": "workers", "startedBy": "x"})
    assert (listing.action, listing.resource, listing.context["ecs:cluster"]) == (
        "ecs:ListTasks",
        "*",
        cluster,
    )
    # so a grant on the cluster's tasks does not cover ListTasks; Resource "*" with ecs:cluster does
    tasks_only = [
        allow(["ecs:ListTasks", "ecs:DescribeTasks"], f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/workers/*")
    ]
    assert not evaluate(tasks_only, listing.action, listing.resource, listing.context).allowed
    assert evaluate(
        [allow("ecs:ListTasks", "*", {"ArnEquals": {"ecs:cluster": cluster}})],
        listing.action,
        listing.resource,
        listing.context,
    ).allowed


def test_other_services() -> None:
    metric = one("cloudwatch", "PutMetricData", {"Namespace": "Orchestrator", "MetricData": []})
    assert (metric.resource, metric.context["cloudwatch:namespace"]) == ("*", "Orchestrator")
    put = one("events", "PutEvents", {"Entries": [{"Source": "orch", "DetailType": "d", "Detail": "{}"}]})
    assert (put.resource, put.context["events:source"]) == (
        f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
        "orch",
    )
    assert authorization_requests("sts", "GetCallerIdentity", {}, ENV) == []
    assert one("lambda", "Invoke", {"FunctionName": "f", "Qualifier": "live"}).resource == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f:live"
    )
    stream = one("logs", "PutLogEvents", {"logGroupName": "/aws/lambda/f", "logStreamName": "s"})
    assert stream.resource == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f:log-stream:s"


def test_unknown_operations_raise() -> None:
    with pytest.raises(UnmappedOperation, match="sqs:StartMessageMoveTask"):
        authorization_requests("sqs", "StartMessageMoveTask", {}, ENV)
    with pytest.raises(UnmappedOperation, match="kinesis:PutRecord"):
        authorization_requests("kinesis", "PutRecord", {}, ENV)
    with pytest.raises(UnmappedOperation, match="QueueUrl"):
        authorization_requests("sqs", "SendMessage", {"QueueUrl": "http://localhost/just-a-name"}, ENV)


# ============================================================================================
# guard, against moto
# ============================================================================================


@pytest.fixture
def record(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "iam.jsonl"
    yield path
    iam.uninstall_guard()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


def test_guard_lets_allowed_calls_through_and_stops_the_others(aws: None, record: Path) -> None:
    sqs = boto3.client("sqs", region_name=REGION)  # made before the guard: still covered
    allowed_url = sqs.create_queue(QueueName="orch-worker-commands")["QueueUrl"]
    other_url = sqs.create_queue(QueueName="orch-po-inbox")["QueueUrl"]
    iam.install_guard(
        [allow(["sqs:SendMessage", "sqs:GetQueueUrl"], queue_arn("orch-worker-commands"))],
        PRINCIPAL,
        iam.env_from_environ(),
        record,
    )
    assert sqs.get_queue_url(QueueName="orch-worker-commands")["QueueUrl"] == allowed_url
    sqs.send_message(QueueUrl=allowed_url, MessageBody="hello")

    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=other_url, MessageBody="nope")
    error = caught.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == (
        f"User: {PRINCIPAL} is not authorized to perform: sqs:SendMessage on resource: "
        f"{queue_arn('orch-po-inbox')} because no identity-based policy allows the sqs:SendMessage action"
    )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    iam.uninstall_guard()
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=allowed_url).get("Messages", [])] == ["hello"]
    assert "Messages" not in sqs.receive_message(QueueUrl=other_url), "the denied message was never sent"

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(e["operation"], e["action"], e["allowed"]) for e in lines] == [
        ("GetQueueUrl", "sqs:GetQueueUrl", True),
        ("SendMessage", "sqs:SendMessage", True),
        ("SendMessage", "sqs:SendMessage", False),
    ]
    assert lines[2]["resource"] == queue_arn("orch-po-inbox")
    assert lines[2]["reason"] == f"no statement allows sqs:SendMessage on {queue_arn('orch-po-inbox')}"
    assert set(lines[0]) >= {"service", "operation", "action", "resource", "allowed", "reason"}
    assert iam.denials(record) == [lines[2]]


def test_the_code_base_queue_adapter_under_the_guard(aws: None, record: Path) -> None:
    from shared.queues.sqs import SqsQueue

    sqs = boto3.client("sqs", region_name=REGION)
    for name in ("orch-worker-commands", "orch-po-inbox"):
        sqs.create_queue(QueueName=name)
    iam.install_guard(
        [
            allow(
                ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
                queue_arn("orch-worker-commands"),
            )
        ],
        PRINCIPAL,
        iam.env_from_environ(),
        record,
    )
    queue = SqsQueue("orch", client=boto3.client("sqs", region_name=REGION))
    queue.publish_raw("worker:commands", '{"x": 1}')
    with pytest.raises(ClientError, match="AccessDenied"):
        queue.publish_raw("po:inbox", '{"x": 1}')
    # the adapter looks the URL up first: GetQueueUrl is what AWS refuses
    assert [(e["action"], e["resource"]) for e in iam.denials(record)] == [
        ("sqs:GetQueueUrl", queue_arn("orch-po-inbox"))
    ]


def _ecs_world() -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="workers", Description="workers", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", region_name=REGION)
    cluster = ecs.create_cluster(clusterName="workers")["cluster"]["clusterArn"]
    td = ecs.register_task_definition(
        family="worker",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/WorkerTaskRole",
        executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/WorkerExecutionRole",
        containerDefinitions=[{"name": "worker", "image": "w:1", "memory": 512, "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    return {"subnet": subnet, "group": group, "cluster": cluster, "td": td}


def _worker_manager_statements(world: dict[str, str], pass_roles: list[str]) -> list[dict[str, Any]]:
    """As the template grants the worker manager (resolved)."""
    tasks = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/workers/*"
    return [
        allow("ecs:RunTask", world["td"], {"ArnEquals": {"ecs:cluster": world["cluster"]}}),
        allow("ecs:TagResource", tasks, {"StringEquals": {"ecs:CreateAction": "RunTask"}}),
        allow(
            "iam:PassRole", pass_roles, {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
        ),
        allow(["ecs:DescribeTasks", "ecs:StopTask"], tasks, {"ArnEquals": {"ecs:cluster": world["cluster"]}}),
    ]


def _runtime(world: dict[str, str]) -> Any:
    from shared.workers.fargate import FargateRuntime

    return FargateRuntime(
        cluster="workers",
        task_definition=world["td"],
        container_name="worker",
        subnets=[world["subnet"]],
        security_groups=[world["group"]],
        client=boto3.client("ecs", region_name=REGION),
    )


def _launch() -> Any:
    from shared.workers.runtime import WorkerLaunch

    return WorkerLaunch(
        worker_id="0b6f2c1e-9d3a-4e5b-8c7f-1a2d3e4f5a6b",
        task_id=None,
        env={"ORCH_API_URL": "https://api.example.test"},
    )


def test_run_task_with_both_pass_roles_starts_and_stops(aws: None, record: Path) -> None:
    world = _ecs_world()
    roles = [
        f"arn:aws:iam::{ACCOUNT}:role/WorkerTaskRole",
        f"arn:aws:iam::{ACCOUNT}:role/WorkerExecutionRole",
    ]
    iam.install_guard(_worker_manager_statements(world, roles), PRINCIPAL, iam.env_from_environ(), record)
    runtime = _runtime(world)
    handle = runtime.start(_launch())
    assert runtime.status(handle).state
    runtime.stop(handle, "done")
    assert iam.denials(record) == []
    actions = [e["action"] for e in iam.read_record(record)]
    assert actions == [
        "ecs:RunTask",
        "ecs:TagResource",
        "iam:PassRole",
        "iam:PassRole",
        "ecs:DescribeTasks",
        "ecs:StopTask",
    ]


def test_run_task_without_pass_role_on_the_task_role_is_denied(aws: None, record: Path) -> None:
    from shared.workers.fargate import RuntimeStartError

    world = _ecs_world()
    statements = _worker_manager_statements(world, [f"arn:aws:iam::{ACCOUNT}:role/WorkerExecutionRole"])
    iam.install_guard(statements, PRINCIPAL, iam.env_from_environ(), record)
    with pytest.raises(
        RuntimeStartError, match=r"AccessDeniedException: .*iam:PassRole on resource: .*WorkerTaskRole"
    ):
        _runtime(world).start(_launch())
    iam.uninstall_guard()
    assert boto3.client("ecs", region_name=REGION).list_tasks(cluster="workers")["taskArns"] == [], (
        "nothing started"
    )
    assert [(e["action"], e["resource"]) for e in iam.denials(record)] == [
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/WorkerTaskRole")
    ]


def test_secret_lookups_are_unguarded_and_real_arns_are_checked(aws: None, record: Path) -> None:
    from shared.secrets.aws import AwsSecrets

    sm = boto3.client("secretsmanager", region_name=REGION)
    token_arn = sm.create_secret(Name="orch/github/token", SecretString="t")["ARN"]
    base = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
    statements = [
        allow(
            ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            base + "orch/github/token-??????",
        ),
        allow(
            [
                "secretsmanager:CreateSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:GetSecretValue",
            ],
            base + "orch/po/*",
        ),
    ]
    iam.install_guard(statements, PRINCIPAL, iam.env_from_environ(), record)
    secrets = AwsSecrets("orch", client=boto3.client("secretsmanager", region_name=REGION))
    assert secrets.get("secret://github/token") == "t"
    secrets.put("secret://po/chat-1", "v1")  # CreateSecret of a new name: placeholder suffix, matches po/*
    secrets.put("secret://po/chat-1", "v2")  # exists now: CreateSecret fails, DescribeSecret + PutSecretValue
    assert secrets.get("secret://po/chat-1") == "v2"
    with pytest.raises(Exception, match="AccessDenied"):
        secrets.put("secret://github/token", "stolen")
    entries = iam.read_record(record)
    assert entries[0]["resource"] == token_arn
    assert {e["operation"] for e in entries} >= {
        "GetSecretValue",
        "CreateSecret",
        "DescribeSecret",
        "PutSecretValue",
    }
    assert [(e["action"], e["allowed"]) for e in iam.denials(record)] == [
        ("secretsmanager:CreateSecret", False)
    ]


def test_missing_object_is_403_without_list_bucket(aws: None, record: Path) -> None:
    from shared.sessions.s3 import S3SessionStore

    boto3.client("s3", region_name=REGION).create_bucket(Bucket="sessions-bkt")
    objects = allow(
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "arn:aws:s3:::sessions-bkt/sessions/*"
    )
    iam.install_guard([objects], PRINCIPAL, iam.env_from_environ(), record)
    store = S3SessionStore("sessions-bkt", client=boto3.client("s3", region_name=REGION))
    with pytest.raises(ClientError, match="AccessDenied"):
        store.load("absent")  # S3 hides "no such key" from a caller that may not list the bucket
    iam.install_guard(
        [objects, allow("s3:ListBucket", "arn:aws:s3:::sessions-bkt")],
        PRINCIPAL,
        iam.env_from_environ(),
        record,
    )
    assert store.load("absent") is None


def test_checkpoint_offload_needs_tagging_and_lifecycle_grants(aws: None, record: Path) -> None:
    """DynamoDBSaver with S3 offload and a TTL: a 600 KB checkpoint goes to S3 with a ttl tag."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph_checkpoint_aws import DynamoDBSaver

    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="checkpoints",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="checkpoint-offload")
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/checkpoints"
    dynamo = allow(
        [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:DeleteItem",
        ],
        table,
    )
    objects = allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "arn:aws:s3:::checkpoint-offload/*")
    iam.install_guard([dynamo, objects], PRINCIPAL, iam.env_from_environ(), record)
    saver = DynamoDBSaver(
        table_name="checkpoints",
        region_name=REGION,
        ttl_seconds=3600,
        s3_offload_config={"bucket_name": "checkpoint-offload"},
    )
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"transcript": "x" * 600_000}
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    with pytest.raises(Exception, match=r"AccessDenied|PutObjectTagging"):
        saver.put(config, checkpoint, {}, {})
    denied = {e["action"] for e in iam.denials(record)}
    # the lifecycle rule failure is swallowed by the saver (a warning): only the record shows it
    assert denied == {"s3:GetLifecycleConfiguration", "s3:PutObjectTagging"}

    record.unlink()
    lifecycle = allow(
        ["s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"], "arn:aws:s3:::checkpoint-offload"
    )
    tagging = allow("s3:PutObjectTagging", "arn:aws:s3:::checkpoint-offload/*")
    iam.install_guard([dynamo, objects, lifecycle, tagging], PRINCIPAL, iam.env_from_environ(), record)
    saver = DynamoDBSaver(
        table_name="checkpoints",
        region_name=REGION,
        ttl_seconds=3600,
        s3_offload_config={"bucket_name": "checkpoint-offload"},
    )
    saved = saver.put(config, checkpoint, {}, {})
    loaded = saver.get_tuple(saved)
    assert loaded is not None and loaded.checkpoint["channel_values"]["transcript"] == "x" * 600_000
    assert iam.denials(record) == []
    assert {e["action"] for e in iam.read_record(record)} >= {
        "s3:PutObject",
        "s3:PutObjectTagging",
        "dynamodb:PutItem",
    }


def test_unmapped_calls_fail_and_are_recorded(aws: None, record: Path) -> None:
    iam.install_guard([allow("*", "*")], PRINCIPAL, iam.env_from_environ(), record)
    with pytest.raises(UnmappedOperation, match="ec2:DescribeVpcs"):
        boto3.client("ec2", region_name=REGION).describe_vpcs()
    assert iam.denials(record)[0]["reason"].startswith(
        "the IAM rehearsal has no mapping for ec2:DescribeVpcs"
    )


def test_install_from_env(aws: None, record: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"principal": PRINCIPAL, "statements": [allow("sqs:GetQueueUrl", "*")]}))
    monkeypatch.setenv(iam.POLICY_ENV, str(policy))
    monkeypatch.setenv(iam.RECORD_ENV, str(record))
    monkeypatch.setenv("REHEARSAL_ACCOUNT_ID", ACCOUNT)
    assert iam.install_guard_from_env()
    sqs = boto3.client("sqs", region_name=REGION)
    with pytest.raises(ClientError):
        sqs.create_queue(QueueName="q")
    assert iam.denials(record)[0]["resource"] == queue_arn("q")
    iam.uninstall_guard()
    monkeypatch.delenv(iam.POLICY_ENV)
    assert not iam.install_guard_from_env()


def test_sts_needs_no_permission(aws: None, record: Path) -> None:
    iam.install_guard([], PRINCIPAL, iam.env_from_environ(), record)
    assert boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    assert iam.read_record(record)[0]["allowed"] is True


# ============================================================================================
# the synthesized template's vocabulary
# ============================================================================================


@pytest.mark.slow
def test_every_action_granted_to_a_function_or_task_role_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra_cdk.app import build_app

    app, stack = build_app(context={"github_owner": "acme"})
    template = app.synth().get_stack_by_name(stack.stack_name).template
    resources = template["Resources"]
    roles = set()
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Function":
            role = props["Role"]["Fn::GetAtt"][0]
            if "CustomResourceProvider" not in role:  # CDK's own providers, not this code base
                roles.add(role)
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            roles.update(props[k]["Fn::GetAtt"][0] for k in ("TaskRoleArn", "ExecutionRoleArn") if k in props)
    assert len(roles) >= 14, roles

    unknown: list[str] = []
    conditions: set[str] = set()
    seen = 0
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        attached = {r["Ref"] for r in resource["Properties"].get("Roles", [])}
        if not attached & roles:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            seen += 1
            for action in iam._as_list(statement.get("Action")) + iam._as_list(statement.get("NotAction")):
                if not iam.is_known_action(action):
                    unknown.append(f"{logical}: {action}")
            for operator, block in statement.get("Condition", {}).items():
                conditions.update(f"{operator} {key}" for key in block)
    assert seen > 40
    assert unknown == [], "actions the rehearsal's mapping does not know: " + ", ".join(unknown)
    # every condition the template uses is one the mapping supplies
    assert conditions <= {
        "ArnEquals ecs:cluster",
        "StringEquals ecs:CreateAction",
        "StringEquals iam:PassedToService",
    }, conditions


def test_server_mode_lookups_use_the_endpoint(record: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the rehearsal: a moto server at AWS_ENDPOINT_URL, the secret's real ARN looked up there."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_REGION", REGION)
        iam._lookup_clients.clear()
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name="orch/service/api-key", SecretString="k")["ARN"]
        iam.install_guard(
            [allow("secretsmanager:GetSecretValue", arn)], PRINCIPAL, iam.env_from_environ(), record
        )
        assert sm.get_secret_value(SecretId="orch/service/api-key")["SecretString"] == "k"
        with pytest.raises(ClientError) as caught:
            sm.describe_secret(SecretId="orch/service/api-key")
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
        assert [(e["action"], e["resource"], e["allowed"]) for e in iam.read_record(record)] == [
            ("secretsmanager:GetSecretValue", arn, True),
            ("secretsmanager:DescribeSecret", arn, False),
        ]
    finally:
        iam.uninstall_guard()
        iam._lookup_clients.clear()
        server.stop()
