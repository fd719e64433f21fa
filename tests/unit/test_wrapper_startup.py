"""A worker that starts while its stack restarts waits for the API instead of dying with its job untouched
(seen in CI: a stack killed right after it launched a worker)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.api_client import ApiUnreachable
from shared.contracts.api import WorkerDetail
from worker_image import wrapper as wrapper_module
from worker_image.wrapper import Wrapper, WrapperSettings


class _FlakyApi:
    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
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
            status="STARTING",
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
    worker = Wrapper(api, "w-1", WrapperSettings(api_key="k", worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    worker.load_job()
    assert api.calls == ["get", "get", "get", "get", "update:RUNNING"]
    assert sleeps == [0.5, 1.0, 2.0]
    worker.cleanup()


def test_a_long_outage_still_ends_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(wrapper_module.time, "sleep", lambda _s: None)
    monkeypatch.setattr(wrapper_module.time, "monotonic", lambda: float(next(clock)))
    worker = Wrapper(
        _FlakyApi(down_for=1_000), "w-1", WrapperSettings(api_key="k", worker_workspace_root=tmp_path)
    )  # type: ignore[arg-type]
    with pytest.raises(ApiUnreachable):
        worker.load_job()
    worker.cleanup()
