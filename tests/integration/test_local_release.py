"""A deploy on the built-in localhost server checks the ref out and installs requirements in the same
`supervise.py restart` run that restarts the service (tasks/deploy_local.yml): plain git instead of
Ansible's git module, the venv module and pip instead of its pip module. Real git, real processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.secrets.factory import build_secrets
from tests.ansible_support import (
    NEEDS_GIT_AND_ANSIBLE,
    AppRepo,
    free_port,
    git,
    http_get,
    kill_deployment,
    make_app_repo,
)
from worker_image.ansible_runner.job import RunnerJob
from worker_image.ansible_runner.playbooks.files.supervise import fetch_source, install_requirements
from worker_image.ansible_runner.runner import run_job

pytestmark = [*NEEDS_GIT_AND_ANSIBLE]


@pytest.fixture
def repo(tmp_path: Path) -> AppRepo:
    return make_app_repo(tmp_path / "app")


def _head(src: Path) -> str:
    return git("rev-parse", "HEAD", cwd=src)


def test_a_branch_then_a_newer_commit_are_checked_out_and_local_changes_are_discarded(
    repo: AppRepo, tmp_path: Path
) -> None:
    # given: a checkout of main
    src = tmp_path / "slot" / "src"
    first = _head(repo.work)
    assert fetch_source(src, str(repo.bare), "main") is None
    assert _head(src) == first

    # when: a new commit is pushed and asked for by its sha, over a checkout somebody edited
    repo.edit("Makefile", "test:", "test:  ")
    second = repo.commit("Second")
    (src / "Makefile").write_text("edited on the server\n")
    assert fetch_source(src, str(repo.bare), second) is None

    # then: the new commit, the edit gone
    assert _head(src) == second
    assert (src / "Makefile").read_text() == (repo.work / "Makefile").read_text()


def test_a_commit_no_branch_names_is_fetched_by_name_and_an_unknown_ref_says_so(
    repo: AppRepo, tmp_path: Path
) -> None:
    # given: a commit only a non-branch ref points at (as a pull request's head is)
    git("checkout", "-q", "-b", "topic", cwd=repo.work)
    repo.edit("Makefile", "test:", "test:  ")
    git("commit", "-q", "-am", "Topic", cwd=repo.work)
    topic = _head(repo.work)
    git("push", "-q", "origin", "HEAD:refs/pull/1/head", cwd=repo.work)
    src = tmp_path / "src"

    # when / then: it is checked out by its sha
    assert fetch_source(src, str(repo.bare), topic) is None
    assert _head(src) == topic

    # and a ref that exists nowhere is one readable line naming the repository and the ref
    problem = fetch_source(src, str(repo.bare), "no-such-branch")
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"could not fetch {repo.bare} at no-such-branch: ")
    assert _head(src) == topic  # what was checked out stays


def test_requirements_go_into_the_virtualenv_and_none_means_no_virtualenv(tmp_path: Path) -> None:
    # given: a source tree without requirements.txt
    src, venv = tmp_path / "src", tmp_path / "venv"
    src.mkdir()

    # then: nothing to do, no virtualenv made
    assert install_requirements(src, venv) is None
    assert not venv.exists()

    # given: requirements.txt and a virtualenv whose python records what it is asked (no index needed)
    (src / "requirements.txt").write_text("requests\n")
    calls = tmp_path / "calls"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)

    # when / then: pip installs the file into it
    assert install_requirements(src, venv) is None
    assert calls.read_text().split() == ["-m", "pip", "install", "-q", "-r", str(src / "requirements.txt")]

    # a failing pip is one line naming the file and the virtualenv, with pip's last word
    fake.write_text('#!/bin/sh\necho "ERROR: No matching distribution found for requests" >&2\nexit 1\n')
    problem = install_requirements(src, venv)
    assert problem == (
        f"could not install requirements.txt into {venv}: ERROR: No matching distribution found for requests"
    )


@pytest.fixture
def app_dirs() -> Iterator[list[Path]]:
    found: list[Path] = []
    yield found
    for app_dir in found:
        kill_deployment(app_dir)


def test_a_ref_that_cannot_be_fetched_fails_and_the_running_release_keeps_serving(
    repo: AppRepo, tmp_path: Path, app_dirs: list[Path]
) -> None:
    # given: the app deployed in place on localhost
    port = free_port()
    job = RunnerJob.model_validate(
        {
            "request_id": str(uuid.uuid4()),
            "kind": "deploy",
            "target": {"handle": "localhost", "host": "127.0.0.1", "connection": "local"},
            "project_id": "p1",
            "project_name": "demo_app",
            "repo_url": str(repo.bare),
            "ref": "main",
            "port": port,
            "deploy_root": str(tmp_path / "apps"),
            "timeout_s": 120,
        }
    )
    app_dirs.append(tmp_path / "apps" / "demo_app")
    secrets = build_secrets()
    assert run_job(job, secrets).status == "success"

    # when: a ref that does not exist is deployed over it
    missing = run_job(job.model_copy(update={"request_id": str(uuid.uuid4()), "ref": "gone"}), secrets)

    # then: failed with git's reason (not a health check, not the service's log); the release still serves
    assert missing.status == "failed"
    assert missing.error is not None and missing.error.startswith(f"could not fetch {repo.bare} at gone: ")
    assert "service's log" not in missing.error
    assert http_get(f"http://127.0.0.1:{port}/health") == (200, {"status": "ok"})


def test_the_options_carried_out_before_the_re_run_are_left_out_of_it() -> None:
    """The supervisor's command line (what `ps` shows, what a person re-runs) fetches nothing again and
    names neither the runner's env file nor its repository options."""
    from worker_image.ansible_runner.playbooks.files.supervise import _without_done_options

    argv = [
        "restart",
        "/a",
        "--git-repo",
        "/r.git",
        "--git-ref=main",
        "--venv",
        "/v",
        "--env-file-from",
        "/e",
    ]
    assert _without_done_options([*argv, "--url", "http://x/health"]) == [
        "restart",
        "/a",
        "--url",
        "http://x/health",
    ]
