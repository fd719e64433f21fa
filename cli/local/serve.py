"""The embedded stack's own process: `orchestrator local up` checks what it can (a stack already running, a
taken port) and hands over to this module, by exec in the foreground and as the child it waits for with
`--detach`. The process that then serves for days holds the stack, not the command line: typer and every
command's module were ~1.6 MiB of its memory for nothing (issue 24).

It is the same command for a person: the same output, one `error: ...` line on stderr with the exit code of
`cli.errors` on failure (the waiting `local up --detach` reads that line), Ctrl-C or SIGTERM a clean stop.
Only this standard library, `cli.errors` and `cli.output` are imported before the stack starts.

    python -m cli.local.serve --port PORT [--database-url URL] [--consumers LIST] [--telegram] [--json]
                              [--ready-fd FD] [--retry 'orchestrator local up --port {port}']
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cli.errors import CliError, ExitCode
from cli.output import print_error

MODULE = "cli.local.serve"
RETRY = "orchestrator local up --port {port}"


def stack_home() -> Path:
    """`HomeSettings().home`, read as pydantic-settings reads it (ORCH_HOME in any case, `~` expanded) without
    loading it: ~0.1 s of `local down` and `local status`. A test keeps the two in agreement."""
    environ = {name.lower(): value for name, value in os.environ.items()}
    return Path(environ.get("orch_home", "~/.orchestrator")).expanduser()


@dataclass(frozen=True)
class ServeOptions:
    """`local up`'s choices, as the stack's process takes them."""

    port: int
    database_url: str | None = None
    consumers: str = "all"
    telegram: bool = False
    json_output: bool = False
    retry: str = RETRY
    """How to start it again on another port: the taken-port message names it."""
    ready_fd: int | None = None

    def argv(self) -> list[str]:
        """The command line that runs the stack in a process of its own (this interpreter, this module)."""
        argv = [sys.executable, "-m", MODULE, "--port", str(self.port), "--consumers", self.consumers]
        argv += ["--retry", self.retry]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        if self.telegram:
            argv.append("--telegram")
        if self.json_output:
            argv.append("--json")
        if self.ready_fd is not None:
            argv += ["--ready-fd", str(self.ready_fd)]
        return argv


def serve(home: Path, options: ServeOptions) -> None:
    """Start the stack, print where it is (one JSON line with `json_output`), serve until SIGINT or SIGTERM,
    stop it cleanly and exit. A stack that cannot start raises `CliError` with the exit code to use."""
    from cli.config import write_config
    from cli.local.ports import port_taken_error
    from cli.local.stack import EmbeddedStack

    chosen = (
        None if options.consumers == "all" else [c for c in options.consumers.split(",") if c and c != "none"]
    )
    try:
        stack = EmbeddedStack(
            home,
            port=options.port,
            database_url=options.database_url,
            consumers=chosen,
            telegram=options.telegram,
        )
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    try:
        url = stack.start(ready=False)
    except (ValueError, RuntimeError) as exc:  # e.g. --telegram without a bot token
        stack.stop()
        raise CliError(str(exc), ExitCode.USAGE) from None
    except OSError as exc:
        stack.stop()
        if exc.errno == errno.EADDRINUSE:  # taken between the check and the bind
            raise port_taken_error(options.port, options.retry) from None
        raise CliError(
            f"cannot listen on 127.0.0.1:{options.port}: {exc.strerror or exc}", ExitCode.FAILURE
        ) from None

    def _stop(signum: int, _frame: object) -> None:
        stack.request_stop()

    # before the first line: whoever reads it may stop the stack at once, and that is a clean stop
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    write_config({"api_url": url, "api_key": stack.admin_key or ""})
    for notice in stack.notices:
        print(notice, file=sys.stderr)
    if options.json_output:  # one line: scripts read the first line of stdout
        sys.stdout.write(json.dumps({"url": url, "pid": os.getpid(), "home": str(home)}) + "\n")
    else:
        print(f"orchestrator is up: API {url} (docs {url}/docs), data in {home}")
        print("the CLI is configured; try:  orchestrator project create --name blog --description 'my blog'")
        print("Ctrl-C stops it.")
    sys.stdout.flush()
    # From here on stdout carries only what the banner promised: logs and EMF metrics go to stderr.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stack.mark_ready()  # only now does /health answer 200 (the CLI can use the stack) and the jobs run
    if options.ready_fd is not None:
        tell_ready(options.ready_fd)
    stack.wait()
    stack.stop(exiting=True)
    if not options.json_output:
        print("stopped")
    _exit_now()


def tell_ready(ready_fd: int) -> None:
    """Wake a waiting `local up --detach` (it still checks /health itself); a pipe it already closed (it
    gave up) is no error."""
    try:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"ready\n")
    finally:
        os.close(ready_fd)


def _exit_now() -> None:
    """Exit without the interpreter's teardown: the stack is stopped and its state file gone, and what
    remains is garbage-collecting every module the stack loaded, which took seconds of `local down`.
    The exit handlers still run (logs flushed, wake-up markers removed)."""
    import atexit
    import logging

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orchestrator local up", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url")
    parser.add_argument("--consumers", default="all")
    parser.add_argument("--telegram", action="store_true")
    parser.add_argument("--json", action="store_true", dest="json_output")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--retry", default=RETRY)
    args = parser.parse_args(argv)
    try:
        serve(stack_home(), ServeOptions(**vars(args)))
    except CliError as exc:
        print_error(exc.message)
        sys.exit(int(exc.code))
    except KeyboardInterrupt:  # before the stack's own handlers are in place
        print_error("interrupted")
        sys.exit(130)
    except Exception as exc:  # described as the CLI describes it (an API or AWS error, a queue's)
        from cli.main import describe_error

        described = describe_error(exc)
        if described is None:
            raise
        print_error(described[0])
        sys.exit(int(described[1]))


if __name__ == "__main__":
    main()
