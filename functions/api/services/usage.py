"""The cost ledger: what each agent run and each worker's running time cost, in integer micro-USD.

Only the API writes it, in the transaction that finishes the message (or stops the worker), one row per
unique `key` (`message:<id>`, `worker:<id>`): a repeated result gets 409 before it gets here, and a race
or a redelivery that does get here is refused by the unique key, so nothing is ever counted twice.
Sums are exact (integers), so "to the cent" holds for any number of runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, case, event, func, literal_column, select
from sqlalchemy.orm import Session

from functions.api.db import added
from functions.api.models import Project, Task, UsageEntry, utcnow
from shared.contracts.spend import UsageGroup, UsageReport, UsageTotals, to_micros, to_usd
from shared.observability import count
from shared.spend_settings import SpendControlSettings

AGENT, WORKER = "agent", "worker"
TOP_TASKS = 50
NO_PROJECT = "none"
"""`by_project` key of spend outside any project: the Product Owner's conversations."""
_PENDING_METRIC = "usage.spend_after_commit"


@dataclass(frozen=True)
class Payer:
    """Whom a ledger row counts against: the person, and the project and task when there is one."""

    user_id: str | None
    project_id: str | None = None
    task_id: str | None = None


# -- reading the wrapper's report ----------------------------------------------------------------


def _number(value: object, upper: float) -> float | None:
    """A finite number in [0, upper]; anything else (missing, None, text, bool, NaN) is not counted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or value > upper:
        return None
    return float(value)


def _whole(value: object) -> int | None:
    found = _number(value, 1e15)
    return None if found is None else int(found)


def _text(value: object, max_length: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:max_length]


def read_report(result: dict[str, Any] | None) -> UsageReport | None:
    """The usage in a message's result dict (the wrapper's keys: cost_usd, input_tokens, output_tokens,
    cache_tokens, model, agent, duration_ms), read field by field: a garbage field is dropped, never a
    500. None when there is nothing to count (no cost and no tokens, e.g. a `command` tester run)."""
    if not isinstance(result, dict):
        return None
    report = UsageReport(
        agent=_text(result.get("agent"), 64),
        model=_text(result.get("model"), 128),
        input_tokens=_whole(result.get("input_tokens")),
        output_tokens=_whole(result.get("output_tokens")),
        cache_tokens=_whole(result.get("cache_tokens")),
        cost_usd=_number(result.get("cost_usd"), 1_000_000),
        duration_ms=_whole(result.get("duration_ms")),
    )
    tokens = (report.input_tokens, report.output_tokens, report.cache_tokens)
    if report.cost_usd is None and all(t is None for t in tokens):
        return None
    return report


# -- writing --------------------------------------------------------------------------------------


def record_agent_run(
    session: Session,
    message_id: int,
    worker_id: str,
    payer: Payer,
    result: dict[str, Any] | None,
    fallback_agent: str | None,
) -> UsageEntry | None:
    """One agent run's cost, once per message (None: nothing to count, or already counted)."""
    report = read_report(result)
    if report is None:
        return None
    entry = _entry(
        f"message:{message_id}",
        AGENT,
        payer,
        worker_id,
        agent=report.agent or fallback_agent,
        model=report.model,
        input_tokens=report.input_tokens,
        output_tokens=report.output_tokens,
        cache_tokens=report.cache_tokens,
        cost_micros=to_micros(report.cost_usd or 0.0),
        duration_ms=report.duration_ms,
    )
    return entry if _record(session, entry) else None


def worker_time_cost(seconds: float, settings: SpendControlSettings) -> tuple[float, float, int]:
    """(vCPU-seconds, GB-seconds, micro-USD) of a worker that ran `seconds`, at the settings' prices."""
    vcpu_s = seconds * settings.worker_vcpu
    gb_s = seconds * settings.worker_memory_gb
    usd = vcpu_s / 3600 * settings.price_vcpu_hour_usd + gb_s / 3600 * settings.price_gb_hour_usd
    return vcpu_s, gb_s, to_micros(usd)


def record_worker_time(
    session: Session,
    worker_id: str,
    payer: Payer,
    started_at: datetime,
    stopped_at: datetime,
    settings: SpendControlSettings,
) -> UsageEntry | None:
    """A stopped worker's running time, priced from the settings, once per worker."""
    seconds = max(0.0, (stopped_at - started_at).total_seconds())
    vcpu_s, gb_s, micros = worker_time_cost(seconds, settings)
    entry = _entry(
        f"worker:{worker_id}",
        WORKER,
        payer,
        worker_id,
        cost_micros=micros,
        duration_ms=round(seconds * 1000),
        vcpu_s=vcpu_s,
        gb_s=gb_s,
    )
    return entry if _record(session, entry) else None


def _entry(key: str, kind: str, payer: Payer, worker_id: str, **cost: Any) -> UsageEntry:
    return UsageEntry(
        key=key,
        kind=kind,
        user_id=payer.user_id,
        project_id=payer.project_id,
        task_id=payer.task_id,
        worker_id=worker_id,
        created_at=utcnow(),
        **cost,
    )


def _record(session: Session, entry: UsageEntry) -> bool:
    """Insert under the unique key (False: someone counted it already); the metric once it commits."""
    if not added(session, entry):
        return False
    pending: list[int] | None = session.info.get(_PENDING_METRIC)
    if pending is None:
        pending = session.info[_PENDING_METRIC] = []
        event.listen(session, "after_commit", _emit_spend)
        event.listen(session, "after_rollback", _drop_spend)
    pending.append(entry.cost_micros)
    return True


