"""The embedded stack's start-up loads no heavy library it does not need yet: with Telegram off no aiogram,
no langgraph before a graph runs, no copier or ansible_runner before a job needs them, no boto3 off AWS.
Checked in a fresh interpreter (this test process has imported everything already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiogram", "langgraph", "langchain_core", "copier", "ansible_runner", "ansible", "boto3")

START = """
import json, sys
from pathlib import Path

import cli.local.stack as stack

stack.SCHEDULES = ()  # no scheduled job runs: what is loaded is the start path's doing only
s = stack.EmbeddedStack(Path(sys.argv[1]), port=0)
s.start()
loaded = sorted({name.split(".")[0] for name in sys.modules})
consumers = [c.function for c in s.consumers]
handlers = sorted(c.handler.partition(":")[0] for c in s.consumers if c.handler.partition(":")[0] in sys.modules)
handlers += [name for name in ("aws_lambda_powertools.utilities.batch",) if name in sys.modules]
dialects = sorted({name.split(".")[2] for name in sys.modules if name.startswith("sqlalchemy.dialects.")})
s.stop()
print(json.dumps({"loaded": loaded, "consumers": consumers, "handlers": handlers, "dialects": dialects}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("run", ["fresh data dir", "existing data dir"])
def test_starting_the_stack_with_telegram_off_loads_no_heavy_library(embedded_home: Path, run: str) -> None:
    if run == "existing data dir":
        _start(embedded_home)
    found = _start(embedded_home)
    assert "engineering" in found["consumers"] and "telegram_bot" not in found["consumers"]
    assert sorted(set(found["loaded"]) & set(HEAVY)) == []
    # a fresh database is migrated by a child process, one at the head not at all
    assert "alembic" not in found["loaded"] and "mako" not in found["loaded"]
    # httpx's command-line client (click, rich, pygments: ~5 MB) is not loaded with httpx
    assert sorted({"click", "rich", "pygments"} & set(found["loaded"])) == []
    # a consumer's function is loaded at its first message (`LazyHandler`), not by the start, nor what it
    # consumes with (Powertools' batch utilities and their parser models: shared.queues.failures)
    assert found["handlers"] == []
    # SQLite's stack loads SQLAlchemy's SQLite dialect only: PostgreSQL's package is ~2 MiB more RSS
    assert "sqlite" in found["dialects"] and "postgresql" not in found["dialects"]


def _start(home: Path) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", START, str(home)], capture_output=True, text=True, check=True, timeout=300
    )
    result: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
