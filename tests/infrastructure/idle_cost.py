"""What the stack costs a month when nobody works, read off the synthesized template.

Every resource type in the template is either priced here (`idle_lines`) or named in `FREE_AT_REST` (billed
only per use: requests, GB moved, seconds run); `unpriced_types` lists any that is neither, and the test fails
on it, so a new fixed-cost resource cannot slip in unpriced. What the template cannot show (custom metrics a
function emits, SQS polling by event-source mappings, the RDS-managed secret counted from the database's
setting) is estimated separately by `usage_lines`, as "not in the template".

Prices: AWS list prices for us-east-1 (N. Virginia), on-demand, without the free tier, as published on the
services' pricing pages (aws.amazon.com/<service>/pricing) and used here on 2026-12-03. A month is 730 hours.

    .venv/bin/python -m tests.infrastructure.idle_cost              # the default stack (Aurora)
    .venv/bin/python -m tests.infrastructure.idle_cost database=rds # one always-on instance
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HOURS_PER_MONTH = 730
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60
SECONDS_PER_MONTH = MINUTES_PER_MONTH * 60
PRICE_DATE = "2026-12-03"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


PRICES: dict[str, Price] = {
    "aurora_acu_hour": Price(0.12, "ACU-hour (Aurora Standard)", "aws.amazon.com/rds/aurora/pricing"),
    "aurora_storage_gb": Price(0.10, "GB-month (Aurora Standard)", "aws.amazon.com/rds/aurora/pricing"),
    "rds_t4g_micro_hour": Price(
        0.016, "instance-hour (db.t4g.micro, Single-AZ)", "aws.amazon.com/rds/postgresql/pricing"
    ),
    "rds_gp3_gb": Price(0.115, "GB-month (gp3)", "aws.amazon.com/rds/postgresql/pricing"),
    "interface_endpoint_az_hour": Price(0.01, "endpoint-AZ-hour", "aws.amazon.com/privatelink/pricing"),
    "nat_gateway_hour": Price(0.045, "NAT gateway-hour", "aws.amazon.com/vpc/pricing"),
    "public_ipv4_hour": Price(0.005, "public IPv4 address-hour", "aws.amazon.com/vpc/pricing"),
    "alarm_metric": Price(
        0.10, "standard-resolution alarm metric-month", "aws.amazon.com/cloudwatch/pricing"
    ),
    "dashboard": Price(3.00, "dashboard-month", "aws.amazon.com/cloudwatch/pricing"),
    "custom_metric": Price(0.30, "custom metric-month (first 10,000)", "aws.amazon.com/cloudwatch/pricing"),
    "log_storage_gb": Price(0.03, "GB-month stored (compressed)", "aws.amazon.com/cloudwatch/pricing"),
    "kms_key": Price(
        1.00,
        "customer managed key-month (+$1 for each of its first two rotations)",
        "aws.amazon.com/kms/pricing",
    ),
    "secret": Price(0.40, "secret-month", "aws.amazon.com/secrets-manager/pricing"),
    "ssm_advanced_parameter": Price(
        0.05, "advanced parameter-month (standard: free)", "aws.amazon.com/systems-manager/pricing"
    ),
    "snapstart_cache_gb_second": Price(
        0.0000015046, "GB-second of a cached SnapStart snapshot (Python)", "aws.amazon.com/lambda/pricing"
    ),
    "snapstart_restore_gb": Price(
        0.0001397998, "GB restored (SnapStart, Python)", "aws.amazon.com/lambda/pricing"
    ),
    "lambda_request": Price(0.20 / 1_000_000, "request", "aws.amazon.com/lambda/pricing"),
    "lambda_gb_second_arm": Price(0.0000133334, "GB-second (arm64)", "aws.amazon.com/lambda/pricing"),
    "sqs_request": Price(0.40 / 1_000_000, "request (standard queue)", "aws.amazon.com/sqs/pricing"),
    "fargate_vcpu_hour_x86": Price(0.04048, "vCPU-hour (Linux/x86)", "aws.amazon.com/fargate/pricing"),
    "fargate_gb_hour_x86": Price(0.004445, "GB-hour (Linux/x86)", "aws.amazon.com/fargate/pricing"),
    "dynamodb_write": Price(
        0.625 / 1_000_000, "write request unit (on demand)", "aws.amazon.com/dynamodb/pricing"
    ),
    "log_ingest_gb": Price(0.50, "GB ingested", "aws.amazon.com/cloudwatch/pricing"),
}

IDLE_AURORA_ACU = 0.0
"""Paused: no capacity billed (only storage) - the point of min 0 ACU."""
IDLE_DATABASE_GB = 1.0
"""Aurora bills the storage used; a control plane's rows and indexes: ~1 GB (backups inside it are free)."""
IDLE_LOG_GB_PER_GROUP = 0.01
"""What a log group keeps at rest when little happens (30-day retention)."""
SCHEDULED_RUN_MS = 300
"""An assumed run of a scheduled function that finds nothing to do."""
ESM_IDLE_POLLS_PER_MINUTE = 5 * 3
"""An SQS event-source mapping keeps ~5 pollers, each a 20 s long poll: ~15 ReceiveMessage calls a minute."""
CUSTOM_METRICS_TODAY = 0
"""Custom metrics emitted at rest (EMF): the scheduler's totals are sent only when non-zero, so an idle
month has none (issue 23; 41 were always on before). All 13 active every hour would be $0.90. Issue 21's
`SpendUsd` (one aggregate, from the API) is sent only when an agent run or a worker's time is recorded."""

