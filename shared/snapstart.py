"""Lambda SnapStart restore hooks: what a function does before its snapshot and after every restore.

With SnapStart (the API and the Telegram bot consumer: `infra_cdk.constructs.runtime.SNAPSTART_FUNCTIONS`),
Lambda runs a function's init once when a version is published, snapshots the memory, and starts every
later execution environment from a copy of that snapshot. So many environments share one past:

- a connection opened before the snapshot is a dead socket in every copy: pools are emptied after restore;
- a pseudo-random generator seeded before the snapshot draws the same numbers in every copy: `random` is
  reseeded from the OS after restore. `uuid.uuid4`, `secrets` and `os.urandom` read the kernel's generator
  at each call (Lambda reseeds it on restore), so they need nothing;
- a credential or cache made before the snapshot would be shared by every copy and may have expired
  (a 15-minute IAM database token signed at publish time): each function drops them after restore.

A handler module registers its hooks at import (`on_snapshot(warm)`, `on_restore(reset)`) and calls
`install()`; the Lambda runtime then calls `before_snapshot()` / `after_restore()` through the
`snapshot_restore_py` module it provides on Python 3.12+. Elsewhere (tests, the embedded stack, a
function without SnapStart) that module is absent, `install()` is a no-op and nothing runs unless called.
"""

from __future__ import annotations

import importlib
import random
import threading
from collections.abc import Callable

from shared.observability import get_logger

Hook = Callable[[], None]

RUNTIME_HOOKS_MODULE = "snapshot_restore_py"
"""Provided by Lambda's Python runtime (3.12+): register_before_snapshot / register_after_restore."""

_before: list[Hook] = []
_after: list[Hook] = [random.seed]  # no argument: seeded from os.urandom, different in every copy
_installed = False
_lock = threading.Lock()


def on_snapshot(hook: Hook) -> Hook:
    """Run `hook` before the snapshot is taken (warm what is safe to share: imports, validated settings)."""
    with _lock:
        if hook not in _before:
            _before.append(hook)
    return hook


def on_restore(hook: Hook) -> Hook:
    """Run `hook` after each restore, before the first invocation (drop connections, credentials, caches)."""
    with _lock:
        if hook not in _after:
            _after.append(hook)
    return hook


def before_snapshot() -> None:
    """Every `on_snapshot` hook in order. A failing hook fails the version's publication (Lambda's rule)."""
    for hook in list(_before):
        hook()


def after_restore() -> None:
    """Every `on_restore` hook in order (the reseed first); each runs even if an earlier one failed."""
    failure: BaseException | None = None
    for hook in list(_after):
        try:
            hook()
        except Exception as exc:
            get_logger().exception(
                "snapstart restore hook failed", extra={"hook": getattr(hook, "__name__", "?")}
            )
            failure = failure or exc
    if failure is not None:
        raise failure


def install() -> bool:
    """Hand `before_snapshot` / `after_restore` to the Lambda runtime when it offers SnapStart hooks.

    Returns whether it did (only inside Lambda's Python 3.12+ runtime); idempotent.
    """
    global _installed
    with _lock:
        if _installed:
            return True
        try:
            runtime = importlib.import_module(RUNTIME_HOOKS_MODULE)
        except ImportError:
            return False
        runtime.register_before_snapshot(before_snapshot)
        runtime.register_after_restore(after_restore)
        _installed = True
        return True
