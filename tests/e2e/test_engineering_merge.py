"""Changes accumulate on main (issue 19), through the real CLI on the embedded stack with the fake
developer: wishes in a row each start from main and are merged into it; two tasks at once both end on
main; two that edit the same line: one merges, the other gets a rebase round and merges too.

The fake developer's barrier (FAKE_DEV_BARRIER) makes the concurrent pairs real: neither changes
anything before both have cloned the same main.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CliRunner
from tests.e2e.test_local_stack import Stack
from tests.process_hygiene import kill_workers

pytestmark = pytest.mark.slow

FAKES = Path(__file__).parents[1] / "fakes" / "agents"
PROJECT = "blog"


@pytest.fixture
def stack_in_mode(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Starts the stack with the fake developer in a mode; returns the barrier folder (absent until made)."""
    started: list[Stack] = []
    barrier = tmp_path / "barrier"

    def start(mode: str) -> Path:
        stack = Stack(
            Path(os.environ["ORCH_HOME"]),
            env={
                "ORCH_AGENT_COMMAND": str(FAKES / "dev-agent"),
                "FAKE_DEV_MODE": mode,
                "FAKE_DEV_BARRIER": str(barrier),
                "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
                "ORCH_QUEUE_VISIBILITY_TIMEOUT": "10",
            },
        )
        stack.start()
        started.append(stack)
        return barrier

    yield start
    for stack in started:
        if stack.process and stack.process.poll() is None:
            stack.stop()
    kill_workers(Path(os.environ["ORCH_HOME"]))


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _start(cli: CliRunner, feature: str) -> str:
    task = _json(cli("engineering", "start", PROJECT, "--spec", f"add a page: feature {feature}", "--json"))
    return str(task["id"])


def _finish(cli: CliRunner, task_id: str) -> tuple[dict[str, Any], str]:
    """The task once it ended (it must complete), and its log."""
    followed = cli("task", "logs", task_id, "--follow", "--interval", "0.3", timeout=300)
    done = _json(cli("task", "show", task_id, "--json"))
    assert done["status"] == "COMPLETED", (done["error"], followed.stdout)
    return done, followed.stdout


def _git(repo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", repo, *args], capture_output=True, text=True, check=False)


def _repo(cli: CliRunner) -> str:
    return str(_json(cli("project", "show", PROJECT, "--json"))["repo_url"])


def _on_main(repo: str, *features: str) -> list[str]:
    return [
        name
        for name in features
        if _git(repo, "cat-file", "-e", f"main:app/features/{name}.py").returncode == 0
    ]


def test_wishes_in_a_row_and_at_once_all_end_on_main(stack_in_mode, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    barrier = stack_in_mode("feature")
    assert cli("project", "create", "--name", PROJECT, "--agent", "command").returncode == 0

    # two wishes in a row: each is merged; the second started from main after the first merge
    first, _ = _finish(cli, _start(cli, "alpha"))
    repo = _repo(cli)
    assert first["result"]["merge_commit"] == _git(repo, "rev-parse", "main").stdout.strip()
    second, log = _finish(cli, _start(cli, "beta"))
    head = _git(repo, "rev-parse", "main").stdout.strip()
    assert second["result"]["merge_commit"] == head and "merged into main (fast-forward)" in log
    assert (
        _git(
            repo,
            "merge-base",
            "--is-ancestor",
            first["result"]["merge_commit"],
            second["result"]["commit_sha"],
        ).returncode
        == 0
    )
    assert _on_main(repo, "alpha", "beta") == ["alpha", "beta"]

    # two at once, from the same main: both end on it
    barrier.mkdir()
    both = [_start(cli, "gamma"), _start(cli, "delta")]
    done = [_finish(cli, task_id)[0] for task_id in both]

    assert _on_main(repo, "alpha", "beta", "gamma", "delta") == ["alpha", "beta", "gamma", "delta"]
    for task in done:
        merged = task["result"]["merge_commit"]
        assert _git(repo, "merge-base", "--is-ancestor", merged, "main").returncode == 0
    # --no-merge leaves main alone, the work on its branch; a ref the API refuses is a usage error
    kept = _json(
        cli(
            "engineering",
            "start",
            PROJECT,
            "--spec",
            "feature epsilon",
            "--no-merge",
            "--base-ref",
            "main",
            "--json",
        )
    )
    assert (kept["params"]["no_merge"], kept["params"]["base_ref"]) == (True, "main")
    unmerged, log = _finish(cli, kept["id"])
    assert unmerged["result"]["merge_commit"] is None and "not merged (--no-merge)" in log
    assert (
        _on_main(repo, "epsilon") == []
        and _git(repo, "cat-file", "-e", f"{unmerged['result']['branch']}:app/features/epsilon.py").returncode
        == 0
    )
    refused = cli("engineering", "start", PROJECT, "--spec", "x", "--base-ref", "no way")
    assert refused.returncode == 2 and "base_ref" in refused.stderr, refused.stderr

    clone = barrier / "main"
    assert subprocess.run(["git", "clone", "-q", repo, str(clone)], check=False).returncode == 0
    tests = subprocess.run(["make", "-C", str(clone), "test"], capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0 and "FeatureDeltaTest" in tests.stderr, tests.stdout + tests.stderr


def test_a_conflicting_pair_one_merges_the_other_after_a_rebase_round(stack_in_mode, cli: CliRunner) -> None:  # type: ignore[no-untyped-def]
    barrier = stack_in_mode("conflict")
    assert cli("project", "create", "--name", PROJECT, "--agent", "command").returncode == 0
    _finish(cli, _start(cli, "alpha"))  # the scaffold, and README.md's first line is "# alpha"
    repo = _repo(cli)

    barrier.mkdir()
    both = [_start(cli, "beta"), _start(cli, "gamma")]
    finished = [_finish(cli, task_id) for task_id in both]

    rebased = [log for _task, log in finished if "main moved and conflicts with the work in README.md" in log]
    assert len(rebased) == 1, "exactly one of the pair met the other's change on main"
    title = _git(repo, "show", "main:README.md").stdout.splitlines()[0]
    assert title in ("# beta + gamma", "# gamma + beta")
    assert _on_main(repo, "alpha", "beta", "gamma") == ["alpha", "beta", "gamma"]
