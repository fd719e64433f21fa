"""Issue 22, `orchestrator run` and the stack's start-up: each error path a newcomer meets prints one line
saying what happened and what to do, with its exit code; nothing is created before the inputs are checked.

The real CLI in subprocesses. Rows that need no stack run against an empty ORCH_HOME (and must not start
one); the others share one stack per module, started with `local up --detach` (no consumers, and a
`claude` that does not exist, so the default agent is missing as on a fresh machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import orchestrator_executable


def _env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update({"ORCH_HOME": str(home), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    env.update(extra or {})
    return env


def orch(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*orchestrator_executable(), *args],
        capture_output=True,
        text=True,
        env=_env(home, env),
        timeout=120,
        check=False,
    )


class _NotOurApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another HTTP server of this test process listens on (a dev server left running)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotOurApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Row:
    case: str
    args: tuple[str, ...]
    code: int
    message: str
    """Expected stderr, one line; `{port}` and `{pid}` are the held port and this process's pid."""
    env: dict[str, str] = field(default_factory=dict)


PORT_TAKEN = "error: port {port} on 127.0.0.1 is taken by pid {pid} ("
NO_STACK_ROWS = [
    Row(
        "1 taken port, run --port",
        ("run", "--name", "blog", "--spec", "a blog", "--agent", "none", "--port", "{port}"),
        4,
        PORT_TAKEN,
    ),
    Row(
        "1 taken port, ORCH_PORT",
        ("run", "--name", "blog", "--spec", "a blog"),
        4,
        PORT_TAKEN,
        {"ORCH_PORT": "{port}"},
    ),
    Row("1 taken port, local up", ("local", "up", "--port", "{port}"), 4, PORT_TAKEN),
    Row(
        "1 taken port, local up --detach", ("local", "up", "--detach"), 4, PORT_TAKEN, {"ORCH_PORT": "{port}"}
    ),
    Row(
        "2 empty spec",
        ("run", "--name", "blog", "--spec", ""),
        2,
        "error: --spec is empty: say what to build, e.g. --spec 'a todo list with a REST API'",
    ),
    Row("2 blank spec", ("run", "--name", "blog", "--spec", "  \n "), 2, "error: --spec is empty:"),
    Row(
        "2 spec too long",
        ("run", "--name", "blog", "--spec", "x" * 100_001),
        2,
        "error: --spec is 100001 characters long; at most 100000",
    ),
    Row(
        "2 bad name",
        ("run", "--name", "Not A Slug", "--spec", "a blog"),
        2,
        "error: --name 'Not A Slug' is not a project name: 2-63 lowercase letters, digits and dashes",
    ),
    Row(
        "2 unknown agent",
        ("run", "--name", "blog", "--spec", "a blog", "--agent", "gpt"),
        2,
        "error: unknown agent 'gpt': use one of claude-code, codex, command, factory-droid, none",
    ),
    Row(
        "6 command agent, ORCH_AGENT_COMMAND unset, before the stack starts",
        ("run", "--name", "blog", "--spec", "a blog", "--agent", "command"),
        1,
        "error: --agent command runs the command line in ORCH_AGENT_COMMAND, which is not set: "
        "ORCH_AGENT_COMMAND='./my-agent --flags' orchestrator run ... (the stack it starts keeps it), "
        "or pass --agent none to deploy the template as it is",
    ),
    Row(
        "12 agent not installed, before the stack starts",
        ("run", "--name", "blog", "--spec", "a blog", "--agent", "claude-code"),
        1,
        "error: the coding agent claude-code is not installed where the stack looks (no `claude` on the "
        "PATH): pass --agent none to deploy the template as it is, or install it "
        "(npm i -g @anthropic-ai/claude-code); agents it can run: ",
        {"ORCH_CLAUDE_BIN": "/nonexistent/claude"},
    ),
    Row(
        "10 port out of range",
        ("run", "--name", "blog", "--spec", "a blog", "--port", "70000"),
        2,
        "error: --port 70000 is not a port: use 1-65535 (0: any free port)",
    ),
    Row(
        "10 ORCH_PORT out of range",
        ("local", "up"),
        2,
        "error: --port 70000 is not a port: use 1-65535 (0: any free port)",
        {"ORCH_PORT": "70000"},
    ),
]


