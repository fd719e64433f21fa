"""The real claude behind real workers (the embedded stack's worker manager, wrapper subprocesses): a
conversation's second worker resumes the first one's session from the session store, and the model sees
the whole history. The endpoint reaches the agent the way an operator sets it: ANTHROPIC_BASE_URL in the
stack's environment; the key by reference (`env_vars`), as ORCH_AGENT_SECRET_REFS gives it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.contracts import PO_RESPONSES, WORKER_COMMANDS, DeleteWorkerCommand, WorkerConfig
from shared.secrets.local import LocalSecrets
from tests.fakes.model_server import SCRIPTS, ModelServer
from tests.integration.real_agents import TEST_KEY, claude_env, real_cli
from tests.integration.workers.conftest import StackHarness
from tests.integration.workers.test_conversation import _ask, _worker

pytestmark = pytest.mark.real_agent


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """Set before the stack starts: its workers inherit the stack's environment."""
    with ModelServer() as server:
        for name, value in claude_env(tmp_path / "agent-home", server.url).items():
            if name not in ("PATH", "ANTHROPIC_API_KEY"):
                monkeypatch.setenv(name, value)
        yield server


def test_the_next_worker_resumes_the_real_claude_session(model: ModelServer, stack: StackHarness) -> None:
    claude = real_cli("claude")
    LocalSecrets(stack.home / "secrets.json").put("secret://agents/anthropic", TEST_KEY)
    config = WorkerConfig(
        name="po-u1",
        agent="claude-code",
        reply_queue=PO_RESPONSES,
        agent_options={"bin": claude},
        env_vars={"ANTHROPIC_API_KEY": "secret://agents/anthropic"},
    )
    context = {"chat_id": "5", "session_key": "po/u1"}
    # given: a first worker answers, then is stopped once its session is saved
    model.script = SCRIPTS["remember"]
    first = _worker(stack, 1, config, context)
    answer, _ = _ask(stack, first, "m-1", "Remember the code word PELICAN.")
    assert answer.result is not None
    session_id = answer.result["session_id"]
    assert session_id and answer.response == "I will remember: the code word is PELICAN."
    assert answer.result["cost_usd"] > 0 and answer.result["input_tokens"] > 0
    archive = stack.home / "sessions" / "po" / "u1.tar.gz"
    deadline = time.monotonic() + 10
    while not archive.exists():
        assert time.monotonic() < deadline, "the session was not saved"
        time.sleep(0.1)
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-1", worker_id=first))
    # when: the person writes again, to a new worker
    model.script = SCRIPTS["answer"]
    second = _worker(stack, 2, config, context)
    answer, _ = _ask(stack, second, "m-2", "What was the code word?")
    # then: the real CLI resumed the same session, and the model got the earlier exchange
    assert second != first
    assert answer.result and answer.result["session_id"] == session_id
    history = json.dumps(model.agent_requests()[-1]["body"]["messages"])
    assert "Remember the code word PELICAN." in history and "What was the code word?" in history
    # the key reached the agent by reference (the stack's environment has none)
    assert {r["key_end"] for r in model.agent_requests()} == {TEST_KEY[-4:]}
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-2", worker_id=second))
