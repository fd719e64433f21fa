"""The embedded worker runtime: the wrapper as a process in its own process group.

Each worker is forked from a fork server that imported the wrapper once (`worker_image.forkserver`,
started at the first launch with the workers' environment and no launch's): a worker costs a fork instead
of 0.4 s of imports. Where the server cannot start, or for a custom `command`, a worker is a subprocess
of its own (`python -m worker_image.wrapper`), as before.

A monitor thread per worker waits for the process; whatever ends it (normal exit, crash,
`stop`, the max-lifetime watchdog) is reported once through the `on_stopped` callback, the
local twin of ECS's task-state-change event. Stopping kills the whole group, so an agent the
wrapper started never outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Protocol

from shared.workers.runtime import RuntimeStatus, StoppedCallback, WorkerLaunch
from shared.workers.wake import WAKE_ENV

_SECRETISH = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.IGNORECASE)
_GRACE_S = 3.0
WORKER_TOKEN_ENV = "ORCH_WORKER_TOKEN"  # noqa: S105 - the variable's name, not a token
"""The one credential a launch may carry as a value, in either runtime: the worker's own short-lived API
token, minted by the worker manager."""
STACK_ONLY = frozenset(
    {
        "ORCH_SERVICE_API_KEY_REF",
        "ORCH_API_KEY",
        "ORCH_BOOTSTRAP_ADMIN_KEY",
        "ORCH_AGENT_SECRET_REFS",
        "ORCH_DATABASE_URL",
        "ORCH_SECRETS_BACKEND",
        "ORCH_SECRETS_FILE",
        "ORCH_SECRETS_PREFIX",
        "ORCH_SESSION_BUCKET",
        "ORCH_SESSION_DIR",
    }
)
"""The stack's credentials and the ways to its secrets, database and session archives: never inherited by a
worker, which reaches all of them through the API with its own token (compared case-insensitively)."""


def _inherited(name: str, value: str) -> bool:
    if name.upper() in STACK_ONLY or value.startswith("secret://"):
        return False  # a worker resolves only the references its job names, through the API
    return not _SECRETISH.search(name)


def worker_environment(base: dict[str, str], launch_env: dict[str, str]) -> dict[str, str]:
    """The parent's environment minus its secrets and the stack's own settings (`STACK_ONLY`), plus the
    launch env, whose only credential value may be the worker's token (`WORKER_TOKEN_ENV`)."""
    env = {k: v for k, v in base.items() if _inherited(k, v)}
    for key, value in launch_env.items():
        if key.upper() in STACK_ONLY:
            raise ValueError(
                f"{key} is the stack's own: a worker gets its token ({WORKER_TOKEN_ENV}) instead"
            )
        if _SECRETISH.search(key) and key != WORKER_TOKEN_ENV and not value.startswith("secret://"):
            raise ValueError(f"{key} looks like a secret value: pass a secret:// reference instead")
        env[key] = value
    return env


def kill_group(pid: int, grace_s: float = _GRACE_S) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


WRAPPER_COMMAND = ("-m", "worker_image.wrapper")
FORK_SERVER_COMMAND = ("-m", "worker_image.forkserver")
FORK_SERVER_READY_S = 60.0
"""How long the fork server may take to import the wrapper before the runtime starts workers without it."""
LAUNCH_REPLY_S = 10.0


class _Child(Protocol):
    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


