"""The engineering graph's merge step over a real local repository: tested work goes into main; a
conflict with a change merged meanwhile gets one rebase round (the developer told that main moved and
where), then merges; a second conflict fails naming the files; `--no-merge` leaves main alone; and a
task checkpointed before the merge step existed still resumes, through it."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from functions.engineering.graph import Ports
from functions.engineering.logic import Engineering
from functions.engineering.nodes import EngineeringNodes
from functions.engineering.settings import EngineeringSettings
from functions.engineering.state import EngState
from shared.contracts import WORKER_COMMANDS, CreateWorkerCommand, EngineeringMessage, SendMessageCommand
from shared.contracts.api import TaskStatus
from shared.graphs.checkpoint import build_checkpointer, reset
from shared.queues.local import LocalQueue
from shared.repos.github import GitHubRepoHost
from shared.repos.local import LocalRepoHost
from shared.repos.port import MergeOutcome
from shared.secrets.local import LocalSecrets
from tests.engineering_support import FakeApi
from tests.factories import drain
from tests.fakes.github_server import FakeGitHub
from tests.integration.test_repo_hosts import TOKEN, git
from tests.integration.test_repo_merge import commit_files

REPO = "octo/blog"


class Run:
    """One engineering task over a local repository, driven message by message as the function does."""

    def __init__(self, tmp_path: Path, **params: Any) -> None:
        self.tmp_path = tmp_path
        self.host = LocalRepoHost(tmp_path / "repos")
        self.host.create_repo(REPO)
        commit_files(self.host, REPO, tmp_path / "seed", "main", {"app.py": "a\nb\nc\n"})
        self.api, self.queue = FakeApi(), LocalQueue(tmp_path / "q.db")
        self.api.project = self.api.project.model_copy(update={"repo_url": self.host.push_url(REPO)})
        self.api.task = self.api.task.model_copy(update={"params": {"agent": "command", **params}})
        self.settings = EngineeringSettings(home=tmp_path, checkpointer="sqlite", repo_owner="octo")
        self.branch = f"orchestrator/{self.api.task.id[:8]}"
        self.work = tmp_path / "dev"

    def engine(self) -> Engineering:
        reset()
        ports = Ports(self.api, self.queue, self.settings, self.host)  # type: ignore[arg-type]
        return Engineering(ports, build_checkpointer(self.settings))

    def start(self) -> None:
        self.engine().start(EngineeringMessage(task_id=self.api.task.id, project_id="p1", user_id=1))

    def commands(self) -> list[Any]:
        return drain(self.queue, WORKER_COMMANDS)

    def developer_round(self, files: dict[str, str] | None, merge_main: bool = False) -> str:
        """Answer the developer's create and message (pushing `files` to the branch first, after merging
        main into it when `merge_main`, as a rebase round's developer does); the prompt it got."""
        # the first round's create, or a later round's after the worker's delete
        [create] = [c for c in self.commands() if isinstance(c, CreateWorkerCommand)]
        assert create.context["step"] == "developer"
        self.engine().resume(create.request_id, {"success": True, "worker_id": "w-dev"})
        [send] = self.commands()
        assert isinstance(send, SendMessageCommand)
        sha = self._merge_main(files or {}) if merge_main else None
        if files and not merge_main:
            sha = commit_files(self.host, REPO, self.work, self.branch, files)
        result = {"commit_sha": sha, "files_changed": sorted(files or {})}
        self.engine().resume(send.request_id, {"success": True, "response": "done", "result": result})
        return send.message

    def _merge_main(self, resolved: dict[str, str]) -> str:
        """What the rebase round asks of the developer: merge main (it conflicts), resolve, and the
        wrapper commits the merge and pushes the branch."""
        git("-C", self.work, "fetch", "-q", "origin")
        merging = subprocess.run(
            ["git", "-C", str(self.work), "merge", "--no-commit", "origin/main"],
            capture_output=True,
            check=False,
        )
        assert merging.returncode == 1, "main conflicts with the branch"
        for name, content in resolved.items():
            (self.work / name).write_text(content)
        git("-C", self.work, "add", "-A")
        git(
            "-C",
            self.work,
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=d@example.com",
            "commit",
            "-qm",
            "merge main",
        )
        git("-C", self.work, "push", "-q", "origin", f"HEAD:refs/heads/{self.branch}")
        return git("-C", self.work, "rev-parse", "HEAD").strip()

    def tests_pass(self) -> None:
        """The tests run on the developer's worker (a command message), which goes once they passed."""
        [run] = self.commands()
        assert isinstance(run, SendMessageCommand) and (run.worker_id, run.kind) == ("w-dev", "command")
        self.engine().resume(run.request_id, {"success": True, "response": "ok"})

    def main_file(self, path: str) -> str | None:
        data = self.host.read_file(REPO, "main", path)
        return data.decode() if data is not None else None


