"""Issue 23: a quiet system at rest. One hour of every scheduled rule's ticks, each invoked with its real
EventBridge event, role and environment, makes no query on the database: every job asks the work signal
(DynamoDB) first. With work pending, the same jobs do reach the database, and settle the signal once
nothing is left.

Measured on the real PostgreSQL: the rehearsal database's table counters (`pg_stat_user_tables`: scans,
inserted, updated and deleted rows), which count every query the API makes on the orchestrator's tables
and nothing autovacuum or this test's own reads do. The API function's invocations are counted too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cloud.rehearsal import Rehearsal
from tests.deploy_support import health_server

pytestmark = [pytest.mark.cloud, pytest.mark.slow, pytest.mark.postgres]

HOUR_S = 3600
STATS_IDLE_FLUSH_S = 11.0
"""A PostgreSQL backend flushes its statistics at most every second, or after 10 s idle (PGSTAT_IDLE_INTERVAL)."""
TABLE_ACTIVITY = (
    "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0) + n_tup_ins + n_tup_upd + n_tup_del), 0) "
    "FROM pg_stat_user_tables"
)


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[None]:
    """This module deploys nothing to a server."""
    yield None


def _every_s(schedule: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", schedule)
    assert match, schedule
    return int(match.group(1)) * (3600 if match.group(2).startswith("hour") else 60)


def _scheduled_rules(rehearsal: Rehearsal) -> dict[str, int]:
    """Rule name -> its ticks in an hour."""
    rules = {rule.name: HOUR_S // _every_s(rule.schedule) for rule in rehearsal.bus.rules if rule.schedule}
    assert len(rules) >= 7, rules
    return rules


def _table_activity(rehearsal: Rehearsal) -> int:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(rehearsal.postgres_admin_url).set(database=rehearsal.database["dbname"])
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(TABLE_ACTIVITY)).scalar_one())
    finally:
        engine.dispose()


def _settled_activity(rehearsal: Rehearsal) -> int:
    """The counters once every backend has flushed what it did (two reads a flush interval apart agree)."""
    last = _table_activity(rehearsal)
    for _ in range(8):
        time.sleep(STATS_IDLE_FLUSH_S)
        now = _table_activity(rehearsal)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the database never went quiet (table activity still moving: {last})")


def _api_invocations(rehearsal: Rehearsal) -> int:
    api = rehearsal.lambda_.by_logical[
        next(lg for lg in rehearsal.lambda_.by_logical if lg.startswith("ApiFunction"))
    ]
    return sum(1 for name, _, _ in rehearsal.lambda_.invocations if name == api)


def _signal(rehearsal: Rehearsal) -> tuple[Any, str]:
    return rehearsal.client("dynamodb"), rehearsal.physical_ref("SchedulesWorkSignalTable")


def _marks(rehearsal: Rehearsal) -> dict[str, float]:
    client, table = _signal(rehearsal)
    item = client.get_item(TableName=table, Key={"pk": {"S": "work"}}, ConsistentRead=True).get("Item", {})
    return {name: float(value["N"]) for name, value in item.items() if "N" in value}


def _tick(rehearsal: Rehearsal, job: str) -> dict[str, Any]:
    [rule] = [name for name in _scheduled_rules(rehearsal) if name.endswith(f"job-{job}")]
    [outcome] = rehearsal.bus.schedule(rule)
    assert outcome.error is None, outcome.error
    result: dict[str, Any] = outcome.result
    return result


def test_an_idle_hour_of_scheduler_ticks_makes_no_database_query(rehearsal: Rehearsal) -> None:
    # given the stack at rest: migrated and seeded, no work written, the statistics flushed
    assert _marks(rehearsal) == {}
    before = _settled_activity(rehearsal)
    api_before = _api_invocations(rehearsal)

    # when every scheduled rule fires as often as it does in an hour (270 ticks)
    answers: dict[str, list[dict[str, Any]]] = {}
    for rule, ticks in _scheduled_rules(rehearsal).items():
        for _ in range(ticks):
            for outcome in rehearsal.bus.schedule(rule):
                assert outcome.error is None, (rule, outcome.error)
                answers.setdefault(rule, []).append(outcome.result)

    # then every job that needs the database answered from the work signal alone
    for rule, results in answers.items():
        if rule.endswith("job-dlq_watch"):  # SQS attributes only
            assert all(r["dead_total"] == 0 for r in results)
            continue
        assert all(r.get("idle") == 1 for r in results), (rule, results[:3])
    assert sum(len(r) for r in answers.values()) == sum(_scheduled_rules(rehearsal).values())
    # and neither the API nor the database saw any of it
    assert _api_invocations(rehearsal) == api_before
    assert _settled_activity(rehearsal) == before


def test_with_work_pending_the_jobs_reach_the_database_then_settle(rehearsal: Rehearsal) -> None:
    # given a project written through the API: the write marks the signal before it commits
    created = httpx.post(
        f"{rehearsal.api_url}/projects",
        json={"name": "quiet-check"},
        headers={"authorization": f"Bearer {rehearsal.admin_key}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    assert set(_marks(rehearsal)) == {"projects"}
    before = _settled_activity(rehearsal)

    # when github_sync ticks, it asks the API (which reads the projects)
    synced = _tick(rehearsal, "github_sync")
    assert "idle" not in synced and synced["projects"] == 0, synced  # no repository yet: nothing to sync
    assert _settled_activity(rehearsal) > before
    assert "settled" in synced and synced["settled"] == 0, "the mark is too fresh to forget"

    # and a mark set long ago, with nothing of its kind left, is settled: the next tick is idle again
    client, table = _signal(rehearsal)
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "work"}},
        UpdateExpression="SET outbox = :then",
        ExpressionAttributeValues={":then": {"N": str(time.time() - 3600)}},
    )
    swept = _tick(rehearsal, "outbox_sweep")
    assert (swept["pending"], swept["settled"]) == (0, 1), swept
    assert "outbox" not in _marks(rehearsal)
    quiet = _settled_activity(rehearsal)
    assert _tick(rehearsal, "outbox_sweep") == {"job": "outbox_sweep", "idle": 1}
    assert _settled_activity(rehearsal) == quiet


@pytest.fixture
def healthy_service() -> Iterator[str]:
    """A service whose /health answers 200 on loopback, where the scheduler's process reaches it."""
    with health_server() as base_url:
        yield f"{base_url}/health"


