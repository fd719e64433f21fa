"""Cold start is import time: the API, the queue backbone and the embedded stack's consumers must not drag
heavy libraries in (langgraph loads when a graph first runs, aiogram only with Telegram on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("langgraph", "aiogram", "copier", "ansible_runner", "ansible", "aws_cdk", "moto")


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "module",
    [
        "functions.api.handler",
        "shared.queues.consume",
        "shared.contracts",
        "cli.main",
        "cli.local.stack",
        "shared.graphs.driver",
        # the consumers the embedded stack starts with Telegram off (shared.topology.CONSUMERS)
        "functions.engineering.handler",
        "functions.deploy.handler",
        "functions.infra.handler",
        "functions.scaffolder.handler",
        "functions.worker_manager.handler",
        "functions.scheduler.handler",
    ],
)
def test_no_heavy_imports(module: str) -> None:
    loaded = _modules_after_import(module)
    offenders = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert offenders == [], f"importing {module} loads {offenders[:5]}"


def test_api_handler_does_not_import_boto3_or_alembic_at_cold_start() -> None:
    loaded = _modules_after_import("functions.api.handler")
    assert "alembic" not in loaded, "alembic belongs to `db upgrade`, not to every cold start"
    assert "boto3" not in loaded, "boto3 is loaded only when an AWS adapter is built"


def test_the_graph_driver_spells_langgraphs_end_node_right() -> None:
    from langgraph.graph import END

    from shared.graphs.driver import END as DRIVER_END

    assert DRIVER_END == END


API_CLIENT_SIDE = ("httpx", "shared.api_client", "shared.api_transport", "shared.contracts", "worker_image")
"""What a command that talks to no API must not load: the client, httpx, the pydantic contracts, agents."""


def _cli_run(args: list[str], home: str) -> tuple[str, set[str]]:
    """`orchestrator ARGS` in a fresh interpreter: what it printed and every module it had loaded."""
    code = (
        "import json, sys\n"
        "from cli.main import app\n"
        "try:\n"
        f"    app({args!r}, prog_name='orchestrator')\n"
        "except SystemExit:\n"
        "    pass  # typer exits after every command\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "ORCH_HOME": home}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, env=env
    )
    printed, _, modules = out.stdout.rstrip("\n").rpartition("\n")
    return printed, set(json.loads(modules))


def _loaded_from(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(f"{p}.") for p in prefixes))


def test_local_down_with_nothing_running_loads_no_api_client(tmp_path: Path) -> None:
    printed, loaded = _cli_run(["local", "down"], str(tmp_path))

    assert printed == "not running"
    assert _loaded_from(loaded, API_CLIENT_SIDE) == []
    assert "cli.commands_projects" not in loaded, "only the invoked command's module is imported"


def test_root_help_lists_every_command_without_importing_one(tmp_path: Path) -> None:
    from cli.main import LAZY_COMMANDS

    printed, loaded = _cli_run(["--help"], str(tmp_path))

    listed = [line.split()[0] for line in printed.partition("Commands:")[2].splitlines() if line.strip()]
    assert listed == list(LAZY_COMMANDS)
    assert _loaded_from(loaded, ("cli.commands_run", "cli.commands_local", *API_CLIENT_SIDE)) == []


def test_the_roots_help_lines_are_the_commands_own() -> None:
    # given the root's help as listed from the table, before any command module is built
    import typer
    from typer._click import Context

    from cli.main import app

    root = typer.main.get_group(app)
    lazy = root.get_help(Context(root, info_name="orchestrator", terminal_width=100))

    # when every command is built
    for name in list(root.commands):
        assert root.commands[name].name == name

    # then the same page lists them: a stale line in cli.main.LAZY_COMMANDS fails here
    assert lazy == root.get_help(Context(root, info_name="orchestrator", terminal_width=100))


def test_the_stack_lists_its_runnable_agents_without_loading_the_adapters() -> None:
    code = (
        "import sys\n"
        "from cli.local.stack import runnable_agents\n"
        "runnable_agents()\n"
        "print('worker_image.agents' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"ORCH_DROID_BIN": "my-droid", "ORCH_AGENT_COMMAND": "./agent --go"},
        {"orch_claude_bin": "nowhere", "ORCH_CODEX_BIN": "", "orch_agent_command": "  "},
    ],
)
def test_runnable_agents_reads_the_environment_as_agent_environment_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    # given agent CLIs on PATH under their default names and one under another name
    from cli.local.stack import runnable_agents
    from worker_image.agents.config import AgentEnvironment

    for name in ("claude", "codex", "droid", "my-droid"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in [n for n in os.environ if n.upper().startswith("ORCH_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    # then the light reading agrees with the settings model the workers use
    assert runnable_agents() == runnable_agents(AgentEnvironment())


def test_the_stacks_own_process_does_not_load_the_command_line() -> None:
    """`local up` hands over to `cli.local.serve` (exec, or the `--detach` child): what the stack's process
    has loaded before starting the stack holds no typer (nor click, rich) and no command module."""
    loaded = _modules_after_import("cli.local.serve")
    assert sorted(m for m in loaded if m.split(".")[0] in ("typer", "click", "rich")) == []
    assert sorted(m for m in loaded if m.startswith(("cli.main", "cli.commands_"))) == []
