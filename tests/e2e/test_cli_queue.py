"""The operator's view of the queues, through the real CLI, on both backends."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from functions.api.migrations import HEAD_REVISION
from shared.contracts import MODELS
from shared.queues.local import LocalQueue
from shared.queues.sqs import SqsQueue
from tests.e2e.conftest import CliRunner
from tests.factories import engineering_message

Q = "engineering:queue"


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _kill_one_message(queue: LocalQueue | SqsQueue, max_receives: int) -> None:
    queue.publish_raw(Q, "definitely not json")
    queue.publish(Q, engineering_message())
    for _ in range(max_receives + 1):
        for m in queue.receive(Q, 10, visibility_timeout=0):
            if m.body != "definitely not json":
                queue.delete(Q, m.receipt_handle)
            else:
                queue.release(Q, m.receipt_handle, reason="contract: body is not JSON", visibility_timeout=0)


def _check_stats_dlq_redrive(cli: CliRunner, env: dict[str, str], expect_reason: bool) -> None:
    stats = cli("queue", "stats", "--json", env=env)
    assert stats.returncode == 0, stats.stderr
    by_queue = {row["queue"]: row for row in json.loads(stats.stdout)}
    assert by_queue[Q] == {"queue": Q, "visible": 0, "in_flight": 0, "dlq": 1}

    dlq = cli("queue", "dlq", Q, "--json", env=env)
    assert dlq.returncode == 0, dlq.stderr
    [dead] = json.loads(dlq.stdout)
    assert dead["body"] == "definitely not json"
    assert dead["receive_count"] >= 2
    if expect_reason:
        assert "body is not JSON" in dead["reason"]

    human = cli("queue", "dlq", Q, env={**env, "COLUMNS": "250"})
    assert human.returncode == 0 and "definitely not json" in human.stdout

    redrive = cli("queue", "redrive", Q, "--json", env=env)
    assert json.loads(redrive.stdout) == {"queue": Q, "moved": 1}
    stats = json.loads(cli("queue", "stats", "--json", env=env).stdout)
    assert {row["queue"]: row for row in stats}[Q]["visible"] == 1


def test_local_backend_stats_dlq_redrive(cli: CliRunner) -> None:
    env = {"ORCH_QUEUE_MAX_RECEIVES": "2"}
    _kill_one_message(LocalQueue(Path(os.environ["ORCH_HOME"]) / "queue.db", max_receives=2), 2)
    _check_stats_dlq_redrive(cli, env, expect_reason=True)


def test_sqs_backend_stats_dlq_redrive(cli: CliRunner, moto_endpoint: str) -> None:
    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    queue = SqsQueue("e2e", client=client, max_receives=2)
    queue.ensure_queues(visibility_timeout=0)
    _kill_one_message(queue, 2)
    env = {
        "ORCH_QUEUE_BACKEND": "sqs",
        "ORCH_QUEUE_PREFIX": "e2e",
        "ORCH_AWS_ENDPOINT_URL": moto_endpoint,
        "ORCH_AWS_REGION": "us-east-1",
    }
    _check_stats_dlq_redrive(cli, env, expect_reason=False)


def test_unreachable_sqs_is_exit_5_with_one_line(cli: CliRunner) -> None:
    env = {
        "ORCH_QUEUE_BACKEND": "sqs",
        "ORCH_AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "ORCH_AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    result = cli("queue", "stats", env=env)
    assert result.returncode == 5
    assert result.stderr.startswith("error: cannot reach AWS")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_sqs_queue_is_one_line(cli: CliRunner, moto_endpoint: str) -> None:
    env = {
        "ORCH_QUEUE_BACKEND": "sqs",
        "ORCH_QUEUE_PREFIX": "absent",
        "ORCH_AWS_ENDPOINT_URL": moto_endpoint,
        "ORCH_AWS_REGION": "us-east-1",
    }
    result = cli("queue", "stats", env=env)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "ORCH_QUEUE_PREFIX='absent'" in result.stderr


def test_unknown_queue_is_exit_3(cli: CliRunner) -> None:
    result = cli("queue", "dlq", "nope:queue")
    assert result.returncode == 3
    assert result.stderr.startswith("error: unknown queue 'nope:queue'")


def test_bad_flag_is_exit_2(cli: CliRunner) -> None:
    assert cli("queue", "stats", "--bogus").returncode == 2


def test_contracts_export(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("contracts", "export", str(tmp_path / "schemas"), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == len(MODELS)
    schema = json.loads((tmp_path / "schemas" / "ProgressEvent.schema.json").read_text())
    assert schema["properties"]["type"]["enum"] == ["started", "progress", "completed", "failed"]


def test_db_upgrade_migrates_the_configured_database(cli: CliRunner, tmp_path: Path) -> None:
    first = cli("db", "upgrade", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["revision"] == HEAD_REVISION
    assert (Path(os.environ["ORCH_HOME"]) / "orchestrator.db").exists()
    again = cli("db", "upgrade")
    assert again.returncode == 0 and f"schema at {HEAD_REVISION}" in again.stdout


def test_db_upgrade_unreachable_is_exit_5(cli: CliRunner) -> None:
    result = cli("db", "upgrade", "--database-url", "postgresql+pg8000://nobody@127.0.0.1:9/x")
    assert result.returncode == 5 and result.stderr.startswith("error: cannot reach the database")
