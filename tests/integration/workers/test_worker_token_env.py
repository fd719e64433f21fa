"""A worker holds its own token and nothing of the stack's: the embedded runtime launches it without the
service key, its reference or the ways to the stack's secrets, and the agent it runs gets no token at all.

Checked where a worker can look from its own process: its environment and argv (as /proc shows them to
any process of the same user), the agent's environment, and every file in its workspace; and every
credential-looking value found there is tried against the API as a key with more than this worker's
rights. (The stack's data dir is not a boundary locally: a worker runs as the developer's own user.)
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from shared.api_client import ApiClient, AuthError
from shared.contracts import (
    PO_RESPONSES,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    SendMessageCommand,
    SendMessageResponse,
    WorkerConfig,
)
from shared.secrets.local import LocalSecrets
from shared.workers.fargate import FargateRuntime
from shared.workers.local import STACK_ONLY, WORKER_TOKEN_ENV, LocalRuntime, worker_environment
from shared.workers.runtime import RuntimeStatus, WorkerLaunch
from shared.workers.wake import WAKE_ENV
from tests.integration.workers.conftest import StackHarness, first_of

FAKES = Path(__file__).parents[2] / "fakes" / "agents"
SERVICE_KEY = "orch_the_stacks_service_key_0123456789"
TOKEN = "orchw_" + "t" * 43
SERVICE_KEY_REF = "secret://local/service_api_key"
DUMP = (
    "import json, os, sys; "
    "json.dump({'env': dict(os.environ), 'argv': sys.argv}, open(sys.argv[1], 'w', encoding='utf-8'))"
)


def _stack_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """What the embedded stack's process holds while it launches workers."""
    for name, value in {
        "ORCH_API_KEY": SERVICE_KEY,
        "ORCH_SERVICE_API_KEY_REF": SERVICE_KEY_REF,
        "ORCH_BOOTSTRAP_ADMIN_KEY": "orch_bootstrap_admin_0123456789",
        "ORCH_AGENT_SECRET_REFS": '{"ANTHROPIC_API_KEY": "secret://agents/anthropic"}',
        "ORCH_DATABASE_URL": "postgresql+pg8000://orch:pw@db/orch",
        "ORCH_SECRETS_BACKEND": "local",
        "ORCH_SECRETS_FILE": str(home / "secrets.json"),
        "ORCH_SESSION_DIR": str(home / "sessions"),
        "SOME_OTHER_REF": "secret://projects/p-1/DB_PASSWORD",
    }.items():
        monkeypatch.setenv(name, value)


# -- the embedded runtime's environment ------------------------------------------------------------------


def test_the_worker_environment_drops_the_stack_s_credentials_and_keeps_its_token(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "ORCH_HOME": str(tmp_path),
        "ORCH_API_KEY": SERVICE_KEY,
        "orch_service_api_key_ref": SERVICE_KEY_REF,
        "ORCH_SECRETS_FILE": str(tmp_path / "secrets.json"),
        "GITHUB_TOKEN": "ghp_developer",
        "ANY_REF": "secret://github/token",
        WORKER_TOKEN_ENV: "orchw_a_stray_token_of_another_worker",
    }
    env = worker_environment(base, {"ORCH_API_URL": "http://api", WORKER_TOKEN_ENV: TOKEN})
    assert env == {
        "PATH": "/usr/bin",
        "ORCH_HOME": str(tmp_path),
        "ORCH_API_URL": "http://api",
        WORKER_TOKEN_ENV: TOKEN,
    }


@pytest.mark.parametrize(
    ("launch", "refused"),
    [
        ({"ORCH_SERVICE_API_KEY_REF": SERVICE_KEY_REF}, "ORCH_SERVICE_API_KEY_REF is the stack's own"),
        (
            {"ORCH_SECRETS_FILE": "/home/me/.orchestrator/secrets.json"},
            "ORCH_SECRETS_FILE is the stack's own",
        ),
        ({"GITHUB_TOKEN": "ghp_value"}, "GITHUB_TOKEN looks like a secret value"),
    ],
)
def test_a_launch_env_with_the_stack_s_credentials_is_refused(launch: dict[str, str], refused: str) -> None:
    with pytest.raises(ValueError, match=refused):
        worker_environment({}, launch)


def test_a_process_the_local_runtime_starts_sees_its_token_and_no_service_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the stack's process environment, and a "wrapper" that dumps what it was started with
    _stack_environment(monkeypatch, Path(os.environ["ORCH_HOME"]))
    dump = tmp_path / "dump.json"
    ended = threading.Event()
    statuses: list[RuntimeStatus] = []

    def stopped(_worker_id: str, status: RuntimeStatus) -> None:
        statuses.append(status)
        ended.set()

    runtime = LocalRuntime(
        tmp_path / "logs", on_stopped=stopped, command=[sys.executable, "-c", DUMP, str(dump)]
    )
    # when
    runtime.start(
        WorkerLaunch(
            worker_id="w-env", task_id=None, env={"ORCH_API_URL": "http://api", WORKER_TOKEN_ENV: TOKEN}
        )
    )
    assert ended.wait(30), "the dumping process did not end"
    # then
    assert statuses[0].exit_code == 0, statuses
    seen: dict[str, Any] = json.loads(dump.read_text())
    assert seen["env"][WORKER_TOKEN_ENV] == TOKEN and seen["env"]["ORCH_WORKER_ID"] == "w-env"
    assert seen["env"][WAKE_ENV] == "1", "it shares the API's network namespace: the API can wake it"
    assert sorted(name for name in seen["env"] if name.upper() in STACK_ONLY) == []
    assert [v for v in seen["env"].values() if v.startswith("secret://")] == []
    assert SERVICE_KEY not in json.dumps(seen)
    assert SERVICE_KEY not in (tmp_path / "logs" / "w-env.log").read_text()


