"""The handler shell: one object per container, the Powertools decorator stack, metrics flushed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.metrics.provider import cold_start

from functions.infra.handler import lambda_handler as infra_handler
from functions.infra.logic import Infra
from shared.contracts import ProvisionerMessage, dump_message
from shared.contracts.api import Server
from shared.handler_shell import PerContainer, lambda_entry
from shared.observability import correlation, count, get_logger, tracing_enabled
from shared.queues.consume import process_queue_event
from shared.queues.local_runner import sqs_event
from shared.queues.port import ReceivedMessage
from worker_image.ansible_runner.job import RunnerJob


@dataclass
class FakeLambdaContext:
    function_name: str = "orch-test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:orch-test-function"
    aws_request_id: str = "req-1"


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _emf(stdout: str, metric: str) -> list[dict[str, Any]]:
    return [line for line in _json_lines(stdout) if "_aws" in line and metric in line]


def _received(body: str, n: int) -> ReceivedMessage:
    return ReceivedMessage(f"m-{n}", body, f"r-{n}", 1, datetime.now(UTC))


# -- PerContainer ----------------------------------------------------------------------------


def test_the_dependencies_are_built_once_per_container_even_by_concurrent_first_calls() -> None:
    built: list[object] = []

    def build() -> object:
        time.sleep(0.01)  # a slow build: every thread arrives while the first one builds
        built.append(object())
        return built[-1]

    container = PerContainer(build)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(container.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(built) == 1
    assert all(found is built[0] for found in seen)


def test_reset_closes_the_old_object_and_the_next_call_builds_a_new_one() -> None:
    closed: list[int] = []
    resets: list[str] = []
    numbers = iter(range(10))
    container = PerContainer(lambda: next(numbers), close=closed.append, on_reset=lambda: resets.append("x"))

    container.reset()  # never built: nothing to close, the shared state is reset all the same
    first = container.get()
    assert container.get() == first
    container.reset()

    assert closed == [first]
    assert resets == ["x", "x"]
    assert container.get() == first + 1


# -- lambda_entry ------------------------------------------------------------------------------


def test_in_lambda_every_log_line_carries_the_context_and_the_correlation_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @lambda_entry(correlation_id_path="id")
    def handler(event: dict[str, Any], context: Any, greeting: str | None = None) -> str:
        get_logger().info(greeting or "hello")
        return "done"

    # when an EventBridge-shaped event arrives with a Lambda context, inside an outer correlation
    # (set explicitly: an earlier test in the same process may have left any id on the shared logger)
    with correlation("outer-7"):
        assert handler({"id": "evt-42"}, FakeLambdaContext(), greeting="hi") == "done"
        get_logger().info("after the invocation")

    # then the line logged inside carries the context and the event's correlation id; nothing leaks after
    inside, after = _json_lines(capsys.readouterr().err)[-2:]
    assert inside["message"] == "hi"
    assert inside["correlation_id"] == "evt-42"
    assert inside["function_name"] == "orch-test-function"
    assert inside["function_request_id"] == "req-1"
    assert "cold_start" in inside
    assert after["correlation_id"] == "outer-7"
    assert "function_name" not in after


def test_the_cold_start_metric_is_emitted_once_and_counted_metrics_are_flushed_each_time(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cold_start, "is_cold_start", True)  # as in a fresh container

    @lambda_entry
    def handler(event: dict[str, Any], context: Any) -> None:
        count("ShellTestThings")

    handler({}, FakeLambdaContext())
    handler({}, FakeLambdaContext(aws_request_id="req-2"))

    stdout = capsys.readouterr().out
    assert len(_emf(stdout, "ColdStart")) == 1
    assert [line["ShellTestThings"] for line in _emf(stdout, "ShellTestThings")] == [[1.0], [1.0]]


def test_without_a_context_there_are_no_lambda_keys_and_metrics_are_still_flushed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @lambda_entry
    def handler(event: dict[str, Any], context: Any) -> None:
        get_logger().info("embedded call")
        count("ShellTestEmbedded")

    handler({}, None)

    captured = capsys.readouterr()
    [line] = [line for line in _json_lines(captured.err) if line["message"] == "embedded call"]
    assert "function_name" not in line and "cold_start" not in line
    assert len(_emf(captured.out, "ShellTestEmbedded")) == 1
    assert not _emf(captured.out, "ColdStart")


def test_a_failing_record_still_yields_the_partial_batch_response(capsys: pytest.CaptureFixture[str]) -> None:
    handled: list[str] = []

    @lambda_entry
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        def record(message: ProvisionerMessage, _record: Any) -> None:
            if message.request_id == "boom":
                raise RuntimeError("launcher exploded")
            count("ShellTestRecords")
            handled.append(message.request_id)

        return process_queue_event(event, "provisioner:queue", record, context)

    bodies = [dump_message(ProvisionerMessage(request_id=rid, server_handle="s")) for rid in ("ok", "boom")]
    event = sqs_event(
        "arn:aws:sqs:us-east-1:0:orch-provisioner-queue", [_received(b, n) for n, b in enumerate(bodies)]
    )

    assert handler(event, FakeLambdaContext()) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert handled == ["ok"]
    assert len(_emf(capsys.readouterr().out, "ShellTestRecords")) == 1


def test_tracing_is_on_only_inside_lambda_and_never_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE", "POWERTOOLS_TRACE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing_enabled()
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    assert tracing_enabled()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    assert not tracing_enabled()
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED")
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    assert not tracing_enabled()


def test_the_embedded_stack_never_imports_the_xray_sdk() -> None:
    code = (
        "import sys\n"
        "from functions.scheduler.handler import lambda_handler\n"
        "try:\n"
        "    lambda_handler({'job': 'nope'}, None)\n"
        "except Exception:\n"
        "    pass\n"
        "print('aws_xray_sdk' in sys.modules)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "False"


# -- the metrics a function counted are flushed -------------------------------------------------


class _OneServerApi:
    def get_server(self, handle: str) -> Server:
        return Server(
            id="id-1",
            handle=handle,
            host="203.0.113.7",
            ssh_user="deploy",
            ssh_key_ref="secret://servers/s/ssh_key",
            status="up",
            labels={},
            owner_id="u-1",
            created_at=datetime.now(UTC),
        )


class _StartingLauncher:
    def launch(self, job: RunnerJob) -> str:
        return "started"


def test_the_infra_function_flushes_its_ansible_jobs_metric_as_emf(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given the infra function with a launcher that starts every job
    infra = Infra(_OneServerApi(), queue=None, launcher=_StartingLauncher(), timeout_s=60)  # type: ignore[arg-type]
    message = ProvisionerMessage(request_id="p-1", server_handle="prod-1", job_type="ping")
    event = sqs_event("arn:aws:sqs:us-east-1:0:orch-provisioner-queue", [_received(dump_message(message), 1)])

    # when a provisioner message is consumed, in Lambda
    assert infra_handler(event, FakeLambdaContext(), infra=infra) == {"batchItemFailures": []}

    # then its count reaches stdout as one EMF document, in the project's namespace
    [emf] = _emf(capsys.readouterr().out, "AnsibleJobs")
    assert emf["AnsibleJobs"] == [1.0]
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "CodegenOrchestrator"
    assert {"Name": "AnsibleJobs", "Unit": "Count"} in directive["Metrics"]
