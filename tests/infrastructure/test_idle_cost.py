"""The idle fixed cost computed from the synthesized template (issue 23: at most $15 a month). A figure computed
from the template and list prices, not a timing: asserting on it is safe."""

from __future__ import annotations

from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.idle_cost import (
    TypicalTask,
    idle_lines,
    report,
    typical_task_lines,
    unpriced_types,
    usage_lines,
)

IDLE_BUDGET_USD = 15.0


def _total(app: Synthesized) -> float:
    return sum(line.monthly for line in idle_lines(app.template_json))


def test_every_resource_type_is_priced_or_known_to_cost_nothing_at_rest(any_app: Synthesized) -> None:
    assert unpriced_types(any_app.template_json) == set()


def test_the_default_stack_costs_at_most_15_dollars_a_month_at_rest(default_app: Synthesized) -> None:
    print(report(default_app.template_json))  # the table, with -s
    assert _total(default_app) <= IDLE_BUDGET_USD
    by_resource = {line.resource: line for line in idle_lines(default_app.template_json)}
    assert by_resource["Aurora Serverless v2 capacity"].monthly == 0  # paused
    assert by_resource["interface endpoints (endpoint-AZs)"].monthly == 0
    assert by_resource["NAT gateways"].monthly == 0


def test_the_always_on_instance_is_priced_as_such(variant_app: Synthesized) -> None:
    by_resource = {line.resource: line for line in idle_lines(variant_app.template_json)}
    assert round(by_resource["RDS db.t4g.micro (always on)"].monthly, 2) == 11.68
    assert round(by_resource["RDS gp3 storage (GB allocated)"].monthly, 2) == 2.30
    assert by_resource["NAT gateways"].monthly > 30  # the variant turns the NAT gateway on
    assert _total(variant_app) > _total(_default_like(variant_app))


def _default_like(app: Synthesized) -> Synthesized:
    """The variant without its database and NAT: what remains is priced the same way."""
    resources = {
        k: r
        for k, r in app.template_json["Resources"].items()
        if r["Type"] not in ("AWS::RDS::DBInstance", "AWS::EC2::NatGateway", "AWS::EC2::EIP")
    }
    return Synthesized(app.stack, app.template, {"Resources": resources}, app.outdir)


def test_what_the_template_cannot_show_is_estimated_not_counted(default_app: Synthesized) -> None:
    lines = {line.resource: line for line in usage_lines(default_app.template_json, custom_metrics=10)}
    assert round(lines["custom metrics the functions emit (EMF)"].monthly, 2) == 3.00
    assert lines["SQS polls by event-source mappings"].quantity > 0


def test_one_typical_task_is_priced_from_its_stated_assumptions() -> None:
    lines = {line.resource: line.monthly for line in typical_task_lines(TypicalTask(worker_minutes=60))}
    assert round(lines["Fargate worker vCPU-hours"], 5) == 0.04048
    assert round(lines["Fargate worker GB-hours"], 5) == round(2 * 0.004445, 5)
    assert 0.03 < sum(line.monthly for line in typical_task_lines()) < 0.20  # cents, not dollars
