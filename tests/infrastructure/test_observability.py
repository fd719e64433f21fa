"""Observability at what it is worth (issue 23): a few alarms a person acts on, each failure path seen by
one of them, alarm math within CloudWatch's 10-metric limit, and a dashboard inside the free tier."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template
from aws_cdk.aws_lambda_event_sources import SqsEventSource

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.observability import ALARM_MATH_METRIC_LIMIT, DASHBOARD_METRIC_LIMIT, Observability
from shared.contracts import QUEUES


def _function(stack: Stack, construct_id: str) -> lambda_.Function:
    return lambda_.Function(
        stack,
        construct_id,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )


@pytest.fixture(scope="module")
def observed() -> tuple[Template, Observability]:
    # given the queues, a scheduled function, a queue consumer and the API function, built here only
    stack = Stack(App(), "ObservabilityTest")
    config = StackConfig(env_name="test", github_owner="octocat")
    messaging = Messaging(stack, "Messaging", config=config)
    observability = Observability(stack, "Observability", config=config, queues=messaging.queues)
    consumer = _function(stack, "EngineeringConsumer")
    consumer.add_event_source(SqsEventSource(sqs.Queue(stack, "Inbox")))

    # when every function is added and the dashboard finished
    observability.add_function(_function(stack, "Scheduler"), name="scheduler")
    observability.add_function(consumer, name="engineering")
    observability.add_function(_function(stack, "Api"), name=constants.API_FUNCTION)
    observability.add_task_metrics(constants.API_FUNCTION, constants.SCHEDULER_FUNCTION)
    observability.finish()

    return Template.from_stack(stack), observability


def _alarms(template: Template) -> dict[str, Mapping[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


def _alarm_metrics(alarm: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]


def dashboard_metric_count(body: Any) -> int:
    """Metrics a dashboard body graphs (what the free tier counts): lines naming a namespace, hidden
    inputs of math expressions included."""
    return sum(1 for line in _body_lines(body) if line and isinstance(line[0], str))


def _body_lines(body: Any) -> list[list[Any]]:
    """Every metric line of a dashboard body's widgets (tokens in the body read as "TOKEN")."""
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    widgets = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))["widgets"]
    return [line for widget in widgets for line in widget.get("properties", {}).get("metrics", [])]


def test_a_handful_of_alarms_each_on_the_alarm_topic(observed: tuple[Template, Observability]) -> None:
    template, observability = observed
    queue_alarms = -(-len(QUEUES) // ALARM_MATH_METRIC_LIMIT)
    names = set(_alarms(template))
    assert names == {
        *(f"codegen-orch-test-oldest-message-{n}" for n in range(1, queue_alarms + 1)),
        "codegen-orch-test-dead-letters",
        "codegen-orch-test-stuck-tasks",
        "codegen-orch-test-function-errors-1",
    }
    assert len(observability.alarms) == len(names)
    for alarm in _alarms(template).values():
        assert len(alarm["AlarmActions"]) == 1 and alarm["TreatMissingData"] == "notBreaching"
        assert len(_alarm_metrics(alarm)) <= ALARM_MATH_METRIC_LIMIT


def test_every_queue_is_watched_for_its_oldest_message_against_its_own_threshold(
    observed: tuple[Template, Observability],
) -> None:
    template, _ = observed
    watched = [
        metric
        for name, alarm in _alarms(template).items()
        if "oldest-message" in name
        for metric in _alarm_metrics(alarm)
    ]
    assert len(watched) == len(QUEUES)
    assert {m["MetricName"] for m in watched} == {"ApproximateAgeOfOldestMessage"}
    expressions = " ".join(
        m["Expression"]
        for name, alarm in _alarms(template).items()
        if "oldest-message" in name
        for m in alarm["Metrics"]
        if "Expression" in m
    )
    for logical in QUEUES:
        assert f"/ {constants.oldest_message_alarm_seconds(logical)}" in expressions


def test_dead_letters_and_stuck_tasks_are_one_aggregate_metric_each(
    observed: tuple[Template, Observability],
) -> None:
    template, _ = observed
    alarms = _alarms(template)
    for name, metric in (("dead-letters", "DeadLetters"), ("stuck-tasks", "StuckTasks")):
        (watched,) = _alarm_metrics(alarms[f"codegen-orch-test-{name}"])
        assert watched["MetricName"] == metric and watched["Namespace"] == constants.METRICS_NAMESPACE
        assert watched["Dimensions"] == [{"Name": "service", "Value": constants.SCHEDULER_FUNCTION}]


def test_only_functions_no_other_alarm_watches_get_an_errors_alarm(
    observed: tuple[Template, Observability],
) -> None:
    # the consumer's failures show in its queue (oldest message, dead letters), the API's as 5xx
    template, _ = observed
    errors = _alarm_metrics(_alarms(template)["codegen-orch-test-function-errors-1"])
    assert [m["MetricName"] for m in errors] == ["Errors"]
    (dimension,) = errors[0]["Dimensions"]
    assert dimension["Name"] == "FunctionName" and "Scheduler" in json.dumps(dimension["Value"])


def test_adding_a_function_twice_is_refused(observed: tuple[Template, Observability]) -> None:
    _, observability = observed
    with pytest.raises(ValueError, match="added twice"):
        observability.add_function(lambda_.Function.from_function_name(Stack(), "F", "f"), name="scheduler")


def test_the_dashboard_is_within_the_free_tier_and_shows_the_alarms(
    observed: tuple[Template, Observability],
) -> None:
    template, _ = observed
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    assert dashboard_metric_count(body) <= DASHBOARD_METRIC_LIMIT
    text = json.dumps(body)
    assert '\\"type\\":\\"alarm\\"' in text
    for name in ("TasksStarted", "StuckTasks", "DeadLetters", "ApproximateNumberOfMessagesVisible"):
        assert name in text, name


def _dashboard_lines(template: Template) -> list[list[Any]]:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    return _body_lines(dashboard["Properties"]["DashboardBody"])


def test_spend_is_one_aggregate_graph_from_the_api_and_pages_nobody(
    observed: tuple[Template, Observability],
) -> None:
    # issue 21: the API emits SpendUsd once per ledger entry; budgets stop spend, an alarm would not
    template, _ = observed
    spend = [line for line in _dashboard_lines(template) if "SpendUsd" in line]
    expected = [constants.METRICS_NAMESPACE, "SpendUsd", "service", constants.API_FUNCTION]
    assert spend == [[*expected, {"label": "spend USD", "stat": "Sum"}]]
    assert not any(
        m["MetricName"] == "SpendUsd" for alarm in _alarms(template).values() for m in _alarm_metrics(alarm)
    )
