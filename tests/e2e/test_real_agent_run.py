"""The main job with the default agent, for real: `orchestrator run --agent claude-code` on the embedded stack
runs the real claude CLI (pinned, .tools/) for the developer round against the scripted model server, and the
project goes live. Run as root on these machines, this is the case that used to fail (the CLI refuses
bypassPermissions for root); as another user it takes the bypassPermissions path. The model endpoint
reaches the agent from the stack's environment (ANTHROPIC_BASE_URL), the key by reference
(ORCH_AGENT_SECRET_REFS)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.secrets.local import LocalSecrets
from tests.ansible_support import kill_deployment
from tests.e2e.conftest import CliRunner
from tests.e2e.test_deploy import _health, _port_block
from tests.e2e.test_local_stack import Stack
from tests.fakes.model_server import ModelServer
from tests.integration.real_agents import TEST_KEY, claude_env, real_cli
from tests.process_hygiene import kill_workers

pytestmark = [pytest.mark.real_agent, pytest.mark.slow]


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer("write_file") as server:
        yield server


@pytest.fixture
def claude_stack(model: ModelServer, tmp_path: Path) -> Iterator[Stack]:
    claude = real_cli("claude")
    home = Path(os.environ["ORCH_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    LocalSecrets(home / "secrets.json").put("secret://agents/anthropic", TEST_KEY)
    start = _port_block()
    agent_env = {
        k: v
        for k, v in claude_env(tmp_path / "agent-home", model.url).items()
        if k not in ("PATH", "ANTHROPIC_API_KEY")
    }
    stack = Stack(
        home,
        env={
            **agent_env,
            "ORCH_CLAUDE_BIN": claude,
            "ORCH_AGENT_SECRET_REFS": json.dumps({"ANTHROPIC_API_KEY": "secret://agents/anthropic"}),
            "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
            "ORCH_QUEUE_VISIBILITY_TIMEOUT": "30",
            "ORCH_PORT_RANGE_START": str(start),
            "ORCH_PORT_RANGE_END": str(start + 19),
            "ORCH_SMOKE_ATTEMPTS": "4",
        },
    )
    stack.start()
    yield stack
    if stack.process and stack.process.poll() is None:
        stack.stop()
    for app_dir in (home / "deployments").glob("*") if (home / "deployments").exists() else []:
        kill_deployment(app_dir)
    kill_workers(home)


def test_run_with_the_real_claude_reaches_a_live_url(
    claude_stack: Stack, model: ModelServer, cli: CliRunner
) -> None:
    # when
    ran = cli("run", "--name", "blog", "--spec", "a blog", "--agent", "claude-code", timeout=240)
    # then: live
    assert ran.returncode == 0, ran.stdout + ran.stderr
    url = next(line.split(" is live at ")[1] for line in ran.stdout.splitlines() if " is live at " in line)
    assert _health(url + "/health") == 200
    # the real CLI did the developer round: it asked the scripted model, and its Write landed in the repo
    turns = model.agent_requests()
    assert turns, ran.stdout
    assert {r["key_end"] for r in turns} == {TEST_KEY[-4:]}
    assert "[developer] tool: Write ./hello.txt" in ran.stdout
    assert "developer done: 1 file(s) changed" in ran.stdout
