"""Issue 22, cases 3, 8, 9 and 12 (part), as a new user meets them: the real `orchestrator` CLI against one
embedded stack (the API alone, no consumers) for the module.

One table of failure classes (usage, not found, conflict, unreachable, wrong key, wrong server) runs
across several commands: each row is a command line, the exit code and the line the user reads.
Then the cases: short ids taken back, `project delete`, the spec limit said before anything is created,
and a second `deploy stop` that does not redo the undeploy.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.context import match_id
from cli.errors import CliError, ExitCode
from shared.contracts.api import DeploymentRecord
from shared.contracts.projects import SPEC_MAX_CHARS
from tests.e2e.conftest import orchestrator_executable
from tests.e2e.test_local_stack import Stack

pytestmark = pytest.mark.slow  # one embedded stack for the module (~10-40 s to start under load)


@dataclass
class World:
    home: Path
    stack: Stack
    other_server: str
    """A plain HTTP server that is not our API (answers 404 with HTML)."""

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env["ORCH_HOME"] = str(self.home)
        env["COLUMNS"] = "200"  # rich tables: no wrapped cells
        return subprocess.run(
            [*orchestrator_executable(), *args],
            capture_output=True,
            text=True,
            env=env,
            input=stdin if stdin is not None else "",
            timeout=60,
            check=False,
        )


class _NotOurApi(http.server.BaseHTTPRequestHandler):
    """Another web server on the URL: a page for GET /projects, some other JSON for other GETs, and
    404 pages for the rest."""

    def _answer(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/projects?") or self.path == "/projects":
            self._answer(200, "text/html", b"<html><body>my projects</body></html>")
        else:
            self._answer(200, "application/json", b'{"hello": "world"}')

    def do_POST(self) -> None:
        self._answer(404, "text/html", b"<html><body>404 Not Found</body></html>")

    do_DELETE = do_POST

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads answers, not the server's access log."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("newcomer") / "orch-home"
    home.mkdir()
    stack = Stack(home, env={"ORCH_LOCAL_CONSUMERS": "none"})
    stack.start()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOurApi)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        yield World(home, stack, f"http://127.0.0.1:{other.server_address[1]}")
    finally:
        other.shutdown()
        if stack.process and stack.process.poll() is None:
            stack.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _project(world: World, name: str) -> dict[str, str]:
    made = world.cli("project", "create", "--name", name, "--json")
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)  # type: ignore[no-any-return]


def _task(world: World, project: str) -> str:
    started = world.cli("engineering", "start", project, "--spec", "a blog", "--json")
    assert started.returncode == 0, started.stderr
    return str(json.loads(started.stdout)["id"])


# -- case 9: one exit-code table, every failure class across several commands -------------------

UNREACHABLE_URL = "{unreachable}"
"""A port free when the row runs: chosen then (a port chosen at import would name the test differently in
each pytest-xdist worker, which then refuse to run)."""
WRONG_KEY = "orch_" + "x" * 40
UNKNOWN_TASK = str(uuid.UUID(int=1))

# (failure class, command line, exit code, what the one stderr line says); {other} is the other server
FAILURES: list[tuple[str, tuple[str, ...], ExitCode, str]] = [
    ("usage", ("project", "list", "--bogus"), ExitCode.USAGE, "No such option: --bogus"),
    ("usage", ("task", "show"), ExitCode.USAGE, "Missing argument"),
    ("usage", ("deploy", "start", "taken"), ExitCode.USAGE, "Missing option '--server'"),
    ("usage", ("task", "show", "abc"), ExitCode.USAGE, "is too short: give at least 6 characters"),
    ("not found", ("project", "show", "nope"), ExitCode.NOT_FOUND, "error: project 'nope' not found"),
    ("not found", ("task", "show", UNKNOWN_TASK), ExitCode.NOT_FOUND, "not found"),
    ("not found", ("task", "cancel", "000000"), ExitCode.NOT_FOUND, "no task id starts with '000000'"),
    ("not found", ("worker", "stop", "w-000000"), ExitCode.NOT_FOUND, "no worker id starts with 'w-000000'"),
    ("not found", ("deploy", "stop", "nope"), ExitCode.NOT_FOUND, "project 'nope' not found"),
    ("conflict", ("project", "create", "--name", "taken"), ExitCode.CONFLICT, "is not available"),
    ("conflict", ("project", "delete", "taken", "--yes"), ExitCode.CONFLICT, "cancel it first"),
    (
        "unreachable",
        ("--api-url", UNREACHABLE_URL, "project", "list"),
        ExitCode.UNREACHABLE,
        f"cannot reach the API at {UNREACHABLE_URL}",
    ),
    (
        "unreachable",
        ("--api-url", UNREACHABLE_URL, "task", "list"),
        ExitCode.UNREACHABLE,
        f"cannot reach the API at {UNREACHABLE_URL}",
    ),
    ("wrong key", ("--api-key", WRONG_KEY, "project", "list"), ExitCode.AUTH, "refused the API key"),
    ("wrong key", ("--api-key", WRONG_KEY, "task", "show", "abcdef"), ExitCode.AUTH, "refused the API key"),
    (
        "wrong key",
        ("--api-key", WRONG_KEY, "run", "--name", "x-blog", "--spec", "a blog"),
        ExitCode.AUTH,
        "refused the API key",
    ),
    (
        "wrong server",
        ("--api-url", "{other}", "project", "list"),
        ExitCode.UNREACHABLE,
        "not the orchestrator API",
    ),
    (
        "wrong server",
        ("--api-url", "{other}", "project", "show", "blog"),
        ExitCode.UNREACHABLE,
        "does not answer as the orchestrator API",
    ),
    (
        "wrong server",
        ("--api-url", "{other}", "deploy", "stop", "blog"),
        ExitCode.UNREACHABLE,
        "does not answer as the orchestrator API",
    ),
    (
        "wrong server",
        ("--api-url", "{other}", "task", "cancel", UNKNOWN_TASK),
        ExitCode.UNREACHABLE,
        "is not the orchestrator API: it answered POST",
    ),
]


@pytest.fixture(scope="module")
def busy_project(world: World) -> str:
    """`taken`: a project with a queued task (nothing consumes it), for the conflict rows."""
    _project(world, "taken")
    return _task(world, "taken")


@pytest.mark.parametrize(
    ("kind", "args", "code", "says"), FAILURES, ids=[f"{k}: {' '.join(a[-3:])}" for k, a, _, _ in FAILURES]
)
def test_each_failure_class_has_its_exit_code_and_one_line(
    world: World, busy_project: str, kind: str, args: tuple[str, ...], code: ExitCode, says: str
) -> None:
    unreachable = f"http://127.0.0.1:{_free_port()}"
    line = tuple(a.replace("{other}", world.other_server).replace(UNREACHABLE_URL, unreachable) for a in args)
    says = says.replace(UNREACHABLE_URL, unreachable)

    result = world.cli(*line)

    assert result.returncode == code, f"{kind}: exit {result.returncode}: {result.stderr}"
    assert says in result.stderr, result.stderr
    if code is not ExitCode.USAGE:  # click prints its usage line above a usage error
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: ")
    if kind in ("unreachable", "wrong server", "wrong key") and "--api-url" in line:
        assert line[line.index("--api-url") + 1] in result.stderr, "the URL is named"


# -- case 8: short ids --------------------------------------------------------------------------


def test_short_ids_printed_in_tables_are_taken_back(world: World) -> None:
    project = _project(world, "shorty")
    task_id = _task(world, "shorty")

    table = world.cli("task", "list", "--project", project["id"][:8])
    assert table.returncode == 0, table.stderr
    assert task_id[:8] in table.stdout and task_id not in table.stdout, "tables print 8 characters"
    projects = world.cli("project", "list")
    assert project["id"][:8] in projects.stdout and project["id"] not in projects.stdout

    shown = world.cli("task", "show", task_id[:8])
    assert shown.returncode == 0 and task_id in shown.stdout, shown.stderr
    by_prefix = world.cli("project", "show", project["id"][:6])
    assert by_prefix.returncode == 0 and "shorty" in by_prefix.stdout, by_prefix.stderr
    cancelled = world.cli("task", "cancel", task_id[:6])
    assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout, cancelled.stderr

    user = json.loads(world.cli("user", "add", "dana", "--json").stdout)
    assert user["id"][:8] in world.cli("user", "list").stdout
    key = json.loads(world.cli("apikey", "create", user["id"][:8], "--json").stdout)
    revoked = world.cli("apikey", "revoke", key["id"][:8])
    assert revoked.returncode == 0 and f"revoked key {key['id']}" in revoked.stdout, revoked.stderr


def test_an_ambiguous_prefix_is_a_usage_error_naming_the_candidates() -> None:
    ids = ["abcdef12-aaaa", "abcdef34-bbbb", "0123456789"]
    with pytest.raises(CliError) as raised:
        match_id("task", "abcdef", ids)
    assert raised.value.code is ExitCode.USAGE
    assert raised.value.message == (
        "task id 'abcdef' is ambiguous: 2 ids start with it (abcdef12, abcdef34…); give more characters"
    )
    assert match_id("task", "abcdef3", ids) == "abcdef34-bbbb"


# -- case 3: project delete, and the spec limit said before anything is created --------------------


def test_project_delete_stops_frees_removes_and_the_name_comes_back(world: World) -> None:
    # given a project with a secret, a port and a stopped deployment (as `deploy stop` leaves it)
    project = _project(world, "gone")
    assert world.cli("secret", "set", "gone", "BOT_TOKEN", stdin="s3cret\n").returncode == 0
    with world.stack.service_client() as service:
        port = service.allocate_port("localhost", project["id"]).port
        url = f"http://127.0.0.1:{port}"
        record = DeploymentRecord(
            server_handle="localhost", port=port, url=url, health_url=url + "/health", status="stopped"
        )
        service.record_deployment(project["id"], record)

    unconfirmed = world.cli("project", "delete", "gone")
    assert unconfirmed.returncode == ExitCode.USAGE and "add --yes to confirm" in unconfirmed.stderr
    assert world.cli("project", "show", "gone").returncode == 0, "nothing deleted without --yes"

    deleted = world.cli("project", "delete", project["id"][:8], "--yes")

    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == (
        f"deleted project gone: ports freed: localhost:{port}; secrets removed: BOT_TOKEN; "
        "0 tasks removed; no repository"
    )
    assert world.cli("project", "show", "gone").returncode == ExitCode.NOT_FOUND
    assert world.cli("project", "create", "--name", "gone").returncode == 0, "the name is free again"


def _act_as_the_deploy_consumer(world: World, project_id: str) -> str:
    """What the deploy consumer does for an undeploy (this stack runs none): claim it, record the
    deployment stopped, complete it. Returns the undeploy task's id."""
    with world.stack.service_client() as service:
        deadline = time.monotonic() + 30
        while not (queued := service.list_tasks(project=project_id, type="undeploy").items):
            assert time.monotonic() < deadline, "`project delete` queued no undeploy"
            time.sleep(0.2)
        task = service.claim_task(queued[0].id, worker="e2e")
        current = service.get_deployment(project_id)
        stopped = DeploymentRecord(
            server_handle=current.server_handle,
            port=current.port,
            url=current.url,
            health_url=current.health_url,
            status="stopped",
            task_id=task.id,
        )
        service.record_deployment(project_id, stopped)
        service.complete_task(task.id, {"status": "success", "port": current.port})
        return task.id


