"""The ledger's pure parts: reading the wrapper's report, pricing worker time, months and money text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from functions.api.services.budgets import usd_text
from functions.api.services.usage import month_start, read_report, worker_time_cost
from shared.contracts.spend import to_micros, to_usd
from shared.spend_settings import SpendControlSettings


def test_a_full_report_is_read_as_is() -> None:
    report = read_report(
        {
            "cost_usd": 0.0123,
            "input_tokens": 1000,
            "output_tokens": 20,
            "cache_tokens": 5000,
            "model": " claude-sonnet ",
            "agent": "claude_code",
            "duration_ms": 1234.9,
            "status": "success",
        }
    )
    assert report is not None
    assert (report.cost_usd, report.input_tokens, report.output_tokens, report.cache_tokens) == (
        0.0123,
        1000,
        20,
        5000,
    )
    assert (report.model, report.agent, report.duration_ms) == ("claude-sonnet", "claude_code", 1234)


@pytest.mark.parametrize(
    "result",
    [
        None,
        {},
        {"status": "success", "files_changed": ["a"]},
        {"cost_usd": True, "input_tokens": False},
        {"cost_usd": float("inf"), "output_tokens": float("nan")},
        {"cost_usd": -0.01, "cache_tokens": -1},
        {"cost_usd": "0.5", "input_tokens": "10"},
    ],
)
def test_nothing_countable_is_no_report(result: object) -> None:
    assert read_report(result) is None  # type: ignore[arg-type]


def test_a_long_model_name_is_cut_not_refused() -> None:
    report = read_report({"cost_usd": 0, "model": "m" * 500, "agent": 7})
    assert report is not None and report.model == "m" * 128 and report.agent is None
    assert report.cost_usd == 0


def test_micro_dollars_sum_exactly() -> None:
    parts = [0.37, 0.25, 0.0123, 0.1, 0.2]
    assert to_usd(sum(to_micros(p) for p in parts)) == 0.9323
    assert sum(parts) != 0.9323, "floats alone would not be exact"


def test_worker_time_is_priced_from_the_settings() -> None:
    settings = SpendControlSettings(
        worker_vcpu=0.5, worker_memory_gb=1.0, price_vcpu_hour_usd=0.04, price_gb_hour_usd=0.004
    )
    vcpu_s, gb_s, micros = worker_time_cost(7200, settings)
    assert (vcpu_s, gb_s) == (3600, 7200)
    assert micros == 40_000 + 8_000
    assert worker_time_cost(0, settings) == (0, 0, 0)


def test_months_are_calendar_months_in_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert month_start(datetime(2026, 3, 1, 5, 0, tzinfo=tokyo)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert month_start(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("micros", "text"),
    [(1_000_000, "$1.00"), (1_020_000, "$1.02"), (12_300, "$0.0123"), (0, "$0.00")],
)
def test_money_text_never_rounds_spend_away(micros: int, text: str) -> None:
    assert usd_text(micros) == text
