"""The synthesized stack: what exists, how many, and the properties that keep it safe and cheap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match

from infra_cdk import constants
from infra_cdk.app import build_app
from infra_cdk.layer_assets import NOT_BUILT_WARNING
from shared.contracts import QUEUES
from shared.queues.naming import dlq_name, physical_name
from shared.topology import CONSUMERS, SCHEDULES
from tests.infrastructure.conftest import DEFAULT_CONTEXT, Synthesized, no_layers_context

QUEUE_COUNT = len(QUEUES)
FUNCTION_COUNT = len(constants.FUNCTION_LAYERS)
"""api, deploy-hook, worker-events, scheduler and one per consumer in shared.topology."""
LAYER_COUNT = len({layer for layers in constants.FUNCTION_LAYERS.values() for layer in layers})
EVENT_SOURCE_COUNT = sum(len(spec.queues) for spec in CONSUMERS)
TASK_DEFINITION_COUNT = 2  # the worker and the Ansible runner
DEFAULT_PREFIX = f"{constants.DEFAULT_PREFIX}-{constants.DEFAULT_ENV_NAME}"


def _queues_by_name(app: Synthesized) -> dict[str, tuple[str, dict[str, Any]]]:
    """Physical queue name -> (logical id, properties)."""
    return {
        resource["Properties"]["QueueName"]: (logical_id, resource["Properties"])
        for logical_id, resource in app.resources("AWS::SQS::Queue").items()
    }


# -- counts -----------------------------------------------------------------------------------

EXPECTED_COUNTS: dict[str, int] = {
    "AWS::SQS::Queue": 2 * QUEUE_COUNT,
    "AWS::SQS::QueuePolicy": 2 * QUEUE_COUNT,
    "AWS::RDS::DBCluster": 1,  # Aurora Serverless v2 (tests/infrastructure/test_database.py)
    "AWS::RDS::DBInstance": 1,  # its writer
    # admin key, service key, Telegram bot token, Telegram webhook secret (the database's master secret is
    # RDS-managed: RDS makes and rotates it, no rotation function)
    "AWS::SecretsManager::Secret": 4,
    "AWS::SecretsManager::RotationSchedule": 0,
    "AWS::DynamoDB::Table": 3,  # LangGraph checkpoints, idempotency claims, the work signal (issue 23)
    "AWS::S3::Bucket": 3,  # artifacts, agent sessions, access/flow logs
    "AWS::S3::BucketPolicy": 3,
    "AWS::CloudWatch::Dashboard": 1,
    # issue 23: oldest message (10 queues an alarm), dead letters, stuck tasks, the API's 5xx rate, and the
    # errors of the functions nothing else watches (tests/infrastructure/test_observability.py)
    "AWS::CloudWatch::Alarm": -(-QUEUE_COUNT // 10) + 4,
    "AWS::SNS::Topic": 1,
    "AWS::KMS::Key": 1,
    "AWS::EC2::VPC": 1,
    "AWS::EC2::Subnet": 4,  # public + private, two AZs
    "AWS::EC2::VPCEndpoint": 2,  # S3, DynamoDB (gateway, free); no interface endpoint (test_network.py)
    "AWS::EC2::EgressOnlyInternetGateway": 1,  # IPv6 out of the private subnets
    "AWS::EC2::SecurityGroup": 4,  # functions, Fargate tasks, Ansible runner tasks, database
    "AWS::EC2::FlowLog": 1,
    "AWS::EC2::NatGateway": 0,
    "AWS::EC2::EIP": 0,
    "AWS::SNS::Subscription": 0,
    # ours, plus CDK's providers for the default-security-group cleanup and the deploy trigger
    "AWS::Lambda::Function": FUNCTION_COUNT + 2,
    "AWS::Lambda::LayerVersion": LAYER_COUNT,
    "AWS::Lambda::EventSourceMapping": EVENT_SOURCE_COUNT,
    "AWS::Lambda::Version": 3,  # the deploy hook's (the trigger invokes it) and the two SnapStart functions'
    # the HTTP API's default route and the Telegram webhook route, the two task-stopped rules, one per schedule
    "AWS::Lambda::Permission": 2 + 2 + len(SCHEDULES),
    "AWS::Lambda::EventInvokeConfig": 1,  # the scheduler: no retries, the next tick is the retry
    "Custom::Trigger": 1,
    # a role per function, task + execution role per task definition, the two CDK providers
    "AWS::IAM::Role": FUNCTION_COUNT + 2 * TASK_DEFINITION_COUNT + 2,
    # every role but the worker's task role, which holds nothing (issue 20)
    "AWS::IAM::Policy": FUNCTION_COUNT + 2 * TASK_DEFINITION_COUNT - 1,
    # database export, one per function, the API's access log, one per task definition, the two CDK
    # providers' handlers
    "AWS::Logs::LogGroup": 1 + FUNCTION_COUNT + 1 + TASK_DEFINITION_COUNT + 2,
    "AWS::ApiGatewayV2::Api": 1,
    "AWS::ApiGatewayV2::Stage": 1,
    "AWS::ApiGatewayV2::Route": 2,  # $default -> the API function, POST /telegram/webhook -> the webhook
    "AWS::ApiGatewayV2::Integration": 2,
    "AWS::ApiGatewayV2::Authorizer": 0,
    "AWS::ECS::Cluster": 1,
    "AWS::ECS::TaskDefinition": TASK_DEFINITION_COUNT,
    "AWS::ECS::Service": 0,  # workers are one-off tasks
    "AWS::Events::Rule": 2 + len(SCHEDULES),  # worker and Ansible runner task-stopped rules, one per schedule
    "AWS::Scheduler::Schedule": 0,  # scheduled rules instead (see infra_cdk.constructs.schedules)
}


@pytest.mark.parametrize(("resource_type", "count"), sorted(EXPECTED_COUNTS.items()))
def test_default_stack_has_every_resource_kind_in_the_expected_number(
    default_app: Synthesized, resource_type: str, count: int
) -> None:
    default_app.template.resource_count_is(resource_type, count)


def test_stack_name_is_prefix_and_environment(default_app: Synthesized, variant_app: Synthesized) -> None:
    assert default_app.stack.stack_name == DEFAULT_PREFIX
    assert variant_app.stack.stack_name == f"{constants.DEFAULT_PREFIX}-ci"


def test_nat_gateway_flag_adds_exactly_one_nat_and_routes_private_subnets_through_it(
    variant_app: Synthesized,
) -> None:
    variant_app.template.resource_count_is("AWS::EC2::NatGateway", 1)
    variant_app.template.resource_count_is("AWS::EC2::EIP", 1)
    nat_routes = [
        route
        for route in variant_app.resources("AWS::EC2::Route").values()
        if "NatGatewayId" in route["Properties"]
    ]
    assert len(nat_routes) == constants.MAX_AZS


def test_without_nat_only_public_subnets_route_to_the_internet(default_app: Synthesized) -> None:
    routes = default_app.resources("AWS::EC2::Route").values()
    default_routes = [
        r["Properties"] for r in routes if r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"
    ]
    assert default_routes, "the public subnets need their internet gateway route"
    assert all("GatewayId" in route for route in default_routes)
    assert all("public" in json.dumps(route["RouteTableId"]) for route in default_routes)


# -- messaging --------------------------------------------------------------------------------


@pytest.mark.parametrize("logical", list(QUEUES))
def test_every_queue_redrives_to_its_own_dlq_after_five_receives(
    default_app: Synthesized, logical: str
) -> None:
    queues = _queues_by_name(default_app)
    _, queue = queues[physical_name(DEFAULT_PREFIX, logical)]
    dlq_logical_id, dlq = queues[dlq_name(DEFAULT_PREFIX, logical)]

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_logical_id, "Arn"]},
        "maxReceiveCount": constants.QUEUE_MAX_RECEIVE_COUNT,
    }
    assert dlq["MessageRetentionPeriod"] == constants.DLQ_RETENTION_DAYS * 86_400
    assert "RedrivePolicy" not in dlq


@pytest.mark.parametrize("logical", list(QUEUES))
def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(
    default_app: Synthesized, logical: str
) -> None:
    _, queue = _queues_by_name(default_app)[physical_name(DEFAULT_PREFIX, logical)]
    assert queue["VisibilityTimeout"] >= 6 * constants.consumer_timeout_seconds(logical)


def test_every_queue_is_encrypted_and_refuses_plain_http(any_app: Synthesized) -> None:
    policies = any_app.resources("AWS::SQS::QueuePolicy").values()
    ssl_only_queue_ids = {
        policy["Properties"]["Queues"][0]["Ref"]
        for policy in policies
        if {
            "Effect": "Deny",
            "Action": "sqs:*",
            "Principal": {"AWS": "*"},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }.items()
        <= policy["Properties"]["PolicyDocument"]["Statement"][0].items()
    }
    queues = any_app.resources("AWS::SQS::Queue")
    for logical_id, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, logical_id
        assert logical_id in ssl_only_queue_ids, f"{logical_id} has no SSL-only policy"


def test_every_logical_queue_has_a_consumer_timeout() -> None:
    assert set(constants.CONSUMER_TIMEOUT_SECONDS) == set(QUEUES)


# -- data -------------------------------------------------------------------------------------


def test_deletion_protection_follows_context(default_app: Synthesized, variant_app: Synthesized) -> None:
    for app, expected in ((default_app, True), (variant_app, False)):
        kind = (
            "AWS::RDS::DBCluster" if app is default_app else "AWS::RDS::DBInstance"
        )  # variant: -c database=rds
        app.template.has_resource_properties(kind, {"DeletionProtection": expected})
        tables = app.resources("AWS::DynamoDB::Table")
        assert len(tables) == 3
        for logical_id, table in tables.items():
            assert table["Properties"]["DeletionProtectionEnabled"] is expected, logical_id
            assert table["DeletionPolicy"] == ("Retain" if expected else "Delete"), logical_id


def test_no_security_group_admits_the_internet(any_app: Synthesized) -> None:
    for logical_id, group in any_app.resources("AWS::EC2::SecurityGroup").items():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0", logical_id
    for logical_id, rule in any_app.resources("AWS::EC2::SecurityGroupIngress").items():
        assert rule["Properties"].get("CidrIp") != "0.0.0.0/0", logical_id


# -- state ------------------------------------------------------------------------------------


def test_checkpoint_table_has_the_shape_dynamodbsaver_uses(any_app: Synthesized) -> None:
    any_app.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_with(
                [{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}]
            ),
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )


def test_idempotency_table_has_the_shape_the_dynamodb_adapter_uses(any_app: Synthesized) -> None:
    from shared.idempotency import DYNAMODB_PARTITION_KEY, DYNAMODB_TTL_ATTRIBUTE

    (table,) = [
        t["Properties"] for k, t in any_app.resources("AWS::DynamoDB::Table").items() if "Idempotency" in k
    ]
    assert (
        table["KeySchema"]
        == [{"AttributeName": DYNAMODB_PARTITION_KEY, "KeyType": "HASH"}]
        == [{"AttributeName": "pk", "KeyType": "HASH"}]
    )  # no sort key
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": DYNAMODB_TTL_ATTRIBUTE, "Enabled": True}
    assert DYNAMODB_TTL_ATTRIBUTE == "expires_at"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


def test_every_bucket_is_private_encrypted_and_ssl_only(any_app: Synthesized) -> None:
    buckets = any_app.resources("AWS::S3::Bucket")
    policies = {
        policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in any_app.resources("AWS::S3::BucketPolicy").values()
    }
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        assert props["LifecycleConfiguration"]["Rules"], logical_id
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policies[logical_id]
        ), f"{logical_id} accepts plain HTTP"
        assert bucket["DeletionPolicy"] == "Retain", logical_id


def test_artifacts_bucket_logs_access_and_expires_checkpoints_the_way_the_saver_expects(
    default_app: Synthesized,
) -> None:
    (artifacts,) = [b for k, b in default_app.resources("AWS::S3::Bucket").items() if "Artifacts" in k]
    props = artifacts["Properties"]
    assert props["LoggingConfiguration"]["LogFilePrefix"] == constants.ACCESS_LOGS_PREFIX
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    checkpoint_rule = rules[constants.checkpoint_lifecycle_rule_id()]
    assert checkpoint_rule["Prefix"] == f"{constants.CHECKPOINT_S3_KEY_PREFIX}/"
    assert checkpoint_rule["TagFilters"] == [
        {"Key": "ttl-days", "Value": str(constants.CHECKPOINT_S3_EXPIRATION_DAYS)}
    ]
    assert checkpoint_rule["ExpirationInDays"] == constants.CHECKPOINT_S3_EXPIRATION_DAYS
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules.values())


def test_log_bucket_admits_only_s3_access_logs_and_flow_logs_under_their_prefixes(
    default_app: Synthesized,
) -> None:
    (log_bucket_id,) = [k for k in default_app.resources("AWS::S3::Bucket") if k.startswith("AuditLogs")]
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in default_app.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": log_bucket_id}
    ]
    writers = {
        statement["Principal"]["Service"]: json.dumps(statement["Resource"])
        for statement in policy
        if statement["Effect"] == "Allow" and statement["Action"] == "s3:PutObject"
    }
    assert set(writers) == {"logging.s3.amazonaws.com", "delivery.logs.amazonaws.com"}
    assert constants.ACCESS_LOGS_PREFIX in writers["logging.s3.amazonaws.com"]
    assert constants.FLOW_LOGS_PREFIX in writers["delivery.logs.amazonaws.com"]


# -- observability ----------------------------------------------------------------------------


def test_every_queue_is_in_an_age_alarm_and_every_dlq_in_the_dead_letters_total(
    default_app: Synthesized,
) -> None:
    # issue 23: a few alarms instead of two per queue (tests/infrastructure/test_observability.py)
    queues = _queues_by_name(default_app)
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in default_app.resources("AWS::CloudWatch::Alarm").values()
    }
    ages = json.dumps([a for name, a in alarms.items() if "-oldest-message-" in name])
    for logical in QUEUES:
        queue_id, _ = queues[physical_name(DEFAULT_PREFIX, logical)]
        assert json.dumps({"Fn::GetAtt": [queue_id, "QueueName"]}) in ages, logical
        assert f"/ {constants.oldest_message_alarm_seconds(logical)}" in ages, logical
    assert f"{DEFAULT_PREFIX}-dead-letters" in alarms  # dlq_watch sums every DLQ (test_scheduler_jobs.py)


def test_every_alarm_notifies_the_encrypted_ssl_only_topic(any_app: Synthesized) -> None:
    (topic_id, topic), *_ = any_app.resources("AWS::SNS::Topic").items()
    assert "KmsMasterKeyId" in topic["Properties"]
    for logical_id, alarm in any_app.resources("AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}], logical_id
    any_app.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                ),
                "Version": Match.any_value(),
            }
        },
    )


def test_topic_key_rotates_and_lets_cloudwatch_alarms_publish(default_app: Synthesized) -> None:
    default_app.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            }
                        )
                    ]
                ),
                "Version": Match.any_value(),
            },
        },
    )


def test_alarm_email_context_subscribes_that_address(variant_app: Synthesized) -> None:
    variant_app.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


def test_dashboard_shows_every_queue_within_the_free_tier(default_app: Synthesized) -> None:
    from tests.infrastructure.test_observability import DASHBOARD_METRIC_LIMIT, dashboard_metric_count

    (dashboard,) = default_app.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == DEFAULT_PREFIX
    assert dashboard_metric_count(dashboard["Properties"]["DashboardBody"]) <= DASHBOARD_METRIC_LIMIT
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "ApproximateNumberOfMessagesVisible" in body
    for logical in QUEUES:
        queue_id, _ = _queues_by_name(default_app)[physical_name(DEFAULT_PREFIX, logical)]
        assert queue_id in body, f"{logical} is not on the dashboard"


def test_outputs_name_what_operators_and_functions_need(default_app: Synthesized) -> None:
    outputs = default_app.template_json["Outputs"]
    for name in (
        "DashboardUrl",
        "AlarmTopicArn",
        "DatabaseEndpoint",
        "DatabasePort",
        "DatabaseSecretArn",
        "CheckpointTableName",
        "ArtifactsBucketName",
        "QueuePrefix",
        "ApiUrl",
        "AdminKeySecretArn",
        "ServiceKeySecretArn",
        "DeployHookFunctionName",
        "WorkerClusterName",
        "WorkerTaskDefinitionArn",
        "AnsibleRunnerTaskDefinitionArn",
        "GitHubTokenReference",
        "IdempotencyTableName",
        "TelegramWebhookUrl",
        "TelegramBotTokenSecretArn",
        "TelegramWebhookSecretArn",
    ):
        assert name in outputs, name
    queue_url_outputs = [name for name in outputs if name.endswith("QueueUrl") or name.endswith("Url")]
    not_queues = ("DashboardUrl", "ApiUrl", "TelegramWebhookUrl")
    assert len([n for n in queue_url_outputs if n not in not_queues]) == QUEUE_COUNT
    assert outputs["QueuePrefix"]["Value"] == DEFAULT_PREFIX


# -- IAM ------------------------------------------------------------------------------------

DATA_SERVICES = ("sqs", "dynamodb", "s3", "secretsmanager", "kms", "rds")


def _statements(app: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, policy in app.resources("AWS::IAM::Policy").items():
        found += [(logical_id, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    for logical_id, role in app.resources("AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            found += [(logical_id, s) for s in inline["PolicyDocument"]["Statement"]]
    return found


def test_no_identity_policy_grants_wildcard_actions_on_data_services(any_app: Synthesized) -> None:
    # Guards the slices to come (a role per function): no "*", "sqs:*", "s3:*", ...
    for logical_id, statement in _statements(any_app):
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert action != "*", logical_id
            service, _, verb = action.partition(":")
            assert not (service in DATA_SERVICES and verb == "*"), f"{logical_id}: {action}"


# -- cdk-nag ----------------------------------------------------------------------------------


LAYER_WARNING = f"Annotation::{NOT_BUILT_WARNING}"


def _violations(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything the report lists except the placeholder-layer warnings (the tests never build layers)."""
    return [
        v
        for plugin in report["pluginReports"]
        for v in plugin.get("violations", [])
        if v["ruleName"] != LAYER_WARNING
    ]


