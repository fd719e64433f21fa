"""The embedded worker runtime: the wrapper as a subprocess in its own process group.

A monitor thread per worker waits for the process; whatever ends it (normal exit, crash,
`stop`, the max-lifetime watchdog) is reported once through the `on_stopped` callback, the
local twin of ECS's task-state-change event. Stopping kills the whole group, so an agent the
wrapper started never outlives it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.workers.runtime import RuntimeStatus, StoppedCallback, WorkerLaunch

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


class LocalRuntime:
    backend = "local"

    def __init__(
        self, log_dir: Path, on_stopped: StoppedCallback | None = None, command: list[str] | None = None
    ) -> None:
        self.log_dir = log_dir
        self.on_stopped = on_stopped
        self.command = command or [sys.executable, "-m", "worker_image.wrapper"]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
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

    def start(self, launch: WorkerLaunch) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = worker_environment(dict(os.environ), {**launch.env, "ORCH_WORKER_ID": launch.worker_id})
        log = open(self.log_dir / f"{launch.worker_id}.log", "ab")
        try:
            proc = subprocess.Popen(
                [*self.command, "--worker-id", launch.worker_id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
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

    def _monitor(
        self, handle: str, worker_id: str, proc: subprocess.Popen[bytes], max_lifetime_s: int
    ) -> None:
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

    @staticmethod
    def _alive(pid: int, handle: str) -> bool:
        _, worker_id = LocalRuntime._parse(handle)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return worker_id.encode() in cmdline

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
