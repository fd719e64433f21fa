"""The worker manager's configuration block."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.service_client import ServiceApiSettings
from shared.settings import QueueSettings


class WorkerManagerSettings(ServiceApiSettings, QueueSettings):
    worker_runtime: Annotated[Literal["local", "fargate"], Field(description="Where workers run.")] = "local"
    worker_max_lifetime_s: Annotated[int, Field(gt=0, description="No worker outlives this.")] = 1800
    worker_idle_timeout_s: Annotated[int, Field(gt=0, description="A wrapper with nothing to do exits.")] = (
        600
    )
    fargate_cluster: str | None = None
    fargate_task_definition: str | None = None
    fargate_container_name: str = "worker"
    fargate_subnets: Annotated[str, Field(description="Comma-separated subnet ids.")] = ""
    fargate_security_groups: Annotated[str, Field(description="Comma-separated security group ids.")] = ""
    agent_command: Annotated[str | None, Field(description="ORCH_AGENT_COMMAND for the `command` agent.")] = (
        None
    )