def test_the_only_warnings_are_the_placeholder_layers(any_app: Synthesized) -> None:
    report = any_app.validation_report()
    warned = sorted(
        construct["constructPath"].rsplit("/", 1)[-1]
        for plugin in report["pluginReports"]
        for v in plugin.get("violations", [])
        if v["ruleName"] == LAYER_WARNING
        for construct in v["violatingConstructs"]
    )
    built_layers = {layer for layers in constants.FUNCTION_LAYERS.values() for layer in layers} - {
        "deploy-hook"
    }
    assert warned == sorted(f"{name.capitalize()}Layer" for name in built_layers)


def test_cdk_nag_reports_nothing_unacknowledged(any_app: Synthesized) -> None:
    # Reaching here means app.synth() did not raise ValidationFailed; the report agrees.
    report = any_app.validation_report()
    assert _violations(report) == []
    assert all(plugin.get("conclusion") != "failure" for plugin in report["pluginReports"])


def test_cdk_nag_is_live_and_fails_the_synth_on_a_new_finding(tmp_path: Path) -> None:
    # given the real app plus one bucket nobody acknowledged
    app, stack = build_app(outdir=str(tmp_path), context={**DEFAULT_CONTEXT, **no_layers_context(tmp_path)})
    s3.Bucket(stack, "UnloggedBucket", enforce_ssl=True)

    # when / then
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    flagged = {
        (violation["ruleName"], construct["constructPath"])
        for violation in _violations(report)
        for construct in violation["violatingConstructs"]
    }
    assert flagged == {("AwsSolutions-S1", f"{DEFAULT_PREFIX}/UnloggedBucket/Resource")}


