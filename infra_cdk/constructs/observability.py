"""The dashboard, the alarms and the topic they notify.

Built first with the queues; the compute constructs add their parts with `add_function(fn)`,
`add_api(http_api)` and `add_fargate(...)`, so every capability shows up on the same dashboard
and pages through the same topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.messaging import QueuePair
from shared.queues.naming import dlq_name, physical_name

_KEY_PENDING_WINDOW_DAYS = 7


class Observability(Construct):
    """One dashboard and one alarm topic per stack."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, queues: Mapping[str, QueuePair]
    ) -> None:
        super().__init__(scope, construct_id)
        self._prefix = config.resource_prefix
        self.alarms: list[cloudwatch.Alarm] = []
        self.topic_key = self._build_topic_key()
        self.alarm_topic = self._build_alarm_topic(config.alarm_email)
        self.dashboard_name = self._prefix
        self.dashboard = self._build_dashboard()
        self._add_queues(queues)

    @property
    def dashboard_url(self) -> str:
        return (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home"
            f"?region={Aws.REGION}#dashboards:name={self.dashboard_name}"
        )

    @property
    def _period(self) -> Duration:
        return Duration.seconds(constants.ALARM_PERIOD_SECONDS)

    # -- building blocks --------------------------------------------------------------------

    def _build_topic_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            alias=f"alias/{self._prefix}-alarms",
            description=f"{self._prefix}: encrypts the alarm topic",
            enable_key_rotation=True,
            # Only notifications in flight are encrypted with it: nothing to keep after the stack.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(_KEY_PENDING_WINDOW_DAYS),
        )
        # CloudWatch alarms publish to an encrypted topic only if the key lets them; without
        # this statement alarm notifications fail silently.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseTheKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        return key

    def _build_alarm_topic(self, alarm_email: str | None) -> sns.Topic:
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{self._prefix} alarms",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    def _build_dashboard(self) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.dashboard_name,
            default_interval=Duration.hours(3),
        )
        dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# {self._prefix}\nQueues, then the API, the Fargate workers and one row per function.",
                width=24,
                height=2,
            )
        )
        return dashboard

    def _graph(self, title: str, metrics: Sequence[cloudwatch.IMetric]) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title=title,
            left=list(metrics),
            width=constants.DASHBOARD_WIDGET_WIDTH,
            height=constants.DASHBOARD_WIDGET_HEIGHT,
        )

    def add_alarm(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """Route an alarm to the alarm topic and list it with the others."""
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        self.alarms.append(alarm)
        return alarm

    # -- queues -----------------------------------------------------------------------------

    def _add_queues(self, queues: Mapping[str, QueuePair]) -> None:
        visible: list[cloudwatch.IMetric] = []
        oldest: list[cloudwatch.IMetric] = []
        dlq_depth: list[cloudwatch.IMetric] = []
        for logical, pair in queues.items():
            visible.append(
                pair.queue.metric_approximate_number_of_messages_visible(
                    label=logical, statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(1)
                )
            )
            oldest.append(
                pair.queue.metric_approximate_age_of_oldest_message(
                    label=logical, statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(1)
                )
            )
            dlq_depth.append(
                pair.dlq.metric_approximate_number_of_messages_visible(
                    label=logical, statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(1)
                )
            )
            self._add_queue_alarms(logical, pair)
        self.dashboard.add_widgets(
            self._graph("Queues: visible messages", visible),
            self._graph("Queues: age of oldest message (s)", oldest),
            self._graph("Queues: DLQ depth", dlq_depth),
        )

    def _add_queue_alarms(self, logical: str, pair: QueuePair) -> None:
        queue_id = pair.queue.node.id
        self.add_alarm(
            cloudwatch.Alarm(
                self,
                f"{queue_id}DlqNotEmpty",
                alarm_name=f"{dlq_name(self._prefix, logical)}-not-empty",
                alarm_description=f"{logical}: messages in the DLQ, each one given up on after "
                f"{constants.QUEUE_MAX_RECEIVE_COUNT} receives; inspect with `orchestrator queue dlq {logical}`, "
                "fix the cause, then `orchestrator queue redrive`.",
                metric=pair.dlq.metric_approximate_number_of_messages_visible(
                    statistic=cloudwatch.Stats.MAXIMUM, period=self._period
                ),
                threshold=constants.DLQ_ALARM_THRESHOLD,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
        threshold = constants.oldest_message_alarm_seconds(logical)
        self.add_alarm(
            cloudwatch.Alarm(
                self,
                f"{queue_id}OldestMessage",
                alarm_name=f"{physical_name(self._prefix, logical)}-oldest-message",
                alarm_description=f"{logical}: a message has waited more than {threshold} s; "
                "its consumer is failing, throttled or not consuming.",
                metric=pair.queue.metric_approximate_age_of_oldest_message(
                    statistic=cloudwatch.Stats.MAXIMUM, period=self._period
                ),
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    # -- functions (called by the slices that create them) -----------------------------------

    def add_function(self, function: lambda_.IFunction, *, name: str | None = None) -> cloudwatch.Alarm:
        """Add a row of errors, duration p95 and throttles for `function`, and an error-rate alarm.

        `name` labels the widgets and the alarm (default: the function's construct id) and
        must be unique among the functions added.
        """
        label = name or function.node.id
        errors = function.metric_errors(statistic=cloudwatch.Stats.SUM, period=self._period)
        invocations = function.metric_invocations(statistic=cloudwatch.Stats.SUM, period=self._period)
        throttles = function.metric_throttles(statistic=cloudwatch.Stats.SUM, period=self._period)
        duration_p95 = function.metric_duration(statistic=cloudwatch.Stats.p(95), period=self._period)
        self.dashboard.add_widgets(
            self._graph(f"{label}: errors", [errors, invocations]),
            self._graph(f"{label}: duration p95 (ms)", [duration_p95]),
            self._graph(f"{label}: throttles", [throttles]),
        )
        error_rate = cloudwatch.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={"errors": errors, "invocations": invocations},
            period=self._period,
            label=f"{label} error rate (%)",
        )
        return self.add_alarm(
            error_rate.create_alarm(
                self,
                f"{label}ErrorRate",
                alarm_name=f"{self._prefix}-{label}-error-rate",
                alarm_description=f"{label}: {constants.FUNCTION_ERROR_RATE_ALARM_PERCENT}% or more of "
                f"invocations failed over {constants.ALARM_PERIOD_SECONDS} s.",
                threshold=constants.FUNCTION_ERROR_RATE_ALARM_PERCENT,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    # -- the API and the workers ----------------------------------------------------------------

    def add_api(self, http_api: apigwv2.IHttpApi, *, name: str = "api") -> cloudwatch.Alarm:
        """Requests, latency (p50/p95) and 4xx/5xx of the HTTP API, and an alarm on its 5xx rate.

        The function answers its own errors with a 500 body instead of failing, so the gateway's 5xx
        count, not the function's error metric, is what sees a broken API.
        """
        requests = http_api.metric_count(
            statistic=cloudwatch.Stats.SUM, period=self._period, label="requests"
        )
        server_errors = http_api.metric_server_error(
            statistic=cloudwatch.Stats.SUM, period=self._period, label="5xx"
        )
        client_errors = http_api.metric_client_error(
            statistic=cloudwatch.Stats.SUM, period=self._period, label="4xx"
        )
        self.dashboard.add_widgets(
            self._graph(f"{name}: requests", [requests]),
            self._graph(
                f"{name}: latency (ms)",
                [
                    http_api.metric_latency(
                        statistic=cloudwatch.Stats.p(50), period=self._period, label="p50"
                    ),
                    http_api.metric_latency(
                        statistic=cloudwatch.Stats.p(95), period=self._period, label="p95"
                    ),
                ],
            ),
            self._graph(f"{name}: 4xx / 5xx", [client_errors, server_errors]),
        )
        rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"errors": server_errors, "requests": requests},
            period=self._period,
            label=f"{name} 5xx rate (%)",
        )
        return self.add_alarm(
            rate.create_alarm(
                self,
                f"{name}ServerErrorRate",
                alarm_name=f"{self._prefix}-{name}-5xx-rate",
                alarm_description=f"{name}: {constants.API_5XX_ALARM_PERCENT}% or more of requests answered 5xx "
                f"over {constants.ALARM_PERIOD_SECONDS} s; the function's log has each one under its correlation id.",
                threshold=constants.API_5XX_ALARM_PERCENT,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def add_fargate(self, cluster_name: str, families: list[str]) -> None:
        """Running tasks per task family (Container Insights `TaskCount`), one line each."""
        metrics: list[cloudwatch.IMetric] = [
            cloudwatch.Metric(
                namespace="ECS/ContainerInsights",
                metric_name="TaskCount",
                dimensions_map={"ClusterName": cluster_name, "TaskDefinitionFamily": family},
                statistic=cloudwatch.Stats.MAXIMUM,
                period=Duration.minutes(1),
                label=family,
            )
            for family in families
        ]
        self.dashboard.add_widgets(self._graph("Fargate: running tasks", metrics))

    # -- the application's own EMF metrics -----------------------------------------------------

    def _app_metric(
        self, service: str, name: str, statistic: str, label: str | None = None
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=constants.METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": service},
            statistic=statistic,
            period=self._period,
            label=label or name,
        )

    def add_task_metrics(self, api_service: str, scheduler_service: str) -> cloudwatch.Alarm:
        """Tasks started/completed/failed/cancelled, task duration and worker run time (EMF from the API),
        and an alarm when the stuck-task reaper had to fail a task."""
        counts = [
            self._app_metric(api_service, name, cloudwatch.Stats.SUM)
            for name in ("TasksStarted", "TasksCompleted", "TasksFailed", "TasksCancelled")
        ]
        self.dashboard.add_widgets(
            self._graph("tasks", counts),
            self._graph(
                "task duration (s)",
                [
                    self._app_metric(api_service, "TaskDuration", cloudwatch.Stats.p(50), "p50"),
                    self._app_metric(api_service, "TaskDuration", cloudwatch.Stats.p(95), "p95"),
                ],
            ),
            self._graph(
                "worker run time (s)",
                [
                    self._app_metric(api_service, "WorkerRunTime", cloudwatch.Stats.p(50), "p50"),
                    self._app_metric(api_service, "WorkerRunTime", cloudwatch.Stats.p(95), "p95"),
                ],
            ),
        )
        stuck = self._app_metric(
            scheduler_service, "stuck_task_reaper.failed", cloudwatch.Stats.SUM, "stuck tasks"
        )
        return self.add_alarm(
            stuck.create_alarm(
                self,
                "StuckTasks",
                alarm_name=f"{self._prefix}-stuck-tasks",
                alarm_description="The stuck-task reaper failed a task that stopped sending heartbeats.",
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
