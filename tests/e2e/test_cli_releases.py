"""`deploy history`, `deploy rollback` and `project set-domain` through the real `orchestrator` CLI against
one embedded stack (the API alone, no consumers). The releases are seeded the way the deploy graph makes
them (deploy tasks from `deploy start`, then the service key's start_release / finish_release); the whole
deploy -> rollback flow with the deploy graph running is tests/e2e/test_project_life.py's."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.errors import ExitCode
from shared.api_client import ApiClient
from shared.contracts.api import Task
from tests.e2e.conftest import orchestrator_executable
from tests.e2e.test_local_stack import Stack

pytestmark = pytest.mark.slow  # one embedded stack for the module (~10-40 s to start under load)

SHAS = ["a" * 40, "b" * 40, "c" * 40]


@dataclass
class World:
    home: Path
    stack: Stack
    service: ApiClient

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env["ORCH_HOME"] = str(self.home)
        env["COLUMNS"] = "200"  # rich tables: no wrapped cells
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*orchestrator_executable(), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            input="",
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> object:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def finish_task(self, task_id: str, url: str = "http://127.0.0.1:8000") -> None:
        """What the deploy graph does when a deploy ends well."""
        self.service.claim_task(task_id, worker="test")
        self.service.complete_task(task_id, {"status": "success", "deployed_url": url})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("releases") / "orch-home"
    home.mkdir()
    stack = Stack(home, env={"ORCH_LOCAL_CONSUMERS": "none"})
    stack.start()
    try:
        with stack.service_client() as service:
            yield World(home, stack, service)
    finally:
        if stack.process and stack.process.poll() is None:
            stack.stop()


@pytest.fixture(scope="module")
def blog(world: World) -> dict[str, object]:
    """`blog` with three releases served in turn (1 and 2 superseded, 3 serving) and a failed fourth."""
    project = world.json("project", "create", "--name", "blog")
    assert isinstance(project, dict)
    for i, sha in enumerate([*SHAS, "d" * 40]):
        task = world.json("deploy", "start", "blog", "--server", "localhost")
        assert isinstance(task, dict)
        release = world.service.start_release(
            str(project["id"]), task["id"], sha, "main", "localhost", "ab"[i % 2], 8100 + i % 2
        )
        if i < 3:
            world.service.finish_release(release.id, "serving", url="http://127.0.0.1:8000")
            world.finish_task(task["id"])
        else:
            error = "Traceback (most recent call last):\n  File app.py\nImportError: no module named flask_x"
            world.service.finish_release(release.id, "failed", error=error)
            world.service.claim_task(task["id"], worker="test")
            world.service.fail_task(task["id"], "release 4 failed")
    return project


def test_history_lists_the_releases_newest_first(world: World, blog: dict[str, object]) -> None:
    listed = world.json("deploy", "history", "blog")
    assert isinstance(listed, list)
    assert [(r["number"], r["status"]) for r in listed] == [
        (4, "failed"),
        (3, "serving"),
        (2, "superseded"),
        (1, "superseded"),
    ]
    assert listed[0]["error"].endswith("no module named flask_x") and listed[1]["commit_sha"] == SHAS[2]

    table = world.cli("deploy", "history", "blog")

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    row4 = next(line for line in lines if "failed" in line)
    assert "ddddddd" in row4 and "ImportError: no module named flask_x" in row4 and "you" in row4
    assert any("serving" in line and "ccccccc" in line and "http://127.0.0.1:8000" in line for line in lines)
    assert len(world.json("deploy", "history", "blog", "--limit", "2")) == 2  # type: ignore[arg-type]
    world.json("project", "create", "--name", "fresh")
    assert world.json("deploy", "history", "fresh") == []
    empty = world.cli("deploy", "history", "fresh")
    assert empty.returncode == 0 and "fresh has no releases yet" in empty.stdout, empty
    missing = world.cli("deploy", "history", "nope")
    assert missing.returncode == ExitCode.NOT_FOUND and missing.stderr == "error: project 'nope' not found\n"


def test_rollback_queues_a_deploy_of_the_release_before_the_current(
    world: World, blog: dict[str, object]
) -> None:
    done = world.cli("deploy", "rollback", "blog")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("task ") and " deploy QUEUED" in done.stdout, done.stdout
    task_id = done.stdout.split()[1]
    task = world.service.get_task(task_id)
    assert task.params == {"server": "localhost", "ref": SHAS[1], "rollback_of": 2}

    busy = world.cli("deploy", "rollback", "blog", "--to", "1")
    assert busy.returncode == ExitCode.CONFLICT and "already has a deploy in progress" in busy.stderr
    world.finish_task(task_id)


@pytest.mark.parametrize(
    ("to", "code", "says"),
    [
        ("3", ExitCode.CONFLICT, "release 3 of 'blog' is serving now"),
        ("4", ExitCode.CONFLICT, "never served (failed)"),
        ("9", ExitCode.NOT_FOUND, "project 'blog' has no release 9"),
        ("0", ExitCode.USAGE, "--to"),
    ],
)
def test_rollback_to_a_release_it_cannot_use_is_one_line_and_an_exit_code(
    world: World, blog: dict[str, object], to: str, code: ExitCode, says: str
) -> None:
    done = world.cli("deploy", "rollback", "blog", "--to", to)

    assert done.returncode == code, (done.returncode, done.stderr)
    assert says in done.stderr, done.stderr
    if code != ExitCode.USAGE:  # click's usage errors add a usage line; the API's refusals are one line
        assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


def test_rollback_follow_waits_for_the_deploy(world: World, blog: dict[str, object]) -> None:
    process = subprocess.Popen(
        [*orchestrator_executable(), "deploy", "rollback", "blog", "--to", "1", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=world.env(),
    )
    deadline = time.monotonic() + 60
    queued: list[Task] = []
    while not queued and time.monotonic() < deadline:
        queued = list(world.service.iter_tasks(project="blog", type="deploy", status="QUEUED"))
        time.sleep(0.2)
    assert queued, "the rollback task was not created"
    assert queued[0].params["rollback_of"] == 1
    world.finish_task(queued[0].id, "http://127.0.0.1:8123")

    out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    assert "rolled back; live at http://127.0.0.1:8123" in out


def test_set_domain_shows_in_project_show_and_clears(world: World, blog: dict[str, object]) -> None:
    done = world.cli("project", "set-domain", "blog", "Blog.Example.com")
    assert done.returncode == 0, done.stderr
    assert "blog will be served at blog.example.com" in done.stdout
    shown = world.json("project", "show", "blog")
    assert isinstance(shown, dict) and shown["domain"] == "blog.example.com" and "repo_url" in shown

    bad = world.cli("project", "set-domain", "blog", "not a host")
    assert bad.returncode == ExitCode.USAGE and "domain" in bad.stderr, bad.stderr
    neither = world.cli("project", "set-domain", "blog")
    assert neither.returncode == ExitCode.USAGE and "exactly one of DOMAIN or --clear" in neither.stderr
    both = world.cli("project", "set-domain", "blog", "x.example.com", "--clear")
    assert both.returncode == ExitCode.USAGE

    cleared = world.json("project", "set-domain", "blog", "--clear")
    assert isinstance(cleared, dict) and cleared["domain"] is None
