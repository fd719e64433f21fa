"""A runaway agent is stopped at its message's budget, and every run's answer says what it cost.

The real wrapper (job, message, `run_agent`, the answer) runs the fake developer agent through the `command`
adapter against a fake API: `FAKE_DEV_SPEND` reports an increment every 0.2 s and never finishes, so only
the budget stop ends it (the message's timeout is far away); `FAKE_DEV_COST` reports one line at the end.
The fake Claude Code reports its cost only in its final result.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.contracts.api import WorkerDetail, WorkerMessage
from tests.worker_factories import worker_detail, worker_message
from worker_image.agents import get_adapter, run_agent
from worker_image.wrapper import Wrapper, WrapperSettings

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
DEV_AGENT = shlex.quote(str(FAKES / "dev-agent"))
NOTE = "the task budget $1.00 (spent $0.88)"
TIMEOUT_S = 120  # never reached: a budget stop ends the runaway long before


@pytest.fixture(autouse=True)
def fakes_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fakes first on PATH, `python3` = this interpreter (the fakes' shebang), no FAKE_* settings left over."""
    python_dir = tmp_path / "python-bin"
    python_dir.mkdir()
    (python_dir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKES), str(python_dir), os.environ.get("PATH", "")]))
    for key in [k for k in os.environ if k.startswith("FAKE_")]:
        monkeypatch.delenv(key)


class _Api:
    """What the wrapper calls for one command job without a repository; records answers and progress."""

    def __init__(self, command: str) -> None:
        self.detail = worker_detail(
            task_id="t-1", config={"context": {"step": "develop"}, "agent_options": {"command": command}}
        )
        self.results: list[dict[str, Any]] = []
        self.progress: list[str] = []

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return self.detail

    def update_worker(self, worker_id: str, status: str, **_: Any) -> None:
        """Status reports are not what these tests read."""

    def append_events(self, task_id: str, events: list[dict[str, Any]]) -> None:
        self.progress += [str(event["message"]) for event in events]

    def worker_message_result(self, message_id: int, success: bool, **kwargs: Any) -> None:
        self.results.append({"success": success, **kwargs})


def _message(budget_usd: float | None, budget_note: str | None = NOTE) -> WorkerMessage:
    return worker_message(
        id=7,
        request_id="t-1:develop:1",
        body="# Task\n\nadd the feature\n",
        timeout_s=TIMEOUT_S,
        budget_usd=budget_usd,
        budget_note=budget_note,
    )


@pytest.fixture
def answer_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Runs one message through a real wrapper with the dev agent under `env`; (answer, api, workspace)."""
    wrappers: list[Wrapper] = []

    def run(env: dict[str, str], message: WorkerMessage) -> tuple[dict[str, Any], _Api, Path]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        api = _Api(DEV_AGENT)
        wrapper = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path / "work"))  # type: ignore[arg-type]
        wrappers.append(wrapper)
        wrapper.load_job()
        wrapper.handle(message)
        assert len(api.results) == 1, api.results
        return api.results[0], api, wrapper.workspace

    yield run
    for wrapper in wrappers:
        wrapper.cleanup()


def test_a_runaway_agent_is_stopped_at_its_budget_and_says_what_it_spent(answer_of: Any) -> None:
    # given: an agent that reports $0.05 more every 0.2 s and never ends; $0.12 left of the task budget
    # when
    answer, api, _ = answer_of({"FAKE_DEV_SPEND": "0.05"}, _message(0.12))
    # then: stopped at the third report ($0.15 > $0.12), long before its timeout
    result = answer["result"]
    assert answer["success"] is False
    assert result["status"] == "budget"
    assert result["cost_usd"] == 0.15  # what was spent, recorded by the API's ledger
    assert result["reason"] == f"budget: spent $0.15 of the $0.12 left ({NOTE})"
    assert answer["error"] == result["reason"]
    assert (result["input_tokens"], result["output_tokens"], result["cache_tokens"]) == (3000, 600, 1200)
    assert (result["agent"], result["model"]) == ("command", "fake-model")
    # the usage lines are neither progress nor output; the agent's own line is
    assert "spending without end" in api.progress
    assert not [line for line in api.progress if "ORCHESTRATOR_USAGE" in line]
    assert "ORCHESTRATOR_USAGE" not in result["output_tail"]


def test_no_budget_left_never_starts_the_agent(answer_of: Any) -> None:
    # when: the task's budget is spent already
    answer, api, workspace = answer_of({"FAKE_DEV_MODE": "good"}, _message(0.0))
    # then: refused, and the agent never ran (it would have written app/feature.py and printed progress)
    result = answer["result"]
    assert (answer["success"], result["status"], result["cost_usd"]) == (False, "budget", 0.0)
    assert result["reason"] == f"budget: spent $0.00 of the $0.00 left: the agent was not started ({NOTE})"
    assert not (workspace / "app" / "feature.py").exists()
    assert api.progress == []


def test_a_finished_run_reports_its_cost_tokens_and_model(answer_of: Any) -> None:
    # when: an ordinary run that reports $0.25 at its end, well within its budget
    answer, _, workspace = answer_of({"FAKE_DEV_MODE": "good", "FAKE_DEV_COST": "0.25"}, _message(5.0))
    # then
    result = answer["result"]
    assert (answer["success"], result["status"], result["reason"]) == (True, "success", None)
    assert result["cost_usd"] == 0.25
    assert (result["input_tokens"], result["output_tokens"], result["cache_tokens"]) == (1000, 200, 400)
    assert (result["agent"], result["model"]) == ("command", "fake-model")
    assert "ORCHESTRATOR_USAGE" not in (answer["response"] or "")  # not part of the answer either
    assert (workspace / "app" / "feature.py").read_text().rstrip().endswith("return 42")


def test_without_a_budget_nothing_is_stopped(answer_of: Any) -> None:
    answer, _, _ = answer_of({"FAKE_DEV_MODE": "good", "FAKE_DEV_COST": "9.99"}, _message(None, None))
    assert (answer["success"], answer["result"]["cost_usd"]) == (True, 9.99)


def test_claude_code_passes_its_budget_with_its_final_result(tmp_path: Path) -> None:
    # given: the fake Claude Code reports $0.0123 in its result (its only cost report); $0.01 left
    workspace = tmp_path / "ws"
    workspace.mkdir()
    adapter = get_adapter("claude-code", {"permissions": "allowlist"})
    # when
    result = run_agent(adapter, "add a line", workspace, TIMEOUT_S, lambda _event: None, budget_usd=0.01)
    # then
    assert (result.status, result.cost_usd) == ("budget", 0.0123)
    assert result.reason == "budget: spent $0.0123 of the $0.01 left"
    assert result.model == "claude-sonnet-4-5-20250929"


def test_spending_exactly_the_budget_is_not_over_it(tmp_path: Path) -> None:
    # given: three reports of $0.05 (0.05 * 3 is 0.15000000000000002 in floats) against $0.15
    line = 'ORCHESTRATOR_USAGE {"cost_usd": 0.05}'
    adapter = get_adapter("command", {"command": f"for i in 1 2 3; do echo '{line}'; done; echo done"})
    # when
    result = run_agent(adapter, "spend", tmp_path, TIMEOUT_S, lambda _event: None, budget_usd=0.15)
    # then
    assert (result.status, result.cost_usd, result.final_answer) == ("success", 0.15, "done")
