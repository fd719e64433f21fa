"""The embedded stack driven only through the real CLI, as a person (or the PO agent) would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.e2e.conftest import CliRunner, orchestrator_executable


class Stack:
    def __init__(self, home: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.home = home
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.extra_env = env or {}
        self.extra_args = args

    def start(self, port: int = 0) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env["ORCH_HOME"] = str(self.home)
        env.update(self.extra_env)
        self.process = subprocess.Popen(
            [*orchestrator_executable(), "local", "up", "--port", str(port), "--json", *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=open(self.home.parent / "stack.err", "a"),
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"stack did not start: {(self.home.parent / 'stack.err').read_text()[-2000:]}"
        self.url = json.loads(line)["url"]
        return self.url

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        """As a crash would: no clean shutdown, in-flight messages stay in flight."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def service_client(self) -> ApiClient:
        key = LocalSecrets(self.home / "secrets.json").get("secret://local/service_api_key")
        return ApiClient(self.url, key)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    home = Path(os.environ["ORCH_HOME"])
    running = Stack(home, env={"ORCH_LOCAL_CONSUMERS": "none"})  # the CLI and API alone
    running.start()
    yield running
    if running.process and running.process.poll() is None:
        running.stop()


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def test_tour_create_list_show_engineering_cancel_retry(stack: Stack, cli: CliRunner) -> None:
    project = _json(
        cli(
            "project",
            "create",
            "--name",
            "blog",
            "--description",
            "my blog",
            "--modules",
            "backend,telegram",
            "--json",
        )
    )
    assert project["name"] == "blog" and project["modules"] == ["backend", "telegram"]  # type: ignore[index]
    assert [p["name"] for p in _json(cli("project", "list", "--json"))] == ["blog"]  # type: ignore[index, union-attr]
    assert _json(cli("project", "show", "blog", "--json"))["id"] == project["id"]  # type: ignore[index]
    assert _json(cli("project", "show", project["id"], "--json"))["name"] == "blog"  # type: ignore[index]

    task = _json(
        cli("engineering", "start", "blog", "--spec", "a blog with comments", "--agent", "command", "--json")
    )
    assert task["status"] == "QUEUED"  # type: ignore[index]
    stats = {q["queue"]: q for q in _json(cli("queue", "stats", "--json"))}  # type: ignore[union-attr]
    assert stats["engineering:queue"]["visible"] + stats["engineering:queue"]["in_flight"] == 1

    listed = _json(cli("task", "list", "--project", "blog", "--json"))
    assert [t["id"] for t in listed] == [task["id"]]  # type: ignore[index, union-attr]
    cancelled = _json(cli("task", "cancel", task["id"], "--json"))  # type: ignore[index]
    assert cancelled["status"] == "CANCELLED"  # type: ignore[index]
    follow = cli("task", "logs", task["id"], "--follow")  # type: ignore[index]
    assert follow.returncode == 1 and "cancelled by the user" in follow.stdout
    retried = _json(cli("task", "retry", task["id"], "--json"))  # type: ignore[index]
    assert retried["status"] == "QUEUED"  # type: ignore[index]

    human = cli("project", "list", env={"COLUMNS": "200"})
    assert human.returncode == 0 and "blog" in human.stdout


