"""Deploy graph helpers: a local port held by a foreign program is avoided; the smoke test backs off."""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from functions.deploy.messages import cause_text
from functions.deploy.probes import free_local_port, smoke_test
from functions.deploy.releases import UnknownRef, allocate_release, shipped_commit
from functions.deploy.settings import DeploySettings
from functions.deploy.state import DeployState
from shared.api_client import ApiError, ConflictError, LimitExceededError, NotFoundError
from shared.repos.names import check_branch_name


class _Api:
    def __init__(self, first: int, taken_by_others: set[int], deployed_port: int | None = None) -> None:
        self.first, self.taken, self.deployed_port = first, taken_by_others, deployed_port
        self.freed: list[int] = []

    def allocate_port(self, handle: str, project: str, port: int | None = None, slot: str = "") -> Any:
        if port is None:
            return type("A", (), {"port": self.first})()
        if port in self.taken:
            raise ConflictError(409, "conflict", f"port {port} taken")
        return type("A", (), {"port": port})()

    def free_port(self, handle: str, port: int) -> None:
        self.freed.append(port)

    def get_deployment(self, project: str) -> Any:
        if self.deployed_port is None:
            raise NotFoundError(404, "not_found", "never deployed")
        return type(
            "D", (), {"status": "deployed", "port": self.deployed_port, "server_handle": "localhost"}
        )()


STATE = DeployState(task_id="t1", project_id="p1", server_handle="localhost")


@pytest.fixture
def held_port() -> Any:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_a_port_held_by_another_program_is_given_back_and_a_free_one_taken(held_port: int) -> None:
    api = _Api(held_port, taken_by_others={held_port + 1})
    port = free_local_port(api, STATE, held_port)  # type: ignore[arg-type]
    assert api.freed == [held_port]
    assert port not in (held_port, held_port + 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # really free


class _RefusingApi:
    def __init__(self, error: ApiError) -> None:
        self.error = error

    def get_deployment(self, project: str) -> Any:
        raise NotFoundError(404, "not_found", "never deployed")

    def allocate_port(self, handle: str, project: str, port: int | None = None, slot: str = "") -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        LimitExceededError(
            429, "limit_exceeded", "10 ports on shared servers reached", ["shared_ports_per_user"]
        ),
        ConflictError(409, "conflict", "no free port left on web-1"),
    ],
)
def test_a_deploy_that_cannot_get_a_port_fails_at_once_with_the_reason(error: ApiError) -> None:
    # given the API refuses the port (a race past the deploy's own check, or the server is full)
    state = STATE.model_copy(
        update={"server_handle": "web-1", "connection": "ssh", "server_host": "203.0.113.7"}
    )
    # when the allocate node runs
    outcome = allocate_release(_RefusingApi(error), state)  # type: ignore[arg-type]
    # then the deploy fails now, saying why (it used to raise out of the node and stay RUNNING)
    assert outcome["outcome"] == "failed"
    assert "no port for this deploy on web-1" in outcome["error"] and error.message in outcome["error"]


def test_the_projects_own_running_service_keeps_its_port(held_port: int) -> None:
    api = _Api(held_port, set(), deployed_port=held_port)
    assert free_local_port(api, STATE, held_port) == held_port  # type: ignore[arg-type]
    assert api.freed == []


