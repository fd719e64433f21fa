"""Which port the embedded stack listens on, and who holds it when it is taken.

A taken port is checked before the stack starts, so the person gets one line at once (the holder and a
free port to use) instead of the stack's log ~20 s later. Linux's /proc tells the holder cheaply; where
it cannot (another user's process, another OS), the line says "another process".
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from cli.errors import CliError, ExitCode

HOST = "127.0.0.1"
DEFAULT_PORT = 8787
_LISTEN = "0A"


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether the stack could listen on `port` now (0 is always free: the OS picks one)."""
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # the stack's server sets SO_REUSEADDR too: a port in TIME_WAIT is free for it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port_near(port: int, host: str = HOST) -> int:
    """The first free port after `port` (up to 20 further), else any free port the OS hands out."""
    for candidate in range(port + 1, min(port + 21, 65536)):
        if port_is_free(candidate, host):
            return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        found: int = probe.getsockname()[1]
    return found


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`pid N (command line)` of the process listening on `port`, when /proc shows it (our own user's
    processes only); None when unknown."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:  # not ours, or gone
            continue
        if links & wanted:
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                command = ""
            command = command.strip()
            shown = command if len(command) <= 80 else command[:77] + "..."
            return f"pid {entry.name} ({shown})" if shown else f"pid {entry.name}"
    return None


def port_taken_error(port: int, how_to_retry: str) -> CliError:
    """One line: which port, who holds it, and the command to run with a free one (`how_to_retry`
    is the command with `{port}` where the port goes)."""
    holder = port_holder(port) or "another process"
    free = free_port_near(port)
    return CliError(
        f"port {port} on {HOST} is taken by {holder}: use a free one, e.g. "
        f"{how_to_retry.format(port=free)} (or set ORCH_PORT={free})",
        ExitCode.CONFLICT,
    )


def check_port(port: int, how_to_retry: str) -> None:
    """Raise `port_taken_error` when the stack could not listen on `port`."""
    if not port_is_free(port):
        raise port_taken_error(port, how_to_retry)


def valid_port(value: int | None) -> int | None:
    """Typer callback for `--port` / ORCH_PORT: one usage line for a number that is not a port."""
    if value is not None and not 0 <= value <= 65535:
        raise CliError(
            f"--port {value} is not a port: use 1-65535 (0: any free port)",
            ExitCode.USAGE,
        )
    return value


def port_of_local_url(url: str | None) -> int | None:
    """The port of an API URL on this machine (the one the CLI is configured for), else None."""
    from urllib.parse import urlsplit

    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    return port if parts.hostname in ("127.0.0.1", "localhost") and port else None


def stack_port(flag: int | None, configured_url: str | None) -> int:
    """--port / ORCH_PORT, else the port of the local API URL the CLI is configured for (so a stack
    started again comes back where the config points), else 8787."""
    if flag is not None:
        return flag
    return port_of_local_url(configured_url) or DEFAULT_PORT
