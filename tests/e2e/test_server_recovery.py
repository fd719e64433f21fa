"""Servers come back whole, end to end on the embedded stack with real Ansible runs against the built-in
`localhost` server: a deployed project's server is lost (its service stops, the health job's pings
report it unreachable) and comes back (a ping answers again); the project is redeployed from what it
served and answers again, the person is told, and a redelivered recovery starts nothing twice."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.errors import ExitCode
from shared.contracts import PROVISIONER_QUEUE, PROVISIONER_RESULTS, ProvisionerMessage, ProvisionerResult
from shared.queues.local import LocalQueue
from tests.ansible_support import kill_deployment
from tests.e2e.conftest import CliRunner
from tests.e2e.test_deploy import _health, deploy_stack  # noqa: F401  (a fixture this module uses)
from tests.e2e.test_local_stack import Stack, stack  # noqa: F401  (a fixture this module uses)


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _until(what: Callable[[], Any], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {why}")


def _ping_result(request_id: str, reachable: bool) -> ProvisionerResult:
    """What a server_sync ping of `localhost` answers on provisioner:results (the health job's path)."""
    return ProvisionerResult(
        request_id=request_id,
        server_handle="localhost",
        status="success" if reachable else "failed",
        reachable=reachable,
        error=None if reachable else "UNREACHABLE: ssh: connect to host timed out",
    )


@pytest.mark.slow
def test_a_server_lost_and_back_redeploys_its_project_which_answers_again(
    deploy_stack: Any,  # noqa: F811  (the fixture imported above)
    cli: CliRunner,
) -> None:
    deploy_stack()
    ran = cli("run", "--name", "blog", "--spec", "a blog", "--agent", "none", timeout=240)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [status] = _json(cli("deploy", "status", "blog", "--json"))
    url, served = status["url"], status["ref"]
    assert _health(url + "/health") == 200
    home = Path(os.environ["ORCH_HOME"])
    queue = LocalQueue(home / "queue.db")

    def server_status() -> str:
        return str(_json(cli("server", "show", "localhost", "--json"))["status"])

    # given: the server is lost, and its service with it
    for app_dir in (home / "deployments").glob("*"):
        kill_deployment(app_dir)
    assert _health(url + "/health") != 200
    queue.publish(PROVISIONER_RESULTS, _ping_result("sync:localhost:lost", reachable=False))
    _until(lambda: server_status() == "unreachable", 60, "the server recorded unreachable")

    # when: a ping answers again
    queue.publish(PROVISIONER_RESULTS, _ping_result("sync:localhost:back", reachable=True))

    # then: the project is redeployed from what it served, and answers again
    def redeployed() -> dict[str, Any] | None:
        deploys = _json(cli("task", "list", "--project", "blog", "--type", "deploy", "--json"))
        done = [t for t in deploys if t["status"] in ("COMPLETED", "FAILED")]
        return done[0] if len(deploys) == 2 and len(done) == 2 else None

    redeploy = _until(redeployed, 240, "the redeploy task to finish")
    assert redeploy["status"] == "COMPLETED", redeploy
    assert redeploy["params"]["server"] == "localhost"
    assert redeploy["params"].get("ref") in {served, *_release_commits(cli)}, redeploy["params"]
    _until(lambda: _health(url + "/health") == 200, 30, "the service to answer at its address again")
    assert server_status() == "up"
    incidents = _json(cli("incident", "list", "--json"))
    told = [i for i in incidents if i["kind"] == "service_redeployed"]
    assert len(told) == 1 and redeploy["id"] in told[0]["message"], incidents
    flip = next(i for i in incidents if i["kind"] == "server_up")

    # a redelivered recovery message: nothing is started twice
    queue.publish(
        PROVISIONER_QUEUE,
        ProvisionerMessage(
            request_id=f"recovery:localhost:{flip['id']}", server_handle="localhost", is_recovery=True
        ),
    )
    _until(lambda: _queue_empty(cli, PROVISIONER_QUEUE), 60, "the redelivery to be consumed")
    time.sleep(2)
    deploys = _json(cli("task", "list", "--project", "blog", "--type", "deploy", "--json"))
    assert len(deploys) == 2, deploys
    assert (
        len([i for i in _json(cli("incident", "list", "--json")) if i["kind"] == "service_redeployed"]) == 1
    )
    assert cli("deploy", "stop", "blog").returncode == 0


def _release_commits(cli: CliRunner) -> set[str]:
    """The commits of the project's releases, when the CLI lists them (none before releases)."""
    listed = cli("deploy", "history", "blog", "--json")
    if listed.returncode != 0:
        return set()
    body = json.loads(listed.stdout)
    items = body.get("items", []) if isinstance(body, dict) else body
    return {r["commit_sha"] for r in items}


@pytest.mark.slow
def test_server_update_with_a_new_host_queues_the_recovery_of_a_replaced_machine(
    stack: Stack,  # noqa: F811  (the fixture imported above: the CLI and API alone, no consumers)
    cli: CliRunner,
) -> None:
    assert cli("server", "add", "web-1", "--host", "203.0.113.7").returncode == 0

    moved = cli("server", "update", "web-1", "--host", "203.0.113.8")
    again = _json(cli("server", "update", "web-1", "--host", "203.0.113.9", "--json"))

    assert moved.returncode == 0, moved.stderr
    assert "updated server web-1 (root@203.0.113.8)" in moved.stdout
    assert "provisioned again and its projects are redeployed" in moved.stdout, moved.stdout
    assert again["replaced"] is True and again["server"]["status"] == "unknown"
    same = _json(cli("server", "update", "web-1", "--host", "203.0.113.9", "--json"))
    assert (same["replaced"], same["recovery_id"]) == (False, None)

    nothing = cli("server", "update", "web-1")
    assert nothing.returncode == ExitCode.USAGE and nothing.stderr.count("\n") == 1, nothing.stderr
    assert "--host" in nothing.stderr
    bad = cli("server", "update", "web-1", "--host", "not a host")
    assert bad.returncode == ExitCode.USAGE and "host" in bad.stderr, bad.stderr
    missing = cli("server", "update", "nowhere", "--host", "203.0.113.9")
    assert missing.returncode == ExitCode.NOT_FOUND, missing.stderr
    recoveries = _recovery_messages(stack.home)
    assert len(recoveries) == 2 and again["recovery_id"] in recoveries, recoveries


def _recovery_messages(home: Path) -> list[str]:
    """Request ids of the recovery messages waiting on provisioner:queue (server_sync's pings left out)."""
    queue = LocalQueue(home / "queue.db")
    try:
        seen = [ProvisionerMessage.model_validate_json(m.body) for m in queue.receive(PROVISIONER_QUEUE, 10)]
    finally:
        queue.close()
    return [m.request_id for m in seen if m.is_recovery]


def _queue_depth(cli: CliRunner, name: str) -> int:
    stats = {q["queue"]: q for q in _json(cli("queue", "stats", "--json"))}
    return int(stats[name]["visible"] + stats[name]["in_flight"])


def _queue_empty(cli: CliRunner, name: str) -> bool:
    return _queue_depth(cli, name) == 0