FREE_AT_REST = frozenset(
    {
        # billed per request, per GB or per second of use only
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::Stage",
        "AWS::DynamoDB::Table",  # on demand; 25 GB stored free
        "AWS::Lambda::Function",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::Version",  # a SnapStart version's snapshot cache is priced in `_snapstart`
        "AWS::Lambda::Alias",
        "AWS::Lambda::Permission",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::S3::Bucket",  # GB stored: a few MB at rest
        "AWS::S3::BucketPolicy",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::ECS::Cluster",  # Fargate bills running tasks; Container Insights bills metrics of running tasks
        "AWS::ECS::TaskDefinition",
        "AWS::EC2::FlowLog",  # vended log delivery, per GB
        # no charge at all
        "AWS::EC2::VPC",
        "AWS::EC2::VPCCidrBlock",
        "AWS::EC2::Subnet",
        "AWS::EC2::RouteTable",
        "AWS::EC2::Route",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::EgressOnlyInternetGateway",  # no hourly charge; IPv6 data out at the usual rates
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::RDS::DBSubnetGroup",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::KMS::Alias",
        "AWS::Events::Rule",  # schedules are free; what they invoke is priced in `_scheduled`
        "AWS::Lambda::EventSourceMapping",  # its polling is priced in `usage_lines`
        "AWS::Serverless::Application",
        "AWS::SecretsManager::SecretTargetAttachment",
        "AWS::SecretsManager::RotationSchedule",
        "Custom::Trigger",
        "Custom::VpcRestrictDefaultSG",
        "AWS::CDK::Metadata",
    }
)


@dataclass(frozen=True)
class Line:
    resource: str
    quantity: float
    price: Price
    note: str = ""

    @property
    def monthly(self) -> float:
        return self.quantity * self.price.usd


def _of(template: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for r in template["Resources"].values() if r["Type"] == kind]


def priced_types() -> frozenset[str]:
    return frozenset(
        {
            "AWS::RDS::DBCluster",
            "AWS::RDS::DBInstance",
            "AWS::EC2::VPCEndpoint",
            "AWS::EC2::NatGateway",
            "AWS::EC2::EIP",
            "AWS::CloudWatch::Alarm",
            "AWS::CloudWatch::Dashboard",
            "AWS::KMS::Key",
            "AWS::SecretsManager::Secret",
            "AWS::SSM::Parameter",
            "AWS::Logs::LogGroup",
        }
    )


def unpriced_types(template: Mapping[str, Any]) -> set[str]:
    present = {r["Type"] for r in template["Resources"].values()}
    return present - priced_types() - FREE_AT_REST