def test_dashboard_shows_task_metrics_and_stuck_tasks_alarm(default_app: Synthesized) -> None:
    alarms = [a["Properties"] for a in default_app.resources("AWS::CloudWatch::Alarm").values()]
    stuck = [
        m["MetricStat"]["Metric"]
        for a in alarms
        for m in a.get("Metrics", [])
        if m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "StuckTasks"
    ]
    assert len(stuck) == 1 and stuck[0]["Namespace"] == "CodegenOrchestrator"
    assert stuck[0]["Dimensions"] == [{"Name": "service", "Value": "scheduler"}]
    body = json.dumps(default_app.resources("AWS::CloudWatch::Dashboard"))
    for name in ("TasksStarted", "TasksCompleted", "TasksFailed", "TaskDuration", "WorkerRunTime"):
        assert name in body


def test_the_devops_and_telegram_parts_are_observed_like_the_rest(default_app: Synthesized) -> None:
    # issue 23: their queues in the oldest-message alarms, the event handlers in the errors alarm
    alarms = {
        a["Properties"]["AlarmName"]: a for a in default_app.resources("AWS::CloudWatch::Alarm").values()
    }
    oldest = json.dumps([a for name, a in alarms.items() if "-oldest-message-" in name])
    for logical in ("ansible:deploy:results", "provisioner:results", "telegram:updates", "po:inbox"):
        assert logical in oldest, logical
    errors = json.dumps([a for name, a in alarms.items() if "-function-errors-" in name])
    for function in (
        "WorkersAnsibleEventsFunction",
        "WorkersEventsFunction",
        "SchedulesFunction",
        "ApiDeployHook",
    ):
        assert function in errors, function
    for watched_elsewhere in (
        "ConsumersEngineering",
        "ConsumersTelegramBot",
        "ApiFunction",
        "TelegramWebhook",
    ):
        assert watched_elsewhere not in errors, watched_elsewhere
    assert f"{DEFAULT_PREFIX}-dead-letters" in alarms


