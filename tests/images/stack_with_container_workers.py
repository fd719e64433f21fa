"""The stack's own process (`cli.local.serve`, what `orchestrator local up` becomes) whose worker manager
starts each worker as a container of the worker image (tests/images/container_worker.py) instead of a wrapper
subprocess: the embedded stack's API, queues, engineering graph and worker manager, unchanged, with the image
in the Fargate task's place. Its arguments are the serve module's (`--port 0 --json`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.workers import local  # noqa: E402

_original_init = local.LocalRuntime.__init__


def _container_init(
    self: local.LocalRuntime,
    log_dir: Path,
    on_stopped: local.StoppedCallback | None = None,
    command: list[str] | None = None,
) -> None:
    _original_init(
        self,
        log_dir,
        on_stopped,
        command=[sys.executable, str(Path(__file__).with_name("container_worker.py"))],
    )


local.LocalRuntime.__init__ = _container_init  # type: ignore[method-assign]

if __name__ == "__main__":
    from cli.local.serve import main

    main(sys.argv[1:])