def _database(template: Mapping[str, Any]) -> list[Line]:
    lines: list[Line] = []
    for cluster in _of(template, "AWS::RDS::DBCluster"):
        scaling = cluster.get("ServerlessV2ScalingConfiguration", {})
        minimum = float(scaling.get("MinCapacity", 0.5))
        acu = IDLE_AURORA_ACU if minimum == 0 else minimum
        note = (
            f"paused after {scaling.get('SecondsUntilAutoPause')} s idle"
            if minimum == 0
            else f"min {minimum} ACU never pauses"
        )
        lines.append(
            Line("Aurora Serverless v2 capacity", acu * HOURS_PER_MONTH, PRICES["aurora_acu_hour"], note)
        )
        lines.append(
            Line(
                "Aurora storage (GB used)",
                IDLE_DATABASE_GB,
                PRICES["aurora_storage_gb"],
                "backups within it free",
            )
        )
        if cluster.get("ManageMasterUserPassword"):
            lines.append(
                Line("RDS-managed master secret", 1, PRICES["secret"], "made by RDS, not in the template")
            )
    for instance in _of(template, "AWS::RDS::DBInstance"):
        if instance.get("DBClusterIdentifier"):
            continue  # an Aurora cluster's writer: billed as the cluster's ACUs
        if instance.get("DBInstanceClass") != "db.t4g.micro":
            raise ValueError(f"no price here for {instance.get('DBInstanceClass')}")
        lines.append(Line("RDS db.t4g.micro (always on)", HOURS_PER_MONTH, PRICES["rds_t4g_micro_hour"]))
        gb = float(instance.get("AllocatedStorage", 20))
        lines.append(Line("RDS gp3 storage (GB allocated)", gb, PRICES["rds_gp3_gb"]))
        if instance.get("ManageMasterUserPassword"):
            lines.append(
                Line("RDS-managed master secret", 1, PRICES["secret"], "made by RDS, not in the template")
            )
    return lines


def _network(template: Mapping[str, Any]) -> list[Line]:
    azs = sum(
        len(e.get("SubnetIds", []))
        for e in _of(template, "AWS::EC2::VPCEndpoint")
        if e.get("VpcEndpointType") == "Interface"
    )
    gateways = sum(
        1 for e in _of(template, "AWS::EC2::VPCEndpoint") if e.get("VpcEndpointType") != "Interface"
    )
    return [
        Line(
            "interface endpoints (endpoint-AZs)",
            azs * HOURS_PER_MONTH,
            PRICES["interface_endpoint_az_hour"],
            f"{gateways} gateway endpoints: free",
        ),
        Line(
            "NAT gateways",
            len(_of(template, "AWS::EC2::NatGateway")) * HOURS_PER_MONTH,
            PRICES["nat_gateway_hour"],
        ),
        Line(
            "public IPv4 (Elastic IPs)",
            len(_of(template, "AWS::EC2::EIP")) * HOURS_PER_MONTH,
            PRICES["public_ipv4_hour"],
        ),
    ]


def alarm_metrics(alarm: Mapping[str, Any]) -> int:
    """A metric-math alarm is billed per metric it reads; a plain one is one metric."""
    metrics = alarm.get("Metrics")
    if not metrics:
        return 1
    return sum(1 for m in metrics if "MetricStat" in m)


def _observability(template: Mapping[str, Any]) -> list[Line]:
    alarms = _of(template, "AWS::CloudWatch::Alarm")
    groups = _of(template, "AWS::Logs::LogGroup")
    return [
        Line(
            "CloudWatch alarm metrics",
            sum(alarm_metrics(a) for a in alarms),
            PRICES["alarm_metric"],
            f"{len(alarms)} alarms",
        ),
        Line(
            "CloudWatch dashboards",
            len(_of(template, "AWS::CloudWatch::Dashboard")),
            PRICES["dashboard"],
            "3 free per account",
        ),
        Line(
            "log groups at rest (GB)",
            len(groups) * IDLE_LOG_GB_PER_GROUP,
            PRICES["log_storage_gb"],
            f"{len(groups)} groups x {IDLE_LOG_GB_PER_GROUP} GB",
        ),
    ]


