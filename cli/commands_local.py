"""`orchestrator local up|down|status`: the embedded stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.context import JsonFlag
from cli.errors import CliError, ExitCode
from cli.local.ports import check_port, stack_port, valid_port
from cli.local.serve import ServeOptions, stack_home
from cli.output import print_json
from shared.topology import CONSUMERS

app = typer.Typer(help="Run the whole system on this machine (no AWS, no Docker).", no_args_is_help=True)


def _running(home: Path):  # type: ignore[no-untyped-def]
    from cli.local.stack import StackState, pid_alive

    state = StackState.read(home)
    if state is not None and pid_alive(state.pid):
        return state
    return None


def _health(url: str) -> tuple[bool, bool | None]:
    """(healthy, ready) from the stack's /health: 200 only once it is ready for the CLI; `ready` false
    while it is still starting, None without an answer. Plain `http.client` to this machine: `local up`
    polls it while the stack starts, and httpx would cost the waiting CLI ~0.1 s of CPU the stack needs."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port or 80, timeout=2)
    try:
        connection.request("GET", f"{where.path.rstrip('/')}/health")
        reply = connection.getresponse()
        body = json.loads(reply.read())
        ready = bool(body.get("ready", True))
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return False, None
    finally:
        connection.close()
    return reply.status == 200, ready


def _healthy(url: str) -> bool:
    return _health(url)[0]


PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        envvar="ORCH_PORT",
        callback=valid_port,
        help="API port on 127.0.0.1 (0: any free). Default: the port of the local API URL in the CLI's "
        "config, else 8787.",
        show_default=False,
    ),
]


def _configured_url() -> str | None:
    from cli.config import resolve_connection

    try:
        return resolve_connection().api_url
    except ValueError:  # an unreadable config file: `config show` says what is wrong with it
        return None


@app.command("up")
def up(
    port: PortOption = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Default: SQLite in ORCH_HOME.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; returns once the stack is ready.")
    ] = False,
    consumers: Annotated[
        str,
        typer.Option(
            "--consumers",
            envvar="ORCH_LOCAL_CONSUMERS",
            help="all (the Telegram ones only with --telegram), none, or a comma list such as "
            "deploy,infra; known: " + ", ".join(c.function for c in CONSUMERS),
        ),
    ] = "all",
    telegram: Annotated[
        bool,
        typer.Option(
            "--telegram", help="Run the Telegram bot by long polling (needs ORCH_TELEGRAM_BOT_TOKEN_REF)."
        ),
    ] = False,
    json_output: JsonFlag = False,
    ready_fd: Annotated[
        int | None,
        typer.Option("--ready-fd", hidden=True, help="A pipe to write to once ready (`--detach` passes it)."),
    ] = None,
) -> None:
    """Start the API, the consumers and the scheduler; Ctrl-C stops them cleanly. A taken port is refused
    at once with the process holding it and a free port to use (exit 4)."""
    home = stack_home()
    running = _running(home)
    if running is not None:
        raise CliError(
            f"the stack already runs at {running.url} (pid {running.pid}); `orchestrator local down` first",
            ExitCode.CONFLICT,
        )
    # the CLI's config (pydantic-settings: ~0.1 s before the stack can start) only when no port was given
    chosen_port = stack_port(port, _configured_url() if port is None else None)
    retry = "orchestrator local up" + (" --detach" if detach else "") + " --port {port}"
    check_port(chosen_port, retry)
    if detach:
        _up_detached(home, chosen_port, database_url, json_output, consumers, telegram, retry=retry)
        return
    _up_foreground(ServeOptions(chosen_port, database_url, consumers, telegram, json_output, retry, ready_fd))


def _up_foreground(options: ServeOptions) -> None:
    """Become the stack's own process (`cli.local.serve`): the same pid, terminal and signals, without the
    command line's modules in the process that serves from now on."""
    argv = options.argv()
    if options.ready_fd is not None:
        os.set_inheritable(options.ready_fd, True)  # a descriptor Python opened is closed by exec otherwise
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # noqa: S606 - this interpreter and a fixed module: no shell, no user program


READY_TIMEOUT_S = 60.0
READY_LOOK_S = 0.5
"""How long `local up --detach` waits on the stack's ready pipe before it looks at the stack again."""


