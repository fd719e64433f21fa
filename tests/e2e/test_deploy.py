"""The DevOps department end to end, through the real CLI on the embedded stack and real Ansible runs
against the built-in `localhost` server: `orchestrator run`, `deploy stop`, a deploy parked for a
missing secret, the deploy -> engineering fix loop, and a secret canary scan of everything written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.ansible_support import kill_deployment, kill_project, refuses_connections
from tests.e2e.conftest import CliRunner
from tests.e2e.test_local_stack import Stack
from tests.process_hygiene import kill_workers

FAKES = Path(__file__).parents[1] / "fakes" / "agents"
CANARY = "canary-7f3a9c1e-do-not-leak-4b2d"


def _port_block(size: int = 20) -> int:
    """A start port with `size` free ports after it (deployed services must not meet other tests')."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            start = probe.getsockname()[1]
        if start + size < 65000 and all(_free(p) for p in range(start, start + size)):
            return start
    raise RuntimeError("no free port block")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except OSError:
        return 0


@pytest.fixture
def deploy_stack() -> Iterator:  # type: ignore[type-arg]
    home = Path(os.environ["ORCH_HOME"])
    started: list[Stack] = []

    def make(mode: str = "good", env: dict[str, str] | None = None) -> Stack:
        start = _port_block()
        stack = Stack(
            home,
            env={
                "ORCH_AGENT_COMMAND": str(FAKES / "dev-agent"),
                "FAKE_DEV_MODE": mode,
                "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
                "ORCH_QUEUE_VISIBILITY_TIMEOUT": "30",
                "ORCH_PORT_RANGE_START": str(start),
                "ORCH_PORT_RANGE_END": str(start + 19),
                "ORCH_SMOKE_ATTEMPTS": "4",
            }
            | (env or {}),
        )
        stack.start()
        started.append(stack)
        return stack

    yield make
    for stack in started:
        if stack.process and stack.process.poll() is None:
            stack.stop()
    for app_dir in (home / "deployments").glob("*") if (home / "deployments").exists() else []:
        kill_project(app_dir)  # its slots, their forwarder, an in-place service
    kill_workers(home)


def no_approval(stack: Stack, project: str) -> None:
    """Deploys of `project` to servers other than the built-in one go ahead without the owner's approval
    (the default policy, "deploy", would park them in WAITING_APPROVAL)."""
    admin_key = LocalSecrets(stack.home / "secrets.json").get("secret://local/admin_api_key")
    with ApiClient(stack.url, admin_key) as admin:
        admin.update_project(project, approval="none")


def _json(result) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_run_with_no_agent_deploys_the_template_and_deploy_stop_frees_it(
    deploy_stack, cli: CliRunner
) -> None:  # type: ignore[no-untyped-def]
    deploy_stack()
    ran = cli("run", "--name", "blog", "--spec", "a blog", "--agent", "none", timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    last = ran.stdout.strip().splitlines()
    url = next(line.split(" is live at ")[1] for line in last if " is live at " in line)
    assert _health(url + "/health") == 200
    for step in ("[scaffold]", "[tester]", "[env]", "[deploy]", "[smoke]"):
        assert step in ran.stdout, ran.stdout

    status = _json(cli("deploy", "status", "blog", "--json"))
    assert status[0]["status"] == "deployed" and status[0]["health"] == "up" and status[0]["url"] == url
    port = status[0]["port"]

    stopped = cli("deploy", "stop", "blog")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert refuses_connections(port)
    assert _json(cli("deploy", "status", "blog", "--json"))[0]["status"] == "stopped"
    project = _json(cli("project", "show", "blog", "--json"))
    assert project["deployed_url"] is None
    # the port is free again: a second stop is refused (nothing deployed), a new deploy works
    again = cli("deploy", "start", "blog", "--server", "localhost", "--follow")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _health(url + "/health") == 200  # same project, same port back
    assert cli("deploy", "stop", "blog").returncode == 0


def test_a_missing_secret_parks_the_deploy_and_secret_set_resumes_it(deploy_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    stack = deploy_stack()
    assert (
        cli(
            "project", "create", "--name", "bot", "--modules", "backend,telegram", "--agent", "none"
        ).returncode
        == 0
    )
    eng = _json(cli("engineering", "start", "bot", "--spec", "a bot", "--json"))
    assert cli("task", "logs", eng["id"], "--follow", "--interval", "0.3").returncode == 0

    task = _json(cli("deploy", "start", "bot", "--server", "localhost", "--json"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = _json(cli("task", "show", task["id"], "--json"))
        if shown["status"] == "WAITING_INPUT":
            break
        assert shown["status"] in ("QUEUED", "RUNNING"), shown
        time.sleep(0.3)
    assert shown["status"] == "WAITING_INPUT"
    events = cli("task", "logs", task["id"]).stdout
    assert "TELEGRAM_BOT_TOKEN" in events and "secret set bot" in events, events

    # the service polls Telegram when it has a token: point it at nothing reachable
    assert cli("secret", "set", "bot", "TELEGRAM_BOT_TOKEN", input=CANARY).returncode == 0
    follow = cli("task", "logs", task["id"], "--follow", "--interval", "0.3")
    assert follow.returncode == 0, follow.stdout + follow.stderr
    done = _json(cli("task", "show", task["id"], "--json"))
    assert done["status"] == "COMPLETED"
    assert _health(done["result"]["deployed_url"] + "/health") == 200
    assert cli("deploy", "stop", "bot").returncode == 0
    stack.stop()

    # the canary reached the service's env file (by design) and the secrets store, and nothing else
    home = Path(os.environ["ORCH_HOME"])
    leaks = []
    for path in home.rglob("*"):
        if not path.is_file() or path.name in ("secrets.json",):
            continue
        if CANARY.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(home)))
    stack_err = home.parent / "stack.err"
    if stack_err.exists() and CANARY in stack_err.read_text(errors="replace"):
        leaks.append("stack.err")
    assert leaks == [], f"the secret value leaked into {leaks}"


@pytest.mark.parametrize(("mode", "outcome"), [("deploy-fix", "COMPLETED"), ("deploy-broken", "FAILED")])
def test_a_failed_deploy_opens_fix_rounds_and_never_loops_forever(
    deploy_stack,
    cli: CliRunner,
    mode: str,  # type: ignore[no-untyped-def]
    outcome: str,
) -> None:
    deploy_stack(mode)
    ran = cli("run", "--name", "shop", "--spec", "a shop", "--agent", "command", "--json", timeout=240)
    fixes = [
        t
        for t in _json(cli("task", "list", "--project", "shop", "--type", "engineering", "--json"))
        if t["params"].get("parent_task_id")
    ]
    deploys = _json(cli("task", "list", "--project", "shop", "--type", "deploy", "--json"))
    assert len(deploys) == 1
    assert deploys[0]["status"] == outcome, ran.stdout + ran.stderr
    if outcome == "COMPLETED":
        assert ran.returncode == 0
        assert len(fixes) == 1 and fixes[0]["params"]["deploy_fix_attempt"] == 1
        assert deploys[0]["result"]["deploy_fix_attempt"] == 1
        assert _health(deploys[0]["result"]["health_url"]) == 200
        assert cli("deploy", "stop", "shop").returncode == 0
    else:
        assert ran.returncode == 1
        assert sorted(f["params"]["deploy_fix_attempt"] for f in fixes) == [1, 2]
        assert "after 2 fix round(s)" in deploys[0]["error"], deploys[0]["error"]
        assert json.loads(ran.stdout)["failed_step"] == "deploy"


def test_a_service_stopped_by_hand_is_reported_down_once_then_up_once(deploy_stack, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from functions.scheduler.handler import lambda_handler as scheduler
    from functions.scheduler.settings import SchedulerSettings

    stack = deploy_stack()
    assert cli("run", "--name", "blog", "--spec", "a blog", "--agent", "none", timeout=120).returncode == 0
    home = Path(os.environ["ORCH_HOME"])
    settings = SchedulerSettings(home=home)

    def tick() -> dict:  # type: ignore[type-arg]
        with stack.service_client() as api:
            return scheduler({"job": "health_checker"}, None, api=api, settings=settings)

    assert tick()["up"] == 1 and _json(cli("incident", "list", "--json")) == []
    for app_dir in (home / "deployments").glob("*"):
        kill_deployment(app_dir)  # stopped by hand
    with ThreadPoolExecutor(4) as pool:  # overlapping ticks
        reports = list(pool.map(lambda _n: tick(), range(4)))
    assert [r["down"] for r in reports] == [1, 1, 1, 1]
    assert sum(r["changed"] for r in reports) == 1
    assert tick()["changed"] == 0
    assert [i["kind"] for i in _json(cli("incident", "list", "--json"))] == ["service_down"]
    assert _json(cli("deploy", "status", "blog", "--json"))[0]["health"] == "down"

    restarted = cli("deploy", "start", "blog", "--server", "localhost", "--follow", timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    with ThreadPoolExecutor(2) as pool:
        assert sum(r["changed"] for r in pool.map(lambda _n: tick(), range(2))) == 0
    kinds = [i["kind"] for i in _json(cli("incident", "list", "--json"))]
    assert kinds == ["service_up", "service_down"], kinds
    assert cli("deploy", "stop", "blog").returncode == 0


def test_a_server_that_does_not_answer_fails_the_deploy_with_the_reason(
    deploy_stack,
    cli: CliRunner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    stack = deploy_stack()
    key = tmp_path / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
    secret_line = key.read_text().splitlines()[1]
    added = cli(
        "server", "add", "web-1", "--host", "127.0.0.1", "--ssh-user", "deploy", "--ssh-key-file", str(key)
    )
    assert added.returncode == 0, added.stdout + added.stderr  # nothing listens on port 22 here
    assert cli("project", "create", "--name", "blog", "--agent", "none").returncode == 0
    no_approval(stack, "blog")
    eng = _json(cli("engineering", "start", "blog", "--spec", "a blog", "--json"))
    assert cli("task", "logs", eng["id"], "--follow", "--interval", "0.3").returncode == 0

    deployed = cli("deploy", "start", "blog", "--server", "web-1", "--follow", timeout=120)
    assert deployed.returncode == 1
    assert "[readiness] preparing web-1" in deployed.stdout, deployed.stdout
    task = _json(cli("task", "list", "--project", "blog", "--type", "deploy", "--json"))[0]
    assert task["status"] == "FAILED"
    assert task["error"].startswith("server web-1 (127.0.0.1) is not ready"), task["error"]
    assert _json(cli("server", "show", "web-1", "--json"))["status"] == "unreachable"
    assert secret_line not in deployed.stdout + deployed.stderr + task["error"]