class ForkServer:
    """The runtime's end of `worker_image.forkserver`: launches go down its stdin, pids and exit codes come
    back on its stdout (read by one thread). `wait` is `Popen.wait` for a forked worker."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "ab") as stderr:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._codes: dict[int, int] = {}
        self._ready: dict[str, Any] | None = None
        self._lost = False
        self._next_id = 0
        self._abandoned: set[int] = set()
        self.workers_cpu_s = 0.0
        """CPU seconds of the workers it has reaped, with their children's (a forked worker is not this
        process's child: `RUSAGE_CHILDREN` never sees it)."""
        self._write_lock = threading.Lock()
        threading.Thread(
            target=self._read, args=(self._proc.stdout,), name="worker-fork-server", daemon=True
        ).start()

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "ready" in message:
                    self._ready = message
                elif "exited" in message:
                    self._codes[int(message["exited"])] = int(message["code"])
                    self.workers_cpu_s += float(message.get("cpu_s") or 0.0)
                elif "id" in message:
                    ident = int(message["id"])
                    if ident in self._abandoned:  # answered after its launch gave up: a worker nobody runs
                        self._abandoned.discard(ident)
                        if "pid" in message:
                            for kill in (os.killpg, os.kill):  # its group, and it (however far it got)
                                with contextlib.suppress(OSError):
                                    kill(int(message["pid"]), signal.SIGKILL)
                    else:
                        self._replies[ident] = message
                self._cond.notify_all()
        with self._cond:
            self._lost = True
            self._cond.notify_all()
        self._proc.wait()

    def wait_ready(self, timeout: float) -> str | None:
        """None once the server has imported the wrapper; otherwise why it cannot serve."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready is not None or self._lost, timeout)
            if self._ready is None:
                return "it exited" if self._lost else f"not ready after {timeout:.0f}s"
            return None if self._ready.get("ready") else str(self._ready.get("reason"))

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        line = json.dumps({"id": ident, "argv": argv, "env": env, "log": str(log)}) + "\n"
        try:
            with self._write_lock:
                self._stdin.write(line.encode())
                self._stdin.flush()
        except ValueError as exc:  # closed meanwhile (the stack stopping)
            raise OSError(f"the worker fork server takes no more launches: {exc}") from None
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._replies or self._lost, LAUNCH_REPLY_S):
                # the caller starts the worker another way: a fork answered later is killed at once
                self._abandoned.add(ident)
                raise OSError(f"the worker fork server did not answer within {LAUNCH_REPLY_S:.0f}s")
            reply = self._replies.pop(ident, None)
        if reply is None:
            raise OSError("the worker fork server exited")
        if "pid" not in reply:
            raise OSError(str(reply.get("error")))
        return int(reply["pid"])

    def wait(self, pid: int, timeout: float | None = None) -> int:
        """The worker's exit code (negative: the signal that ended it); `subprocess.TimeoutExpired` past
        `timeout`. A worker whose server died is waited for through /proc (its exit code is lost: -1)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while pid not in self._codes:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"worker {pid}", timeout or 0)
                if self._lost:
                    if not Path(f"/proc/{pid}").exists():
                        return -1
                    self._cond.wait(0.2 if left is None else min(0.2, left))
                else:
                    self._cond.wait(left)
            return self._codes.pop(pid)

    @property
    def alive(self) -> bool:
        return not self._lost

    def own_cpu_s(self) -> float:
        """The server's own CPU seconds so far (its imports; the forks), while it runs."""
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """No more launches: the server exits once the workers it forked have ended (and are reported)."""
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()


class _Forked:
    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self._server = server

    def wait(self, timeout: float | None = None) -> int:
        return self._server.wait(self.pid, timeout)


