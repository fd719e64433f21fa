"""Float fields of the contracts refuse NaN and infinity, on the queues (`Contract`) and in request
bodies (`Dto`): PostgreSQL's json and the JSON standard have no such values, and pydantic would
otherwise serialise them as `null` without a word."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.contracts.payloads import TaskResult
from shared.contracts.spend import BudgetSet


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_wire_contract_refuses_a_non_finite_float(value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskResult(cost_usd=value)
    assert caught.value.errors()[0]["loc"] == ("cost_usd",)
    assert caught.value.errors()[0]["type"] == "finite_number"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_queue_body_with_a_non_finite_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskResult.model_validate_json('{"status": "success", "cost_usd": TOKEN}'.replace("TOKEN", token))
    assert caught.value.errors()[0]["loc"] == ("cost_usd",)


def test_a_request_body_refuses_a_non_finite_float() -> None:
    with pytest.raises(ValidationError) as caught:
        BudgetSet(project="blog", usd=float("nan"), per="task")
    assert caught.value.errors()[0]["type"] == "finite_number"


def test_finite_floats_still_pass() -> None:
    assert TaskResult(cost_usd=0.25).cost_usd == 0.25
    assert BudgetSet(project="blog", usd=1e6, per="month").usd == 1e6
