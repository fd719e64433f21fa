"""The fake CLIs and the real ones agree on what the adapter extracts: the same scenario runs on the fake
(tests/fakes/agents) and on the real CLI (pinned, .tools/) against the scripted model, and the adapter's
reading of both is compared: the shape of the event stream, the session id, tokens and cost, and how
the run is classified (success, blocked, timeout, a lost session). What the two may differ in (the
words, the tool names, the numbers) is left out; what they must agree on is asserted to be equal.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import ModelServer
from tests.integration.real_agents import (
    DROID_MODEL,
    FAKES,
    TEST_KEY,
    claude_env,
    droid_env,
    real_cli,
    run_scripted,
)
from worker_image.agents import AgentEvent, AgentResult, get_adapter, run_agent

pytestmark = pytest.mark.real_agent

FAKE_CLI = {"claude-code": "claude", "codex": "codex", "factory-droid": "droid"}
REAL_CLI = FAKE_CLI
FAKE_MODE = {"write": "ok", "blocked": "blocked", "hang": "hang"}
SCRIPT = {"write": "bash_write", "blocked": "blocked", "hang": "hang"}
CODEX_MODEL = "gpt-5-codex"


@dataclass(frozen=True)
class Reading:
    """What the adapter made of a run, without what may legitimately differ between fake and real."""

    status: str
    reason: str | None
    exit_zero: bool
    session_is_uuid: bool
    has_tokens: bool
    has_cost: bool
    stream: tuple[str, ...]
    """Event kinds in order, consecutive repeats collapsed, `error` events that are not fatal left out."""
    tool_phases: tuple[str, ...]


def read(result: AgentResult, events: list[AgentEvent]) -> Reading:
    kinds: list[str] = []
    for event in events:
        if event.kind == "error" and event.data.get("fatal") is False:
            continue  # codex's "model metadata not found" / "Reconnecting..." notices
        if not kinds or kinds[-1] != event.kind:
            kinds.append(event.kind)
    phases: list[str] = []
    for event in events:
        phase = event.data.get("phase") if event.kind == "tool" else None
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
    return Reading(
        status=result.status,
        reason=(result.reason or "").split(" after ")[0] or None,  # "timeout after 4s" -> "timeout"
        exit_zero=result.exit_code == 0,
        session_is_uuid=_is_uuid(result.session_id),
        has_tokens=bool(result.input_tokens and result.output_tokens),
        has_cost=result.cost_usd is not None and result.cost_usd > 0,
        stream=tuple(kinds),
        tool_phases=tuple(phases),
    )


def _is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    with ModelServer(model=CODEX_MODEL) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        yield server


def _real(
    agent: str, model: ModelServer, tmp_path: Path, scenario: str, session_id: str | None = None
) -> tuple[AgentResult, list[AgentEvent]]:
    workspace = tmp_path / "real"
    workspace.mkdir(exist_ok=True)
    home = tmp_path / "real-home"
    settings: dict[str, Any] = {"bin": real_cli(REAL_CLI[agent])}
    if agent == "claude-code":
        env = claude_env(home, model.url)
    elif agent == "codex":
        (home / ".codex").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "CODEX_HOME": str(home / ".codex"),
            "OPENAI_API_KEY": TEST_KEY,
        }
        settings.update(model=CODEX_MODEL, sandbox="bypass")
    else:
        env = droid_env(home, model.url)
        settings.update(model=DROID_MODEL)
    adapter = get_adapter(agent, settings)
    return run_scripted(
        adapter,
        model,
        SCRIPT.get(scenario, "answer"),
        "Implement TASK.md",
        workspace,
        env,
        timeout_s=2.0 if scenario == "hang" else 90.0,
        session_id=session_id,
    )


def _fake(
    agent: str, tmp_path: Path, scenario: str, session_id: str | None = None
) -> tuple[AgentResult, list[AgentEvent]]:
    workspace = tmp_path / "fake"
    workspace.mkdir(exist_ok=True)
    home = tmp_path / "fake-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "FAKE_AGENT_MODE": FAKE_MODE.get(scenario, "ok")}
    adapter = get_adapter(agent, {"bin": str(FAKES / FAKE_CLI[agent])})
    events: list[AgentEvent] = []
    timeout_s = 2.0 if scenario == "hang" else 30.0
    result = run_agent(
        adapter,
        "Implement TASK.md",
        workspace,
        timeout_s,
        events.append,
        session_id=session_id,
        env=env,
        kill_grace_s=1.0,
    )
    return result, events


CASES = [
    ("claude-code", "write"),
    ("claude-code", "blocked"),
    ("claude-code", "hang"),
    ("codex", "write"),
    ("codex", "blocked"),
    ("codex", "hang"),
    pytest.param("factory-droid", "write", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("agent", "scenario"), CASES)
def test_the_fake_and_the_real_cli_read_the_same(
    agent: str, scenario: str, model: ModelServer, tmp_path: Path
) -> None:
    real = read(*_real(agent, model, tmp_path, scenario))
    fake = read(*_fake(agent, tmp_path, scenario))
    assert fake == real


@pytest.mark.parametrize("agent", ["claude-code"])
def test_an_unknown_session_is_lost_on_both(agent: str, model: ModelServer, tmp_path: Path) -> None:
    unknown = str(uuid.uuid4())
    real, _ = _real(agent, model, tmp_path, "answer", session_id=unknown)
    fake, _ = _fake(agent, tmp_path, "answer", session_id=unknown)
    adapter = get_adapter(agent)
    assert (
        (adapter.session_lost(fake), fake.status)
        == (adapter.session_lost(real), real.status)
        == (True, "failed")
    )
