"""The local runtime forks workers from a fork server that imported the wrapper once
(`worker_image.forkserver`): a forked worker must be what an exec'd one was (its own session and process
group, its log as stdout and stderr, the launch's environment, its exit reported once) and the runtime
must fall back to exec'd workers when the server cannot serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.workers import local
from shared.workers.local import WORKER_TOKEN_ENV, LocalRuntime
from shared.workers.runtime import RuntimeStatus, WorkerLaunch

TOKEN = "orchw_" + "f" * 43


class Stopped:
    def __init__(self) -> None:
        self.statuses: dict[str, RuntimeStatus] = {}
        self._event = threading.Event()

    def __call__(self, worker_id: str, status: RuntimeStatus) -> None:
        self.statuses[worker_id] = status
        self._event.set()

    def wait(self, worker_id: str, timeout: float = 30) -> RuntimeStatus:
        deadline = time.monotonic() + timeout
        while worker_id not in self.statuses and time.monotonic() < deadline:
            self._event.wait(0.1)
            self._event.clear()
        assert worker_id in self.statuses, f"{worker_id} was not reported stopped"
        return self.statuses[worker_id]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _stat(pid)[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_a_worker_without_its_token_exits_78_with_its_reason_in_its_log(tmp_path: Path) -> None:
    # given
    stopped = Stopped()
    runtime = LocalRuntime(tmp_path / "logs", on_stopped=stopped)
    try:
        # when: launched with no token (the wrapper refuses to act without one)
        handle = runtime.start(WorkerLaunch(worker_id="w-no-token", task_id=None, env={}))
        status = stopped.wait("w-no-token")
    finally:
        runtime.close()
    # then: forked, not exec'd, and reported once with the wrapper's own exit code and message
    assert runtime.fork_server, "the fork server did not serve"
    assert status.handle == handle and status.exit_code == 78 and status.reason == "exited with code 78"
    assert "ORCH_WORKER_TOKEN not set" in (tmp_path / "logs" / "w-no-token.log").read_text()


def test_a_forked_worker_is_a_session_of_its_own_that_stop_ends_and_a_new_runtime_recognises(
    tmp_path: Path,
) -> None:
    # given: a worker whose API does not answer, so it keeps retrying until stopped
    stopped = Stopped()
    runtime = LocalRuntime(tmp_path / "logs", on_stopped=stopped)
    env = {"ORCH_API_URL": f"http://127.0.0.1:{_closed_port()}", WORKER_TOKEN_ENV: TOKEN, "MARK": "launch-1"}
    try:
        handle = runtime.start(WorkerLaunch(worker_id="w-retrying", task_id=None, env=env))
        pid = int(handle.split(":")[1])
        server_pid = int(_stat(pid)[1])
        # then: a child of the fork server, leading its own session and group, writing to its own log
        assert b"worker_image.forkserver" in Path(f"/proc/{server_pid}/cmdline").read_bytes()
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid
        for fd in (1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(
                tmp_path / "logs" / "w-retrying.log"
            )
        assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
        # no launch's variable reaches /proc: the environment shown is the server's
        shown = Path(f"/proc/{pid}/environ").read_bytes()
        assert TOKEN.encode() not in shown and b"MARK=launch-1" not in shown
        assert runtime.status(handle).state == "RUNNING"
        # a runtime that never launched it (the stack restarted) still knows it by its log
        assert LocalRuntime(tmp_path / "logs").status(handle).state == "RUNNING"
        assert LocalRuntime(tmp_path / "other-logs").status(handle).state == "STOPPED"
        # when
        runtime.stop(handle, "deleted")
        status = stopped.wait("w-retrying")
    finally:
        runtime.close()
    # then: ended by SIGTERM (-15, or 143 from the wrapper's handler once installed), with the stop's reason
    assert status.exit_code in (-15, 143) and status.reason == "stopped: deleted"
    assert runtime.status(handle).state == "STOPPED"
    # and the server, closed with no worker left, exits
    assert _gone(server_pid), "the fork server outlived its last worker after close"


def test_a_closed_server_reports_the_workers_it_forked_before_exiting(tmp_path: Path) -> None:
    stopped = Stopped()
    runtime = LocalRuntime(tmp_path / "logs", on_stopped=stopped)
    env = {"ORCH_API_URL": f"http://127.0.0.1:{_closed_port()}", WORKER_TOKEN_ENV: TOKEN}
    handle = runtime.start(WorkerLaunch(worker_id="w-outlives", task_id=None, env=env))
    pid = int(handle.split(":")[1])
    server_pid = int(_stat(pid)[1])
    runtime.close()  # the stack reset: no more launches
    time.sleep(0.5)
    assert not _gone(server_pid, timeout=0.1), "the server exited while its worker still ran"
    runtime.stop(handle, "deleted")
    assert stopped.wait("w-outlives").exit_code in (-15, 143)
    assert _gone(server_pid)


def _cmdline_once_execd(pid: int, timeout: float = 5) -> bytes:
    """The process's command line once its exec has finished. Popen returns when the child's
    close-on-exec pipe closes, which is inside execve before the kernel has set the new image's
    arguments: a read in that moment gets b"" (seen on a loaded CI machine)."""
    deadline = time.monotonic() + timeout
    while not (cmdline := Path(f"/proc/{pid}/cmdline").read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return cmdline


def test_workers_start_as_their_own_processes_when_the_server_cannot_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a "server" that says it cannot preload
    refuse = 'import sys; print(\'{"ready": false, "reason": "no pidfd here"}\', flush=True); sys.exit(1)'
    monkeypatch.setattr(local, "FORK_SERVER_COMMAND", ("-c", refuse))
    stopped = Stopped()
    runtime = LocalRuntime(tmp_path / "logs", on_stopped=stopped)
    env = {"ORCH_API_URL": f"http://127.0.0.1:{_closed_port()}", WORKER_TOKEN_ENV: TOKEN}
    try:
        # when
        handle = runtime.start(WorkerLaunch(worker_id="w-execd", task_id=None, env=env))
        pid = int(handle.split(":")[1])
        # then: exec'd as before, its id on its command line, and still stoppable
        assert not runtime.fork_server
        cmdline = _cmdline_once_execd(pid)
        assert b"worker_image.wrapper" in cmdline and b"w-execd" in cmdline
        runtime.stop(handle, "deleted")
        assert stopped.wait("w-execd").exit_code in (-15, 143)
    finally:
        runtime.close()


LATE_SERVER = """
import json, os, sys, time
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    time.sleep(1.0)  # past the runtime's patience
    pid = os.fork()
    if pid == 0:
        os.setsid()
        time.sleep(60)
        os._exit(0)
    open(sys.argv[1], "w").write(str(pid))
    print(json.dumps({"id": request["id"], "pid": pid}), flush=True)
