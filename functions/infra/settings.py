"""The infra function's configuration block."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.service_client import ServiceApiSettings
from shared.settings import QueueSettings


class InfraSettings(ServiceApiSettings, QueueSettings):
    ansible_runtime: Annotated[
        Literal["local", "fargate"],
        Field(
            description="local: a subprocess on this machine; fargate: a task of the Ansible runner image."
        ),
    ] = "local"
    ansible_timeout_s: Annotated[
        int, Field(ge=10, le=6 * 3600, description="Hard limit of one playbook run.")
    ] = 900
    fargate_cluster: str | None = None
    ansible_task_definition: str | None = None
    ansible_container_name: str = "ansible"
    fargate_subnets: Annotated[str, Field(description="Comma-separated subnet ids.")] = ""
    fargate_security_groups: Annotated[str, Field(description="Comma-separated security group ids.")] = ""
    ansible_assign_public_ip: Annotated[
        bool,
        Field(
            description="Give each runner task a public IP (public subnets without a NAT gateway: the only "
            "way out to target servers and git hosts); false behind a NAT gateway."
        ),
    ] = False
