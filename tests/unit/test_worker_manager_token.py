"""The worker manager mints each worker its own API token and launches the worker with that token as its
only credential (ORCH_WORKER_TOKEN): never the stack's service key or a reference to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.worker_manager.handler import launch_env
from functions.worker_manager.logic import WorkerManager
from functions.worker_manager.settings import WorkerManagerSettings
from shared.api_client import ApiUnreachable, ConflictError
from shared.contracts import CreateWorkerCommand, CreateWorkerResponse, WorkerConfig
from shared.contracts.api import WorkerDetail, WorkerToken
from shared.workers.local import WORKER_TOKEN_ENV
from shared.workers.runtime import RuntimeStatus, WorkerLaunch


class _Api:
    def __init__(self, status: str = "CREATED", mint_fails: bool = False) -> None:
        self.status = status
        self.mint_fails = mint_fails
        self.minted: list[tuple[str, int]] = []
        self.stopped: list[tuple[str, str]] = []

    def record_worker(self, worker_id: str, agent: str, **_: Any) -> WorkerDetail:
        return WorkerDetail(
            id=worker_id,
            task_id="t-1",
            agent=agent,
            runtime_handle="local:1:w" if self.status == "RUNNING" else None,
            status=self.status,
            exit_reason=None,
            started_at=datetime.now(UTC),
            stopped_at=None,
            config={},
            create_request_id="r",
        )

    def update_worker(self, worker_id: str, status: str, **_: Any) -> None:
        self.status = status

    def issue_worker_token(self, worker_id: str, ttl_s: int = 2100, claim_start: bool = False) -> WorkerToken:
        if self.mint_fails:
            raise ApiUnreachable("http://api", "Connection refused")
        if claim_start:  # the API's compare-and-set, in the same request
            if self.status != "CREATED":
                raise ConflictError(409, "conflict", f"worker {worker_id} is {self.status}, not CREATED")
            self.status = "STARTING"
        self.minted.append((worker_id, ttl_s))
        return WorkerToken(
            worker_id=worker_id,
            token=f"orchw_token_{len(self.minted)}_for_{worker_id}",
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
        )

    def worker_stopped(self, worker_id: str, reason: str, **kwargs: Any) -> None:
        self.stopped.append((worker_id, kwargs.get("status", "")))


class _Runtime:
    backend = "fake"

    def __init__(self) -> None:
        self.launches: list[WorkerLaunch] = []

    def start(self, launch: WorkerLaunch) -> str:
        self.launches.append(launch)
        return f"fake:{launch.worker_id}"

    def stop(self, handle: str, reason: str) -> None:
        raise AssertionError("nothing is stopped here")

    def status(self, handle: str) -> RuntimeStatus:
        return RuntimeStatus(handle=handle, state="RUNNING")


class _Queue:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def publish(self, queue: str, message: Any) -> None:
        self.published.append(message)


def _manager(api: _Api, max_lifetime_s: int = 1800) -> tuple[WorkerManager, _Runtime, _Queue]:
    runtime, queue = _Runtime(), _Queue()
    env = launch_env(WorkerManagerSettings(api_url="http://api.example", api_key="orch_service_key"))
    manager = WorkerManager(api, runtime, queue, env, max_lifetime_s=max_lifetime_s)  # type: ignore[arg-type]
    return manager, runtime, queue


def _create() -> CreateWorkerCommand:
    return CreateWorkerCommand(
        request_id="c-1", config=WorkerConfig(name="dev", agent="command"), context={"task_id": "t-1"}
    )


def test_a_new_worker_is_launched_with_its_own_token_and_no_service_credentials() -> None:
    api = _Api()
    manager, runtime, queue = _manager(api)
    manager.create(_create())
    [launch] = runtime.launches
    assert api.minted == [(launch.worker_id, 1800 + 300)]
    assert launch.env[WORKER_TOKEN_ENV] == f"orchw_token_1_for_{launch.worker_id}"
    assert launch.env["ORCH_API_URL"] == "http://api.example"
    stack_only = {"ORCH_SERVICE_API_KEY_REF", "ORCH_API_KEY", "ORCH_SECRETS_FILE", "ORCH_SECRETS_BACKEND"}
    assert stack_only.isdisjoint(launch.env)
    assert "orch_service_key" not in repr(launch.env)
    [reply] = queue.published
    assert isinstance(reply, CreateWorkerResponse) and reply.success


def test_the_service_key_reference_never_reaches_the_launch_env() -> None:
    settings = WorkerManagerSettings(
        api_url="http://api.example", service_api_key_ref="secret://local/service_api_key"
    )
    assert "secret://local/service_api_key" not in launch_env(settings).values()


def test_a_token_that_cannot_be_minted_fails_the_worker_without_launching_it() -> None:
    api = _Api(mint_fails=True)
    manager, runtime, queue = _manager(api)
    manager.create(_create())
    assert runtime.launches == []
    [(_, status)] = api.stopped
    assert status == "FAILED"
    [reply] = queue.published
    assert isinstance(reply, CreateWorkerResponse) and not reply.success
    assert "ApiUnreachable" in (reply.error or "")


def test_a_redelivered_create_of_a_running_worker_mints_nothing() -> None:
    api = _Api(status="RUNNING")
    manager, runtime, queue = _manager(api)
    manager.create(_create())
    assert api.minted == [] and runtime.launches == []
    [reply] = queue.published
    assert reply.success


@pytest.mark.parametrize(("max_lifetime_s", "ttl_s"), [(10, 310), (1800, 2100), (30 * 86400, 7 * 86400)])
def test_the_token_lives_as_long_as_the_worker_may_plus_a_grace_within_the_api_s_bounds(
    max_lifetime_s: int, ttl_s: int
) -> None:
    api = _Api()
    manager, _, _ = _manager(api, max_lifetime_s=max_lifetime_s)
    manager.create(_create())
    assert [ttl for _, ttl in api.minted] == [ttl_s]


def test_the_start_is_won_and_the_token_minted_in_one_request_and_a_lost_start_launches_nothing() -> None:
    api = _Api()
    manager, runtime, _ = _manager(api)
    manager.create(_create())
    assert api.status == "RUNNING" and len(api.minted) == len(runtime.launches) == 1
    # a second delivery recorded the same CREATED worker, but the first took the start meanwhile
    raced = _Api()
    raced.status = "STARTING"
    manager_b, runtime_b, queue_b = _manager(raced)
    manager_b._start(
        _create(), raced.record_worker("w-1", "command").model_copy(update={"status": "CREATED"})
    )
    assert raced.minted == [] and runtime_b.launches == [] and queue_b.published == [] and raced.stopped == []