def test_tested_work_is_merged_into_main_and_the_result_names_the_merge_commit(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.start()
    run.developer_round({"comments.py": "c\n"})
    commit_files(run.host, REPO, tmp_path / "other", "main", {"likes.py": "l\n"})  # another task merged

    run.tests_pass()

    result = run.api.task.result
    assert run.api.task.status is TaskStatus.COMPLETED and result is not None
    assert result["merge_commit"] == run.host.branch_head(REPO, "main")
    assert (run.main_file("comments.py"), run.main_file("likes.py")) == ("c\n", "l\n")
    assert "merged into main" in run.api.events[-1]["message"]


def _conflicting(tmp_path: Path) -> Run:
    """A task whose tests passed after its developer changed line 2, which another task changed too
    and merged first."""
    run = Run(tmp_path)
    run.start()
    run.developer_round({"app.py": "a\nX\nc\n"})
    commit_files(run.host, REPO, tmp_path / "other", "main", {"app.py": "a\nY\nc\n"})
    run.tests_pass()
    return run


def test_a_conflict_gets_one_rebase_round_then_merges(tmp_path: Path) -> None:
    run = _conflicting(tmp_path)

    # then: a developer round told that main moved, naming the file; it merges main and resolves
    prompt = run.developer_round({"app.py": "a\nX\nY\nc\n"}, merge_main=True)
    assert (
        "# main moved" in prompt and "- `app.py`" in prompt and "git merge --no-commit origin/main" in prompt
    )
    run.tests_pass()

    result = run.api.task.result
    assert run.api.task.status is TaskStatus.COMPLETED and result is not None, run.api.task.error
    assert result["merge_commit"] == run.host.branch_head(REPO, "main")
    assert run.main_file("app.py") == "a\nX\nY\nc\n"


def test_a_conflict_that_persists_after_the_rebase_round_fails_naming_the_files(tmp_path: Path) -> None:
    run = _conflicting(tmp_path)
    main_before = run.host.branch_head(REPO, "main")

    run.developer_round(None)  # the rebase round changes nothing
    run.tests_pass()

    assert run.api.task.status is TaskStatus.FAILED
    assert run.api.task.error == "the work still conflicts with main after a rebase round, in: app.py"
    assert run.host.branch_head(REPO, "main") == main_before


def test_no_merge_leaves_main_alone_and_says_so(tmp_path: Path) -> None:
    run = Run(tmp_path, no_merge=True)
    main_before = run.host.branch_head(REPO, "main")
    run.start()
    run.developer_round({"comments.py": "c\n"})

    run.tests_pass()

    result = run.api.task.result
    assert run.api.task.status is TaskStatus.COMPLETED and result is not None
    assert result["merge_commit"] is None and result["branch"] == run.branch
    assert run.host.branch_head(REPO, "main") == main_before
    assert run.api.events[-1]["message"].endswith("not merged (--no-merge)")


def test_a_task_checkpointed_before_the_merge_step_existed_resumes_through_it(tmp_path: Path) -> None:
    # given: a task waiting for its tests, its checkpoint holding only the keys the state had before
    run = Run(tmp_path)
    old_keys = {
        "task_id": run.api.task.id,
        "project_id": "p1",
        "correlation_id": "c",
        "spec": "add comments",
        "agent": "command",
        "base_ref": "main",
    }
    run.api.task = run.api.task.model_copy(update={"status": TaskStatus.RUNNING})
    engine = run.engine()
    engine.graph.invoke(old_keys, engine.config(run.api.task.id))
    run.developer_round({"comments.py": "c\n"})
    commit_files(run.host, REPO, tmp_path / "other", "main", {"likes.py": "l\n"})

    run.tests_pass()

    assert run.api.task.status is TaskStatus.COMPLETED, run.api.task.error
    assert (run.main_file("comments.py"), run.main_file("likes.py")) == ("c\n", "l\n")


def test_checks_that_fail_or_never_finish_fail_the_task_leaving_the_pull_request_open(tmp_path: Path) -> None:
    settings = EngineeringSettings(home=tmp_path, checkpointer="sqlite", merge_checks_wait_s=0)
    nodes = EngineeringNodes(FakeApi(), LocalQueue(tmp_path / "q.db"), settings)  # type: ignore[arg-type]
    state = EngState(task_id="t", project_id="p1")
    url = "https://github.example/octo/blog/pull/3"

    failing = nodes.merge_answered(state, MergeOutcome("checks_failed", detail="failed: tests"), url)
    running = nodes.merge_answered(state, MergeOutcome("pending", detail="running: build"), url)

    assert (
        failing["error"]
        == f"the pull request's checks failed (failed: tests); the pull request stays open: {url}"
    )
    assert (
        running["error"]
        == f"the pull request's checks still run after 0s (running: build); the pull request stays open: {url}"
    )


@pytest.fixture(autouse=True)
def _fresh_checkpointers() -> Any:
    reset()
    yield
    reset()


# -- on GitHub (the fake API, merging for real): the merge step goes through the pull request ---------


def _github_nodes(tmp_path: Path, github: FakeGitHub, api: FakeApi, **settings: Any) -> EngineeringNodes:
    store = LocalSecrets(tmp_path / "secrets.json")
    store.put("secret://github/token", TOKEN)
    host = GitHubRepoHost("octo", "secret://github/token", store, api_url=github.url, retry_delay=0)
    options = {"home": tmp_path, "checkpointer": "sqlite", "repo_owner": "octo", **settings}
    return EngineeringNodes(api, LocalQueue(tmp_path / "q.db"), EngineeringSettings(**options), host)  # type: ignore[arg-type]


def _github_state(nodes: EngineeringNodes, tmp_path: Path, api: FakeApi, **values: Any) -> EngState:
    host = nodes.repo_host
    assert isinstance(host, GitHubRepoHost)
    host.create_repo(REPO)
    commit_files(host, REPO, tmp_path / "seed", "main", {"app.py": "a\n"})
    sha = commit_files(host, REPO, tmp_path / "dev", "orchestrator/t1", {"comments.py": "c\n"})
    known = {
        "task_id": api.task.id,
        "project_id": "p1",
        "project_name": "blog",
        "spec": "add comments",
        "agent": "command",
        "repo_full_name": REPO,
        "repo_url": "/r.git",
        "branch": "orchestrator/t1",
        "commit_sha": sha,
    }
    return EngState.model_validate(known | values)


def test_on_github_the_pull_request_is_merged_once_its_checks_pass(tmp_path: Path) -> None:
    api = FakeApi()
    with FakeGitHub(tmp_path / "github", token=TOKEN) as github:
        nodes = _github_nodes(tmp_path, github, api, merge_checks_wait_s=30, merge_poll_s=0.1)
        state = _github_state(nodes, tmp_path, api)
        github.set_check_run(str(state.commit_sha), "tests", "in_progress")
        passes = threading.Timer(
            0.5, github.set_check_run, (str(state.commit_sha), "tests", "completed", "success")
        )
        passes.start()

        merged = state.model_copy(update=nodes.merge(state))
        nodes.finalize(merged)

        [pull] = github.repo(REPO).pulls
        main = nodes.repo_host.branch_head(REPO, "main") if nodes.repo_host else None
    result = api.task.result
    assert result is not None and result["merge_commit"] == main == pull["merge_commit_sha"]
    assert result["pr_url"] == pull["html_url"] and pull["state"] == "closed" and pull["merged_at"]


def test_on_github_no_merge_leaves_the_pull_request_open(tmp_path: Path) -> None:
    api = FakeApi()
    with FakeGitHub(tmp_path / "github", token=TOKEN) as github:
        nodes = _github_nodes(tmp_path, github, api)
        state = _github_state(nodes, tmp_path, api, no_merge=True)

        nodes.finalize(state.model_copy(update=nodes.merge(state)))

        [pull] = github.repo(REPO).pulls
    assert pull["state"] == "open" and api.task.result and api.task.result["merge_commit"] is None
    assert api.events[-1]["message"].endswith("not merged (--no-merge)")


def test_on_github_a_merge_the_branch_protection_refuses_fails_the_task_leaving_the_pr_open(
    tmp_path: Path,
) -> None:
    api = FakeApi()
    with FakeGitHub(tmp_path / "github", token=TOKEN) as github:
        nodes = _github_nodes(tmp_path, github, api)
        state = _github_state(nodes, tmp_path, api)
        github.merge_refusal = "At least 1 approving review is required by reviewers with write access."

        update = nodes.merge(state)

        [pull] = github.repo(REPO).pulls
    assert update["outcome"] == "failed" and pull["state"] == "open"
    assert update["error"].startswith("could not merge orchestrator/t1 into main: GitHub failed merging")
    assert "approving review is required" in update["error"] and update["error"].endswith(pull["html_url"])
