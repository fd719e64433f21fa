"""The scheduler's configuration block: how it reaches the API and the queues, and the repair limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.service_client import ServiceApiSettings
from shared.settings import QueueSettings
from shared.work_signal.factory import WorkSignalSettings


class SchedulerSettings(ServiceApiSettings, QueueSettings, WorkSignalSettings):
    reaper_heartbeat_limit_s: Annotated[
        int,
        Field(
            ge=60, description="A RUNNING task with no heartbeat and no live worker for this long is stuck."
        ),
    ] = 900
    reaper_max_retries: Annotated[
        int,
        Field(
            ge=0, le=10, description="Requeue a stuck task instead of failing it, at most this many times."
        ),
    ] = 0
    worker_max_lifetime_s: Annotated[
        int, Field(gt=0, description="The worker manager's limit (same variable); no worker outlives it.")
    ] = 1800
    orphan_grace_s: Annotated[
        int, Field(ge=0, description="Added to the lifetime before the collector stops a worker for its age.")
    ] = 300
    worker_unseen_s: Annotated[
        int, Field(ge=60, description="An idle worker whose wrapper was not seen for this long is stopped.")
    ] = 900
    maintenance_batch: Annotated[
        int, Field(ge=1, le=500, description="Rows a repair job handles per tick.")
    ] = 50
    health_check_timeout_s: Annotated[float, Field(gt=0, le=30, description="Per health GET.")] = 5.0
    health_check_concurrency: Annotated[int, Field(ge=1, le=64, description="Health GETs in flight.")] = 8
    health_snapshot_max_age_s: Annotated[
        int,
        Field(
            ge=60,
            description="health_checker re-reads the deployments from the API at least this often, even "
            "when no deploy or undeploy was marked (a net under a lost mark); otherwise it probes from its "
            "snapshot and calls the API only on a flip.",
        ),
    ] = 86400
    sync_batch: Annotated[
        int, Field(ge=1, le=1000, description="Projects / servers a sync job handles per tick.")
    ] = 200
    server_sync_every_s: Annotated[
        int, Field(ge=60, description="server_sync's schedule; one ping per server per window.")
    ] = 300
    repo_owner: Annotated[
        str, Field(description="Owner part of the projects' owner/name (as engineering).")
    ] = "orchestrator"