"""


def test_a_launch_the_server_answers_too_late_runs_once_the_late_fork_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a server that forks each worker only after the runtime stopped waiting for it
    late_pid = tmp_path / "late.pid"
    monkeypatch.setattr(local, "FORK_SERVER_COMMAND", ("-c", LATE_SERVER, str(late_pid)))
    monkeypatch.setattr(local, "LAUNCH_REPLY_S", 0.3)
    stopped = Stopped()
    runtime = LocalRuntime(tmp_path / "logs", on_stopped=stopped)
    env = {"ORCH_API_URL": f"http://127.0.0.1:{_closed_port()}", WORKER_TOKEN_ENV: TOKEN}
    try:
        # when
        handle = runtime.start(WorkerLaunch(worker_id="w-late", task_id=None, env=env))
        # then: the worker was exec'd instead, and the fork answered later is killed: one worker runs
        assert b"w-late" in _cmdline_once_execd(int(handle.split(":")[1]))
        deadline = time.monotonic() + 10
        while not late_pid.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(int(late_pid.read_text())), "the late fork was left running beside the exec'd worker"
        runtime.stop(handle, "deleted")
        assert stopped.wait("w-late").reason == "stopped: deleted"
    finally:
        runtime.close()


def test_the_server_builds_the_contracts_deferred_validators_before_any_fork() -> None:
    code = (
        "import worker_image.wrapper\n"
        "from shared.contracts.api import WorkerDetail, WorkerMessage\n"
        "from worker_image.forkserver import build_deferred_models\n"
        "assert not WorkerDetail.__pydantic_complete__, 'already built: the test shows nothing'\n"
        "built = build_deferred_models()\n"
        "assert WorkerDetail.__pydantic_complete__ and WorkerMessage.__pydantic_complete__\n"
        "print(built)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 50


def test_the_server_reads_each_settings_class_once_so_a_forked_worker_reads_them_warm() -> None:
    """pydantic-settings' first read of a class fills the ABCs' per-process subclass caches, which a fork
    inherits. A cold check walks an ABC's subclasses (recursive checks); a warm one answers from the cache.
    Nothing read is kept: no cached getter holds the server's environment."""
    code = (
        "import cProfile, pstats, sys, worker_image.wrapper\n"
        "from worker_image.forkserver import warm_settings\n"
        "from worker_image.agents.config import AgentEnvironment\n"
        "from worker_image.agents.sandbox import SandboxSettings\n"
        "from shared import settings\n"
        "read = warm_settings() if sys.argv[1] == 'warm' else 0\n"
        "profile = cProfile.Profile()\n"
        "profile.runcall(lambda: (worker_image.wrapper.WrapperSettings(), AgentEnvironment(), SandboxSettings()))\n"
        "found = [v for k, v in pstats.Stats(profile).stats.items() if k[2].endswith('_abc_subclasscheck>')]\n"
        "assert settings.get_settings.cache_info().currsize == 0, 'a cached getter kept the server env'\n"
        "print(read, found[0][1] - found[0][0])\n"
    )

    def run(mode: str) -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        read, recursive = map(int, done.stdout.split())
        return read, recursive

    _, cold = run("cold")
    read, warm = run("warm")
    assert cold > 0, "a cold read walked no subclasses: the test shows nothing"
    assert warm == 0
    assert read >= 5  # WrapperSettings, AgentEnvironment, SandboxSettings, ObservabilitySettings, ...