def test_deleting_a_deployed_project_stops_it_first_through_the_undeploy(world: World) -> None:
    project = _project(world, "live")
    with world.stack.service_client() as service:
        port = service.allocate_port("localhost", project["id"]).port
        url = f"http://127.0.0.1:{port}"
        record = DeploymentRecord(server_handle="localhost", port=port, url=url, health_url=url + "/health")
        service.record_deployment(project["id"], record)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | {"ORCH_HOME": str(world.home)}
    deleting = subprocess.Popen(
        [*orchestrator_executable(), "project", "delete", "live", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    undeploy = _act_as_the_deploy_consumer(world, project["id"])

    out, err = deleting.communicate(timeout=60)
    assert deleting.returncode == 0, err
    assert out.startswith("stopping live first (as `orchestrator deploy stop live`)"), out
    assert out.strip().endswith(
        f"deleted project live: ports freed: localhost:{port}; secrets removed: none; 1 tasks removed; "
        "no repository"
    ), out
    assert world.cli("task", "show", undeploy).returncode == ExitCode.NOT_FOUND, "its tasks went too"


def test_purge_deletes_a_local_repository_and_refuses_a_remote_one_before_deleting(
    world: World, tmp_path: Path
) -> None:
    local, remote = _project(world, "purged"), _project(world, "remote")
    repo = tmp_path / "owner" / "purged.git"
    subprocess.run(["git", "init", "--bare", "-q", str(repo)], check=True)
    with world.stack.service_client() as service:
        service.update_project(local["id"], repo_url=str(repo))
        service.update_project(remote["id"], repo_url="https://github.com/owner/remote.git")

    refused = world.cli("project", "delete", "remote", "--purge", "--yes")
    assert (
        refused.returncode == ExitCode.USAGE
        and "delete https://github.com/owner/remote.git" in refused.stderr
    )
    assert world.cli("project", "show", "remote").returncode == 0, "refused before anything was deleted"

    purged = world.cli("project", "delete", "purged", "--purge", "--yes", "--json")

    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["repo_purged"] is True and not repo.exists()


def test_a_spec_over_the_limit_is_refused_before_anything_is_created(world: World, tmp_path: Path) -> None:
    _project(world, "long")
    spec = tmp_path / "spec.md"
    spec.write_text("x" * (SPEC_MAX_CHARS + 1))

    refused = world.cli("engineering", "start", "long", "--spec-file", str(spec))

    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr.strip() == (
        "error: the spec is 100,001 characters; the API takes at most 100,000: shorten it"
    )
    assert "at most 100,000 characters" in world.cli("engineering", "start", "--help").stdout
    listed = world.cli("task", "list", "--project", "long")
    assert listed.returncode == 0 and not re.search(r"engineering", listed.stdout)


# -- case 12 (part): a second `deploy stop` -----------------------------------------------------


def test_a_second_deploy_stop_says_already_stopped_and_redoes_nothing(world: World) -> None:
    project = _project(world, "stopped-one")
    with world.stack.service_client() as service:
        record = DeploymentRecord(
            server_handle="localhost",
            port=_free_port(),
            url="http://127.0.0.1:1",
            health_url="http://127.0.0.1:1/health",
            status="stopped",
        )
        service.record_deployment(project["id"], record)

    again = world.cli("deploy", "stop", "stopped-one")

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "stopped-one is already stopped (nothing to do)"
    tasks = world.cli("task", "list", "--project", "stopped-one", "--json")
    assert tasks.stdout.strip() == "[]", "no undeploy task was queued"
