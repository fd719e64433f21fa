# ruff: noqa: F401, F811  (the fixtures imported from test_repo_hosts are used by name)
"""`RepoHost.merge` on both hosts, with real git: fast-forward, merge commit, conflict, replay; on the
local host, concurrent merges into one main (the compare-and-swap and its retry); on GitHub (the fake
API on 127.0.0.1, which merges for real), the pull request's checks decide."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import shared.repos.git_merge as git_merge
from shared.repos.github import GitHubRepoHost
from shared.repos.local import LocalRepoHost
from shared.repos.port import MergeOutcome, RepoHostError
from tests.fakes.github_server import FakeGitHub
from tests.integration.test_repo_hosts import (  # the repo-host fixtures, shared
    Hosted,
    clone_once,
    gh,
    git,
    github,
    hosted,
    secrets,
)


def commit_files(
    host: LocalRepoHost | GitHubRepoHost,
    full_name: str,
    workdir: Path,
    branch: str,
    files: dict[str, str],
    start: str = "main",
) -> str:
    """Clone, stand on `branch` (from `start` unless it exists), write `files`, commit, push; the sha."""
    env = clone_once(host, full_name, workdir)
    git("-C", workdir, "fetch", "--quiet", "origin", env=env)
    remote = git("-C", workdir, "branch", "-r").split()
    if f"origin/{branch}" in remote:
        git("-C", workdir, "checkout", "-q", "-B", branch, f"origin/{branch}")
    elif f"origin/{start}" in remote:
        git("-C", workdir, "checkout", "-q", "-B", branch, f"origin/{start}")
    else:
        git("-C", workdir, "checkout", "-q", "-B", branch)
    for name, content in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(content)
    git("-C", workdir, "add", "-A")
    git("-C", workdir, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", branch)
    git("-C", workdir, "push", "--quiet", host.push_url(full_name), f"HEAD:refs/heads/{branch}", env=env)
    return git("-C", workdir, "rev-parse", "HEAD").strip()


def _main_files(host: LocalRepoHost | GitHubRepoHost, full_name: str, *paths: str) -> dict[str, str | None]:
    found = {path: host.read_file(full_name, "main", path) for path in paths}
    return {path: data.decode() if data is not None else None for path, data in found.items()}


def _repo(hosted: Hosted, tmp_path: Path) -> str:
    full_name = f"{hosted.owner}/blog"
    hosted.host.create_repo(full_name)
    commit_files(hosted.host, full_name, tmp_path / "seed", "main", {"app.py": "a\nb\nc\n"})
    return full_name


def _merge(hosted: Hosted, full_name: str, branch: str) -> MergeOutcome:
    return hosted.host.merge(full_name, branch, "main", f"Merge {branch}")


def test_a_branch_on_top_of_main_fast_forwards(hosted: Hosted, tmp_path: Path) -> None:
    full_name = _repo(hosted, tmp_path)
    tip = commit_files(hosted.host, full_name, tmp_path / "w", "feature", {"one.py": "1\n"})

    outcome = _merge(hosted, full_name, "feature")

    assert outcome.status == "merged" and hosted.host.branch_head(full_name, "main") == outcome.sha
    assert _main_files(hosted.host, full_name, "one.py") == {"one.py": "1\n"}
    if hosted.github is None:  # GitHub always makes a merge commit (merge_method "merge")
        assert outcome.fast_forward and outcome.sha == tip


def test_diverged_branches_both_end_on_main_and_a_replay_merges_nothing_twice(
    hosted: Hosted, tmp_path: Path
) -> None:
    # given two branches from the same main, each adding its own file
    full_name = _repo(hosted, tmp_path)
    commit_files(hosted.host, full_name, tmp_path / "w1", "comments", {"comments.py": "c\n"})
    commit_files(hosted.host, full_name, tmp_path / "w2", "likes", {"likes.py": "l\n"})

    first, second = _merge(hosted, full_name, "comments"), _merge(hosted, full_name, "likes")
    again = _merge(hosted, full_name, "likes")

    assert (first.status, second.status) == ("merged", "merged") and not second.fast_forward
    assert hosted.host.branch_head(full_name, "main") == second.sha
    assert _main_files(hosted.host, full_name, "comments.py", "likes.py") == {
        "comments.py": "c\n",
        "likes.py": "l\n",
    }
    assert again.status == "merged" and again.already and again.sha == second.sha


def test_a_real_conflict_changes_nothing_and_names_the_file(hosted: Hosted, tmp_path: Path) -> None:
    full_name = _repo(hosted, tmp_path)
    commit_files(hosted.host, full_name, tmp_path / "w1", "x", {"app.py": "a\nX\nc\n", "x.py": "x\n"})
    commit_files(hosted.host, full_name, tmp_path / "w2", "y", {"app.py": "a\nY\nc\n", "y.py": "y\n"})
    assert _merge(hosted, full_name, "x").status == "merged"
    main_before = hosted.host.branch_head(full_name, "main")

    outcome = _merge(hosted, full_name, "y")

    assert (outcome.status, outcome.conflicts) == ("conflict", ("app.py",))
    assert hosted.host.branch_head(full_name, "main") == main_before


# -- the local host: concurrency -----------------------------------------------------------------------


def _merge_in_a_fresh_host(root: Path, full_name: str, branch: str, start: Any) -> MergeOutcome:
    """One merge by a host of its own, as separate functions (threads or processes) have; `start` lines
    them up."""
    host = LocalRepoHost(root)
    start.wait()
    return host.merge(full_name, branch, "main", f"Merge {branch}")


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_concurrent_merges_all_end_on_main(tmp_path: Path, runner: str) -> None:
    hosted = Hosted(LocalRepoHost(tmp_path / "repos"), owner="projects")
    full_name = _repo(hosted, tmp_path)
    branches = [f"feature-{i}" for i in range(5)]
    for branch in branches:
        commit_files(hosted.host, full_name, tmp_path / branch, branch, {f"{branch}.py": f"{branch}\n"})

    if runner == "threads":
        start: Any = threading.Barrier(len(branches))
        with ThreadPoolExecutor(len(branches)) as pool:
            futures = [
                pool.submit(_merge_in_a_fresh_host, tmp_path / "repos", full_name, b, start) for b in branches
            ]
            outcomes = [f.result(timeout=120) for f in futures]
    else:
        with multiprocessing.Manager() as manager:
            start = manager.Barrier(len(branches))
            with ProcessPoolExecutor(len(branches), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [
                    pool.submit(_merge_in_a_fresh_host, tmp_path / "repos", full_name, b, start)
                    for b in branches
                ]
                outcomes = [f.result(timeout=180) for f in futures]

    assert [o.status for o in outcomes] == ["merged"] * len(branches)
    files = _main_files(hosted.host, full_name, *(f"{b}.py" for b in branches))
    assert files == {f"{b}.py": f"{b}\n" for b in branches}


def test_a_merge_that_loses_the_race_is_computed_again_on_the_new_tip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: main moves (another task's merge) between the merge's computation and its swap
    hosted = Hosted(LocalRepoHost(tmp_path / "repos"), owner="projects")
    full_name = _repo(hosted, tmp_path)
    commit_files(hosted.host, full_name, tmp_path / "w1", "ours", {"ours.py": "o\n"})
    commit_files(hosted.host, full_name, tmp_path / "w2", "theirs", {"theirs.py": "t\n"})
    commit_files(hosted.host, full_name, tmp_path / "w3", "main", {"main.py": "m\n"})  # main diverges
    real_commit = git_merge._commit
    calls: list[str] = []

    def commit_while_main_moves(repo: Path, tree: str, parents: tuple[str, ...], message: str) -> str:
        calls.append(message)
        if len(calls) == 1:
            assert hosted.host.merge(full_name, "theirs", "main", "Merge theirs").status == "merged"
        return real_commit(repo, tree, parents, message)

    monkeypatch.setattr(git_merge, "_commit", commit_while_main_moves)

    outcome = hosted.host.merge(full_name, "ours", "main", "Merge ours")

    assert outcome.status == "merged" and calls.count("Merge ours") == 2
    assert _main_files(hosted.host, full_name, "ours.py", "theirs.py", "main.py") == {
        "ours.py": "o\n",
        "theirs.py": "t\n",
        "main.py": "m\n",
    }


# -- GitHub: the pull request's checks decide ------------------------------------------------------------


def _github_branch(gh: GitHubRepoHost, tmp_path: Path) -> tuple[str, str]:
    gh.create_repo("octo/blog")
    commit_files(gh, "octo/blog", tmp_path / "seed", "main", {"app.py": "a\n"})
    return "octo/blog", commit_files(gh, "octo/blog", tmp_path / "w", "feature", {"f.py": "f\n"})


def test_github_waits_for_running_checks_and_refuses_failed_ones(
    gh: GitHubRepoHost, github: FakeGitHub, tmp_path: Path
) -> None:
    full_name, head = _github_branch(gh, tmp_path)
    github.set_status(head, "ci/build", "success")
    github.set_check_run(head, "tests", "in_progress")

    pending = gh.merge(full_name, "feature", "main", "Merge feature")
    github.set_check_run(head, "tests", "completed", "failure")
    refused = gh.merge(full_name, "feature", "main", "Merge feature")

    assert (pending.status, pending.detail) == ("pending", "running: tests")
    assert (refused.status, refused.detail) == ("checks_failed", "failed: tests")
    [pull] = github.repo(full_name).pulls
    assert pull["state"] == "open" and pending.pull_request and pending.pull_request.number == 1


def test_github_merges_the_pull_request_once_its_checks_pass(
    gh: GitHubRepoHost, github: FakeGitHub, tmp_path: Path
) -> None:
    full_name, head = _github_branch(gh, tmp_path)
    github.set_check_run(head, "tests", "completed", "success")

    outcome = gh.merge(full_name, "feature", "main", "Merge feature\n\nbody")

    [pull] = github.repo(full_name).pulls
    assert outcome.status == "merged" and pull["merged_at"] and pull["merge_commit_sha"] == outcome.sha
    assert gh.branch_head(full_name, "main") == outcome.sha
    [put] = [r for r in github.api_requests() if r.method == "PUT"]
    assert put.body == {"merge_method": "merge", "sha": head, "commit_title": "Merge feature"}


def test_github_refusing_a_merge_for_another_reason_is_an_error_that_says_why(
    gh: GitHubRepoHost, github: FakeGitHub, tmp_path: Path
) -> None:
    full_name, _head = _github_branch(gh, tmp_path)
    github.merge_refusal = "At least 1 approving review is required by reviewers with write access."

    with pytest.raises(RepoHostError, match="approving review is required"):
        gh.merge(full_name, "feature", "main", "Merge feature")

    assert github.repo(full_name).pulls[0]["state"] == "open"


def test_a_worker_s_new_branch_starts_from_a_base_given_as_a_commit(tmp_path: Path) -> None:
    from worker_image import git_ops

    hosted = Hosted(LocalRepoHost(tmp_path / "repos"), owner="projects")
    full_name = _repo(hosted, tmp_path)
    first = hosted.host.branch_head(full_name, "main")
    commit_files(hosted.host, full_name, tmp_path / "later", "main", {"later.py": "l\n"})
    assert first is not None and hosted.host.branch_head(full_name, "main") != first

    git_ops.checkout(hosted.host.push_url(full_name), tmp_path / "ws", "orchestrator/t1", first)

    assert git("-C", tmp_path / "ws", "rev-parse", "HEAD").strip() == first
    assert git("-C", tmp_path / "ws", "branch", "--show-current").strip() == "orchestrator/t1"
