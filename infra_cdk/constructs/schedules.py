"""Scheduled jobs: one EventBridge rule per `shared.topology.SCHEDULES` entry -> the scheduler function.

The embedded stack's ticker runs the same table, so a job added there is scheduled here too, with
input `{"job": <name>}` (what `functions.scheduler.handler.lambda_handler` reads).

EventBridge scheduled rules rather than EventBridge Scheduler: the rule invokes the function through
its resource policy (scoped to the rule's ARN), so there is no scheduler execution role to keep least
privilege on, and a rate of one minute is all the jobs need. A failed or late run is not retried:
the next tick is the retry, and a job older than its period is superseded by that tick.

The jobs act through the API (service key), read repository heads on GitHub with the graphs' repo-host
settings and token (`github_sync`), read queue depths (`dlq_watch`) and ping servers through
the provisioner (`server_sync`): the function may read the attributes of every queue and DLQ, and send
only to the queues `shared.topology.PUBLISHES` gives it (provisioner:queue; granted by the stack with
every function's); it never reads a message.

The work signal (`shared.work_signal`, issue 23) is a DynamoDB table built here: the API may only mark it
(UpdateItem, `grant_marking`), the scheduler only read and settle it and keep the health checker's
snapshot in it (GetItem, UpdateItem). Each job reads it first and leaves the API (and the database)
alone while its kind of work is unmarked. On demand and holding two items, the table costs nothing at
rest; from the API in the VPC it is reached through the free DynamoDB gateway endpoint.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants, environment
from infra_cdk.config import StackConfig
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.runtime import (
    LambdaRuntime,
    grant_reference_read,
    lambda_handler_path,
    pascal,
)
from shared.topology import SCHEDULER_HANDLER, SCHEDULES, ScheduleSpec
from shared.work_signal.dynamodb import ACTIONS as WORK_SIGNAL_ACTIONS
from shared.work_signal.dynamodb import PARTITION_KEY as WORK_SIGNAL_PARTITION_KEY
from shared.work_signal.dynamodb import SCHEDULER_METHODS as SCHEDULER_SIGNAL_METHODS

_EVENTBRIDGE_MIN_RATE_SECONDS = 60
QUEUE_STATS_ACTIONS = ("sqs:GetQueueUrl", "sqs:GetQueueAttributes")
"""What `shared.queues.sqs.SqsQueue.stats` calls: depths, never messages."""


def schedule_input(spec: ScheduleSpec) -> dict[str, str]:
    return {"job": spec.job}


def work_signal_environment(table_name: str) -> dict[str, str]:
    """`shared.work_signal.WorkSignalSettings` on DynamoDB."""
    return {"ORCH_WORK_SIGNAL_BACKEND": "dynamodb", "ORCH_WORK_SIGNAL_TABLE": table_name}


class Schedules(Construct):
    """The scheduler function and its rules, keyed by job name."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        runtime: LambdaRuntime,
        messaging: Messaging,
        api_url: str,
        service_key_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.work_signal_table = self._build_work_signal_table()
        self.function = runtime.function(
            self,
            "Function",
            name=constants.SCHEDULER_FUNCTION,
            handler=lambda_handler_path(SCHEDULER_HANDLER),
            timeout_seconds=constants.SCHEDULER_TIMEOUT_SECONDS,
            description=f"{config.resource_prefix}: scheduled jobs ({', '.join(s.job for s in SCHEDULES)})",
            environment_variables={
                **environment.queues(config),
                **environment.service_api(config, api_url, service_key_secret.secret_arn),
                # github_sync looks up <owner>/<project> on the same host, with the same token, as the
                # graphs; without these it would fall back to the local host and flag every repository
                **environment.repo_host(config),
                **work_signal_environment(self.work_signal_table.table_name),
            },
        )
        self.work_signal_table.grant(
            self.function,
            *sorted({a for method in SCHEDULER_SIGNAL_METHODS for a in WORK_SIGNAL_ACTIONS[method]}),
        )
        service_key_secret.grant_read(self.function)
        grant_reference_read(self, self.function, config.github_token_ref, config.resource_prefix)
        for pair in messaging.queues.values():
            for queue in (pair.queue, pair.dlq):
                queue.grant(self.function, *QUEUE_STATS_ACTIONS)
        shortest = min(spec.every_s for spec in SCHEDULES)
        self.function.configure_async_invoke(
            retry_attempts=0, max_event_age=Duration.seconds(max(60, shortest))
        )
        self.rules: dict[str, events.Rule] = {
            spec.job: self._build_rule(spec, self.function) for spec in SCHEDULES
        }

    def grant_marking(self, function: lambda_.Function) -> None:
        """`function` (the API) marks the work signal as its writes commit: UpdateItem only."""
        for name, value in work_signal_environment(self.work_signal_table.table_name).items():
            function.add_environment(name, value)
        self.work_signal_table.grant(function, *WORK_SIGNAL_ACTIONS["mark"])

    def _build_work_signal_table(self) -> dynamodb.Table:
        # the stack-wide protection switch, as the other tables; point-in-time recovery (cdk-nag DDB3) is
        # priced per GB, and this table holds one item of a few bytes
        protected = self._config.deletion_protection
        return dynamodb.Table(
            self,
            "WorkSignalTable",
            partition_key=dynamodb.Attribute(
                name=WORK_SIGNAL_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=protected,
            removal_policy=RemovalPolicy.RETAIN if protected else RemovalPolicy.DESTROY,
        )

    def _build_rule(self, spec: ScheduleSpec, function: lambda_.IFunction) -> events.Rule:
        if spec.every_s < _EVENTBRIDGE_MIN_RATE_SECONDS or spec.every_s % 60:
            raise ValueError(
                f"schedule {spec.job!r} runs every {spec.every_s} s; EventBridge rates are whole minutes"
            )
        rule = events.Rule(
            self,
            f"{pascal(spec.job)}Rule",
            rule_name=f"{self._config.resource_prefix}-{constants.SCHEDULE_RULE_INFIX}-{spec.job}",
            description=f"{spec.job}: {spec.description}"[:512],
            schedule=events.Schedule.rate(Duration.seconds(spec.every_s)),
        )
        rule.add_target(
            targets.LambdaFunction(
                function,
                event=events.RuleTargetInput.from_object(schedule_input(spec)),
                retry_attempts=0,
                max_event_age=Duration.seconds(spec.every_s),
            )
        )
        return rule
