"""What the deploy graph remembers between its steps (checkpointed after every node).

The keys and their meaning are those of the earlier `TypedDict` state, so a checkpoint written before
this model still resumes: LangGraph keeps one channel per key and builds the model from them, a key
never written takes its default. Values stay plain (str, int, list, dict), which both checkpointers'
serializer stores without an allow-list of classes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

Outcome = Literal["completed", "failed", "cancelled"]


class DeployState(BaseModel):
    """One deploy or undeploy task on its way; empty strings and zero mean "not known yet"."""

    task_id: Annotated[str, Field(description="The deploy task; also the checkpoint thread.")]
    project_id: str
    correlation_id: str = ""
    kind: Literal["deploy", "undeploy"] = "deploy"
    project_name: str = ""
    server_handle: str = ""
    server_host: str = ""
    connection: Annotated[Literal["local", "ssh"], Field(description="How the server is reached.")] = "local"
    ref: Annotated[str, Field(description="What was asked for: a branch or a commit (main by default).")] = ""
    commit_sha: Annotated[str, Field(description="The commit shipped: `ref` resolved (40 hex).")] = ""
    repo_url: str = ""
    repo_full_name: str = ""
    agent: Annotated[str, Field(description="The coding agent of fix rounds.")] = ""
    port: Annotated[
        int, Field(description="Where the service listens (its slot's port); 0 until allocated.")
    ] = 0
    stable_port: Annotated[
        int, Field(description="The project's address on the server, switched to the new slot; 0: in place.")
    ] = 0
    slot: Annotated[
        Literal["", "a", "b"],
        Field(description='The release\'s slot ("a"|"b"); an undeploy: the serving one; "": in place.'),
    ] = ""
    domain: Annotated[str, Field(description="The hostname an ssh server's proxy serves, if any.")] = ""
    release_id: Annotated[str, Field(description="The release this deploy records; empty until started.")] = (
        ""
    )
    release_number: int = 0
    rollback_of: Annotated[
        int | None, Field(description="A rollback: the release whose commit it ships (no fix rounds).")
    ] = None
    # from the env contract (orchestrator.env.json); the defaults are the undeploy path's
    port_variable: str = "PORT"
    health_path: str = "/health"
    run_command: str = "python3 -m app.server"
    env: Annotated[dict[str, str], Field(description="Variables with a value, the port's excepted.")] = {}
    secret_names: Annotated[list[str], Field(description="Secrets the service reads, if set.")] = []
    required_secrets: Annotated[list[str], Field(description="Secrets the deploy waits for.")] = []
    secret_refs: Annotated[dict[str, str], Field(description="Secret name -> its reference.")] = {}
    missing: Annotated[list[str], Field(description="Required secrets not set yet.")] = []
    cleanup: Annotated[
        bool, Field(description="An undeploy of what a failed deploy left (there is no deployment).")
    ] = False
    attempt: Annotated[int, Field(description="Engineering fix rounds done so far.")] = 0
    fix_task_id: str | None = None
    last_failure: Annotated[str | None, Field(description="Why the last deploy or smoke test failed.")] = None
    last_cause: Annotated[
        str | None, Field(description="last_failure for a person: the error, the service's log lines.")
    ] = None
    service_log_path: Annotated[str, Field(description="The service's full log, on the server.")] = ""
    deployed_url: str = ""
    health_url: str = ""
    gate: Annotated[
        Literal["", "deploy"], Field(description='"deploy" while the deploy waits for the owner\'s approval.')
    ] = ""
    gate_passed: Annotated[
        bool,
        Field(
            description="The deploy was approved (or needs no approval): a fix round's redeploy asks no more."
        ),
    ] = False
    outcome: Outcome | None = None
    error: Annotated[
        str | None, Field(description='Why it failed; "provision" while the server is being prepared.')
    ] = None
