"""The work-signal port: marks per kind of work, each the time it was last set.

Race-free without a lock: the API marks *before* its transaction commits, and a job settles (forgets)
a mark only if it was set more than `SETTLE_S` before the job's read. Any transaction that marked
earlier than that has committed or died by then (the API's timeout is shorter), so the API's answer
("nothing left") saw its rows; a mark set later survives the settle and the next tick looks again.
A crash between the mark and the commit leaves a mark and no work: one extra look, never a missed row.

By the same rule a store does not write again a kind it marked itself less than `REMARK_S` ago
(`RecentMarks`): that mark can be settled only `SETTLE_S` after it was set, and by then a transaction
that began within `REMARK_S` of it has committed or died (`REMARK_S` + the API's timeout is well under
`SETTLE_S`), so the job's look saw its rows. The API marks as it writes; without this, every write
request of a busy API was one more write to the store (a DynamoDB UpdateItem per kind on AWS).

A job whose work stands for long (the health checker while services are deployed) also keeps a
snapshot of what it last read from the API, with the time it read it: the snapshot stays good while
every mark of its kind `covered` it (was set more than `SETTLE_S` before that read), by the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

SETTLE_S = 120.0
"""Longer than any API transaction lives (the API function's timeout is 29 s) plus clock skew."""
REMARK_S = 10.0
"""A kind a store marked this recently (by its own clock) is not written again: 10 s + the API's 29 s
leaves 81 s of `SETTLE_S` for clock skew."""


class WorkKind(StrEnum):
    """What a mark says may exist; each scheduled job that needs the database watches one."""

    OUTBOX = "outbox"  # unsent outbox rows: outbox_sweep
    TASKS = "tasks"  # RUNNING tasks: stuck_task_reaper
    WORKERS = "workers"  # workers not ended: orphan_worker_collector
    DEPLOYMENTS = "deployments"  # deployed services: health_checker
    SERVERS = "servers"  # registered servers: server_sync
    PROJECTS = "projects"  # projects with a repository: github_sync
    GATES = "gates"  # gates waiting for a person: gate_expiry


class WorkSignalError(RuntimeError):
    """The signal store could not answer; callers must not assume either outcome."""


@runtime_checkable
class WorkSignalPort(Protocol):
    backend: str

    def mark(self, kinds: Iterable[WorkKind]) -> None:
        """Note that work of these kinds may exist from now on (one write, whatever the count)."""
        ...

    def marks(self) -> dict[WorkKind, float]:
        """Every standing mark: kind -> when it was last set (epoch seconds). Absent = no such work."""
        ...

    def settle(self, kind: WorkKind, seen_at: float) -> bool:
        """Forget `kind`'s mark if it was set more than SETTLE_S before `seen_at` (when the caller read
        the marks, before it asked the API); False if a newer mark stands (or none did)."""
        ...

    def load_snapshot(self, name: str) -> tuple[dict[str, Any], float] | None:
        """The data last saved under `name` and when its source was read (epoch seconds); None if none."""
        ...

    def save_snapshot(self, name: str, data: Mapping[str, Any], read_at: float) -> bool:
        """Keep `data` (JSON-able) read at `read_at` under `name`, unless a snapshot read later stands
        (False then): of two overlapping jobs, the later read wins, and re-saving at the same time is fine."""
        ...


class RecentMarks:
    """The kinds one store marked and when (its clock), to leave out those marked under `REMARK_S` ago.
    Not locked: two threads that race only both write, as before."""

    def __init__(self) -> None:
        self._at: dict[WorkKind, float] = {}

    def due(self, kinds: Iterable[WorkKind], now: float) -> list[WorkKind]:
        """The kinds to write at `now`, sorted (a clock that went back writes them again)."""
        fresh = {WorkKind(kind) for kind in kinds}
        return sorted(kind for kind in fresh if not 0 <= now - self._at.get(kind, -REMARK_S) < REMARK_S)

    def written(self, kinds: Iterable[WorkKind], now: float) -> None:
        for kind in kinds:
            self._at[kind] = now

    def forget(self, kind: WorkKind) -> None:
        """After a settle by this store: the next write marks it again at once."""
        self._at.pop(WorkKind(kind), None)


def parse_marks(raw: Mapping[str, float]) -> dict[WorkKind, float]:
    """Known kinds only: a store written by a newer version may hold kinds this one does not watch."""
    known = {kind.value: kind for kind in WorkKind}
    return {known[name]: float(at) for name, at in raw.items() if name in known}


def settle_before(seen_at: float) -> float:
    return seen_at - SETTLE_S


def covered(marked_at: float, read_at: float) -> bool:
    """Whether a read at `read_at` saw the writes of a mark set at `marked_at` (they had committed)."""
    return marked_at < settle_before(read_at)