def test_follow_streams_until_completed(stack: Stack, cli: CliRunner) -> None:
    cli("project", "create", "--name", "blog")
    task = _json(cli("engineering", "start", "blog", "--spec", "x", "--json"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_HOME"] = os.environ["ORCH_HOME"]
    follower = subprocess.Popen(
        [
            *orchestrator_executable(),
            "task",
            "logs",
            task["id"],
            "--follow",
            "--interval",  # type: ignore[index]
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with stack.service_client() as service:
        service.claim_task(task["id"], worker="e2e")  # type: ignore[index]
        time.sleep(0.3)
        service.append_events(
            task["id"],
            [
                {
                    "type": "progress",
                    "message": "developer at work",  # type: ignore[index]
                    "current_step": "developer",
                    "progress_pct": 40,
                }
            ],
        )
        time.sleep(0.3)
        service.complete_task(task["id"], {"status": "success", "commit_sha": "abc123"})  # type: ignore[index]
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert "started" in out and "[developer] developer at work" in out and "COMPLETED" in out


def test_error_paths_have_exit_codes(stack: Stack, cli: CliRunner) -> None:
    missing = cli("project", "show", "nope")
    assert missing.returncode == 3 and missing.stderr.strip() == "error: project 'nope' not found"
    assert cli("project", "list", "--bogus").returncode == 2
    cli("project", "create", "--name", "blog")
    dup = cli("project", "create", "--name", "blog")
    assert dup.returncode == 4 and "is not available" in dup.stderr
    bad = cli("project", "create", "--name", "Not A Slug")
    assert bad.returncode == 2 and "name" in bad.stderr
    both = cli("engineering", "start", "blog")
    assert both.returncode == 2 and "--spec" in both.stderr
    assert cli("deploy", "start", "blog", "--server", "nowhere").returncode == 3

    url = stack.url
    assert stack.stop() == 0
    down = cli("project", "list")
    assert down.returncode == 5
    assert down.stderr.startswith(f"error: cannot reach the API at {url}")
    assert len(down.stderr.strip().splitlines()) == 1


def test_restart_keeps_everything_and_reconfigures_the_cli(stack: Stack, cli: CliRunner) -> None:
    cli("project", "create", "--name", "blog")
    task = _json(cli("engineering", "start", "blog", "--spec", "x", "--json"))
    first_url = stack.url
    assert stack.stop() == 0
    assert cli("local", "status").returncode == 1

    second_url = stack.start()
    assert second_url != first_url or True
    assert _json(cli("config", "show", "--json"))["api_url"] == second_url  # type: ignore[index]
    assert _json(cli("task", "show", task["id"], "--json"))["status"] == "QUEUED"  # type: ignore[index]
    assert [p["name"] for p in _json(cli("project", "list", "--json"))] == ["blog"]  # type: ignore[index, union-attr]
    status = _json(cli("local", "status", "--json"))
    assert status["running"] and status["healthy"] and "outbox_sweep" in status["schedules"]  # type: ignore[index]


def test_secrets_from_stdin_never_echoed(stack: Stack, cli: CliRunner) -> None:
    cli("project", "create", "--name", "blog")
    result = cli("secret", "set", "blog", "BOT_TOKEN", input="canary-7f3a\n")
    assert result.returncode == 0, result.stderr
    assert "canary-7f3a" not in result.stdout + result.stderr
    listed = cli("secret", "list", "blog", "--json")
    assert "canary-7f3a" not in listed.stdout and json.loads(listed.stdout)[0]["name"] == "BOT_TOKEN"
    assert cli("secret", "set", "blog", "EMPTY", input="").returncode == 2


def test_config_show_masks_the_key(stack: Stack, cli: CliRunner) -> None:
    shown = cli("config", "show")
    full = _json(cli("config", "show", "--json"))
    assert full["api_key"] not in shown.stdout and "…" in shown.stdout  # type: ignore[index]
    assert full["api_url"] == stack.url  # type: ignore[index]
    assert oct(Path(full["config_file"]).stat().st_mode & 0o777) == "0o600"  # type: ignore[index]
    override = cli("--api-url", "http://127.0.0.1:9", "project", "list")
    assert override.returncode == 5 and "127.0.0.1:9" in override.stderr


def test_users_and_keys(stack: Stack, cli: CliRunner) -> None:
    user = _json(cli("user", "add", "erin", "--telegram-id", "4242", "--json"))
    created = _json(cli("apikey", "create", "erin", "--json"))
    assert created["key"].startswith("orch_")  # type: ignore[index]
    as_erin = cli("--api-key", created["key"], "project", "list", "--json")  # type: ignore[index]
    assert _json(as_erin) == []
    assert cli("--api-key", created["key"], "user", "list").returncode == 6  # type: ignore[index]
    assert _json(cli("apikey", "revoke", created["id"], "--json"))["revoked_at"]  # type: ignore[index]
    assert cli("--api-key", created["key"], "project", "list").returncode == 6  # type: ignore[index]
    assert user["telegram_id"] == 4242  # type: ignore[index]


def test_second_stack_on_the_same_home_is_refused(stack: Stack, cli: CliRunner) -> None:
    result = cli("local", "up", "--port", "0")
    assert result.returncode == 4 and "already runs" in result.stderr


def test_local_up_becomes_the_stacks_own_process(stack: Stack) -> None:
    """The foreground `local up` execs `cli.local.serve`: the pid the person started (and Ctrl-Cs) is the
    stack's, and that process no longer runs the CLI's module."""
    assert stack.process is not None
    cmdline = Path(f"/proc/{stack.process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"cli.local.serve" in cmdline and b"cli.main" not in cmdline
    state = json.loads((stack.home / "stack.json").read_text())
    assert state["pid"] == stack.process.pid
    assert stack.stop() == 0
