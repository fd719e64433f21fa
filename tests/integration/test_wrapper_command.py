"""Issue 24: one worker runs an engineering task's developer round and then its tests, as a `command`
message, in the same workspace: no second clone, nothing committed by the command, the budget still
refused at zero, and the tree the tests see is the one the developer pushed.

The real wrapper (job, checkout, `run_agent`, commit and push, the answers) runs the fake developer agent
against a fake API and a real bare repository on disk.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.contracts.api import WorkerMessage
from tests.integration.test_wrapper_budget import _Api as RecordingApi
from tests.integration.test_wrapper_budget import fakes_on_path  # noqa: F401 - autouse here too
from tests.worker_factories import worker_message
from worker_image.wrapper import COMMAND_STEP, Wrapper, WrapperSettings

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
BRANCH = "orchestrator/t-1"


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bare repository whose main holds one commit (the fakes are first on PATH: `fakes_on_path`)."""
    monkeypatch.setenv("FAKE_DEV_MODE", "good")
    bare, seed = tmp_path / "origin.git", tmp_path / "seed"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(tmp_path, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("# blog\n")
    _git(seed, "add", "-A")
    _git(seed, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "seed")
    _git(seed, "push", "-q", str(bare), "main")
    return bare


class _Api(RecordingApi):
    """The budget tests' fake API with a developer's job (a repository, committing) and the steps its
    progress events name."""

    def __init__(self, repo_url: str) -> None:
        super().__init__(shlex.quote(str(FAKES / "dev-agent")))
        context = {
            "task_id": "t-1",
            "repo_url": repo_url,
            "branch": BRANCH,
            "step": "developer",
            "commit": "true",
        }
        self.detail = self.detail.model_copy(update={"config": {**self.detail.config, "context": context}})
        self.steps: list[str] = []

    def append_events(self, task_id: str, events: list[dict[str, Any]]) -> None:
        super().append_events(task_id, events)
        self.steps += [str(event["current_step"]) for event in events]


@pytest.fixture
def wrapper(origin: Path, tmp_path: Path) -> Iterator[tuple[Wrapper, _Api]]:
    api = _Api(str(origin))
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path / "work"))  # type: ignore[arg-type]
    worker.load_job()
    yield worker, api
    worker.cleanup()


def _command(message_id: int, body: str, **fields: Any) -> WorkerMessage:
    return worker_message(
        id=message_id, request_id=f"t-1:tester:{message_id}", kind="command", body=body, **fields
    )


def test_the_tests_run_on_the_developers_worker_in_its_workspace_and_commit_nothing(
    wrapper: tuple[Wrapper, _Api], origin: Path
) -> None:
    worker, api = wrapper
    workspace = worker.workspace
    # given: the developer's round, committed and pushed; a build product it left behind, not committed
    worker.handle(worker_message(id=1, request_id="t-1:developer:1", body="# Task\n\nadd the feature\n"))
    pushed = _git(origin, "rev-parse", BRANCH)
    (workspace / "leftover.pyc").write_text("x")
    # when: the tests, as a command message to the same worker
    check = "test -f app/feature.py && test ! -e leftover.pyc && echo tests passed"
    worker.handle(_command(2, check))
    # then
    developer, tests = api.results
    assert developer["success"] and developer["result"]["commit_sha"] == pushed
    assert tests["success"], tests
    assert tests["response"].strip().endswith("tests passed")
    assert tests["result"]["commit_sha"] is None and tests["result"]["files_changed"] == []
    assert worker.workspace == workspace, "the same checkout: no second clone"
    assert _git(origin, "rev-parse", BRANCH) == pushed, "a command pushes nothing"
    assert COMMAND_STEP in api.steps


def test_a_failing_command_answers_with_its_output(wrapper: tuple[Wrapper, _Api]) -> None:
    worker, api = wrapper
    worker.handle(_command(1, "echo 'FAILED test_x - 1 != 2'; exit 1"))
    [answer] = api.results
    assert answer["success"] is False
    assert "FAILED test_x" in answer["result"]["output_tail"]
    assert answer["result"]["agent"] == "command"


def test_a_command_with_no_budget_left_is_not_run(wrapper: tuple[Wrapper, _Api]) -> None:
    worker, api = wrapper
    worker.handle(_command(1, "touch ran", budget_usd=0.0, budget_note="the task budget $1.00 (spent $1.00)"))
    [answer] = api.results
    assert (answer["success"], answer["result"]["status"]) == (False, "budget")
    assert not (worker.workspace / "ran").exists()


def test_a_runs_cpu_is_reported_with_what_it_waited_for(wrapper: tuple[Wrapper, _Api]) -> None:
    """The answer carries the CPU seconds of the command and of the processes it ran (`make test` and the
    test runner under it): what a task's own work cost, apart from the worker's (issue 24's benchmark
    subtracts it). A command that burns ~0.3 s in a grandchild reports at least that; one that sleeps, ~0."""
    worker, api = wrapper
    burn = "import time; end = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    worker.handle(_command(1, f"sh -c {shlex.quote(f'python3 -c {shlex.quote(burn)}')}"))
    worker.handle(_command(2, "sleep 0.3"))
    burnt, slept = (answer["result"]["cpu_s"] for answer in api.results)
    assert burnt >= 0.3, api.results[0]
    assert slept < 0.1