def _emit_spend(session: Session) -> None:
    for micros in session.info.pop(_PENDING_METRIC, None) or []:
        count("SpendUsd", to_usd(micros))
    session.info[_PENDING_METRIC] = []


def _drop_spend(session: Session) -> None:
    session.info[_PENDING_METRIC] = []


# -- reading --------------------------------------------------------------------------------------


def spent_micros(session: Session, *where: ColumnElement[bool]) -> int:
    """What the ledger rows matching `where` cost (each caller filters on an indexed column)."""
    return int(session.execute(_spent(*where)).scalar_one())


def _spent(*where: ColumnElement[bool]) -> Select[int]:
    return select(func.coalesce(func.sum(UsageEntry.cost_micros), 0)).where(*where)


def task_spent_micros(session: Session, task_id: str) -> int:
    """`spent_micros` of one task, with a statement built once (a task read asks it every time)."""
    return int(session.execute(_task_spent(), {"task_id": task_id}).scalar_one())


@functools.cache
def _task_spent() -> Select[int]:
    return _spent(UsageEntry.task_id == bindparam("task_id"))


def task_cost_usd(session: Session, task_id: str) -> float:
    """Everything a task cost: all its attempts, rounds, retries and workers."""
    return to_usd(task_spent_micros(session, task_id))


def month_start(now: datetime | None = None) -> datetime:
    """The start of the calendar month (UTC) `now` is in."""
    now = (now or utcnow()).astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def _sums() -> tuple[Any, ...]:
    agent = UsageEntry.kind == AGENT
    return (
        func.coalesce(func.sum(UsageEntry.cost_micros), 0).label("cost"),
        func.coalesce(func.sum(case((agent, UsageEntry.cost_micros), else_=0)), 0).label("agent_cost"),
        func.coalesce(func.sum(UsageEntry.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(UsageEntry.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(UsageEntry.cache_tokens), 0).label("cache_tokens"),
        func.count(case((agent, 1))).label("runs"),
        func.coalesce(func.sum(case((agent, 0), else_=UsageEntry.duration_ms)), 0).label("worker_ms"),
    )


def _totals(row: Row[Any]) -> dict[str, Any]:
    cost, agent_cost = int(row.cost), int(row.agent_cost)
    return {
        "cost_usd": to_usd(cost),
        "agent_cost_usd": to_usd(agent_cost),
        "worker_cost_usd": to_usd(cost - agent_cost),
        "input_tokens": int(row.input_tokens),
        "output_tokens": int(row.output_tokens),
        "cache_tokens": int(row.cache_tokens),
        "runs": int(row.runs),
        "worker_seconds": round(int(row.worker_ms) / 1000, 3),
    }


def _month(session: Session) -> ColumnElement[str]:
    """YYYY-MM of a row's created_at (UTC) in this database's dialect. Literal (not bound) arguments, so
    PostgreSQL sees the SELECT and GROUP BY expressions as the same one."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), UsageEntry.created_at)
        return func.to_char(utc, literal_column("'YYYY-MM'"))
    return func.strftime(literal_column("'%Y-%m'"), UsageEntry.created_at)


@dataclass(frozen=True)
class Summary:
    total: UsageTotals
    by_month: list[UsageGroup]
    by_project: list[UsageGroup]
    by_task: list[UsageGroup]


def summary(session: Session, user_id: str | None, project_id: str | None, since: date | None) -> Summary:
    """The ledger summed over the rows of a person and/or a project since a day (UTC): in all, per
    calendar month, per project and for the most expensive tasks. Four grouped queries, each on an
    index ((user_id, created_at) or (project_id, created_at))."""
    where: list[ColumnElement[bool]] = []
    if user_id is not None:
        where.append(UsageEntry.user_id == user_id)
    if project_id is not None:
        where.append(UsageEntry.project_id == project_id)
    if since is not None:
        where.append(UsageEntry.created_at >= datetime(since.year, since.month, since.day, tzinfo=UTC))
    sums = _sums()
    total = session.execute(select(*sums).where(*where)).one()

    month = _month(session).label("month")
    months = session.execute(select(month, *sums).where(*where).group_by(month).order_by(month)).all()

    projects = session.execute(
        select(UsageEntry.project_id, Project.name, *sums)
        .outerjoin(Project, Project.id == UsageEntry.project_id)
        .where(*where)
        .group_by(UsageEntry.project_id, Project.name)
        .order_by(literal_column("cost").desc())
    ).all()

    tasks = session.execute(
        select(UsageEntry.task_id, Task.type, *sums)
        .join(Task, Task.id == UsageEntry.task_id)
        .where(*where)
        .group_by(UsageEntry.task_id, Task.type)
        .order_by(literal_column("cost").desc(), UsageEntry.task_id)
        .limit(TOP_TASKS)
    ).all()
    return Summary(
        total=UsageTotals(**_totals(total)),
        by_month=_groups(months, lambda r: (r.month, None)),
        by_project=_groups(projects, lambda r: (r.project_id or NO_PROJECT, r.name or "no project")),
        by_task=_groups(tasks, lambda r: (r.task_id, r.type)),
    )


def _groups(rows: Sequence[Row[Any]], key: Any) -> list[UsageGroup]:
    out = []
    for row in rows:
        group_key, label = key(row)
        out.append(UsageGroup(key=str(group_key), label=label, **_totals(row)))
    return out