def _keys_and_secrets(template: Mapping[str, Any]) -> list[Line]:
    advanced = [p for p in _of(template, "AWS::SSM::Parameter") if p.get("Tier") == "Advanced"]
    return [
        Line("KMS customer managed keys", len(_of(template, "AWS::KMS::Key")), PRICES["kms_key"]),
        Line("Secrets Manager secrets", len(_of(template, "AWS::SecretsManager::Secret")), PRICES["secret"]),
        Line(
            "SSM advanced parameters", len(advanced), PRICES["ssm_advanced_parameter"], "standard ones: free"
        ),
    ]


_RATE_MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def _runs_per_month(expression: str) -> float:
    if not expression.startswith("rate("):
        return 30.0  # a cron expression: at least daily in this stack; counted as once a day
    value, unit = expression[len("rate(") : -1].split()
    return MINUTES_PER_MONTH / (int(value) * _RATE_MINUTES[unit])


def _scheduled(template: Mapping[str, Any]) -> list[Line]:
    """The scheduled rules invoke functions even when there is nothing to do."""
    functions = {
        k: r.get("Properties", {})
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    runs, gb_seconds = 0.0, 0.0
    for rule in _of(template, "AWS::Events::Rule"):
        expression = rule.get("ScheduleExpression")
        if not expression or rule.get("State") == "DISABLED":
            continue
        for target in rule.get("Targets", []):
            arn = target.get("Arn", {})
            logical = arn.get("Fn::GetAtt", [None])[0] if isinstance(arn, dict) else None
            memory_mb = float(functions.get(logical, {}).get("MemorySize", 128))
            n = _runs_per_month(expression)
            runs += n
            gb_seconds += n * SCHEDULED_RUN_MS / 1000 * memory_mb / 1024
    return [
        Line("scheduled invocations", runs, PRICES["lambda_request"], "1M requests a month are free"),
        Line(
            "scheduled compute (GB-s)",
            gb_seconds,
            PRICES["lambda_gb_second_arm"],
            f"{SCHEDULED_RUN_MS} ms a run assumed",
        ),
    ]


def _snapstart(template: Mapping[str, Any]) -> list[Line]:
    """SnapStart caches each published version's snapshot, billed per GB of the function's memory for every
    second the version is active (Lambda drops a snapshot after 14 days without an invocation); the old
    versions are deleted on update (their removal policy), so one version per function is cached."""
    gb = sum(
        float(r.get("Properties", {}).get("MemorySize", 128)) / 1024
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "SnapStart" in r.get("Properties", {})
    )
    return [
        Line(
            "SnapStart snapshot cache (GB-seconds)",
            gb * SECONDS_PER_MONTH,
            PRICES["snapstart_cache_gb_second"],
            f"plus ${PRICES['snapstart_restore_gb'].usd:.5f} per GB at each restore (a cold start), in use",
        )
    ]


def idle_lines(template: Mapping[str, Any]) -> list[Line]:
    """The fixed monthly cost of the template at rest, line by line."""
    return [
        *_database(template),
        *_network(template),
        *_observability(template),
        *_keys_and_secrets(template),
        *_scheduled(template),
        *_snapstart(template),
    ]


def usage_lines(template: Mapping[str, Any], custom_metrics: int = CUSTOM_METRICS_TODAY) -> list[Line]:
    """Estimates of what the template cannot show: not counted in the fixed total."""
    resources = template["Resources"]

    def polls_sqs(mapping: Mapping[str, Any]) -> bool:
        source = mapping.get("EventSourceArn")
        logical = source.get("Fn::GetAtt", [None])[0] if isinstance(source, dict) else None
        return bool(logical) and resources.get(logical, {}).get("Type") == "AWS::SQS::Queue"

    mappings = [m for m in _of(template, "AWS::Lambda::EventSourceMapping") if polls_sqs(m)]
    polls = len(mappings) * ESM_IDLE_POLLS_PER_MINUTE * MINUTES_PER_MONTH
    return [
        Line(
            "custom metrics the functions emit (EMF)",
            custom_metrics,
            PRICES["custom_metric"],
            "not in the template; emitted only when non-zero (0 at rest; 41 before)",
        ),
        Line(
            "SQS polls by event-source mappings",
            polls,
            PRICES["sqs_request"],
            f"not in the template; {len(mappings)} mappings, 1M requests free",
        ),
    ]


@dataclass(frozen=True)
class TypicalTask:
    """One coding task as it usually runs; every figure an assumption, stated."""

    worker_minutes: float = 30.0
    worker_vcpu: float = 1.0  # shared.workers.fargate.DEFAULT_TASK_SIZES: 1 vCPU, 2 GB, x86_64
    worker_gb: float = 2.0
    lambda_gb_seconds: float = (
        150.0  # ~300 API/consumer calls at 0.3 s x 0.5 GB, ~20 graph steps at 5 s x 1 GB
    )
    lambda_requests: int = 320
    sqs_requests: int = 500
    checkpoint_write_units: int = 2_000  # ~200 LangGraph checkpoints of ~10 KB
    log_gb: float = 0.005
    database_awake_minutes: float = 35.0  # the task, then SecondsUntilAutoPause
    database_acu: float = 0.5  # the smallest awake capacity


def typical_task_lines(task: TypicalTask | None = None) -> list[Line]:
    """What one task costs in AWS (the coding agent's model calls are not AWS's and not here)."""
    t = task or TypicalTask()
    hours = t.worker_minutes / 60
    return [
        Line("Fargate worker vCPU-hours", t.worker_vcpu * hours, PRICES["fargate_vcpu_hour_x86"]),
        Line("Fargate worker GB-hours", t.worker_gb * hours, PRICES["fargate_gb_hour_x86"]),
        Line("worker's public IPv4 while it runs", hours, PRICES["public_ipv4_hour"]),
        Line("Lambda compute (GB-s, arm64)", t.lambda_gb_seconds, PRICES["lambda_gb_second_arm"]),
        Line("Lambda requests", t.lambda_requests, PRICES["lambda_request"]),
        Line("SQS requests", t.sqs_requests, PRICES["sqs_request"]),
        Line("DynamoDB checkpoint writes (WRU)", t.checkpoint_write_units, PRICES["dynamodb_write"]),
        Line("CloudWatch Logs ingested (GB)", t.log_gb, PRICES["log_ingest_gb"]),
        Line(
            "Aurora awake (ACU-hours)",
            t.database_acu * t.database_awake_minutes / 60,
            PRICES["aurora_acu_hour"],
            "the task, then the pause delay",
        ),
    ]


def render(lines: list[Line], title: str, column: str = "$/month", digits: int = 2) -> str:
    rows = [f"{title}", f"{'resource':44} {'quantity':>12} {'unit price':>12}  {column:>8}  unit / note"]
    for line in lines:
        rows.append(
            f"{line.resource:44} {line.quantity:12,.2f} {line.price.usd:12.6g}  {line.monthly:8.{digits}f}  "
            f"{line.price.unit}{'; ' + line.note if line.note else ''}"
        )
    rows.append(f"{'total':44} {'':12} {'':12}  {sum(x.monthly for x in lines):8.{digits}f}")
    return "\n".join(rows)


def report(template: Mapping[str, Any]) -> str:
    fixed, usage = idle_lines(template), usage_lines(template)
    sources = sorted({line.price.source for line in fixed + usage + typical_task_lines()})
    return "\n\n".join(
        [
            render(fixed, f"Idle fixed cost from the template (us-east-1 list prices, {PRICE_DATE})"),
            render(usage, "Not in the template (estimates)"),
            render(
                typical_task_lines(),
                "One typical task (30 min worker; assumptions in TypicalTask)",
                column="$/task",
                digits=4,
            ),
            "Sources: " + ", ".join(sources),
        ]
    )


def main(argv: list[str]) -> None:
    import tempfile
    from pathlib import Path

    from tests.infrastructure.conftest import DEFAULT_CONTEXT, synthesize

    context = {**DEFAULT_CONTEXT, **dict(arg.split("=", 1) for arg in argv)}
    synthesized = synthesize(Path(tempfile.mkdtemp(prefix="idle-cost-")), context)
    print(report(synthesized.template_json))
    unpriced = unpriced_types(synthesized.template_json)
    if unpriced:
        print(f"\nUNPRICED resource types: {sorted(unpriced)}")


if __name__ == "__main__":
    main(sys.argv[1:])
