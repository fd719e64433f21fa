"""The Product Owner on the real Claude Code CLI (issue 17, item 1): a question in Telegram reaches a PO worker
on the embedded stack whose agent is the real `claude` (pinned, .tools/), scripted by the model server to
answer by running `orchestrator project list --json` with its Bash tool; the answer the person gets is what
the CLI printed. The stack is started the way the README says (`.venv/bin/...`, the venv not on PATH), so
this also shows that the `orchestrator` console script is on the agent's PATH in the worker."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.e2e.test_local_stack import Stack
from tests.fakes.model_server import ModelServer
from tests.fakes.telegram_server import FakeTelegram, message_update
from tests.integration.real_agents import TEST_KEY, claude_env, real_cli
from tests.process_hygiene import kill_workers

pytestmark = [pytest.mark.real_agent, pytest.mark.slow]

TOKEN = "31337:po-real-claude_for-tests"
ALICE_TG = 6161
ANSWER_PREFIX = "Your projects, as the orchestrator CLI lists them:"


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer("po_orchestrator") as server:
        yield server


@pytest.fixture
def po_stack(model: ModelServer, tmp_path: Path) -> Iterator[tuple[Stack, FakeTelegram]]:
    claude = real_cli("claude")
    home = Path(os.environ["ORCH_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    LocalSecrets(home / "secrets.json").put("secret://agents/anthropic", TEST_KEY)
    agent_env = {
        k: v
        for k, v in claude_env(tmp_path / "agent-home", model.url).items()
        if k not in ("ANTHROPIC_API_KEY",)
    }
    venv_bin = str(Path(sys.executable).parent)
    agent_env["PATH"] = os.pathsep.join(p for p in agent_env["PATH"].split(os.pathsep) if p != venv_bin)
    settings = {
        "ORCH_PO_AGENT": "claude-code",
        "ORCH_CLAUDE_BIN": claude,
        "ORCH_AGENT_SECRET_REFS": json.dumps({"ANTHROPIC_API_KEY": "secret://agents/anthropic"}),
        "ORCH_TELEGRAM_BOT_TOKEN": TOKEN,
        "ORCH_TELEGRAM_ADMINS": str(ALICE_TG),
        "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
        "ORCH_QUEUE_VISIBILITY_TIMEOUT": "10",
    }
    with FakeTelegram(TOKEN) as telegram:
        stack = Stack(
            home, env={**agent_env, **settings, "ORCH_TELEGRAM_API_BASE": telegram.url}, args=("--telegram",)
        )
        stack.start()
        try:
            yield stack, telegram
        finally:
            stack.stop()  # a no-op signal if it already ended
            kill_workers(home)


def test_the_po_answers_a_question_with_what_the_orchestrator_cli_printed(
    po_stack: tuple[Stack, FakeTelegram], model: ModelServer
) -> None:
    stack, telegram = po_stack
    admin_key = LocalSecrets(stack.home / "secrets.json").get("secret://local/admin_api_key")
    with ApiClient(stack.url, admin_key) as admin:
        alice = admin.add_user("alice", telegram_id=ALICE_TG)
        alice_key = admin.create_api_key(alice.id, name="test").key
    with ApiClient(stack.url, alice_key) as as_alice:
        as_alice.create_project("recipes", description="a recipe box")

    # when: alice asks her Product Owner
    telegram.push_update(message_update(ALICE_TG, "which projects do I have?"))

    # then: the reply is the real claude's answer, carrying what `orchestrator project list --json` printed
    telegram.wait_for(lambda: any(ANSWER_PREFIX in t for t in telegram.sent_texts()), timeout=120)
    [reply] = [t for t in telegram.sent_texts() if ANSWER_PREFIX in t]
    printed = reply.split(ANSWER_PREFIX, 1)[1].strip()
    assert "]" in printed, reply
    listed = json.loads(printed[: printed.rindex("]") + 1])
    assert [p["name"] for p in listed] == ["recipes"], reply
    # the model asked for the command, and claude ran it with its Bash tool (the result went back to the model)
    turns = model.agent_requests()
    assert len(turns) >= 2 and {r["key_end"] for r in turns} == {TEST_KEY[-4:]}
    results = [
        item
        for r in turns
        for m in r["body"]["messages"]
        if isinstance(m.get("content"), list)
        for item in m["content"]
        if item.get("type") == "tool_result"
    ]
    assert results and not any(item.get("is_error") for item in results), results
