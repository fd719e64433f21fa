"""Whether the embedded stack can run a coding agent, checked before `run` creates anything.

The worker runs the agent with the *stack's* environment (its PATH, its ORCH_AGENT_COMMAND), recorded
in stack.json when it starts; a change in the shell that runs the CLI reaches it only by a restart.
"""

from __future__ import annotations

import shlex

INSTALL_HINTS = {
    "claude-code": "npm i -g @anthropic-ai/claude-code",
    "codex": "npm i -g @openai/codex",
    "factory-droid": "curl -fsSL https://app.factory.ai/cli | sh",
}
EXECUTABLES = {"claude-code": "claude", "codex": "codex", "factory-droid": "droid"}
RESTART = "orchestrator local down && {env}orchestrator local up --detach"


def known_agents() -> list[str]:
    """Every name `--agent` accepts: the adapters, and `none` (no developer: the template as it is)."""
    from worker_image.agents import known_agents as adapters

    return sorted([*adapters(), "none"])


def agent_problem(
    agent: str, runnable: list[str], cli_agent_command: str | None, stack_runs: bool = True
) -> str | None:
    """Why a stack that can run `runnable` cannot run `agent` and what to do, in one line; None if it can.

    `cli_agent_command` is ORCH_AGENT_COMMAND as the CLI sees it, shown in the restart command. With
    `stack_runs` False, `runnable` is the CLI's own environment, which the stack `run` starts inherits."""
    if agent in runnable:
        return None
    if agent == "command":
        shown = shlex.quote(cli_agent_command) if cli_agent_command else "'./my-agent --flags'"
        if not stack_runs:
            return (
                "--agent command runs the command line in ORCH_AGENT_COMMAND, which is not set: "
                f"ORCH_AGENT_COMMAND={shown} orchestrator run ... (the stack it starts keeps it), "
                "or pass --agent none to deploy the template as it is"
            )
        return (
            "--agent command runs the command line in ORCH_AGENT_COMMAND, and the stack was started "
            "without it: restart the stack with it set: "
            + RESTART.format(env=f"ORCH_AGENT_COMMAND={shown} ")
            + ", or pass --agent none to deploy the template as it is"
        )
    executable = EXECUTABLES.get(agent, agent)
    install = INSTALL_HINTS.get(agent)
    restart = f" and restart the stack ({RESTART.format(env='')})" if stack_runs else ""
    how = f"install it ({install}){restart}" if install else ""
    return (
        f"the coding agent {agent} is not installed where the stack looks (no `{executable}` on "
        f"{'its' if stack_runs else 'the'} PATH): "
        "pass --agent none to deploy the template as it is"
        + (f", or {how}" if how else "")
        + (f"; agents it can run: {', '.join(runnable)}" if runnable else "")
    )