@pytest.mark.parametrize("row", NO_STACK_ROWS, ids=[r.case for r in NO_STACK_ROWS])
def test_refused_before_anything_starts(row: Row, held_port: int, tmp_path: Path) -> None:
    home = tmp_path / "home"
    fill = {"port": str(held_port), "pid": str(os.getpid())}
    result = orch(
        home, *(a.format(**fill) for a in row.args), env={k: v.format(**fill) for k, v in row.env.items()}
    )
    assert result.returncode == row.code, result.stderr
    assert result.stderr.startswith(row.message.format(**fill)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    # nothing started, nothing left behind
    assert not (home / "stack.pid").exists() and not (home / "stack.json").exists()


def test_a_taken_port_suggests_a_free_one(held_port: int, tmp_path: Path) -> None:
    result = orch(tmp_path / "home", "local", "up", "--port", str(held_port))
    suggested = int(result.stderr.rsplit("ORCH_PORT=", 1)[1].rstrip(")\n"))
    assert f"orchestrator local up --port {suggested} (or set ORCH_PORT={suggested})" in result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))  # free indeed


def test_run_starts_the_stack_where_the_config_points_first(held_port: int, tmp_path: Path) -> None:
    # given a config saved by an earlier `local up` on a port that another program holds now
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(
        json.dumps({"api_url": f"http://127.0.0.1:{held_port}", "api_key": "k"})
    )
    # when run has to start the stack
    result = orch(home, "run", "--name", "blog", "--spec", "a blog", "--agent", "none")
    # then it tried that port (not 8787) and says who holds it
    assert result.returncode == 4
    assert result.stderr.startswith(PORT_TAKEN.format(port=held_port, pid=os.getpid())), result.stderr


def test_a_silent_program_on_the_configured_port_is_named_without_a_long_wait(tmp_path: Path) -> None:
    # given the config's port held by a program that accepts connections and never answers
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        home = tmp_path / "home"
        home.mkdir()
        (home / "config.json").write_text(json.dumps({"api_url": f"http://127.0.0.1:{port}", "api_key": "k"}))
        began = time.monotonic()
        result = orch(home, "run", "--name", "blog", "--spec", "a blog", "--agent", "none")
        took = time.monotonic() - began
    # then the same one line, without the API client's 30 s wait for an answer
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(PORT_TAKEN.format(port=port, pid=os.getpid())), result.stderr
    assert took < 25, took


def test_a_failed_start_shows_only_this_attempts_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "stack.log").write_text("error: an earlier attempt's failure\n")
    result = orch(home, "local", "up", "--detach", "--port", "0", "--consumers", "nonsense")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: unknown consumer(s) nonsense"), result.stderr
    assert "earlier attempt" not in result.stderr
    assert not (home / "stack.pid").exists()


# -- with a running stack ---------------------------------------------------------------------------


@dataclass
class RunningStack:
    home: Path
    url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    home = tmp_path_factory.mktemp("newcomer") / "home"
    started = orch(
        home,
        "local",
        "up",
        "--detach",
        "--port",
        "0",
        "--json",
        env={"ORCH_LOCAL_CONSUMERS": "none", "ORCH_CLAUDE_BIN": str(home / "no-such-claude")},
    )
    assert started.returncode == 0, started.stderr
    running = RunningStack(home, json.loads(started.stdout)["url"])
    yield running
    orch(home, "local", "down")


