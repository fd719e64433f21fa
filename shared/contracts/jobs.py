"""Job queue messages and their results (engineering, deploy, scaffolder, provisioner, ansible)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from shared.contracts.base import BaseMessage, BaseResult, SeedDict, SeedList

MAX_DEPLOY_FIX_ATTEMPTS = 2

FixAttempt = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_DEPLOY_FIX_ATTEMPTS,
        description="Round of the deploy -> engineering fix loop (added from later seed versions; capped).",
    ),
]


class EngineeringMessage(BaseMessage):
    """`engineering:queue`: implement a task's spec in the project's repository."""

    task_id: Annotated[str, Field(description="The task this work belongs to.")]
    project_id: Annotated[str, Field(description="The project to work on.")]
    user_id: Annotated[int, Field(description="Telegram user id of the requester.")]
    deploy_fix_attempt: FixAttempt = 0


class EngineeringResult(BaseResult):
    """Stored as an engineering task's result."""

    files_changed: SeedList[str] = Field(default_factory=list, description="Paths changed by the work.")
    commit_sha: str | None = Field(default=None, description="Commit holding the work.")
    branch: str | None = Field(default=None, description="Branch the commit was pushed to.")
    pr_url: str | None = Field(
        default=None, description="Pull request URL where the repo host supports PRs (added field)."
    )


class DeployMessage(BaseMessage):
    """`deploy:queue`: deploy a project to a server."""

    task_id: Annotated[str, Field(description="The task this work belongs to.")]
    project_id: Annotated[str, Field(description="The project to deploy.")]
    user_id: Annotated[int, Field(description="Telegram user id of the requester.")]
    deploy_fix_attempt: FixAttempt = 0


class DeployResult(BaseResult):
    """Stored as a deploy task's result."""

    deployed_url: str | None = Field(default=None, description="Where the service answers.")
    server_ip: str | None = Field(default=None, description="Address of the server.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Port the service listens on.")


class ScaffolderMessage(BaseMessage):
    """`scaffolder:queue`: render the project template into a new repository."""

    project_id: Annotated[str, Field(description="The project to scaffold.")]
    repo_full_name: Annotated[str, Field(description="Repository as owner/repo.")]
    project_name: Annotated[str, Field(description="The project's name.")]
    modules: SeedList[str] = Field(
        default_factory=list, description='Template modules, e.g. ["backend", "telegram"].'
    )
    task_id: Annotated[
        str | None, Field(description="Added: the engineering task waiting for the scaffold's result.")
    ] = None
    description: Annotated[
        str, Field(description="Added: the project's description, for README and repo.")
    ] = ""


class ScaffolderResult(BaseResult):
    """Added (`scaffolder:results`): the scaffolder's answer, which resumes the waiting engineering task.

    `request_id` echoes the ScaffolderMessage's; `task_id` names the task whose graph waits for it.
    """

    project_id: str
    task_id: str | None = None
    repo_full_name: str
    repo_url: str | None = None
    commit_sha: str | None = None
    files: SeedList[str] = Field(default_factory=list)


class ProvisionerMessage(BaseMessage):
    """`provisioner:queue`: prepare (or repair) a server.

    Added: `job_type` ("provision", or "ping" for a reachability / facts run by server_sync), and
    `open_ports` (ports the firewall lets in)."""

    server_handle: Annotated[str, Field(description="Handle of the server.")]
    force_reinstall: bool = Field(default=False, description="Reinstall base packages even if present.")
    is_recovery: bool = Field(default=False, description="Provisioning after the server was lost.")
    job_type: Literal["provision", "ping"] = "provision"
    open_ports: SeedList[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)


SERVER_CHECKS = ("sync", "recovery")
"""The request ids of provisioner runs no task's graph waits for begin with one of these: server_sync's
scheduled pings (`sync:`) and a lost server's recovery (`recovery:`). A graph's request ids begin with its
task's id (`shared.graphs.driver.request_id`)."""


def server_check_id(kind: Literal["sync", "recovery"], handle: str, part: object) -> str:
    """The request id of a provisioner run for `handle` that no graph waits for (one per `part`: a schedule
    window, a flip)."""
    return f"{kind}:{handle}:{part}"


def is_server_check(request_id: str) -> bool:
    """Whether a provisioner result only reports on its server, with no graph waiting for it."""
    return request_id.partition(":")[0] in SERVER_CHECKS


