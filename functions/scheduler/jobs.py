"""Each scheduled job is a small function of its ports; it returns what it did (counts, logged; a few
aggregates become metrics, see `handler.METRICS`).

Jobs reach the database only through the API (`ports.api`), and only when the work signal
(`shared.work_signal`) says their kind of work may exist: an idle system answers every tick from one
cheap read, so the database is left alone (and Aurora can pause). A job that found work asks the API,
then settles its mark when the API says nothing of that kind is left. The queue port is theirs for
read-only counts. Every job is safe to run twice at once: the API's repair endpoints compare-and-set
each row, and a settle only removes a mark older than the job's read (see `shared.work_signal.port`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from functions.scheduler.settings import SchedulerSettings
from shared.api_client import ApiClient
from shared.observability import get_logger
from shared.queues.port import QueuePort
from shared.work_signal import WorkKind, WorkSignalPort, build_work_signal, covered


@dataclass
class JobPorts:
    """What a job may use, built only when it asks (the DLQ watch needs no API key)."""

    settings: SchedulerSettings
    api_factory: Callable[[], ApiClient]
    queue_factory: Callable[[], QueuePort]
    signal_factory: Callable[[], WorkSignalPort] | None = field(default=None)

    @cached_property
    def api(self) -> ApiClient:
        return self.api_factory()

    @cached_property
    def queue(self) -> QueuePort:
        return self.queue_factory()

    @cached_property
    def signal(self) -> WorkSignalPort:
        return self.signal_factory() if self.signal_factory else build_work_signal(self.settings)

    @cached_property
    def repo_host(self) -> Any:
        from shared.repos.factory import RepoHostSettings, build_repo_host

        return build_repo_host(RepoHostSettings(home=self.settings.home))


Job = Callable[[JobPorts], dict[str, int]]
IDLE = "idle"
"""The count a job returns when the work signal said there was nothing for it (it did not call the API)."""


def watching(kind: WorkKind, left: Callable[[dict[str, int]], int]) -> Callable[[Job], Job]:
    """Run the job only while `kind` is marked; settle the mark when `left(counts)` says none is left."""

    def decorate(job: Job) -> Job:
        def gated(ports: JobPorts) -> dict[str, int]:
            seen_at = time.time()  # before the API looks: a mark set after this survives the settle
            if kind not in ports.signal.marks():
                return {IDLE: 1}
            counts = job(ports)
            if left(counts) == 0:
                counts["settled"] = int(ports.signal.settle(kind, seen_at))
            return counts

        gated.__name__ = job.__name__
        gated.__doc__ = job.__doc__
        gated.watches = kind  # type: ignore[attr-defined]
        return gated

    return decorate


@watching(WorkKind.OUTBOX, left=lambda counts: counts["pending"])
def outbox_sweep(ports: JobPorts) -> dict[str, int]:
    """Publish outbox rows older than a few seconds (the API publishes fresh ones itself)."""
    report = ports.api.sweep_outbox()
    return {
        k: int(report.get(k, 1 if k == "pending" else 0)) for k in ("claimed", "sent", "failed", "pending")
    }


@watching(WorkKind.TASKS, left=lambda counts: counts["running"])
def stuck_task_reaper(ports: JobPorts) -> dict[str, int]:
    """Fail (or requeue, by policy) RUNNING tasks with no heartbeat and no live worker; stop their workers."""
    settings = ports.settings
    report = ports.api.reap_stuck_tasks(
        limit_s=settings.reaper_heartbeat_limit_s,
        max_retries=settings.reaper_max_retries,
        batch=settings.maintenance_batch,
    )
    logger = get_logger()
    for task in report.tasks:
        logger.warning(
            f"stuck task {task.action}: {task.reason}",
            extra={"task_id": task.task_id, "attempt": task.attempt, "workers_stopped": task.workers_stopped},
        )
    return {
        "examined": report.examined,
        "failed": report.failed,
        "requeued": report.requeued,
        "workers_stopped": report.workers_stopped,
        "skipped": report.skipped,
        "running": report.running,
    }


@watching(WorkKind.WORKERS, left=lambda counts: counts["live"])
def orphan_worker_collector(ports: JobPorts) -> dict[str, int]:
    """Stop (once) workers whose task ended, that outlived their lifetime, or whose wrapper went silent."""
    settings = ports.settings
    report = ports.api.collect_orphan_workers(
        max_lifetime_s=settings.worker_max_lifetime_s + settings.orphan_grace_s,
        unseen_s=settings.worker_unseen_s,
        batch=settings.maintenance_batch,
    )
    logger = get_logger()
    for worker in report.workers:
        logger.warning(
            f"stopping orphan worker: {worker.reason}",
            extra={"worker_id": worker.worker_id, "task_id": worker.task_id, "cause": worker.cause},
        )
    return {
        "examined": report.examined,
        "stopped": report.stopped,
        "task_ended": report.task_ended,
        "too_old": report.too_old,
        "unseen": report.unseen,
        "skipped": report.skipped,
        "live": report.live,
    }


def dlq_summary(dead: dict[str, int]) -> str | None:
    """One owner-facing line naming each non-empty DLQ and the commands that inspect and repair it."""
    waiting = {queue: count for queue, count in dead.items() if count}
    if not waiting:
        return None
    parts = [
        f"{queue} {count} (inspect: orchestrator queue dlq {queue}; after the fix: orchestrator queue redrive {queue})"
        for queue, count in waiting.items()
    ]
    total = sum(waiting.values())
    return f"{total} dead-lettered message(s) in {len(waiting)} DLQ(s): " + ", ".join(parts)


def dlq_watch(ports: JobPorts) -> dict[str, int]:
    """Per-queue DLQ depth in the log, and an owner-facing summary line when any is non-empty (the alarm
    reads SQS's own metrics: no custom metric per queue)."""
    dead = {stats.queue: stats.dead for stats in ports.queue.stats()}
    summary = dlq_summary(dead)
    if summary:
        get_logger().warning(summary, extra={"dead_letters": {q: n for q, n in dead.items() if n}})
    return {
        "dead_total": sum(dead.values()),
        "dlqs_non_empty": sum(1 for n in dead.values() if n),
        **{f"dead.{queue}": count for queue, count in dead.items()},
    }


HEALTH_SNAPSHOT = "health_checker"
"""The work signal's snapshot of the deployed services: {"targets": [{"project_id", "health_url", "health"}]},
`health` the state the API last had (as listed, or as it answered our report)."""


def health_checker(ports: JobPorts) -> dict[str, int]:
    """GET every deployed service's health URL; the API records a flip (up -> down, down -> up) as an
    incident exactly once, however many checkers overlap.

    At rest it calls no API: the targets and their last known state come from a snapshot in the work
    signal, re-read from the API only when a deploy or undeploy may have happened since (the
    DEPLOYMENTS mark is not `covered` by the snapshot's read) or the snapshot is older than
    `health_snapshot_max_age_s`; the API hears only of a probe whose outcome differs from the cached
    state. So a service that stays up (or down) keeps the database asleep. The mark stands while
    anything is deployed and is settled once an empty list covers it: then the job is idle."""
    marked_at = ports.signal.marks().get(WorkKind.DEPLOYMENTS)
    if marked_at is None:
        return {IDLE: 1}
    settings = ports.settings
    stored = ports.signal.load_snapshot(HEALTH_SNAPSHOT)
    refresh = (
        stored is None
        or not covered(marked_at, stored[1])
        or time.time() - stored[1] > settings.health_snapshot_max_age_s
    )
    if refresh or stored is None:
        # taken before the API reads: a deploy marked after read_at - SETTLE_S is looked for again
        read_at = time.time()
        deployments = ports.api.list_deployments(status="deployed")[: settings.sync_batch]
        targets = [
            {"project_id": d.project_id, "health_url": d.health_url, "health": d.health} for d in deployments
        ]
    else:
        targets, read_at = list(stored[0]["targets"]), stored[1]

    outcomes = _probe([str(t["health_url"]) for t in targets], settings)
    counts = {
        "checked": len(targets),
        "up": 0,
        "down": 0,
        "changed": 0,
        "reported": 0,
        "refreshed": int(refresh),
    }
    for target, (ok, detail) in zip(targets, outcomes, strict=True):
        health = "up" if ok else "down"
        counts[health] += 1
        if health == target["health"]:
            continue
        change = ports.api.report_health(str(target["project_id"]), health, detail)
        target["health"] = change.deployment.health
        counts["reported"] += 1
        counts["changed"] += int(change.changed)
    if refresh or counts["reported"]:
        ports.signal.save_snapshot(HEALTH_SNAPSHOT, {"targets": targets}, read_at)
    if not targets:
        counts["settled"] = int(ports.signal.settle(WorkKind.DEPLOYMENTS, read_at))
    if not (refresh or counts["reported"]):
        counts[IDLE] = 1  # probed from the snapshot: neither the API nor the database heard of it
    return counts


health_checker.watches = WorkKind.DEPLOYMENTS  # type: ignore[attr-defined]


def _probe(urls: list[str], settings: SchedulerSettings) -> list[tuple[bool, str]]:
    """(answered 200, what it answered) per URL, `health_check_concurrency` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def check(url: str) -> tuple[bool, str]:
        try:
            response = httpx.get(url, timeout=settings.health_check_timeout_s, follow_redirects=False)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"[:300]
        return response.status_code == 200, f"HTTP {response.status_code}"

    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=settings.health_check_concurrency) as pool:
        return list(pool.map(check, urls))


@watching(WorkKind.SERVERS, left=lambda counts: counts["servers"])
def server_sync(ports: JobPorts) -> dict[str, int]:
    """Ask the infra department to ping every server (an Ansible facts run). One request id per server
    per schedule window, so overlapping ticks launch one run; the result updates the server's status
    (and opens an incident on a flip) when it arrives on provisioner:results."""
    import time

    from shared.contracts import PROVISIONER_QUEUE, ProvisionerMessage, server_check_id

    window = int(time.time() // ports.settings.server_sync_every_s)
    servers = ports.api.list_servers()[: ports.settings.sync_batch]
    messages = [
        ProvisionerMessage(
            request_id=server_check_id("sync", s.handle, window), server_handle=s.handle, job_type="ping"
        )
        for s in servers
    ]
    for start in range(0, len(messages), 10):
        ports.queue.publish_batch(PROVISIONER_QUEUE, messages[start : start + 10])
    return {"servers": len(servers), "pings": len(messages)}


@watching(WorkKind.PROJECTS, left=lambda counts: counts["projects"])
def github_sync(ports: JobPorts) -> dict[str, int]:
    """Each project's repository: default-branch head and open pull requests, stored on the project; a
    repository that disappeared is flagged (an incident, once)."""
    from shared.contracts.api import RepoSync
    from shared.repos.port import RepoHostError

    host = ports.repo_host
    counts = {"projects": 0, "synced": 0, "missing": 0, "errors": 0, "changed": 0}
    for project in ports.api.list_projects()[: ports.settings.sync_batch]:
        if not project.repo_url or project.status == "archived":
            continue
        counts["projects"] += 1
        full_name = f"{ports.settings.repo_owner}/{project.name}"
        try:
            info = host.get_repo(full_name)
            if info is None:
                sync = RepoSync(missing=True)
                counts["missing"] += 1
            else:
                pulls = [
                    {
                        "number": p.number,
                        "url": p.url,
                        "state": p.state,
                        "head": p.head,
                        "base": p.base,
                        "title": p.title,
                    }
                    for p in host.list_pull_requests(full_name)
                ]
                sync = RepoSync(head=host.branch_head(full_name, info.default_branch), pull_requests=pulls)
        except RepoHostError as exc:
            counts["errors"] += 1
            get_logger().warning("repository sync failed", extra={"project": project.name, "error": str(exc)})
            continue
        counts["changed"] += int(ports.api.record_repo_sync(project.id, sync).changed)
        counts["synced"] += 1
    return counts


@watching(WorkKind.GATES, left=lambda counts: counts["pending"])
def gate_expiry(ports: JobPorts) -> dict[str, int]:
    """Approvals and human reviews nobody answered in time: the API fails their tasks (approval_timeout,
    review_timeout) and wakes their graphs. The mark stays while any gate still waits for a person."""
    report = ports.api.expire_gates_report()
    return {"expired": report.get("expired", 0), "pending": report.get("pending", 1)}


JOBS: dict[str, Job] = {
    "outbox_sweep": outbox_sweep,
    "stuck_task_reaper": stuck_task_reaper,
    "orphan_worker_collector": orphan_worker_collector,
    "dlq_watch": dlq_watch,
    "health_checker": health_checker,
    "server_sync": server_sync,
    "github_sync": github_sync,
    "gate_expiry": gate_expiry,
}