# -- the Fargate runtime's overrides ---------------------------------------------------------------------


def _fargate() -> FargateRuntime:
    return FargateRuntime("workers", "worker", "worker", ["subnet-1"], ["sg-1"], client=object())


def test_the_fargate_overrides_carry_the_worker_s_token_and_only_a_token_shaped_one() -> None:
    env = {"ORCH_API_URL": "https://api.example", WORKER_TOKEN_ENV: TOKEN}
    overrides = _fargate().overrides_for(WorkerLaunch(worker_id="w-1", task_id="t-1", env=env))
    [container] = overrides["containerOverrides"]
    assert {"name": WORKER_TOKEN_ENV, "value": TOKEN} in container["environment"]
    assert WAKE_ENV not in {e["name"] for e in container["environment"]}, "a Fargate task asks on a timer"
    for value in (SERVICE_KEY, "orchw_", "orchw_short", "not a token at all, with spaces"):
        with pytest.raises(ValueError, match=f"{WORKER_TOKEN_ENV} must be a worker token"):
            _fargate().overrides_for(
                WorkerLaunch(worker_id="w-1", task_id=None, env={WORKER_TOKEN_ENV: value})
            )


# -- a real worker on the embedded stack -----------------------------------------------------------------


def _proc(pid: int) -> dict[str, Any]:
    """A process's environment and argv as any process of the same user can read them."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return {
        "env": dict(e.decode().split("=", 1) for e in environ if b"=" in e),
        "argv": Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"),
    }


def _files_under(root: Path) -> str:
    return "\n".join(
        path.read_text(errors="replace")
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    )


@pytest.mark.slow
def test_a_real_worker_holds_its_token_only_and_its_agent_not_even_that(
    stack: StackHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a stack whose service key the worker must never see, a Product Owner worker whose job grants
    # its person's key by reference, and an agent that dumps its environment
    service_key = LocalSecrets(stack.home / "secrets.json").get(SERVICE_KEY_REF)
    person_key = "orch_person_key_of_u1_0123456789"
    LocalSecrets(stack.home / "secrets.json").put("secret://po/u1/api_key", person_key)
    work = tmp_path / "work"
    monkeypatch.setenv("ORCH_WORKER_WORKSPACE_ROOT", str(work))
    agent_dump = tmp_path / "agent-env.json"
    launches: list[WorkerLaunch] = []
    start = LocalRuntime.start

    def recording_start(runtime: LocalRuntime, launch: WorkerLaunch) -> str:
        launches.append(launch)
        return start(runtime, launch)

    monkeypatch.setattr(LocalRuntime, "start", recording_start)
    config = WorkerConfig(
        name="po-u1",
        agent="command",
        reply_queue=PO_RESPONSES,
        agent_options={"command": f"{shlex.quote(str(FAKES / 'env-agent'))} {shlex.quote(str(agent_dump))}"},
        env_vars={"ORCH_API_URL": os.environ["ORCH_API_URL"], "ORCH_API_KEY": "secret://po/u1/api_key"},
    )  # type: ignore[call-arg]
    stack.queue.publish(
        WORKER_COMMANDS,
        CreateWorkerCommand(
            request_id="token-env-1",
            config=config,
            context={"chat_id": "5", "role": "product_owner", "user_id": "u1"},
        ),
    )
    created, _ = first_of(stack, CreateWorkerResponse)
    assert created.success, created
    # when: it answers a message (so its job, its secret and its agent have all been through)
    stack.queue.publish(
        WORKER_COMMANDS,
        SendMessageCommand(request_id="po:tg:1", worker_id=created.worker_id, message="hello", timeout=30),
    )
    answered, _ = first_of(stack, SendMessageResponse)
    assert answered.success and answered.response == "env written", answered
    handle = stack.service.get_worker(created.worker_id).runtime_handle
    assert handle
    wrapper = _proc(int(handle.split(":")[1]))  # idle now, waiting for the next message
    agent: dict[str, str] = json.loads(agent_dump.read_text())
    workspace_files = _files_under(work)
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-1", worker_id=created.worker_id))

    # then: the wrapper was launched with its own token, and holds no service credential in its environment
    # or argv; forked from the fork server, not even its token shows there (its /proc environment is the
    # server's, which no launch's variables reach; the wrapper takes the token out of os.environ at start)
    [launch] = launches
    token = launch.env[WORKER_TOKEN_ENV]
    assert token.startswith("orchw_")
    assert WORKER_TOKEN_ENV not in wrapper["env"] and token not in json.dumps(wrapper)
    assert sorted(name for name in wrapper["env"] if name.upper() in STACK_ONLY) == []
    for where, seen in (
        ("wrapper", json.dumps(wrapper)),
        ("agent", json.dumps(agent)),
        ("workspace", workspace_files),
    ):
        assert service_key not in seen, f"the service key is readable in the {where}"
        assert SERVICE_KEY_REF not in seen, f"the service key's reference is in the {where}"
    # the agent gets its person's key (granted by its job), but neither the token nor its variable
    assert agent["ORCH_API_KEY"] == person_key
    assert WORKER_TOKEN_ENV not in agent and token not in json.dumps(agent) and token not in workspace_files
    # and nothing found there opens more than that worker's own job (or that person's own data)
    url = os.environ["ORCH_API_URL"]
    with ApiClient(url, token) as as_worker:
        with pytest.raises(AuthError):
            as_worker.list_projects()
        with pytest.raises(AuthError):
            as_worker.record_worker("w-forged", "command")
    with ApiClient(url, person_key) as as_person:
        with pytest.raises(AuthError):
            as_person.list_workers()
