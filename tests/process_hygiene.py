"""Tests start real worker processes; none may outlive the test that started it."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def kill_workers(home: Path) -> int:
    """SIGKILL every worker wrapper whose ORCH_HOME is `home`. Returns how many."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"worker_image.wrapper" not in cmdline:
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ORCH_HOME={home}".encode() in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(proc.name), signal.SIGKILL)
                killed += 1
    return killed