def _up_detached(
    home: Path,
    port: int,
    database_url: str | None,
    json_output: bool,
    consumers: str,
    telegram: bool = False,
    retry: str = "orchestrator local up --detach --port {port}",
) -> None:
    """Start `local up` in the background and return once it is ready (/health 200: the CLI's config
    is written, the consumers run). On failure, the reason from this attempt's output only, and no
    stack.pid left behind."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "logs").mkdir(exist_ok=True)
    log_path = home / "logs" / "stack.log"
    ready_read, ready_write = os.pipe()  # the stack writes once ready: no fixed-interval polling
    args = ServeOptions(port, database_url, consumers, telegram, True, retry, ready_write).argv()
    try:
        try:
            process, offset = _start_stack_process(args, home, log_path, ready_write)
        finally:
            os.close(ready_write)  # the stack's copy is the only writer: its exit ends the pipe
        pid_file = home / "stack.pid"
        pid_file.write_text(str(process.pid))
        state = _wait_ready(home, process, ready_read)
    finally:
        os.close(ready_read)
    if state is not None:
        if json_output:
            print_json({"url": state.url, "pid": state.pid, "home": str(home), "log": str(log_path)})
        else:
            typer.echo(
                f"orchestrator is up in the background: API {state.url}, pid {state.pid}, log {log_path}"
            )
        return
    if process.poll() is None:
        raise CliError(
            f"the stack (pid {process.pid}) is not ready after {READY_TIMEOUT_S:.0f} s; "
            f"see {log_path}, or stop it: orchestrator local down"
        )
    pid_file.unlink(missing_ok=True)
    raise _start_failure(log_path, offset, process.returncode)


def _start_stack_process(
    args: list[str], home: Path, log_path: Path, ready_write: int
) -> tuple[subprocess.Popen[bytes], int]:
    """The detached stack, in a session of its own, logging to `log_path`; with where this attempt's output
    starts in the log (an earlier failure is not ours)."""
    with open(log_path, "ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "ORCH_HOME": str(home)},
            pass_fds=(ready_write,),
        )
    return process, offset


def _wait_ready(home: Path, process: subprocess.Popen[bytes], ready_fd: int | None = None):  # type: ignore[no-untyped-def]
    """The stack's state once it answers /health with 200; None when the process ended first or the wait
    timed out. With `ready_fd` (the pipe the stack writes to once ready, and which ends when the stack
    does), each look waits on it, up to `READY_LOOK_S`; without it, every 50 ms."""
    import select

    from cli.local.stack import StackState

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        state = StackState.read(home)
        if state is not None and state.pid == process.pid and _healthy(state.url):
            return state
        if process.poll() is not None:
            return None
        if ready_fd is None:
            time.sleep(0.05)
        elif select.select([ready_fd], [], [], READY_LOOK_S)[0] and not os.read(ready_fd, 64):
            ready_fd = None  # the pipe ended: the stack exited (the next look sees it) or closed it early
    return None


def _start_failure(log_path: Path, offset: int, returncode: int) -> CliError:
    """The stack's own one-line error when it printed one (with its exit code), else this attempt's
    last log lines."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").strip().splitlines()
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if errors:
        known = {int(c) for c in ExitCode}
        return CliError(errors[-1], ExitCode(returncode) if returncode in known else ExitCode.FAILURE)
    tail = " | ".join(lines[-5:]) if lines else "no output"
    return CliError(f"the stack did not come up (exit {returncode}): {tail}; full log: {log_path}")


@app.command("down")
def down(
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for a clean stop before killing it.")
    ] = 20.0,
    json_output: JsonFlag = False,
) -> None:
    """Stop a stack started with --detach (or any stack running on this ORCH_HOME)."""
    home = stack_home()
    state = _running(home)
    if state is None:
        (home / "stack.pid").unlink(missing_ok=True)
        print_json({"stopped": False, "reason": "not running"}) if json_output else typer.echo("not running")
        return
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    from cli.local.stack import pid_alive

    while pid_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    forced = pid_alive(state.pid)
    if forced:
        os.kill(state.pid, signal.SIGKILL)
    (home / "stack.pid").unlink(missing_ok=True)
    (home / "stack.json").unlink(missing_ok=True)
    if json_output:
        print_json({"stopped": True, "pid": state.pid, "forced": forced})
    else:
        typer.echo(f"stopped the stack (pid {state.pid}){' by force' if forced else ''}")


@app.command("status")
def status(json_output: JsonFlag = False) -> None:
    """What runs: API, consumers, scheduled jobs, queues."""
    home = stack_home()
    state = _running(home)
    if state is None:
        print_json({"running": False, "home": str(home)}) if json_output else typer.echo(
            f"not running ({home})"
        )
        raise typer.Exit(1)
    healthy, ready = _health(state.url)
    from shared.queues import build_queue
    from shared.settings import QueueSettings

    stats = build_queue(QueueSettings(home=home)).stats()
    report = {
        "running": True,
        "healthy": healthy,
        "ready": ready,
        "url": state.url,
        "pid": state.pid,
        "home": str(home),
        "database": state.database,
        "uptime_s": round(time.time() - state.started_at),
        "consumers": state.consumers,
        "schedules": state.schedules,
        "queues": {s.queue: {"visible": s.visible, "in_flight": s.in_flight, "dlq": s.dead} for s in stats},
    }
    if json_output:
        print_json(report)
        return
    shown = "healthy" if healthy else "starting" if ready is False else "NOT healthy"
    typer.echo(f"running: API {state.url} (pid {state.pid}, {shown}), up {report['uptime_s']} s")
    typer.echo(f"database: {state.database}")
    typer.echo(f"consumers: {', '.join(state.consumers) or 'none yet'}")
    typer.echo(f"scheduled jobs: {', '.join(state.schedules)}")
    busy = {q: v for q, v in report["queues"].items() if any(v.values())}
    typer.echo("queues: " + (", ".join(f"{q} {v}" for q, v in busy.items()) or "all empty"))
