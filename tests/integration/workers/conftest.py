"""An in-process embedded stack with the real worker manager, local runtime and wrapper subprocesses."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.local.stack import EmbeddedStack
from shared.api_client import ApiClient, ConflictError
from shared.contracts import PO_RESPONSES, parse_message
from shared.queues.local import LocalQueue
from shared.secrets.local import LocalSecrets
from tests.process_hygiene import kill_workers


def make_repo(root: Path) -> str:
    """A bare repository with one commit on main, as the scaffolder would leave it."""
    bare = root / "repo.git"
    seed = root / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    (seed / "README.md").write_text("# demo\n")
    for args in (
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
        ["remote", "add", "origin", str(bare)],
        ["push", "-q", "origin", "main"],
    ):
        subprocess.run(["git", *args], cwd=seed, check=True)
    return str(bare)


class StackHarness:
    def __init__(self, stack: EmbeddedStack, home: Path) -> None:
        self.stack = stack
        self.home = home
        self.queue = LocalQueue(home / "queue.db")
        key = LocalSecrets(home / "secrets.json").get("secret://local/service_api_key")
        self.service = ApiClient(os.environ["ORCH_API_URL"], key)
        self.admin = ApiClient(os.environ["ORCH_API_URL"], stack.admin_key)

    def task(self, project: str = "demo") -> str:
        with contextlib.suppress(ConflictError):  # the project exists from an earlier task
            self.admin.create_project(project)
        return self.admin.start_engineering(project, "spec").id

    def responses(self, expected: int, timeout: float = 30.0) -> list[Any]:
        """Drain worker:responses until `expected` arrived (the graphs' consumer is not in this stack)."""
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for m in self.queue.receive("worker:responses", 10, wait_seconds=0.5, visibility_timeout=30):
                out.append(parse_message("worker:responses", m.body))
                self.queue.delete("worker:responses", m.receipt_handle)
        return out


def first_of(
    stack: StackHarness, kind: type, queue: str = PO_RESPONSES, timeout: float = 30.0
) -> tuple[Any, list[Any]]:
    """The first response of `kind` on `queue` (po:responses by default), and everything received before it."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in stack.queue.receive(queue, 10, wait_seconds=0.5, visibility_timeout=30):
            stack.queue.delete(queue, m.receipt_handle)
            response = parse_message(queue, m.body)
            if isinstance(response, kind):
                return response, seen
            seen.append(response)
    raise AssertionError(f"no {kind.__name__} within {timeout}s; saw {seen}")


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StackHarness]:
    home = Path(os.environ["ORCH_HOME"])
    saved = dict(os.environ)
    monkeypatch.setenv("ORCH_WORKER_IDLE_TIMEOUT_S", "20")
    running = EmbeddedStack(home, port=0, tick_s=0.2, consumers=["worker_manager"])
    running.start()
    harness = StackHarness(running, home)
    yield harness
    running.stop()
    kill_workers(home)
    harness.service.close()
    harness.admin.close()
    os.environ.clear()
    os.environ.update(saved)