class LocalRuntime:
    backend = "local"

    def __init__(
        self,
        log_dir: Path,
        on_stopped: StoppedCallback | None = None,
        command: list[str] | None = None,
        fork_server: bool | None = None,
    ) -> None:
        """`fork_server`: fork workers from a warm wrapper (default: yes, unless a custom `command` is given)."""
        self.log_dir = log_dir
        self.on_stopped = on_stopped
        self.command = command or [sys.executable, *WRAPPER_COMMAND]
        self.fork_server = command is None if fork_server is None else fork_server
        self._server: ForkServer | None = None
        self._server_lock = threading.Lock()
        self._procs: dict[str, _Child] = {}
        self._stop_reasons: dict[str, str] = {}
        self._final: dict[str, RuntimeStatus] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _handle(pid: int, worker_id: str) -> str:
        return f"local:{pid}:{worker_id}"

    @staticmethod
    def _parse(handle: str) -> tuple[int, str]:
        try:
            _, pid, worker_id = handle.split(":", 2)
            return int(pid), worker_id
        except ValueError:
            raise ValueError(f"not a local worker handle: {handle!r}") from None

    def _fork_server(self) -> ForkServer | None:
        """The running fork server, started on first use; None (workers are exec'd) where it cannot serve."""
        if not self.fork_server:
            return None
        with self._server_lock:
            if self._server is not None and self._server.alive:
                return self._server
            server = ForkServer(
                [sys.executable, *FORK_SERVER_COMMAND],
                worker_environment(dict(os.environ), {}),
                self.log_dir / "fork-server.log",
            )
            problem = server.wait_ready(FORK_SERVER_READY_S)
            if problem is not None:
                server.close()
                self.fork_server = False
                from shared.observability import get_logger

                get_logger().warning(
                    "the worker fork server cannot serve: workers start as their own processes",
                    extra={"reason": problem},
                )
                return None
            self._server = server
            return server

    def _spawn(self, launch: WorkerLaunch, env: dict[str, str]) -> _Child:
        log_path = self.log_dir / f"{launch.worker_id}.log"
        argv = ["--worker-id", launch.worker_id]
        server = self._fork_server()
        if server is not None:
            try:
                return _Forked(server.spawn(argv, env, log_path), server)
            except OSError as exc:
                from shared.observability import get_logger

                get_logger().warning(
                    "the worker fork server failed a launch: starting the worker as its own process",
                    extra={"worker_id": launch.worker_id, "reason": str(exc)},
                )
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [*self.command, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )

    def forked_cpu_s(self) -> float:
        """CPU seconds of the fork server and the workers it has reaped (benchmarks: a forked worker's CPU
        reaches this process's `RUSAGE_CHILDREN` only when the server itself is reaped)."""
        with self._server_lock:
            server = self._server
        return 0.0 if server is None else server.own_cpu_s() + server.workers_cpu_s

    def close(self) -> None:
        """Stop the fork server taking launches (the workers it forked run on and are still reported)."""
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()

    def start(self, launch: WorkerLaunch) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # the wrapper shares the API's network namespace: the API's wake-up reaches it (shared.workers.wake)
        env = worker_environment(
            dict(os.environ), {**launch.env, "ORCH_WORKER_ID": launch.worker_id, WAKE_ENV: "1"}
        )
        proc = self._spawn(launch, env)
        handle = self._handle(proc.pid, launch.worker_id)
        with self._lock:
            self._procs[handle] = proc
        threading.Thread(
            target=self._monitor,
            args=(handle, launch.worker_id, proc, launch.max_lifetime_s),
            name=f"worker-monitor:{launch.worker_id}",
            daemon=True,
        ).start()
        return handle

    def _monitor(self, handle: str, worker_id: str, proc: _Child, max_lifetime_s: int) -> None:
        try:
            code = proc.wait(timeout=max_lifetime_s)
        except subprocess.TimeoutExpired:
            self._stop_reasons.setdefault(handle, f"timeout: worker ran longer than {max_lifetime_s}s")
            kill_group(proc.pid)
            code = proc.wait()
        else:
            kill_group(proc.pid, grace_s=0.5)  # anything the wrapper left behind in its group
        reason = self._stop_reasons.get(handle)
        if reason is None:
            reason = (
                "exited normally"
                if code == 0
                else (f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
            )
        status = RuntimeStatus(handle=handle, state="STOPPED", exit_code=code, reason=reason)
        with self._lock:
            self._final[handle] = status
            self._procs.pop(handle, None)
        if self.on_stopped is not None:
            try:
                self.on_stopped(worker_id, status)
            except Exception:
                from shared.observability import get_logger

                get_logger().exception("reporting a stopped worker failed", extra={"worker_id": worker_id})

    def stop(self, handle: str, reason: str) -> None:
        pid, _ = self._parse(handle)
        self._stop_reasons.setdefault(handle, f"stopped: {reason}")
        with self._lock:
            known = handle in self._procs
        if known or self._alive(pid, handle):
            kill_group(pid)

    def _alive(self, pid: int, handle: str) -> bool:
        """Whether `pid` is still that worker (a handle of an earlier run of the stack, or a reused pid): an
        exec'd worker names its id on its command line, and every worker writes to its own log."""
        _, worker_id = LocalRuntime._parse(handle)
        try:
            if worker_id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
            return os.readlink(f"/proc/{pid}/fd/1") == os.path.realpath(self.log_dir / f"{worker_id}.log")
        except OSError:
            return False

    def status(self, handle: str) -> RuntimeStatus:
        with self._lock:
            final = self._final.get(handle)
            running = handle in self._procs
        if final is not None:
            return final
        pid, _ = self._parse(handle)
        if running or self._alive(pid, handle):
            return RuntimeStatus(handle=handle, state="RUNNING")
        return RuntimeStatus(handle=handle, state="STOPPED", reason="process not found")