class ProvisionerResult(BaseResult):
    """Outcome of a provisioning (or ping) run. Added: `reachable`, `facts` (a few ansible facts:
    os, python, hostname), and output tails / exit code on failure."""

    server_handle: str
    server_ip: str | None = None
    services_redeployed: SeedList[str] = Field(
        default_factory=list, description="Names of the services redeployed on the server."
    )
    services_redeployed_count: int | None = Field(
        default=None,
        ge=0,
        description="Added: how many services were redeployed. The seed sent only this number, as "
        "`services_redeployed`; such a body reads as an empty name list and this count.",
    )
    errors: SeedList[str] = Field(default_factory=list)
    reachable: bool | None = None
    facts: SeedDict[str] = Field(default_factory=dict)
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_count(cls, data: Any) -> Any:
        if isinstance(data, dict):
            redeployed = data.get("services_redeployed")
            if isinstance(redeployed, int) and not isinstance(redeployed, bool):
                data = {**data, "services_redeployed": [], "services_redeployed_count": redeployed}
        return data

    @model_validator(mode="after")
    def _count_names(self) -> ProvisionerResult:
        if self.services_redeployed_count is None:
            self.services_redeployed_count = len(self.services_redeployed)
        return self


SecretRefs = Annotated[
    SeedDict[str],
    Field(description="Environment name -> secret:// reference. Values are resolved by the runner only."),
]


class AnsibleDeployMessage(BaseMessage):
    """`ansible:deploy:queue`: run the deploy (or undeploy) playbook. Secrets travel by reference only.

    Added fields: `job_type` "undeploy"; `task_id`; `server_handle` (the infra consumer looks the
    server's connection up by it); `repo_url` (clone URL without credentials) and `ref` (commit or
    branch); `run_command`, `health_path`, `port_variable` from the repo's env contract; `env` (plain,
    non-secret variables) and `secret_refs` (name -> reference)."""

    job_type: Literal["deploy", "undeploy"] = "deploy"
    project_id: str
    project_name: Annotated[str, Field(description="snake_case project name.")]
    repo_full_name: str
    server_ip: str
    port: Annotated[int, Field(ge=1, le=65535)]
    modules: SeedList[str] = Field(default_factory=list)
    github_token_ref: Annotated[
        str | None, Field(description="Reference (secret://...) to the repo token, never the token.")
    ] = None
    secrets_ref: Annotated[
        str | None, Field(description="Reference to the project's secrets, never their values.")
    ] = None
    task_id: str | None = None
    server_handle: str | None = None
    repo_url: str | None = None
    ref: Annotated[str, Field(min_length=1, max_length=255)] = "main"
    run_command: str = "python3 -m app.server"
    health_path: str = "/health"
    port_variable: str = "PORT"
    env: SeedDict[str] = Field(default_factory=dict)
    secret_refs: SecretRefs = Field(default_factory=dict)
    slot: Annotated[
        str | None,
        Field(
            pattern=r"^[ab]$",
            description=(
                'Blue/green slot ("a"|"b") the release goes to, listening on `port`; once healthy it takes '
                "`stable_port`. None: the in-place deploy on `port` (messages sent before slots existed)."
            ),
        ),
    ] = None
    stable_port: Annotated[
        int | None,
        Field(ge=1, le=65535, description="With a slot: the project's stable address, switched to the slot."),
    ] = None
    domain: Annotated[
        str | None, Field(description="With a slot on an ssh server: the hostname the proxy serves (TLS).")
    ] = None
    release: Annotated[int | None, Field(ge=1, description="The release number this deploy ships.")] = None

    @model_validator(mode="after")
    def _slot_needs_stable_port(self) -> AnsibleDeployMessage:
        if self.slot is not None and self.job_type == "deploy" and self.stable_port is None:
            raise ValueError("stable_port is required with a slot")
        if self.stable_port is not None and self.stable_port == self.port and self.slot is not None:
            raise ValueError("port (the slot's) must differ from stable_port")
        return self


class AnsibleDeployResult(BaseResult):
    """Outcome of an ansible deploy run; output tails only on failure. Added: `job_type`,
    `project_id`, `health_url`, `ref`. A slot deploy succeeds only when the new slot is healthy AND the
    stable address switched to it; then `deployed_url` is the stable address and `health_url` the slot's.
    On failure the new slot is stopped, the previous one keeps serving, and `error` ends with the
    service's own last log line (all of them in `service_log`)."""

    deployed_url: str | None = None
    server_ip: str | None = None
    port: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
    job_type: Literal["deploy", "undeploy"] = "deploy"
    project_id: str | None = None
    health_url: str | None = None
    ref: str | None = None
    service_log: Annotated[
        str | None, Field(description="A failed deploy: the service's last log lines, redacted.")
    ] = None
    service_log_path: Annotated[
        str | None, Field(description="A deploy: where the service's full log is, on the server.")
    ] = None
    slot: Annotated[
        str | None,
        Field(description="The slot deployed; success means it is healthy AND the stable address serves it."),
    ] = None
    stable_port: int | None = None
    release: int | None = None
    switched: Annotated[
        bool | None,
        Field(
            description=(
                "A slot deploy: whether the stable address now serves the new slot (False on failure: "
                "the previous release keeps serving)."
            )
        ),
    ] = None
