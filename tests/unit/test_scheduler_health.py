"""The health checker at rest calls no API (issue 23): it probes from the work signal's snapshot and tells
the API only of a flip; a deploy or undeploy (a DEPLOYMENTS mark the snapshot's read does not cover) makes
it re-read the list; with nothing deployed it settles the mark and goes idle. Run over both adapters
(SQLite, DynamoDB on moto), with a fake API that marks the signal as the real one does and counts calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from moto import mock_aws

from functions.scheduler import jobs
from functions.scheduler.handler import lambda_handler
from functions.scheduler.jobs import HEALTH_SNAPSHOT, IDLE
from functions.scheduler.settings import SchedulerSettings
from shared.work_signal import SETTLE_S, WorkKind, WorkSignalPort
from shared.work_signal.local import SqliteWorkSignal
from tests.integration.test_work_signal import moto_work_signal

TICK_S = 60.0
START = 1_000_000.0


@dataclass
class Row:
    project_id: str
    health_url: str
    health: str = "up"
    visible_from: float = 0.0
    """When its transaction commits: a list before that does not see it (the mark came first)."""


@dataclass
class FakeApi:
    """The deployments the database holds; marks DEPLOYMENTS on every write, as `functions.api.work_marks`."""

    signal: WorkSignalPort
    now: Callable[[], float]
    rows: dict[str, Row] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def deploy(self, project_id: str, health: str = "unknown", commit_after_s: float = 0.0) -> None:
        self.signal.mark([WorkKind.DEPLOYMENTS])
        url = f"http://svc/{project_id}/health"
        self.rows[project_id] = Row(project_id, url, health, visible_from=self.now() + commit_after_s)

    def undeploy(self, project_id: str) -> None:
        self.signal.mark([WorkKind.DEPLOYMENTS])
        del self.rows[project_id]

    def list_deployments(self, status: str | None = None) -> list[Any]:
        assert status == "deployed"
        self.calls.append("list_deployments")
        return [SimpleNamespace(**vars(r)) for r in self.rows.values() if r.visible_from <= self.now()]

    def report_health(self, project: str, health: str, detail: str = "") -> Any:
        self.calls.append(f"report_health {project} {health}")
        self.signal.mark([WorkKind.DEPLOYMENTS])  # the health column's update marks too
        row = self.rows[project]
        previous, row.health = row.health, health
        return SimpleNamespace(
            deployment=SimpleNamespace(health=health), previous=previous, changed=previous != health
        )


@dataclass
class World:
    clock: list[float]
    signal: WorkSignalPort
    api: FakeApi
    answers: dict[str, int]
    """health URL -> the status code it answers (absent: connection refused)."""
    settings: SchedulerSettings

    def tick(self) -> dict[str, Any]:
        self.clock[0] += TICK_S
        return lambda_handler(
            {"job": "health_checker"}, None, api=self.api, settings=self.settings, signal=self.signal
        )  # type: ignore[arg-type]

    def ticks(self, n: int) -> list[dict[str, Any]]:
        return [self.tick() for _ in range(n)]

    def api_calls_during(self, n: int) -> list[str]:
        before = len(self.api.calls)
        self.ticks(n)
        return self.api.calls[before:]

    def serve(self, project_id: str, status: int | None) -> None:
        url = f"http://svc/{project_id}/health"
        if status is None:
            self.answers.pop(url, None)
        else:
            self.answers[url] = status


@pytest.fixture(params=["local", "dynamodb"])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    clock = [START]
    now: Callable[[], float] = lambda: clock[0]  # noqa: E731
    monkeypatch.setattr(jobs, "time", SimpleNamespace(time=now))
    answers: dict[str, int] = {}

    def get(url: str, **_kwargs: Any) -> httpx.Response:
        if url not in answers:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(answers[url])

    monkeypatch.setattr(httpx, "get", get)
    settings = SchedulerSettings(home=tmp_path, health_snapshot_max_age_s=86400)

    def build(signal: WorkSignalPort) -> World:
        return World(clock, signal, FakeApi(signal, now), answers, settings)

    if request.param == "local":
        yield build(SqliteWorkSignal(tmp_path / "signal.db", clock=now))
        return
    with mock_aws():
        yield build(moto_work_signal(now))


def _three_deployed_and_settled(world: World) -> None:
    """Three services up and known up; the deploys long past; the first ticks have read the list."""
    for project in ("p1", "p2", "p3"):
        world.api.deploy(project, health="up")
        world.serve(project, 200)
    world.ticks(int(SETTLE_S // TICK_S) + 2)


def test_at_rest_with_services_deployed_an_hour_of_ticks_calls_no_api(world: World) -> None:
    # given three deployed services; the ticks right after the deploys read the list (the mark is fresh)
    for project in ("p1", "p2", "p3"):
        world.api.deploy(project, health="up")
        world.serve(project, 200)
    settling = world.api_calls_during(int(SETTLE_S // TICK_S) + 2)
    assert set(settling) == {"list_deployments"} and len(settling) <= 3, settling

    # when an hour of one-minute ticks passes with every service up
    results = world.ticks(60)

    # then the API (and its database) heard nothing, yet every tick probed the three services
    calls = world.api.calls[len(settling) :]
    print(
        f"\nhealth_checker API calls per hour at rest, 3 services deployed: before 240 (60 x list + 3 reports), after {len(calls)}"
    )
    assert calls == []
    assert all((r["checked"], r["up"], r[IDLE]) == (3, 3, 1) for r in results), results[:2]
    assert WorkKind.DEPLOYMENTS in world.signal.marks(), "the mark stands while anything is deployed"


def test_a_flip_is_reported_once_then_the_job_is_quiet_again(world: World) -> None:
    _three_deployed_and_settled(world)
    # when p2 stops answering
    world.serve("p2", None)
    flipped = world.tick()
    # then exactly one report, for p2, which the API records as a change
    assert world.api.calls[-1] == "report_health p2 down"
    assert (flipped["down"], flipped["reported"], flipped["changed"]) == (1, 1, 1)
    # and the report's own mark costs a few list reads (never a second report), then nothing
    after = world.api_calls_during(60)
    assert "report_health p2 down" not in after and set(after) <= {"list_deployments"}, after
    assert len(after) <= int(SETTLE_S // TICK_S) + 1, after
    assert world.api_calls_during(10) == []
    # when it answers again: one report of up
    world.serve("p2", 200)
    assert world.api_calls_during(1) == ["report_health p2 up"]


def test_a_service_that_stays_down_is_not_reported_again(world: World) -> None:
    _three_deployed_and_settled(world)
    world.serve("p3", 503)
    world.ticks(10)
    assert world.api.calls.count("report_health p3 down") == 1
    assert world.api_calls_during(30) == []


def test_a_deploy_marked_after_the_snapshot_is_probed_on_the_next_tick(world: World) -> None:
    _three_deployed_and_settled(world)
    # when a fourth service is deployed (new: its health unknown) after the snapshot was read
    world.api.deploy("p4")
    world.serve("p4", 200)
    result = world.tick()
    # then the next tick re-reads the list, probes it, and tells the API its first state
    assert result["refreshed"] == 1 and result["checked"] == 4
    assert "report_health p4 up" in world.api.calls
    world.ticks(int(SETTLE_S // TICK_S) + 1)
    assert world.api_calls_during(30) == []


def test_a_deploy_whose_transaction_commits_after_the_read_is_still_found(world: World) -> None:
    # given the deploy marked, then its transaction took 30 s to commit: the list read in between misses it
    world.api.deploy("p1", health="up", commit_after_s=TICK_S + 30)
    world.serve("p1", 200)
    first = world.tick()
    assert (first["refreshed"], first["checked"]) == (1, 0)
    assert first["settled"] == 0, "the mark is too fresh for an empty list to settle it"
    # then a later tick reads again (the snapshot's read did not cover the mark) and finds it
    assert world.tick()["checked"] == 1
    assert WorkKind.DEPLOYMENTS in world.signal.marks()


def test_the_snapshot_is_re_read_only_while_it_does_not_cover_the_mark(world: World) -> None:
    world.api.deploy("p1", health="up")
    world.serve("p1", 200)
    marked_at = world.signal.marks()[WorkKind.DEPLOYMENTS]
    targets = {"targets": [{"project_id": "p1", "health_url": "http://svc/p1/health", "health": "up"}]}
    # a snapshot read SETTLE_S after the mark: the marking transaction may still have been open
    world.signal.save_snapshot(HEALTH_SNAPSHOT, targets, marked_at + SETTLE_S)
    world.clock[0] = marked_at + SETTLE_S + 1 - TICK_S
    assert world.tick()["refreshed"] == 1
    # a snapshot read just over SETTLE_S after it saw its rows: no read
    world.signal.save_snapshot(HEALTH_SNAPSHOT, targets, marked_at + SETTLE_S + 0.5)
    calls = world.api_calls_during(1)
    assert calls == [], calls


def test_undeploying_everything_settles_the_mark_and_the_job_goes_idle(world: World) -> None:
    _three_deployed_and_settled(world)
    for project in ("p1", "p2", "p3"):
        world.api.undeploy(project)
    results = world.ticks(int(SETTLE_S // TICK_S) + 2)
    assert results[0]["checked"] == 0 and results[0]["settled"] == 0
    assert results[-1] == {"job": "health_checker", IDLE: 1}, results
    assert WorkKind.DEPLOYMENTS not in world.signal.marks()
    assert world.api_calls_during(30) == []
    # and the next deploy wakes it
    world.api.deploy("p5", health="up")
    world.serve("p5", 200)
    assert world.tick()["checked"] == 1


def test_the_snapshot_is_re_read_after_the_safety_period(world: World) -> None:
    _three_deployed_and_settled(world)
    day = int(world.settings.health_snapshot_max_age_s // TICK_S)
    calls = world.api_calls_during(day + 1)
    assert calls == ["list_deployments"], calls
