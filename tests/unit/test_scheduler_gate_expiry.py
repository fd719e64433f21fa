"""The gate_expiry job over a fake API and the local work signal: quiet while no gate was ever parked,
asks the API when one was, keeps its mark while a gate still waits for a person (however long that
takes), and settles it once none does."""

from __future__ import annotations

from pathlib import Path

from functions.scheduler.handler import lambda_handler
from functions.scheduler.jobs import IDLE, JOBS
from shared.topology import SCHEDULES
from shared.work_signal import SETTLE_S, WorkKind
from shared.work_signal.local import SqliteWorkSignal


class FakeGateApi:
    def __init__(self, expired: int, pending: int) -> None:
        self.report = {"expired": expired, "pending": pending}
        self.calls = 0

    def expire_gates_report(self) -> dict[str, int]:
        self.calls += 1
        return dict(self.report)

    def close(self) -> None:
        """Nothing to release: no connection behind this fake."""


def _run(api: FakeGateApi, signal: SqliteWorkSignal) -> dict[str, int]:
    return lambda_handler({"job": "gate_expiry"}, None, api=api, signal=signal)  # type: ignore[arg-type,no-any-return]


def test_gate_expiry_is_scheduled_and_watches_gates() -> None:
    assert getattr(JOBS["gate_expiry"], "watches", None) == WorkKind.GATES
    assert "gate_expiry" in {s.job for s in SCHEDULES}


def test_no_gate_no_api_call(tmp_path: Path) -> None:
    signal = SqliteWorkSignal(tmp_path / "signal.db")
    api = FakeGateApi(expired=0, pending=0)
    assert _run(api, signal) == {"job": "gate_expiry", IDLE: 1}
    assert api.calls == 0


def test_the_mark_stays_while_a_gate_waits_and_goes_when_none_does(tmp_path: Path) -> None:
    clock = [1000.0]
    signal = SqliteWorkSignal(tmp_path / "signal.db", clock=lambda: clock[0])
    signal.mark([WorkKind.GATES])  # the API parked a task
    clock[0] += SETTLE_S + 1

    # one gate expired, another still waits (a day-long approval): the mark stands
    waiting = FakeGateApi(expired=1, pending=1)
    result = _run(waiting, signal)
    assert (result["expired"], result["pending"]) == (1, 1) and "settled" not in result
    assert WorkKind.GATES in signal.marks()

    # none waits any more: settled, and the next tick asks nobody
    done = FakeGateApi(expired=0, pending=0)
    assert _run(done, signal)["settled"] == 1
    assert _run(done, signal)[IDLE] == 1
    assert done.calls == 1
