"""/internal/maintenance: the scheduler's repair jobs (service scope).

Each call handles at most `batch` rows, and two overlapping calls never act on the same row
twice (compare-and-set per row; see `services.maintenance`). What a call queued (worker deletes,
requeued tasks) is published right after its commits; a crash in between leaves it to the sweep.
"""

from __future__ import annotations

from functions.api.deps import get_deps
from functions.api.routers._common import dispatch_now, new_router, principal
from functions.api.services import maintenance
from shared.contracts.api import OrphanWorkerCollect, OrphanWorkerReport, StuckTaskReap, StuckTaskReport

router = new_router()
TAGS = ["maintenance"]


@router.post(
    "/internal/maintenance/reap-stuck-tasks",
    summary="Fail (or requeue, by policy) RUNNING tasks with no heartbeat and no live worker; stop their workers",
    tags=TAGS,
)
def reap_stuck_tasks(body: StuckTaskReap) -> StuckTaskReport:
    caller = principal(router)
    caller.require_service()
    report, outbox_ids = maintenance.reap_stuck_tasks(get_deps().db, caller, body)
    if outbox_ids:
        dispatch_now(outbox_ids)
    return report


@router.post(
    "/internal/maintenance/collect-orphan-workers",
    summary="Stop workers whose task ended, that outlived their lifetime, or whose wrapper went silent",
    tags=TAGS,
)
def collect_orphan_workers(body: OrphanWorkerCollect) -> OrphanWorkerReport:
    principal(router).require_service()
    report, outbox_ids = maintenance.collect_orphan_workers(get_deps().db, body)
    if outbox_ids:
        dispatch_now(outbox_ids)
    return report
