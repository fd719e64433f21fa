"""Issue 22, a new user's failed and stopped deploys (cases 4, 5 and 12's progress), through the real CLI
on one embedded stack: a service that cannot start (the fake developer leaves a `run` command naming a
module that does not exist) and the template service deployed, then stopped.

One scenario runs once (`outcome`); each case is a row of the table, checked against what it saw."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ansible_support import kill_project, refuses_connections
from tests.e2e.conftest import cli_runner
from tests.e2e.test_deploy import FAKES, _port_block
from tests.e2e.test_local_stack import Stack
from tests.process_hygiene import kill_workers

pytestmark = pytest.mark.slow


@dataclass
class Outcome:
    home: Path
    run_failed: subprocess.CompletedProcess[str]
    failed_task: dict[str, Any]
    progress: list[int]
    next_deploy_port: int
    stop_failed: subprocess.CompletedProcess[str]
    stop_again: subprocess.CompletedProcess[str]
    status_after_stop: list[dict[str, Any]]
    health_tick: dict[str, int]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    home = tmp_path_factory.mktemp("newcomer-deploy") / "orch-home"
    start = _port_block()
    stack = Stack(
        home,
        env={
            "ORCH_AGENT_COMMAND": str(FAKES / "dev-agent"),
            "FAKE_DEV_MODE": "deploy-broken",  # `run` names app.no_such_entrypoint: ModuleNotFoundError
            "ORCH_DEPLOY_MAX_FIX_ATTEMPTS": "1",
            "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
            "ORCH_QUEUE_VISIBILITY_TIMEOUT": "30",
            "ORCH_PORT_RANGE_START": str(start),
            "ORCH_PORT_RANGE_END": str(start + 19),
            "ORCH_SMOKE_ATTEMPTS": "4",
        },
    )

    cli = cli_runner(home)

    def as_json(*args: str) -> Any:
        done = cli(*args, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    stack.start()
    try:
        # a service that cannot start, with one fix round that does not fix it
        run_failed = cli("run", "--name", "shop", "--spec", "a shop", "--agent", "command", timeout=300)
        failed_task = as_json("task", "list", "--project", "shop", "--type", "deploy")[0]
        with stack.service_client() as api:
            progress = [
                e.progress_pct for e in api.task_events(failed_task["id"]) if e.progress_pct is not None
            ]
        # the template service deploys next: the failed deploy's port is free again
        assert (
            cli("run", "--name", "blog", "--spec", "a blog", "--agent", "none", timeout=120).returncode == 0
        )
        next_port = as_json("deploy", "status", "blog")[0]["port"]
        stop_failed = cli("deploy", "stop", "shop")
        stop_again = cli("deploy", "stop", "shop")
        assert cli("deploy", "stop", "blog").returncode == 0
        status = as_json("deploy", "status", "blog")
        health_tick = _health_tick(stack, home)
        yield Outcome(
            home,
            run_failed,
            failed_task,
            progress,
            next_port,
            stop_failed,
            stop_again,
            status,
            health_tick,
        )
    finally:
        stack.stop()
        for app_dir in (home / "deployments").glob("*") if (home / "deployments").exists() else []:
            kill_project(app_dir)
        kill_workers(home)


def _health_tick(stack: Stack, home: Path) -> dict[str, int]:
    from functions.scheduler.handler import lambda_handler as scheduler
    from functions.scheduler.settings import SchedulerSettings

    with stack.service_client() as api:
        return scheduler({"job": "health_checker"}, None, api=api, settings=SchedulerSettings(home=home))


def _said(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def _cause_and_log(o: Outcome) -> None:
    said = _said(o.run_failed)
    assert o.run_failed.returncode == 1, said
    assert "No module named app.no_such_entrypoint" in said, said
    assert f"{o.home.resolve()}/deployments/shop/slots/a/service.log" in said, said
    assert "ansible.builtin" not in said and "{{" not in said, "Ansible's source text, not the cause"
    assert "No module named" in o.failed_task["error"] and "service.log" in o.failed_task["error"]


def _port_freed(o: Outcome) -> None:
    port = o.failed_task["result"]["port"]  # the stable port; release 1's slot a had the next one
    assert re.search(rf"ports {port}, \d+ on localhost freed", o.failed_task["error"]), o.failed_task["error"]
    assert refuses_connections(port)
    assert o.next_deploy_port == port  # the lowest free port of the range again


def _stop_cleans_up(o: Outcome) -> None:
    said = _said(o.stop_failed)
    assert o.stop_failed.returncode == 0, said
    assert "cleaned up shop on localhost" in said and "directory removed" in said, said
    assert not (o.home / "deployments" / "shop").exists()
    assert o.stop_again.returncode == 3 and "never been deployed: nothing to stop" in _said(o.stop_again)


def _stopped_not_up(o: Outcome) -> None:
    [deployment] = o.status_after_stop
    assert (deployment["status"], deployment["health"]) == ("stopped", "stopped"), deployment
    assert deployment["url"] == "" and deployment["health_url"] == "", deployment


def _health_checks_skip_it(o: Outcome) -> None:
    assert o.health_tick["checked"] == 0, o.health_tick


def _progress_never_goes_back(o: Outcome) -> None:
    assert len(o.progress) > 5 and o.progress == sorted(o.progress), o.progress


CASES: list[tuple[str, Callable[[Outcome], None]]] = [
    ("4: a failed deploy says the service's error and where its log is", _cause_and_log),
    ("4: a failed deploy frees its port", _port_freed),
    ("4: deploy stop after a failed deploy cleans up and says what it did", _stop_cleans_up),
    ("5: deploy status after deploy stop: stopped, not up, no URL", _stopped_not_up),
    ("5: health checks skip a stopped deployment", _health_checks_skip_it),
    ("12: a fix round's progress never goes back", _progress_never_goes_back),
]


@pytest.mark.parametrize(("case", "check"), CASES, ids=[case for case, _ in CASES])
def test_newcomer_deploy(outcome: Outcome, case: str, check: Callable[[Outcome], None]) -> None:
    check(outcome)