def _acknowledgements(app: Synthesized) -> dict[str, str]:
    """cdk-nag acknowledgement id -> its reason, for every acknowledgement in the stack."""
    metadata = json.loads((app.outdir / f"{app.stack.artifact_id}.metadata.json").read_text())
    return {
        rule.removeprefix("Annotation::"): reason
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    }


def test_the_vpc_access_acknowledgement_says_the_policy_writes_logs_anywhere(
    default_app: Synthesized,
) -> None:
    # AWSLambdaVPCAccessExecutionRole allows logs:CreateLogGroup/CreateLogStream/PutLogEvents on "*"
    (reason,) = {
        reason
        for rule, reason in _acknowledgements(default_app).items()
        if "AWSLambdaVPCAccessExecutionRole" in rule
    }
    assert "grants no data access" not in reason
    assert "logs:PutLogEvents" in reason and "any log group" in reason


def test_no_acknowledgement_is_left_for_the_worker_task_role(default_app: Synthesized) -> None:
    """Issue 20: the worker task role holds nothing, so no wildcard of it needs a reason; the Product Owner
    keys and the session archives are the API's to read and sign, for one worker at a time."""
    metadata = json.loads((default_app.outdir / f"{default_app.stack.artifact_id}.metadata.json").read_text())
    acknowledged = [
        (path, rule.removeprefix("Annotation::"), reason)
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    ]
    assert not [(p, r) for p, r, _ in acknowledged if "/Workers/WorkerTaskDefinition/TaskRole" in p]
    assert not [r for _, r, reason in acknowledged if "every worker gets it" in reason.lower()]
    api = {
        rule: reason
        for path, rule, reason in acknowledged
        if path.endswith("/Api/FunctionRole")
        and rule.endswith((f"/{constants.PO_SECRETS_PATH}/*]", f"/{constants.SESSIONS_KEY_PREFIX}*]"))
    }
    assert len(api) == 2, api
    for rule, reason in api.items():
        assert "worker" in reason and "the one" in reason, rule


