"""A provisioner result that no graph waits for (server_sync's scheduled ping, a recovery) is recorded on its
server with an API client alone: the deploy function does not build its graph (LangGraph, the checkpointer)
for it. Every server is pinged every few minutes, so without this every stack, and every cold deploy
Lambda, loaded LangGraph within minutes of starting to record "localhost is up"."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.deploy import handler
from shared.contracts import ProvisionerResult, is_server_check, server_check_id
from shared.handler_shell import PerContainer
from shared.queues.local_runner import sqs_event
from shared.queues.port import ReceivedMessage

ARN = "arn:aws:sqs:us-east-1:123456789012:orch-provisioner-results"


class FakeApi:
    def __init__(self) -> None:
        self.checks: list[tuple[str, str, dict[str, Any]]] = []

    def record_server_check(self, handle: str, status: str, facts: dict[str, Any]) -> None:
        self.checks.append((handle, status, facts))


class FakeDeploy:
    def __init__(self) -> None:
        self.api = FakeApi()
        self.resumed: list[str] = []

    def resume(self, request_id: str, payload: dict[str, Any]) -> str:
        self.resumed.append(request_id)
        return "resumed"


def _event(*results: ProvisionerResult) -> dict[str, Any]:
    received = [
        ReceivedMessage(f"m{n}", r.model_dump_json(), f"h{n}", 1, datetime.now(UTC))
        for n, r in enumerate(results)
    ]
    return sqs_event(ARN, received)


def _result(request_id: str, **fields: Any) -> ProvisionerResult:
    values: dict[str, Any] = {"status": "success", "server_handle": "web-1", "reachable": True}
    return ProvisionerResult(request_id=request_id, **(values | fields))


def test_server_check_ids_are_told_from_a_graphs_request_ids() -> None:
    assert server_check_id("sync", "web-1", 42) == "sync:web-1:42"
    assert is_server_check("sync:web-1:42") and is_server_check("recovery:web-1:flip-7")
    # a graph's: its task's id first (shared.graphs.driver.request_id)
    assert not is_server_check("0b7d6f0e-5a52-4c1b-9a0e-3f1f6f1c2d3e:provision:1")
    assert not is_server_check("sync-7:provision:1")  # only the whole first part counts


def test_a_scheduled_ping_is_recorded_without_building_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()

    def no_graph() -> Any:
        raise AssertionError("the deploy graph was built for a server check")

    monkeypatch.setattr(handler, "container", PerContainer(no_graph))
    monkeypatch.setattr(handler, "checks_client", PerContainer(lambda: api))
    reply = handler.lambda_handler(
        _event(
            _result(server_check_id("sync", "web-1", 7), facts={"os": "debian"}),
            _result(server_check_id("recovery", "web-2", "flip-1"), server_handle="web-2", reachable=False),
        ),
        None,
    )

    assert reply["batchItemFailures"] == []
    assert api.checks == [("web-1", "up", {"os": "debian"}), ("web-2", "unreachable", {})]


def test_a_result_a_graph_waits_for_is_recorded_and_resumes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    deploy = FakeDeploy()
    monkeypatch.setattr(handler, "container", PerContainer(lambda: deploy))
    monkeypatch.setattr(handler, "checks_client", PerContainer(lambda: pytest.fail("not a server check")))
    request = "0b7d6f0e-5a52-4c1b-9a0e-3f1f6f1c2d3e:provision:1"

    reply = handler.lambda_handler(_event(_result(request)), None)

    assert reply["batchItemFailures"] == []
    assert deploy.api.checks == [("web-1", "up", {})] and deploy.resumed == [request]


PROBE = """
import json, sys
from datetime import UTC, datetime
from functions.deploy import handler
from shared.contracts import ProvisionerResult, server_check_id
from shared.handler_shell import PerContainer
from shared.queues.local_runner import sqs_event
from shared.queues.port import ReceivedMessage

class Api:
    checks = []
    def record_server_check(self, *args):
        self.checks.append(args)

api = Api()
handler.checks_client = PerContainer(lambda: api)
result = ProvisionerResult(request_id=server_check_id("sync", "localhost", 1), status="success",
                           server_handle="localhost", reachable=True)
message = ReceivedMessage("m", result.model_dump_json(), "h", 1, datetime.now(UTC))
handler.lambda_handler(sqs_event("arn:aws:sqs:us-east-1:1:orch-provisioner-results", [message]), None)
print(json.dumps({"checks": len(api.checks), "langgraph": sorted(m for m in sys.modules if m.startswith("langgraph"))}))
"""


def test_a_fresh_deploy_function_records_a_ping_without_loading_langgraph() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"checks": 1, "langgraph": []}
