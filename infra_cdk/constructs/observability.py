"""The dashboard, the alarms and the topic they notify, at what they are worth (issue 23).

Built first with the queues; the compute constructs add their parts with `add_function(fn)`,
`add_api(http_api)`, `add_fargate(...)` and `add_task_metrics(...)`, then the stack calls `finish()`.

Alarms page a person for what they must act on, each failure path seen by exactly one alarm:
- dead letters: the scheduler's `DeadLetters` (every DLQ's depth, summed by `dlq_watch` from SQS's
  attributes). Not metric math over the DLQs: an alarm's math takes at most 10 metrics (a hard limit);
- a message older than its queue's threshold: MAX(age / threshold) over the queues, in alarms of at
  most 10 queues each. A consumer that crashes or stops consuming shows here (and its messages end in a
  DLQ), so consumers get no error alarm of their own;
- errors of the functions nothing else watches (the scheduler, the ECS event handlers, the deploy hook);
- the HTTP API's 5xx rate (the API and the Telegram webhook answer through it);
- stuck tasks (the reaper had to fail or requeue one).
Per-queue and per-function graphs live in the SQS and Lambda consoles for free; the dashboard keeps
within the free tier's 50 metrics (`DASHBOARD_METRIC_LIMIT`) with the alarms' states and a few graphs.
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

_KEY_PENDING_WINDOW_DAYS = 7
ALARM_MATH_METRIC_LIMIT = 10
"""Metrics one metric-math alarm may reference (a hard CloudWatch limit)."""
DASHBOARD_METRIC_LIMIT = 50
"""A dashboard of at most this many metrics is in the free tier (3 of them); tests hold the dashboard to it."""
FUNCTION_ERRORS_ALARM_COUNT = 1
"""Any failed invocation of a function no other alarm watches is worth a look."""
HTTP_FUNCTIONS = frozenset({constants.API_FUNCTION, constants.TELEGRAM_WEBHOOK_FUNCTION})
"""Answer through the HTTP API: their failures are its 5xx."""


class Observability(Construct):
    """One dashboard and one alarm topic per stack."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, queues: Mapping[str, QueuePair]
    ) -> None:
        super().__init__(scope, construct_id)
        self._prefix = config.resource_prefix
        self.alarms: list[cloudwatch.Alarm] = []
        self._unwatched_errors: dict[str, cloudwatch.IMetric] = {}
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
                markdown=f"# {self._prefix}\nThe alarms, then the queues, the API, tasks and their spend, "
                "the scheduler's repairs and the Fargate workers. Per queue and per function: the SQS and "
                "Lambda consoles.",
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

    def _over(
        self, function: str, metrics: dict[str, cloudwatch.IMetric], label: str, terms: Sequence[str] = ()
    ) -> cloudwatch.MathExpression:
        """`function` (SUM, MAX) of `terms` (default: the metrics' ids) in one expression."""
        return cloudwatch.MathExpression(
            expression=f"{function}([{', '.join(terms or list(metrics))}])",
            using_metrics=metrics,
            period=self._period,
            label=label,
        )

    def _page_when_at_least(
        self,
        metric: cloudwatch.IMetric,
        construct_id: str,
        name: str,
        description: str,
        *,
        threshold: float = 1,
        periods: int = 1,
    ) -> cloudwatch.Alarm:
        """An alarm on the topic when `metric` reaches `threshold` in any of the last `periods` periods;
        no data (a quiet system emits none) is not a breach."""
        return self.add_alarm(
            cloudwatch.Alarm(
                self,
                construct_id,
                metric=metric,
                alarm_name=f"{self._prefix}-{name}",
                alarm_description=description,
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=periods,
                datapoints_to_alarm=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    # -- queues -----------------------------------------------------------------------------

    def _add_queues(self, queues: Mapping[str, QueuePair]) -> None:
        visible: dict[str, cloudwatch.IMetric] = {}
        for index, pair in enumerate(queues.values()):
            visible[f"v{index}"] = pair.queue.metric_approximate_number_of_messages_visible(
                statistic=cloudwatch.Stats.MAXIMUM, period=self._period
            )
        self.dashboard.add_widgets(
            self._graph(
                "Queues: messages waiting (all queues)",
                [self._over("SUM", visible, "visible")],
            )
        )
        items = list(queues.items())
        for chunk, start in enumerate(range(0, len(items), ALARM_MATH_METRIC_LIMIT)):
            self._add_oldest_message_alarm(chunk + 1, dict(items[start : start + ALARM_MATH_METRIC_LIMIT]))

    def _add_oldest_message_alarm(self, number: int, queues: Mapping[str, QueuePair]) -> None:
        """One alarm for up to 10 queues: the oldest message's age over its queue's own threshold, at most."""
        ages: dict[str, cloudwatch.IMetric] = {}
        ratios = []
        for index, (logical, pair) in enumerate(queues.items()):
            ages[f"age{index}"] = pair.queue.metric_approximate_age_of_oldest_message(
                statistic=cloudwatch.Stats.MAXIMUM, period=self._period
            )
            ratios.append(f"age{index} / {constants.oldest_message_alarm_seconds(logical)}")
        ratio = self._over("MAX", ages, "oldest message / its queue's threshold", ratios)
        self._page_when_at_least(
            ratio,
            f"OldestMessage{number}",
            f"oldest-message-{number}",
            "A message has waited longer than its queue's threshold in one of: "
            f"{', '.join(queues)}. Its consumer is failing, throttled or not consuming.",
        )

    # -- functions (called by the slices that create them) -----------------------------------

    def add_function(self, function: lambda_.IFunction, *, name: str | None = None) -> None:
        """Watch `function`'s errors, unless another alarm sees its failures already: a queue's consumer
        (the oldest-message and dead-letter alarms) or a function behind the HTTP API (its 5xx rate).

        `name` labels it (default: the function's construct id) and must be unique among the functions added.
        """
        label = name or function.node.id
        # under SnapStart the mapping belongs to the function's alias, a child of the function
        fed_by_queue = any(isinstance(node, lambda_.EventSourceMapping) for node in function.node.find_all())
        if fed_by_queue or label in HTTP_FUNCTIONS:
            return
        if label in self._unwatched_errors:
            raise ValueError(f"function {label!r} added twice")
        self._unwatched_errors[label] = function.metric_errors(
            statistic=cloudwatch.Stats.SUM, period=self._period, label=label
        )

    def finish(self) -> None:
        """The errors alarm of the functions added, and every alarm's state on the dashboard."""
        items = list(self._unwatched_errors.items())
        graphs: list[cloudwatch.IWidget] = []
        for chunk, start in enumerate(range(0, len(items), ALARM_MATH_METRIC_LIMIT)):
            errors = {
                f"e{start + i}": metric
                for i, (_, metric) in enumerate(items[start : start + ALARM_MATH_METRIC_LIMIT])
            }
            names = [label for label, _ in items[start : start + ALARM_MATH_METRIC_LIMIT]]
            total = self._over("SUM", errors, "errors")
            self._page_when_at_least(
                total,
                f"FunctionErrors{chunk + 1}",
                f"function-errors-{chunk + 1}",
                f"An invocation failed in: {', '.join(names)}. Each function's log has it under its "
                "correlation id.",
                threshold=FUNCTION_ERRORS_ALARM_COUNT,
            )
            graphs.append(self._graph(f"errors: {', '.join(names)}", list(errors.values())))
        self.dashboard.add_widgets(*graphs)
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(alarms=list(self.alarms), title="Alarms", width=24, height=4)
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
        """Tasks started/completed/failed/cancelled, task duration and worker run time, spend in USD (EMF
        from the API), the scheduler's aggregates (`functions.scheduler.handler.SCHEDULER_METRICS`), and the alarms on
        stuck tasks and dead letters; returns the stuck-tasks alarm."""
        counts = [
            self._app_metric(api_service, name, cloudwatch.Stats.SUM)
            for name in ("TasksStarted", "TasksCompleted", "TasksFailed", "TasksCancelled")
        ]
        scheduler = [
            self._app_metric(scheduler_service, name, cloudwatch.Stats.SUM)
            for name in (
                "StuckTasks",
                "Repairs",
                "RepairFailures",
                "HealthFlips",
                "SyncFailures",
                "ScheduledRuns",
            )
        ]
        dead_letters = self._app_metric(
            scheduler_service, "DeadLetters", cloudwatch.Stats.MAXIMUM, "dead letters"
        )
        self.dashboard.add_widgets(
            self._graph("tasks", counts),
            self._graph(
                "task duration / worker run time (s, p95)",
                [
                    self._app_metric(api_service, "TaskDuration", cloudwatch.Stats.p(95), "task p95"),
                    self._app_metric(api_service, "WorkerRunTime", cloudwatch.Stats.p(95), "worker p95"),
                ],
            ),
            self._graph("scheduler: repairs and runs", [*scheduler, dead_letters]),
            # issue 21: what agents and workers cost, one aggregate the API emits per ledger entry (no
            # dimension per person or project: `orchestrator usage` has those, from the ledger)
            self._graph(
                "spend (USD, agents and workers)",
                [self._app_metric(api_service, "SpendUsd", cloudwatch.Stats.SUM, "spend USD")],
            ),
        )
        self._page_when_at_least(
            dead_letters,
            "DeadLetters",
            "dead-letters",
            f"Messages in the DLQs, each given up on after {constants.QUEUE_MAX_RECEIVE_COUNT} receives; the "
            "scheduler's log line names each queue. Inspect with `orchestrator queue dlq <queue>`, fix the "
            "cause, then `orchestrator queue redrive`.",
            # dlq_watch reports every 5 min while any DLQ holds a message: one period may miss its tick
            periods=2,
        )
        stuck = self._app_metric(scheduler_service, "StuckTasks", cloudwatch.Stats.SUM, "stuck tasks")
        return self._page_when_at_least(
            stuck,
            "StuckTasks",
            "stuck-tasks",
            "The stuck-task reaper failed (or requeued) a task that stopped sending heartbeats.",
        )
