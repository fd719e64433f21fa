"""What a run spent, without processes: the `command` agent's ORCHESTRATOR_USAGE lines, the running cost
that a budget is checked against, the reason a person reads, and the result dict the API's ledger reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker_image.agents import AgentEvent, AgentResult, CommandAdapter, run_agent
from worker_image.agents.base import budget_reason, format_usd, spent_usd
from worker_image.agents.command import parse_usage_line
from worker_image.wrapper import run_result

ADAPTER = CommandAdapter(command="./agent.sh")


def _usage(**fields: Any) -> str:
    return "ORCHESTRATOR_USAGE " + json.dumps(fields)


def test_a_usage_line_is_an_increment_and_not_text() -> None:
    line = _usage(cost_usd=0.12, input_tokens=100, output_tokens=50, cache_tokens=20, model="m", extra=1)
    assert ADAPTER.parse_line(line) == [
        AgentEvent(
            kind="usage",
            text="",
            data={
                "cost_usd": 0.12,
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_tokens": 20,
                "model": "m",
            },
        )
    ]
    # every field is optional
    assert parse_usage_line("ORCHESTRATOR_USAGE {}") == AgentEvent(
        kind="usage",
        text="",
        data={"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0, "cache_tokens": 0, "model": None},
    )


@pytest.mark.parametrize(
    "line",
    ["usage: $1", "ORCHESTRATOR_USAGES {}", "the ORCHESTRATOR_USAGE line is documented", ""],
)
def test_other_lines_are_plain_output(line: str) -> None:
    assert parse_usage_line(line) is None
    assert [e.kind for e in ADAPTER.parse_line(line)] == ["text"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("ORCHESTRATOR_USAGE {not json", "line ignored"),
        (_usage(cost_usd=-5), "cost_usd"),  # a report can never lower what a budget sees
        (_usage(cost_usd="NaN"), "cost_usd"),
        (_usage(input_tokens=1.5), "input_tokens"),
        ("ORCHESTRATOR_USAGE [1]", "line ignored"),
    ],
)
def test_a_bad_usage_line_is_a_visible_non_fatal_error(line: str, why: str) -> None:
    [event] = ADAPTER.parse_line(line)
    assert (event.kind, event.data["fatal"]) == ("error", False)
    assert event.text.startswith("ORCHESTRATOR_USAGE line ignored") and why in event.text
    assert spent_usd(event) == 0.0


def test_a_command_run_sums_its_increments_to_the_micro_dollar() -> None:
    lines = [
        "working",
        _usage(cost_usd=0.1, input_tokens=100, output_tokens=10, cache_tokens=5, model="small"),
        "still working",
        _usage(cost_usd=0.2, input_tokens=200, output_tokens=20, model="big"),
        "done",
    ]
    events = [event for line in lines for event in ADAPTER.parse_line(line)]
    result = ADAPTER.finish(events, 0, False, "", 10)
    assert result.status == "success"
    assert result.cost_usd == 0.3  # not 0.30000000000000004
    assert (result.input_tokens, result.output_tokens, result.cache_tokens) == (300, 30, 5)
    assert result.model == "big"  # the last one named
    assert result.final_answer == "working\nstill working\ndone"  # the usage lines are not the answer
    assert sum(spent_usd(e) for e in events) == pytest.approx(0.3)


def test_the_running_cost_counts_results_and_increments_only() -> None:
    assert spent_usd(AgentEvent(kind="result", text="", data={"cost_usd": 0.5})) == 0.5
    assert spent_usd(AgentEvent(kind="usage", text="", data={"cost_usd": 2})) == 2.0
    assert spent_usd(AgentEvent(kind="text", text="", data={"cost_usd": 9})) == 0.0
    assert spent_usd(AgentEvent(kind="result", text="", data={"cost_usd": None})) == 0.0
    assert spent_usd(AgentEvent(kind="result", text="", data={"cost_usd": True})) == 0.0


def test_amounts_read_as_dollars() -> None:
    assert [format_usd(x) for x in (0, 1, 0.15, 0.0123, 1234.5)] == [
        "$0.00",
        "$1.00",
        "$0.15",
        "$0.0123",
        "$1,234.50",
    ]
    assert budget_reason(1.02, 1) == "budget: spent $1.02 of the $1.00 left"
    assert budget_reason(0, -0.5) == "budget: spent $0.00 of the $0.00 left"  # nothing left, never negative


@pytest.mark.parametrize("budget", [0.0, -1.0])
def test_no_budget_left_starts_nothing(budget: float, tmp_path: Path) -> None:
    # given: a command that would leave a mark
    started = tmp_path / "started"
    adapter = CommandAdapter(command=f"touch {started}")
    events: list[AgentEvent] = []
    # when
    result = run_agent(adapter, "go", tmp_path, 30, events.append, budget_usd=budget)
    # then
    assert (result.status, result.cost_usd, result.exit_code) == ("budget", 0.0, None)
    assert result.reason == "budget: spent $0.00 of the $0.00 left: the agent was not started"
    assert not started.exists() and events == []


def _outcome(**changes: Any) -> AgentResult:
    fields: dict[str, Any] = {
        "status": "success",
        "final_answer": "done",
        "session_id": "s-1",
        "input_tokens": 300,
        "output_tokens": 30,
        "cost_usd": 0.3,
        "duration_ms": 1200,
        "exit_code": 0,
        "reason": None,
        "output_tail": "",
        "cache_tokens": 5,
        "model": "big",
        "cpu_s": 0.12345,
    }
    return AgentResult(**{**fields, **changes})


def test_the_result_dict_names_agent_model_tokens_and_cost() -> None:
    assert run_result("command", _outcome(), "the task budget $1.00") == {
        "status": "success",
        "session_id": "s-1",
        "agent": "command",
        "model": "big",
        "input_tokens": 300,
        "output_tokens": 30,
        "cache_tokens": 5,
        "cost_usd": 0.3,
        "duration_ms": 1200,
        "cpu_s": 0.123,
        "exit_code": 0,
        "reason": None,
        "commit_sha": None,
        "branch": None,
        "files_changed": [],
    }


def test_a_budget_stop_names_the_budget_and_a_long_model_name_is_clipped() -> None:
    stopped = _outcome(status="budget", reason="budget: spent $1.02 of the $1.00 left", model="m" * 300)
    result = run_result("claude-code", stopped, "the task budget $1.00 (spent $0.00)")
    assert result["reason"] == "budget: spent $1.02 of the $1.00 left (the task budget $1.00 (spent $0.00))"
    assert result["model"] == "m" * 128
    # a failure for another reason keeps its reason as it is
    failed = run_result("codex", _outcome(status="failed", reason="exit code 2"), "the task budget $1.00")
    assert failed["reason"] == "exit code 2"