def _log_group_named(app: Synthesized, name: Any) -> tuple[str, dict[str, Any]] | None:
    found = [
        (logical_id, group)
        for logical_id, group in app.resources("AWS::Logs::LogGroup").items()
        if group["Properties"].get("LogGroupName") == name
    ]
    return found[0] if found else None


def test_every_lambda_of_the_stack_logs_to_a_group_that_expires_and_goes_with_the_stack(
    any_app: Synthesized,
) -> None:
    # CDK's own providers (the default security group restriction, the trigger) and the rotation function
    # from the Serverless Application Repository included: Lambda would create their groups on first
    # use, with no expiry, and they would outlive the stack.
    resources = any_app.template_json["Resources"]
    for logical_id, function in any_app.resources("AWS::Lambda::Function").items():
        logging = function["Properties"].get("LoggingConfig")
        if logging:  # our functions: their own log group, set on the function
            group = resources[logging["LogGroup"]["Ref"]]
            assert group["Properties"]["RetentionInDays"] == 30 and group["DeletionPolicy"] == "Delete"
            continue
        owned = _log_group_named(any_app, {"Fn::Join": ["", ["/aws/lambda/", {"Ref": logical_id}]]})
        assert owned is not None, f"{logical_id} logs to a group Lambda creates (never expires)"
        group_id, group = owned
        assert group["Properties"]["RetentionInDays"] == 30 and group["DeletionPolicy"] == "Delete"
        users = [
            k
            for k, r in resources.items()
            if r["Properties"].get("ServiceToken") == {"Fn::GetAtt": [logical_id, "Arn"]}
        ]
        assert users, logical_id
        for user in users:  # made before the first invocation, deleted after the last
            assert group_id in resources[user].get("DependsOn", []), (logical_id, user)
    for application_id, application in any_app.resources("AWS::Serverless::Application").items():
        _assert_application_logs_expire(any_app, application_id, application)


def _assert_application_logs_expire(
    app: Synthesized, application_id: str, application: dict[str, Any]
) -> None:
    """A SAR application's function (none since the database's password is RDS-managed) logs to our group."""
    any_app = app
    name = application["Properties"]["Parameters"]["functionName"]
    assert isinstance(name, str)
    owned = _log_group_named(any_app, f"/aws/lambda/{name}")
    assert owned is not None, "the rotation function logs to a group Lambda creates (never expires)"
    assert owned[1]["Properties"]["RetentionInDays"] == 30 and owned[1]["DeletionPolicy"] == "Delete"
    assert owned[0] in application["DependsOn"], application_id