def test_smoke_test_retries_until_200_and_reports_the_last_answer() -> None:
    answers = iter([503, 503, 200])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(next(answers, 200))
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            """Silent: no access log in the test output."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sleeps: list[float] = []
    try:
        settings = DeploySettings(smoke_attempts=5, smoke_initial_delay_s=0.5, smoke_max_delay_s=1.0)
        ok, detail = smoke_test(
            f"http://127.0.0.1:{server.server_address[1]}/health", settings, sleep=sleeps.append
        )
        assert ok and detail == "200 after 3 attempt(s)"
        assert sleeps == [0.5, 1.0]
        ok, detail = smoke_test(
            "http://127.0.0.1:1/health", DeploySettings(smoke_attempts=2), sleep=sleeps.append
        )
        assert not ok and "did not answer 200 after 2 attempts" in detail and "ConnectError" in detail
    finally:
        server.shutdown()
        server.server_close()


SUPERVISED_LOG = """2026-12-03 13:08:05 supervisor[20597]: started service (pid 20641): python3 -m app.x
Traceback (most recent call last):
ModuleNotFoundError: No module named 'app.x'
2026-12-03 13:08:05 supervisor[20597]: service exited with code 1 after 0.1 s
2026-12-03 13:08:07 supervisor[20597]: started service (pid 20756): python3 -m app.x
Traceback (most recent call last):
ModuleNotFoundError: No module named 'app.x'
2026-12-03 13:08:07 supervisor[20597]: the supervisor gave up
"""


MISSING = "ModuleNotFoundError: No module named 'app.x'"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (  # the service's own last line leads, the runner's error follows, the log's last lines end it
            {"error": "gave up", "service_log": SUPERVISED_LOG, "service_log_path": "/a/service.log"},
            f"{MISSING}\ngave up\nservice log (last 3 lines of /a/service.log):\n"
            f"  {MISSING}\n  Traceback (most recent call last):\n  {MISSING}",
        ),
        (  # the runner's error ending with that line does not repeat it
            {"error": f"slot b did not become healthy: {MISSING}", "service_log": SUPERVISED_LOG},
            f"{MISSING}\nslot b did not become healthy\nservice log (last 3 lines):\n"
            f"  {MISSING}\n  Traceback (most recent call last):\n  {MISSING}",
        ),
        (  # only the supervisor spoke: its lines are the cause
            {"error": "gave up", "service_log": "2026-12-03 13:08:05 supervisor[1]: stopped\n"},
            "2026-12-03 13:08:05 supervisor[1]: stopped\ngave up\nservice log (last 1 line):\n"
            "  2026-12-03 13:08:05 supervisor[1]: stopped",
        ),
        (
            {"error": "pip failed", "service_log_path": "/a/service.log"},
            "pip failed\nservice log: /a/service.log",
        ),
        ({"error": "no host", "stdout": "TASK [x] {{ ansible source }}"}, "no host"),
    ],
)
def test_a_failure_leads_with_the_services_own_words_never_ansibles_output(
    result: dict[str, Any], expected: str
) -> None:
    assert cause_text(result, log_lines=3) == expected


class _Repos:
    """branch_head as the repo hosts do it: the name checked, None for a branch that does not exist."""

    def __init__(self, heads: dict[str, str]) -> None:
        self.heads = heads
        self.asked: list[str] = []

    def branch_head(self, full_name: str, branch: str) -> str | None:
        check_branch_name(branch)
        self.asked.append(branch)
        return self.heads.get(branch)


def test_what_ships_a_sha_as_is_a_branch_its_head_and_nothing_else() -> None:
    sha, head = "a" * 40, "b" * 40
    repos = _Repos({"main": head, "feature/x": sha})
    assert shipped_commit(repos, "o/blog", sha) == sha and repos.asked == []  # type: ignore[arg-type]
    assert shipped_commit(repos, "o/blog", "main") == head  # type: ignore[arg-type]
    assert shipped_commit(repos, "o/blog", "feature/x") == sha  # type: ignore[arg-type]
    for ref, why in [
        ("v1.2", "cannot deploy 'v1.2': it is neither a branch of o/blog nor a full commit sha"),
        ("abc1234", "cannot deploy 'abc1234': it is neither a branch of o/blog nor a full commit sha"),
        ("bad..name", "cannot deploy 'bad..name': invalid branch name 'bad..name'"),
    ]:
        with pytest.raises(UnknownRef, match="^" + re.escape(why)):
            shipped_commit(repos, "o/blog", ref)  # type: ignore[arg-type]
    with pytest.raises(UnknownRef, match="o/blog has no commit on main yet: run engineering first"):
        shipped_commit(_Repos({}), "o/blog", "main")  # type: ignore[arg-type]
