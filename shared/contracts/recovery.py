"""API bodies for a server's recovery: what the provisioner redeploys when a server comes back."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from shared.contracts.dto import Dto, Out
from shared.contracts.servers import Host, Server, SshUser

RecoveryId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9:._-]+$"),
    Field(description="One per flip (or replacement) of the server: asked twice, nothing is redone."),
]


class ServerRecoveryStart(Dto):
    """Internal: redeploy every project whose current release lives on the server."""

    recovery_id: RecoveryId


class RedeployedProject(Out):
    project_id: str
    project_name: str
    task_id: Annotated[str | None, Field(description="The redeploy task; None when skipped.")] = None
    ref: Annotated[str | None, Field(description="What is redeployed: the release's commit.")] = None
    release: Annotated[int | None, Field(description="The release redeployed (None: before releases).")] = (
        None
    )
    created: Annotated[
        bool, Field(description="False: a repeat of this recovery, answered with the first one's task.")
    ] = False
    skipped: Annotated[str | None, Field(description="Why no redeploy was started for it.")] = None


class ServerRecovery(Out):
    server: Server
    recovery_id: str
    projects: list[RedeployedProject] = Field(default_factory=list)

    @property
    def redeployed(self) -> list[RedeployedProject]:
        return [p for p in self.projects if p.task_id is not None]


class ServerUpdate(Dto):
    """Where a server is and who Ansible logs in as. A new host is a replaced machine: it is provisioned
    again and every project deployed there is redeployed (as after an outage)."""

    host: Annotated[Host | None, Field(description="The new IP or DNS name (a replaced machine).")] = None
    ssh_user: Annotated[SshUser | None, Field(description="Who Ansible logs in as.")] = None


class ServerUpdated(Out):
    server: Server
    replaced: Annotated[bool, Field(description="The host changed: the server is recovered as a new one.")]
    recovery_id: Annotated[
        str | None, Field(description="The recovery queued for the replaced server (None: none needed).")
    ] = None
