"""The embedded runtime's fork server: the worker wrapper imported once, a worker forked per launch.

Importing the wrapper (pydantic, httpx, the contracts, the API client, Powertools' logger) costs about
0.4 s of CPU, and every worker paid it again before doing anything, then built the validators of the
contracts it used (`build_deferred_models`). This process pays both once, at its first launch, and then
forks each worker from that warm state: the child starts a new session (its own
process group, as `start_new_session` gives an exec'd worker), points stdin at /dev/null and stdout and
stderr at the worker's log, closes every other descriptor, replaces its environment with the launch's,
and runs `worker_image.wrapper.main` as a fresh `python -m worker_image.wrapper` would. Its pid is answered
only once it leads its own session with its log in place (a pipe it writes to), as `Popen` returns only
after the exec: a stop (`killpg`) or a look at its stdout right after the launch finds what it expects.

The server itself starts with the worker environment of the stack minus any launch (no token, nothing of
the stack's own: `shared.workers.local.worker_environment`), stays single-threaded (a fork copies only the
calling thread, so a lock held by another thread would stay locked in the child), and never runs the
wrapper's code, only imports it.

Protocol, JSON lines. stdin: `{"id": N, "argv": [...], "env": {...}, "log": PATH}` per launch.
stdout: `{"ready": true}` once preloaded (or `{"ready": false, "reason": ...}`); `{"id": N, "pid": P}` or
`{"id": N, "error": ...}` per launch; `{"exited": P, "code": C, "cpu_s": S}` when a worker ends (C as
`subprocess.Popen.returncode`: negative for a signal; S its CPU seconds with its children's). Each child is watched through a pidfd.
At EOF on stdin (the stack stopped, or its process ended) it takes no more launches, reports the workers
still running as they end, and exits after the last one.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

PRELOAD = (
    "worker_image.wrapper",
    "worker_image.agents.process",
    "worker_image.sessions",
    "httpcore",  # httpx imports its transport's library only when the first client is made
)
"""What a worker imports before or during its first message; the adapters and git come with them."""


def _send(message: dict[str, Any]) -> None:
    """One line on the raw descriptor (no buffered sys.stdout a child could inherit half-written)."""
    with contextlib.suppress(BrokenPipeError):  # the stack is gone; the workers still end and are reaped
        os.write(1, (json.dumps(message) + "\n").encode())


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(request: dict[str, Any], log_fd: int, started_fd: int) -> NoReturn:
    """The worker, in the forked child: set up as an exec'd worker would be, run the wrapper, never return."""
    code = 1
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # its group and its log are in place: a stop (killpg) reaches it, a runtime recognises it
        os.write(started_fd, b".")
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the server's pipes, pidfds and selector
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        argv = [str(a) for a in request["argv"]]
        sys.argv = ["orchestrator-worker", *argv]
        from worker_image.wrapper import main

        code = main(argv)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # nothing left to report it to
                stream.flush()
        os._exit(code)


class Server:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, int] = {}  # pidfd -> pid
        self.accepting = True
        self._buffer = b""

    def launch(self, request: dict[str, Any]) -> None:
        ident = request.get("id")
        try:
            log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except (OSError, KeyError, TypeError) as exc:
            _send({"id": ident, "error": f"cannot open the worker's log: {exc}"})
            return
        started_read, started_write = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (log_fd, started_read, started_write):
                os.close(fd)
            _send({"id": ident, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(request, log_fd, started_write)
        os.close(started_write)
        os.close(log_fd)
        try:
            os.read(started_read, 1)  # answered once the child leads its own session and group (or died)
        finally:
            os.close(started_read)
        pidfd = os.pidfd_open(pid)  # a child that died already is a zombie until reaped: still openable
        self.children[pidfd] = pid
        self.selector.register(pidfd, selectors.EVENT_READ, pid)
        _send({"id": ident, "pid": pid})

    def read_requests(self) -> None:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            self.accepting = False
            self.selector.unregister(0)
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self.launch(json.loads(line))

    def reap(self, pidfd: int, pid: int) -> None:
        self.selector.unregister(pidfd)
        os.close(pidfd)
        del self.children[pidfd]
        _, status, usage = os.wait4(pid, 0)
        cpu_s = usage.ru_utime + usage.ru_stime  # with what it ran and reaped: git, the agent, the tests
        _send({"exited": pid, "code": os.waitstatus_to_exitcode(status), "cpu_s": round(cpu_s, 6)})

    def serve(self) -> int:
        self.selector.register(0, selectors.EVENT_READ, None)
        while self.accepting or self.children:
            for key, _ in self.selector.select():
                if key.data is None:
                    self.read_requests()
                else:
                    self.reap(int(key.fd), int(key.data))
        return 0


def build_deferred_models() -> int:
    """The contracts defer building their validators to first use (a cold start elsewhere needs few of
    them), so every forked worker would build the ones it uses again; built once here, before any fork.
    Returns how many were built (one that cannot be built yet, a generic say, is left to its first use)."""
    from pydantic import BaseModel

    built = 0
    for model in _subclasses(BaseModel):
        if not model.__pydantic_complete__:
            with contextlib.suppress(Exception):
                built += bool(model.model_rebuild())
    return built


def warm_settings() -> int:
    """Reads each settings class once (its values thrown away), so a forked worker does not pay again for
    what the first read leaves behind: pydantic-settings asks, field by field, whether each annotation is a
    subclass of the ABCs it knows, and the ABCs' caches of those answers are per process (about 0.03 s of
    a worker's CPU, most of its reading of settings). Nothing read here reaches a worker: classes are
    instantiated directly, never through a cached getter, and each worker reads its own environment.
    Returns how many classes were read."""
    from pydantic_settings import BaseSettings

    read = 0
    for cls in _subclasses(BaseSettings):
        if cls.__module__.split(".")[0] in ("shared", "worker_image"):
            with contextlib.suppress(Exception):  # a required value missing here: its sources were read
                cls()
            read += 1
    return read


def _subclasses(root: type[T]) -> Iterator[type[T]]:
    """Every class below `root` (each once, even one with two bases below it)."""
    seen: set[type[T]] = set()
    pending = [root]
    while pending:
        for cls in pending.pop().__subclasses__():
            if cls not in seen:
                seen.add(cls)
                pending.append(cls)
                yield cls


def main() -> int:
    try:
        if not hasattr(os, "pidfd_open"):
            raise RuntimeError("os.pidfd_open is not available (Linux 5.3 or newer)")
        for name in PRELOAD:
            importlib.import_module(name)
        build_deferred_models()
        warm_settings()
        if threading.active_count() != 1:
            raise RuntimeError(f"importing the wrapper started threads: {threading.enumerate()}")
    except Exception as exc:
        _send({"ready": False, "reason": f"{type(exc).__name__}: {exc}"})
        return 1
    _send({"ready": True})
    return Server().serve()


if __name__ == "__main__":
    sys.exit(main())
