"""An embedded stack started in-process on a free port with no consumers, for tests of its start-up
(with the `embedded_home` fixture of tests/integration/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from cli.local.stack import EmbeddedStack


def start_stack(home: Path) -> EmbeddedStack:
    stack = EmbeddedStack(home, port=0, tick_s=30, consumers=[])
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack
