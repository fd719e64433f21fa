"""The webhook is an ack path: its cold start must not pay for aiogram (~2 s) or anything heavy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("aiogram", "aiohttp", "langgraph", "sqlalchemy", "copier", "ansible_runner", "moto", "aws_cdk")


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_the_webhook_handler_loads_no_aiogram_boto3_or_httpx() -> None:
    loaded = _modules_after_import("functions.telegram_webhook.handler")
    offenders = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert offenders == [], f"the webhook's cold start loads {offenders[:5]}"
    assert "boto3" not in loaded, "boto3 is loaded only when an AWS adapter is built"
    assert "httpx" not in loaded, "the ack path talks to no HTTP API"


@pytest.mark.parametrize(
    "module",
    [
        "cli.local.telegram_polling",
        "cli.commands_telegram",
        "functions.telegram_notifier.handler",
        "functions.product_owner.chat",
    ],
)
def test_the_senders_load_no_aiogram(module: str) -> None:
    """The one Telegram client is aiogram-free: sending a message costs no aiogram cold start."""
    loaded = _modules_after_import(module)
    assert not [m for m in loaded if m.split(".")[0] in ("aiogram", "aiohttp")]


def test_the_import_benchmark_measures_the_webhook() -> None:
    from tests.benchmarks.bench_telegram_import import WEBHOOK, cold_import_ms

    assert cold_import_ms(WEBHOOK, runs=1) > 0
