"""Several engineering tasks on a new project scaffold its repository at once (issue 16, item 5).

Each task's graph asks for a scaffold; the scaffolders create the same repository and push the
first commit of `main` concurrently. One push wins; every other scaffold must find the winner's
`main` and answer success with it, never `scaffold_failed` (dulwich's `FileLocked
refs/heads/main.lock`, or the remote refusing the non-fast-forward).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from functions.scaffolder.logic import scaffold
from shared.queues.local import LocalQueue
from shared.repos.local import LocalRepoHost
from tests.factories import race
from tests.integration.test_scaffolder_push import GIT, FakeApi, _message, _project

pytestmark = pytest.mark.skipif(GIT is None, reason="git is needed to create the repositories")

TASKS = 5


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[LocalQueue]:
    local = LocalQueue(tmp_path / "queue.db", visibility_timeout=0)
    yield local
    local.close()


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_scaffolds_of_a_new_repository_all_succeed_with_one_main(
    tmp_path: Path, queue: LocalQueue, round_: int
) -> None:
    # given one new project and a repo host with no repository for it yet
    host = LocalRepoHost(tmp_path / "repos")
    apis = [FakeApi(_project()) for _ in range(TASKS)]

    # when five tasks' scaffolders run at the same instant
    results = race(TASKS, lambda i: scaffold(_message("projects/blog"), apis[i], host, queue))  # type: ignore[arg-type]

    # then every one succeeds, and all report the one commit that main holds
    errors = [
        r if isinstance(r, Exception) else r.error
        for r in results
        if isinstance(r, Exception) or r.status != "success"
    ]
    assert errors == []
    head = host.branch_head("projects/blog", "main")
    assert head is not None
    assert {r.commit_sha for r in results} == {head}
    assert all(
        api.updates[-1] == {"repo_url": host.path_for("projects/blog").as_posix(), "status": "scaffolded"}
        for api in apis
    )


def _scaffold_in_a_process(root: str, queue_path: str, start_at: float) -> tuple[str, str | None, str | None]:
    while time.time() < start_at:  # released together, like the threads of `race`
        time.sleep(0.001)
    queue = LocalQueue(Path(queue_path), visibility_timeout=0)
    try:
        result = scaffold(_message("projects/blog"), FakeApi(_project()), LocalRepoHost(Path(root)), queue)  # type: ignore[arg-type]
    finally:
        queue.close()
    return result.status, result.error, result.commit_sha


def test_concurrent_scaffolds_in_separate_processes_all_succeed(tmp_path: Path) -> None:
    start_at = time.time() + 3.0  # spawned interpreters need a moment to import
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(TASKS, mp_context=spawn) as pool:
        futures = [
            pool.submit(_scaffold_in_a_process, str(tmp_path / "repos"), str(tmp_path / "q.db"), start_at)
            for _ in range(TASKS)
        ]
        outcomes = [f.result(timeout=120) for f in futures]
    head = LocalRepoHost(tmp_path / "repos").branch_head("projects/blog", "main")
    assert [(status, error) for status, error, _ in outcomes] == [("success", None)] * TASKS
    assert {sha for _, _, sha in outcomes} == {head}
