"""The embedded stack caps glibc's malloc arenas (issue 24: its many threads each kept an arena's freed
pages resident), unless the person set MALLOC_ARENA_MAX themselves."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from cli.local.stack import MALLOC_ARENAS, limit_malloc_arenas

# eight threads alive at once, each allocating with C's malloc; then glibc's own count of its arenas
PROBE = """
import ctypes, sys, threading
from cli.local.stack import limit_malloc_arenas
if sys.argv[1] == "limit":
    print("limited", limit_malloc_arenas(), flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
barrier = threading.Barrier(8)
def allocate():
    block = libc.malloc(4096)
    barrier.wait()
    libc.free(ctypes.c_void_p(block))
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()
"""


def _arenas(mode: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE)), done.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_stack_keeps_its_threads_to_a_few_arenas() -> None:
    unlimited, _ = _arenas("default")
    limited, said = _arenas("limit")
    assert unlimited > MALLOC_ARENAS, "glibc gives each of eight threads an arena by default"
    assert said.strip() == "limited True"
    assert limited <= MALLOC_ARENAS


def test_a_limit_the_person_set_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