@pytest.mark.slow
def test_13_detach_returns_when_ready_with_the_cli_configured(stack: RunningStack) -> None:
    config = json.loads((stack.home / "config.json").read_text())
    assert config["api_url"] == stack.url and config["api_key"]
    health = httpx.get(f"{stack.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["ready"] is True
    assert orch(stack.home, "project", "list", "--json").returncode == 0
    status = json.loads(orch(stack.home, "local", "status", "--json").stdout)
    assert status["healthy"] is True and status["ready"] is True


STACK_ROWS = [
    Row(
        "2 unknown server",
        ("run", "--name", "srv", "--spec", "a blog", "--agent", "none", "--server", "nowhere"),
        3,
        "error: no server 'nowhere' to deploy to: `orchestrator server list` shows them (localhost is built in)",
    ),
    Row(
        "6 command agent without ORCH_AGENT_COMMAND",
        ("run", "--name", "cmd", "--spec", "a blog", "--agent", "command"),
        1,
        "error: --agent command runs the command line in ORCH_AGENT_COMMAND, and the stack was started "
        "without it: restart the stack with it set: orchestrator local down && "
        "ORCH_AGENT_COMMAND='./agent.sh --fast' orchestrator local up --detach, or pass --agent none",
        {"ORCH_AGENT_COMMAND": "./agent.sh --fast"},
    ),
    Row(
        "12 default agent not installed",
        ("run", "--name", "dflt", "--spec", "a blog"),
        1,
        "error: the coding agent claude-code is not installed where the stack looks (no `claude` on its "
        "PATH): pass --agent none to deploy the template as it is, or install it "
        "(npm i -g @anthropic-ai/claude-code) and restart the stack",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("row", STACK_ROWS, ids=[r.case for r in STACK_ROWS])
def test_refused_before_the_project_is_created(stack: RunningStack, row: Row) -> None:
    result = orch(stack.home, *row.args, env=row.env)
    assert result.returncode == row.code, result.stderr
    assert result.stderr.startswith(row.message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    listed = json.loads(orch(stack.home, "project", "list", "--json").stdout)
    assert row.args[2] not in [p["name"] for p in listed]


def _run_until(stack: RunningStack, expected: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`run` in the background, read until a stdout line contains `expected`."""
    process = subprocess.Popen(
        [*orchestrator_executable(), "run", "--name", "ctrlc", "--spec", "a blog", "--agent", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(stack.home),
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if expected in line:
            return process, seen
    process.kill()
    raise AssertionError(
        f"never printed {expected!r}: {seen} {process.stderr.read() if process.stderr else ''}"
    )


@pytest.mark.slow
def test_7_ctrl_c_says_what_keeps_running_and_a_rerun_attaches(stack: RunningStack) -> None:
    # given `run` following its engineering task (no consumers: it stays queued)
    first, _ = _run_until(stack, "engineering ctrlc")
    time.sleep(1)  # into the follow loop
    # when Ctrl-C
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=30)
    # then exit 130 and one line naming the task that goes on and how to follow it
    assert first.returncode == 130, err
    assert err.startswith("error: interrupted: the engineering task "), err
    task_id = err.split("the engineering task ", 1)[1].split()[0]
    assert f"follow it: orchestrator task logs {task_id} --follow" in err
    assert json.loads(orch(stack.home, "task", "show", task_id, "--json").stdout)["status"] == "QUEUED"
    # and running it again follows that task instead of starting another
    second, seen = _run_until(stack, "following it instead of starting another")
    second.send_signal(signal.SIGINT)
    second.communicate(timeout=30)
    assert f"(task {task_id})" in seen[-1]
    tasks = json.loads(orch(stack.home, "task", "list", "--project", "ctrlc", "--json").stdout)
    assert [t["id"] for t in tasks if t["type"] == "engineering"] == [task_id]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.slow
def test_13_health_says_ready_only_once_the_cli_can_use_the_stack(tmp_path: Path) -> None:
    # given a stack starting in the foreground on a known port
    home, port = tmp_path / "home", _free_port()
    process = subprocess.Popen(
        [*orchestrator_executable(), "local", "up", "--port", str(port), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(home, {"ORCH_LOCAL_CONSUMERS": "none"}),
    )
    answers: list[tuple[int, bool, bool]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (answers and answers[-1][0] == 200):
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            configured = (home / "config.json").exists() and bool(
                json.loads((home / "config.json").read_text()).get("api_key")
            )
            answers.append((reply.status_code, reply.json()["ready"], configured))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    # then /health answered 200 (ready) only once the CLI's config with the admin key was written;
    # every earlier answer was 503 with ready false
    assert answers and answers[-1] == (200, True, True), answers
    assert all(code == 503 and not ready for code, ready, _ in answers[:-1]), answers
