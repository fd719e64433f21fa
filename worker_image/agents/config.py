"""Configuration of the agent adapters, as models.

Two sources: the machine (`AgentEnvironment`, env vars with the `ORCH_` prefix: which executable
to run, which model by default, the `command` agent's command line) and the job (`AgentOptions`,
the per-job settings dict: model, autonomy...). Unknown job settings are refused so a typo does not silently run the
agent with defaults.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentEnvironment(BaseSettings):
    """Where the agent CLIs are on this machine; read when an adapter is built, never at import."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    claude_bin: Annotated[str, Field(description="Claude Code executable (name on PATH or path).")] = "claude"
    droid_bin: Annotated[str, Field(description="Factory Droid executable.")] = "droid"
    codex_bin: Annotated[str, Field(description="OpenAI Codex CLI executable.")] = "codex"
    claude_model: Annotated[
        str | None, Field(description="Claude Code's model when the job names none (--model).")
    ] = None
    droid_model: Annotated[str | None, Field(description="Factory Droid's model when the job has none.")] = (
        None
    )
    codex_model: Annotated[str | None, Field(description="Codex's model when the job names none.")] = None
    openai_base_url: Annotated[
        str | None,
        Field(
            validation_alias=AliasChoices("ORCH_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
            description="Codex's endpoint (a gateway, a test server): codex itself ignores OPENAI_BASE_URL.",
        ),
    ] = None
    agent_command: Annotated[
        str | None,
        Field(description="Command line of the `command` agent, run through /bin/sh -c."),
    ] = None


class AgentOptions(BaseModel):
    """Per-job settings; each adapter uses the ones that mean something to its CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bin: Annotated[str | None, Field(description="Executable override for this job (beats the env).")] = None
    model: Annotated[str | None, Field(description="Model id passed to the CLI's --model / -m.")] = None
    max_turns: Annotated[int | None, Field(ge=1, description="claude-code: --max-turns.")] = None
    permissions: Annotated[
        Literal["auto", "bypass", "allowlist"],
        Field(
            description=(
                "claude-code: bypass = --permission-mode bypassPermissions (refused by the CLI as root); "
                "allowlist = dontAsk with the usual tools allowed; auto = allowlist as root, else bypass."
            )
        ),
    ] = "auto"
    disallowed_tools: Annotated[
        tuple[str, ...], Field(description='claude-code: --disallowedTools rules, e.g. "Bash(git push *)".')
    ] = ()
    autonomy: Annotated[
        Literal["low", "medium", "high"],
        Field(description="factory-droid: --auto level; high lets it edit, run and push."),
    ] = "high"
    sandbox: Annotated[
        Literal["full-auto", "bypass"],
        Field(
            description=(
                "codex: full-auto = --sandbox workspace-write; bypass = no sandbox, "
                "for containers where the Landlock/seccomp sandbox cannot start."
            )
        ),
    ] = "full-auto"
    command: Annotated[
        str | None, Field(description="command: the command line (beats ORCH_AGENT_COMMAND).")
    ] = None
    allowed_commands: Annotated[
        tuple[str, ...],
        Field(
            description=(
                "The only commands the agent may run (WorkerConfig.allowed_commands; empty: no limit). "
                "claude-code: permission rules Bash(NAME:*) and no other tool; command: a PATH of only "
                "these; codex and factory-droid cannot limit commands and refuse to start."
            )
        ),
    ] = ()
    extra_args: Annotated[
        tuple[str, ...], Field(description="Appended to the CLI's options, before the prompt.")
    ] = ()
