"""`local up --detach` waits on the stack's ready pipe, not on a fixed poll: it returns on the stack's word
(then checks /health itself), and a stack that exits ends the pipe, so the wait ends at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.commands_local import _wait_ready
from cli.local.serve import tell_ready
from cli.local.stack import StackState


def _child(code: str, ready_write: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code, str(ready_write)], pass_fds=(ready_write,))
    os.close(ready_write)
    return process


def test_a_stack_that_exits_before_it_is_ready_ends_the_wait(tmp_path: Path) -> None:
    ready_read, ready_write = os.pipe()
    process = _child("import sys, time; time.sleep(0.2); sys.exit(3)", ready_write)
    try:
        assert _wait_ready(tmp_path, process, ready_read) is None
    finally:
        os.close(ready_read)
    assert process.returncode == 3


def test_the_stack_s_word_is_checked_against_its_state_and_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word on the pipe is not taken on trust: the wait returns the state only once /health agrees."""
    ready_read, ready_write = os.pipe()
    process = _child(
        "import os, sys, time; os.write(int(sys.argv[1]), b'ready'); time.sleep(30)", ready_write
    )
    answers = iter([False, False, True])
    looks: list[str] = []

    def healthy(url: str) -> bool:
        looks.append(url)
        return next(answers)

    monkeypatch.setattr("cli.commands_local._healthy", healthy)
    StackState(pid=process.pid, url="http://127.0.0.1:1", port=1, database="sqlite", started_at=0).write(
        tmp_path
    )
    try:
        state = _wait_ready(tmp_path, process, ready_read)
    finally:
        process.kill()
        process.wait()
        os.close(ready_read)
    assert state is not None and state.pid == process.pid
    assert len(looks) == 3


def test_telling_a_wait_that_gave_up_is_no_error() -> None:
    ready_read, ready_write = os.pipe()
    os.close(ready_read)
    tell_ready(ready_write)  # EPIPE (SIGPIPE is ignored by Python): swallowed, the descriptor closed
    with pytest.raises(OSError):
        os.fstat(ready_write)
