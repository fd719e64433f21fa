"""`Observability.add_function`: the hook later slices use to put their functions on the dashboard."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.observability import Observability
from shared.contracts import QUEUES


@pytest.fixture(scope="module")
def observed() -> tuple[Template, Observability]:
    # given the queues and observability constructs, and a function built here, in the test only
    stack = Stack(App(), "ObservabilityTest")
    config = StackConfig(env_name="test", github_owner="octocat")
    messaging = Messaging(stack, "Messaging", config=config)
    observability = Observability(stack, "Observability", config=config, queues=messaging.queues)
    function = lambda_.Function(
        stack,
        "EngineeringConsumer",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )

    # when
    observability.add_function(function)

    return Template.from_stack(stack), observability


def _function_metrics(template: Template) -> list[str]:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    return [name for name in ("Errors", "Invocations", "Duration", "Throttles", "p95") if name in body]


def test_function_row_has_errors_duration_p95_and_throttles(observed: tuple[Template, Observability]) -> None:
    template, _ = observed
    assert _function_metrics(template) == ["Errors", "Invocations", "Duration", "Throttles", "p95"]


def test_function_gets_an_error_rate_alarm_on_the_alarm_topic(
    observed: tuple[Template, Observability],
) -> None:
    template, observability = observed
    template.resource_count_is("AWS::CloudWatch::Alarm", 2 * len(QUEUES) + 1)
    alarms: Mapping[str, Any] = template.find_resources(
        "AWS::CloudWatch::Alarm",
        {"Properties": {"AlarmName": "codegen-orch-test-EngineeringConsumer-error-rate"}},
    )
    (alarm,) = alarms.values()
    props = alarm["Properties"]
    assert props["Threshold"] == constants.FUNCTION_ERROR_RATE_ALARM_PERCENT
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["TreatMissingData"] == "notBreaching"
    (expression,) = [m for m in props["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "IF(invocations > 0, 100 * errors / invocations, 0)"
    assert {m["Id"] for m in props["Metrics"]} == {expression["Id"], "errors", "invocations"}
    assert len(props["AlarmActions"]) == 1
    assert observability.alarms[-1].node.id == "EngineeringConsumerErrorRate"


def test_function_metrics_are_scoped_to_that_function(observed: tuple[Template, Observability]) -> None:
    template, _ = observed
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Metrics": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Id": "errors",
                            "MetricStat": Match.object_like(
                                {
                                    "Metric": Match.object_like(
                                        {"Dimensions": [{"Name": "FunctionName", "Value": Match.any_value()}]}
                                    )
                                }
                            ),
                        }
                    )
                ]
            )
        },
    )
