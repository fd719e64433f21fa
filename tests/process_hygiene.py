"""Tests start real worker processes; none may outlive the test that started it."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _is_fork_server(proc: Path, cmdline: bytes) -> bool:
    """The local runtime's fork server (its stdout is its pipe to the stack), not a worker it forked (whose
    command line is the server's, and whose stdout is its log)."""
    if b"worker_image.forkserver" not in cmdline:
        return False
    with contextlib.suppress(OSError):
        return os.readlink(proc / "fd" / "1").startswith("pipe:")
    return False


def kill_workers(home: Path) -> int:
    """SIGKILL every worker wrapper (exec'd, or forked by the fork server) and every fork server whose
    ORCH_HOME is `home`. Returns how many workers (a stack's fork server lives as long as the stack)."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"worker_image.wrapper" not in cmdline and b"worker_image.forkserver" not in cmdline:
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ORCH_HOME={home}".encode() in environ:
            server = _is_fork_server(proc, cmdline)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(proc.name), signal.SIGKILL)
                killed += not server
    return killed
