"""What the fake agent CLIs share: the modes, the real file edit, and the records tests inspect.

The fakes (`claude`, `droid`, `codex`, `command-agent` in this directory) are run as real
processes by the adapter tests. Standard library only: they run under whatever `python3` is
first on PATH. Environment:

- `FAKE_AGENT_MODE`: ok (default) | malformed | exit2 | hang | crash | blocked
- `FAKE_AGENT_ARGV_FILE`: write the argv (JSON list, without the program) there
- `FAKE_AGENT_PID_FILE`: append this process's pid, and the pid of any child it starts
- `FAKE_AGENT_IGNORE_SIGTERM=1`: ignore SIGTERM (it and its child), to exercise the SIGKILL path
- `FAKE_AGENT_BACKGROUND=1`: leave a background process behind on a normal exit
- `SECRET`: echoed in a message and on stderr, to test redaction
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

MODES = ("ok", "malformed", "exit2", "hang", "crash", "blocked")
LOG_FILE = "AGENT_LOG.md"
BLOCKED_ANSWER = "BLOCKED: need the API token"
GARBAGE = (
    "this is not json",
    '{"type": "assistant", "message": {"content": [',
    "\x1b[33mwarning:\x1b[0m something odd on stdout",
    "[1, 2, 3]",
)


class Fake:
    """One run of a fake CLI."""

    def __init__(self, agent: str, argv: list[str]) -> None:
        self.agent = agent
        self.mode = os.environ.get("FAKE_AGENT_MODE", "ok")
        if self.mode not in MODES:
            self.die(f"unknown FAKE_AGENT_MODE {self.mode!r}", 64)
        self.secret = os.environ.get("SECRET")
        if argv_file := os.environ.get("FAKE_AGENT_ARGV_FILE"):
            Path(argv_file).write_text(json.dumps(argv))
        self.record_pid(os.getpid())
        if os.environ.get("FAKE_AGENT_IGNORE_SIGTERM") == "1":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    @staticmethod
    def record_pid(pid: int) -> None:
        if pid_file := os.environ.get("FAKE_AGENT_PID_FILE"):
            with open(pid_file, "a") as handle:
                handle.write(f"{pid}\n")

    @staticmethod
    def read_prompt(prompt: str | None) -> str:
        """The prompt argument, or stdin when there is none (or it is "-"), like the real CLIs."""
        if prompt is None or prompt == "-":
            return sys.stdin.read()
        return prompt

    @staticmethod
    def die(message: str, code: int = 1) -> NoReturn:
        print(message, file=sys.stderr, flush=True)
        sys.exit(code)

    def emit(self, event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    def garbage(self, index: int) -> None:
        """In malformed mode, a line no JSON parser accepts (or a JSON value that is not an event)."""
        if self.mode == "malformed":
            print(GARBAGE[index % len(GARBAGE)], flush=True)

    def opening_text(self) -> str:
        text = f"I'll record the task in {LOG_FILE}."
        if self.secret:
            print(f"debug: using token {self.secret}", file=sys.stderr, flush=True)
            text += f" Using the token {self.secret} from the environment."
        return text

    def edit(self, prompt: str) -> Path:
        """The real edit the tests look for: one line per run appended to AGENT_LOG.md in the cwd."""
        path = Path.cwd() / LOG_FILE
        first_line = prompt.strip().splitlines()[0] if prompt.strip() else "(empty prompt)"
        with path.open("a") as handle:
            handle.write(f"- {self.agent}: {first_line}\n")
        return path

    def final_answer(self) -> str:
        if self.mode == "blocked":
            return BLOCKED_ANSWER
        return f"Done: appended a line to {LOG_FILE}."

    def exit_with_error(self) -> NoReturn:
        self.die("Error: simulated failure (FAKE_AGENT_MODE=exit2)", 2)

    def hang(self) -> NoReturn:
        """Start a child in the same process group, then never finish: only a group kill cleans this up."""
        child = subprocess.Popen(
            [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.record_pid(child.pid)
        while True:
            time.sleep(3600)

    def finish_ok(self) -> NoReturn:
        """A normal exit, optionally leaving a background process behind (a dev server started with &)."""
        if os.environ.get("FAKE_AGENT_BACKGROUND") == "1":
            child = subprocess.Popen(
                [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.record_pid(child.pid)
        sys.exit(0)
