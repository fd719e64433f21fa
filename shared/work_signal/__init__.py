"""The "is there work?" signal: what the scheduler's jobs ask before they reach the API (and its database).

The API marks a kind of work when a transaction writes a row of it (`functions.api.work_marks`); a job
reads the marks (one cheap read: a DynamoDB item or a SQLite row), returns at once when its kind is
unmarked, and otherwise asks the API, then settles the mark when the API says nothing of it is left.
See `port` for why a mark is settled only once it is older than `SETTLE_S`, and for the snapshots a job
whose work stands (deployed services) keeps, so that at rest it need not ask the API at all.
"""

from shared.work_signal.factory import WorkSignalSettings, build_work_signal
from shared.work_signal.port import REMARK_S, SETTLE_S, WorkKind, WorkSignalError, WorkSignalPort, covered

__all__ = [
    "REMARK_S",
    "SETTLE_S",
    "WorkKind",
    "WorkSignalError",
    "WorkSignalPort",
    "WorkSignalSettings",
    "build_work_signal",
    "covered",
]
