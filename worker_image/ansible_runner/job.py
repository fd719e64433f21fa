"""What the Ansible runner is asked to do (`RunnerJob`) and what it reports (`RunnerOutcome`).

A job carries secret *references* only (`secret://...`); the runner resolves them itself at the last
moment. Every string of a job reaches Ansible marked unsafe (never templated), so a value such as
`{{ lookup('pipe', 'id') }}` in an env var is written as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.secrets.refs import parse_reference
from shared.settings import HomeSettings

JobKind = Literal["deploy", "undeploy", "provision", "ping"]
SSH_DEPLOY_ROOT = "/opt/orchestrator"
"""Where apps live on a server reached over ssh, unless the job says otherwise."""

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_PROJECT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_GIT_REF = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
_HOST = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")
_HANDLE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")

Port = Annotated[int, Field(ge=1, le=65535)]


class JobError(ValueError):
    """The job is invalid; the message is one readable line naming the field."""


def _check_reference(reference: str) -> str:
    parse_reference(reference)  # raises InvalidSecretReference (a ValueError) naming the problem
    return reference


class Target(BaseModel):
    """The machine the playbook runs against."""

    model_config = ConfigDict(extra="forbid")

    handle: Annotated[str, Field(description="The server's handle (as in the servers table).")]
    host: Annotated[str, Field(description='IP or DNS name; "127.0.0.1" for the built-in localhost server.')]
    connection: Annotated[
        Literal["local", "ssh"], Field(description="local: this very machine, no ssh (embedded mode).")
    ] = "ssh"
    ssh_user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    ssh_port: Port = 22
    ssh_key_ref: Annotated[
        str | None, Field(description="secret:// reference to the private key; resolved by the runner.")
    ] = None

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str) -> str:
        if not _HANDLE.fullmatch(value):
            raise ValueError("must be 1-128 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError("must be an IP address or a host name")
        return value

    @field_validator("ssh_key_ref")
    @classmethod
    def _key_ref(cls, value: str | None) -> str | None:
        return None if value is None else _check_reference(value)


class RunnerJob(BaseModel):
    """One playbook run for one target."""

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, description="Echoed by the result.")]
    correlation_id: Annotated[str | None, Field(description="Carried into every log line.")] = None
    kind: JobKind
    target: Target
    project_id: str | None = None
    project_name: Annotated[
        str | None, Field(description="snake_case; names the app directory and unit. Deploy/undeploy.")
    ] = None
    repo_url: Annotated[
        str | None,
        Field(description="Clone URL without credentials (local path, file:// or https). Deploy only."),
    ] = None
    ref: Annotated[str, Field(description="Commit sha or branch to deploy.")] = "main"
    github_token_ref: Annotated[
        str | None, Field(description="secret:// reference to a token for https clones; never logged.")
    ] = None
    port: Annotated[Port | None, Field(description="Port the service listens on. Deploy/undeploy.")] = None
    port_variable: Annotated[str, Field(description="Env var that sets the listening port.")] = "PORT"
    run_command: Annotated[
        str, Field(min_length=1, max_length=1000, description="Starts the service, from the repository root.")
    ] = "python3 -m app.server"
    health_path: Annotated[str, Field(pattern=r"^/[^\s]*$", max_length=500)] = "/health"
    env: Annotated[dict[str, str], Field(description="Plain variables for the service.")] = Field(
        default_factory=dict
    )
    secret_refs: Annotated[
        dict[str, str], Field(description="NAME -> secret:// reference, resolved by the runner.")
    ] = Field(default_factory=dict)
    deploy_root: Annotated[
        str | None,
        Field(description='Where apps live; default "/opt/orchestrator" (ssh) or $ORCH_HOME/deployments.'),
    ] = None
    open_ports: Annotated[
        list[Port], Field(description="Provision: ports the firewall lets in (plus 22).")
    ] = Field(default_factory=list)
    force_reinstall: bool = False
    slot: Annotated[
        str | None,
        Field(
            pattern=r"^[ab]$",
            description=(
                'Deploy/undeploy: the blue/green slot ("a"|"b") listening on `port`; once healthy it takes '
                "`stable_port`. None: the in-place deploy on `port`."
            ),
        ),
    ] = None
    stable_port: Annotated[
        Port | None, Field(description="With a slot: the project's stable address, switched to the slot.")
    ] = None
    domain: Annotated[
        str | None, Field(description="With a slot on an ssh server: the hostname the proxy serves.")
    ] = None
    release: Annotated[int | None, Field(ge=1, description="The release number (logs only).")] = None
    timeout_s: Annotated[int, Field(ge=10, le=6 * 3600, description="Hard limit for the playbook run.")] = 900

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not _GIT_REF.fullmatch(value) or value.startswith("-") or ".." in value:
            raise ValueError("must be a commit sha or a branch name")
        return value

    @field_validator("run_command")
    @classmethod
    def _run_command(cls, value: str) -> str:
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            raise ValueError("must be one line without control characters")
        return value

    @field_validator("port_variable")
    @classmethod
    def _port_variable(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name ([A-Z_][A-Z0-9_]*)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name ([A-Z_][A-Z0-9_]*)")
            if "\0" in item:
                raise ValueError(f"{name} contains a NUL character")
        return value

    @field_validator("secret_refs")
    @classmethod
    def _secret_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, reference in value.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name ([A-Z_][A-Z0-9_]*)")
            _check_reference(reference)
        return value

    @field_validator("github_token_ref")
    @classmethod
    def _token_ref(cls, value: str | None) -> str | None:
        return None if value is None else _check_reference(value)

    @field_validator("deploy_root")
    @classmethod
    def _deploy_root(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or ".." in Path(value).parts):
            raise ValueError("must be an absolute path without '..'")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _DOMAIN.fullmatch(value):
            raise ValueError("must be a host name such as app.example.com")
        return value.lower()

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError("must be a clone URL or path")
        if "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("must not carry credentials (pass github_token_ref instead)")
        return value

    @model_validator(mode="after")
    def _required_for_kind(self) -> RunnerJob:
        needs: dict[str, tuple[str, ...]] = {
            "deploy": ("project_name", "repo_url", "port"),
            "undeploy": ("project_name", "port"),
        }
        for name in needs.get(self.kind, ()):
            if getattr(self, name) is None:
                raise _FieldProblem(name, f"is required for a {self.kind} job")
        if self.project_name is not None and not _PROJECT_NAME.fullmatch(self.project_name):
            raise _FieldProblem(
                "project_name", "must be snake_case: a lowercase letter, then a-z, 0-9 or '_'"
            )
        clash = set(self.env) & set(self.secret_refs)
        if clash:
            raise _FieldProblem("secret_refs", f"{sorted(clash)[0]} is also a plain variable in env")
        if self.port_variable in self.env or self.port_variable in self.secret_refs:
            raise _FieldProblem("port_variable", f"{self.port_variable} is set by the runner from port")
        if self.slot is not None and self.kind == "deploy" and self.stable_port is None:
            raise _FieldProblem("stable_port", "is required with a slot")
        if self.slot is not None and self.stable_port is not None and self.stable_port == self.port:
            raise _FieldProblem("stable_port", "must differ from port (the slot's own port)")
        return self

    @classmethod
    def from_json(cls, data: str | bytes | dict[str, Any]) -> RunnerJob:
        """Parse and validate; raises `JobError` with one line naming the bad field."""
        if not isinstance(data, dict):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError) as error:
                raise JobError(f"invalid job: not JSON ({error})") from None
            if not isinstance(data, dict):
                raise JobError(f"invalid job: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise JobError(_describe(error)) from None

    # -- derived -----------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return self.target.connection == "local"

    def effective_deploy_root(self, home: HomeSettings | None = None) -> str:
        if self.deploy_root:
            return self.deploy_root
        if self.is_local:
            return str((home or HomeSettings()).home.resolve() / "deployments")
        return SSH_DEPLOY_ROOT

    def app_dir(self, home: HomeSettings | None = None) -> str | None:
        if self.project_name is None:
            return None
        return f"{self.effective_deploy_root(home).rstrip('/')}/{self.project_name}"

    def slot_dir(self, home: HomeSettings | None = None) -> str | None:
        """Where the deployed release lives: `APP_DIR/slots/<slot>`, or APP_DIR itself without a slot."""
        app_dir = self.app_dir(home)
        if app_dir is None or self.slot is None:
            return app_dir
        return f"{app_dir}/slots/{self.slot}"

    def service_log_path(self, home: HomeSettings | None = None) -> str | None:
        """Where the deploy playbook's service writes its output on the target (deploy jobs only)."""
        slot_dir = self.slot_dir(home) if self.kind == "deploy" else None
        return None if slot_dir is None else f"{slot_dir}/service.log"

    @property
    def deployed_url(self) -> str | None:
        """The address people use: with a slot the stable one (https://<domain> behind the proxy of an
        ssh server), else the port the service listens on."""
        if self.slot is not None and self.domain and not self.is_local:
            return f"https://{self.domain}"
        port = self.stable_port if self.slot is not None else self.port
        if port is None:
            return None
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"http://{host}:{port}"

    @property
    def health_url(self) -> str | None:
        return None if self.deployed_url is None else self.deployed_url + self.health_path


