"""API bodies for servers, their ports, the deployments on them, health and incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from shared.contracts.dto import Dto, Handle, Id, Out, TaskRef
from shared.contracts.releases import PortSlot

Host = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_-]+$")]
SshUser = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z_][a-z0-9_-]*$")]


class ServerCreate(Dto):
    handle: Handle
    host: Host
    ssh_user: SshUser = "root"
    ssh_key_ref: Annotated[
        str | None, Field(max_length=512, description="secret://... reference to the key.")
    ] = None
    ssh_private_key: Annotated[
        str | None,
        Field(max_length=20_000, description="Write-only: stored via the secrets port, never returned."),
    ] = None
    labels: dict[str, str] = Field(default_factory=dict)


class Server(Out):
    id: str
    handle: str
    host: str
    ssh_user: str
    ssh_key_ref: str | None
    status: str
    labels: dict[str, str]
    owner_id: str
    created_at: datetime
    facts: dict[str, Any] = Field(default_factory=dict)
    checked_at: datetime | None = None

    @property
    def connection(self) -> Literal["local", "ssh"]:
        return "local" if self.labels.get("connection") == "local" else "ssh"


class ServerCheck(Dto):
    """Internal: what a reachability run (server_sync, a deploy's readiness check) found."""

    status: Literal["up", "unreachable"]
    facts: dict[str, Any] = Field(default_factory=dict)


class ServerCheckResult(Out):
    server: Server
    previous_status: str
    changed: bool


class PortRequest(Dto):
    project_id: Annotated[Id, Field(description="The project's id or name.")]
    port: Annotated[
        int | None, Field(ge=1024, le=65535, description="A specific port; default: lowest free.")
    ] = None
    slot: Annotated[
        PortSlot, Field(description='"" the project\'s stable port; "a" / "b" a release slot\'s port.')
    ] = ""


class PortAllocation(Out):
    server_handle: str
    port: int
    project_id: str
    created_at: datetime
    slot: str = ""


# -- deployments --------------------------------------------------------------------------

DeploymentStatus = Literal["deployed", "stopped"]
HealthState = Literal["unknown", "up", "down", "stopped"]
"""`stopped`: the deployment is stopped, so nothing checks it (no stale `up`)."""


class Deployment(Out):
    project_id: str
    project_name: str
    server_handle: str
    port: int
    url: str
    health_url: str
    ref: str | None
    status: DeploymentStatus
    health: HealthState
    health_changed_at: datetime | None
    checked_at: datetime | None
    task_id: str | None
    owner_id: str
    updated_at: datetime
    slot: str = Field(default="", description='The slot serving now; "" in place on `port` (before slots).')


class DeploymentRecord(Dto):
    """Internal: the deploy graph records a finished deploy or undeploy."""

    server_handle: Handle
    port: Annotated[int, Field(ge=1, le=65535)]
    url: Annotated[str, Field(max_length=1000)]
    health_url: Annotated[str, Field(max_length=1000)]
    ref: Annotated[str | None, Field(max_length=255)] = None
    status: DeploymentStatus = "deployed"
    task_id: TaskRef | None = None
    slot: PortSlot = ""


class HealthReport(Dto):
    """Internal: one health check's outcome (health_checker)."""

    health: Literal["up", "down"]
    detail: Annotated[str, Field(max_length=1000)] = ""


IncidentKind = Literal[
    "service_down",
    "service_up",
    "server_unreachable",
    "server_up",
    "service_redeployed",
    "repo_missing",
    "repo_back",
]
"""`service_redeployed`: its server came back (or was replaced) and the project is redeployed there."""


class Incident(Out):
    id: str
    owner_id: str
    project_id: str | None
    server_id: str | None
    kind: IncidentKind
    message: str
    created_at: datetime
    notified_at: datetime | None


class HealthChange(Out):
    deployment: Deployment
    previous: HealthState
    changed: bool
    """True for exactly one caller when the state flips: that caller tells the owner."""
