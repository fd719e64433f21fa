"""A worker that starts while its stack restarts waits for the API instead of dying with its job untouched
(seen in CI: a stack killed right after it launched a worker); a worker started without its own token
(ORCH_WORKER_TOKEN) or the API's address says so and exits with EXIT_NO_CREDENTIALS."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.api_client import ApiError, ApiUnreachable, NotFoundError
from shared.contracts.api import WorkerDetail
from worker_image import wrapper as wrapper_module
from worker_image.wrapper import Wrapper, WrapperSettings


class _FlakyApi:
    def __init__(self, down_for: int, status: str = "STARTING") -> None:
        self.down_for = down_for
        self.status = status
        self.calls: list[str] = []

    def _maybe_down(self, what: str) -> None:
        self.calls.append(what)
        if self.down_for > 0:
            self.down_for -= 1
            raise ApiUnreachable("http://127.0.0.1:1", "Connection refused")

    def get_worker(self, worker_id: str) -> WorkerDetail:
        self._maybe_down("get")
        return WorkerDetail(
            id=worker_id,
            task_id=None,
            agent="command",
            runtime_handle="local:1:w",
            status=self.status,
            exit_reason=None,
            started_at=datetime.now(UTC),
            stopped_at=None,
            config={"context": {}},
            create_request_id="r",
        )

    def update_worker(self, worker_id: str, status: str, **_: Any) -> None:
        self._maybe_down(f"update:{status}")


def test_the_job_is_loaded_once_the_api_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(wrapper_module.time, "sleep", sleeps.append)
    api = _FlakyApi(down_for=3)
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    worker.load_job()
    assert api.calls == ["get", "get", "get", "get", "update:RUNNING"]
    assert sleeps == [0.5, 1.0, 2.0]
    worker.cleanup()


def test_running_is_reported_only_when_the_manager_has_not_said_so(tmp_path: Path) -> None:
    """The manager marks a worker RUNNING once it launched it, often before the wrapper reads its job: the
    wrapper's own report would change nothing then (one request per worker saved)."""
    api = _FlakyApi(down_for=0, status="RUNNING")
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    worker.load_job()
    assert api.calls == ["get"]
    worker.cleanup()


class _BusyApi(_FlakyApi):
    """Answers 503 (a busy stack) a few times, then a 4xx that is an answer."""

    def __init__(self, busy_for: int, then: ApiError | None = None) -> None:
        super().__init__(down_for=0)
        self.busy_for, self.then = busy_for, then

    def get_worker(self, worker_id: str) -> WorkerDetail:
        if self.busy_for > 0:
            self.busy_for -= 1
            self.calls.append("busy")
            raise ApiError(503, "unavailable", "database is busy")
        if self.then is not None:
            raise self.then
        return super().get_worker(worker_id)


def test_a_busy_api_is_waited_for_but_a_refusal_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wrapper_module.time, "sleep", lambda _s: None)
    api = _BusyApi(busy_for=2)
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    worker.load_job()
    assert api.calls == ["busy", "busy", "get", "update:RUNNING"]
    worker.cleanup()

    refused = _BusyApi(busy_for=1, then=NotFoundError(404, "not_found", "no such worker"))
    worker = Wrapper(refused, "w-2", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        worker.load_job()
    assert refused.calls == ["busy"]
    worker.cleanup()


def test_a_long_outage_still_ends_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(wrapper_module.time, "sleep", lambda _s: None)
    monkeypatch.setattr(wrapper_module.time, "monotonic", lambda: float(next(clock)))
    worker = Wrapper(_FlakyApi(down_for=1_000), "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ApiUnreachable):
        worker.load_job()
    worker.cleanup()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ORCH_API_URL": "http://127.0.0.1:1"}, "ORCH_WORKER_TOKEN not set"),
        ({"ORCH_API_URL": "http://127.0.0.1:1", "ORCH_WORKER_TOKEN": ""}, "ORCH_WORKER_TOKEN not set"),
        ({"ORCH_WORKER_TOKEN": "orchw_x"}, "ORCH_API_URL not set"),
        ({}, "ORCH_API_URL and ORCH_WORKER_TOKEN not set"),
    ],
)
def test_a_worker_without_its_token_or_the_api_exits_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], named: str
) -> None:
    # given: a service key in the environment does not stand in for the worker's own token
    for name in ("ORCH_API_URL", "ORCH_WORKER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_API_KEY", "orch_service_key")
    monkeypatch.setenv("ORCH_SERVICE_API_KEY_REF", "secret://local/service_api_key")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # when
    code = wrapper_module.main(["--worker-id", "w-1"])
    # then
    assert code == wrapper_module.EXIT_NO_CREDENTIALS
    assert named in capsys.readouterr().err


def test_the_worker_acts_with_its_token_which_no_child_process_inherits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a worker started with its token
    monkeypatch.setenv("ORCH_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("ORCH_WORKER_TOKEN", "orchw_the_workers_own_token")
    monkeypatch.setenv("ORCH_WORKER_WORKSPACE_ROOT", str(tmp_path))
    seen: dict[str, Any] = {}

    def serve(self: Wrapper) -> int:
        seen["authorization"] = self.api._http.headers.get("authorization")
        seen["inherited"] = os.environ.get("ORCH_WORKER_TOKEN")
        seen["redacted"] = self.redactor.redact("token orchw_the_workers_own_token")
        return 0

    monkeypatch.setattr(Wrapper, "serve", serve)
    # when
    assert wrapper_module.main(["--worker-id", "w-1"]) == 0
    # then: the API client carries it; the environment that git and the agent inherit does not
    assert seen["authorization"] == "Bearer orchw_the_workers_own_token"
    assert seen["inherited"] is None
    assert "orchw_the_workers_own_token" not in seen["redacted"]