class _FieldProblem(ValueError):
    """Raised from the model validator so the message names the field, not the model."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


def _describe(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"])
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, _FieldProblem):
        location, message = cause.field, cause.problem
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"invalid job, field {location or '<root>'!r}: {message}{suffix}"


class RunnerOutcome(BaseModel):
    """What one run produced; every string in it has been redacted."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    kind: str
    status: Literal["success", "failed"]
    exit_code: Annotated[int | None, Field(description="ansible-playbook's exit code.")] = None
    error: Annotated[str | None, Field(description="One readable line when failed.")] = None
    stdout_tail: Annotated[str | None, Field(description="Last ~4000 characters, redacted.")] = None
    stderr_tail: str | None = None
    duration_ms: Annotated[int, Field(ge=0)]
    deployed_url: str | None = None
    health_url: str | None = None
    facts: dict[str, str] = Field(default_factory=dict)
    reachable: Annotated[
        bool | None, Field(description="Whether the target answered; None when the run never tried.")
    ] = None
    service_log: Annotated[
        str | None, Field(description="The service's last log lines when its health check failed, redacted.")
    ] = None
    service_log_path: Annotated[str | None, Field(description="The service's full log on the target.")] = None
    switched: Annotated[
        bool | None,
        Field(description="A slot deploy: whether the stable address now serves the new slot."),
    ] = None