def test_an_hour_of_health_checks_of_a_deployed_service_makes_no_database_query(
    rehearsal: Rehearsal, healthy_service: str
) -> None:
    """While something is deployed the health checker probes it from the work signal's snapshot: the
    database (Aurora) sleeps until a deploy, an undeploy or a flip changes what there is to check."""
    admin = {"authorization": f"Bearer {rehearsal.admin_key}"}

    def api(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = httpx.request(method, f"{rehearsal.api_url}{path}", json=body, headers=admin, timeout=60)
        assert reply.status_code in (200, 201), (path, reply.text)
        answer: dict[str, Any] = reply.json()
        return answer

    # given a service deployed on a server, recorded as the deploy graph records it
    api("POST", "/servers", {"handle": "idle-box", "host": "127.0.0.1"})
    project = api("POST", "/projects", {"name": "deployed-quietly"})
    record = {
        "server_handle": "idle-box",
        "port": 8080,
        "url": healthy_service,
        "health_url": healthy_service,
    }
    api("PUT", f"/internal/deployments/{project['id']}", record)
    assert "deployments" in _marks(rehearsal)
    # and the deploy long committed (its mark older than the settle window): one tick reads the targets
    client, table = _signal(rehearsal)
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "work"}},
        UpdateExpression="SET deployments = :then",
        ExpressionAttributeValues={":then": {"N": str(time.time() - 3600)}},
    )
    first = _tick(rehearsal, "health_checker")
    assert first.get("up") == 1 and "idle" not in first, first
    before, api_before = _settled_activity(rehearsal), _api_invocations(rehearsal)

    # when the health checker ticks for an hour
    hour = [
        _tick(rehearsal, "health_checker") for _ in range(_scheduled_rules_ticks(rehearsal, "health_checker"))
    ]

    # then every tick probed the service, and neither the API nor the database heard of it
    assert all(r.get("up") == 1 and r.get("down", 0) == 0 for r in hour), hour[:3]
    assert _api_invocations(rehearsal) == api_before
    assert _settled_activity(rehearsal) == before


def _scheduled_rules_ticks(rehearsal: Rehearsal, job: str) -> int:
    [ticks] = [n for name, n in _scheduled_rules(rehearsal).items() if name.endswith(f"job-{job}")]
    return ticks


def test_the_jobs_made_no_call_their_roles_do_not_allow(rehearsal: Rehearsal) -> None:
    # the scheduler read and settled the signal, the API marked it (records are per function name)
    calls = {(r["file"].rsplit("-", 1)[-1], r["action"]) for r in rehearsal.iam_records() if r["allowed"]}
    assert {("scheduler", "dynamodb:GetItem"), ("scheduler", "dynamodb:UpdateItem")} <= calls
    assert ("api", "dynamodb:UpdateItem") in calls
    assert not rehearsal.denials(), rehearsal.denials()[:5]
