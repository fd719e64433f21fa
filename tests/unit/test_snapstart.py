"""SnapStart restore hooks (issue 23): what runs before the snapshot and after every restore.

A restore is simulated with `os.fork()`: each child starts from a copy of the parent's memory, as every
execution environment restored from one snapshot does. Unlike a restore, a fork reseeds `random` in the child
(CPython registers that with `os.register_at_fork`), so each child first puts back the generator state the
snapshot holds.
"""

from __future__ import annotations

import os
import random
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from sqlalchemy import event, text

from functions.api import auth, restore_hooks
from functions.api.deps import forget_deps, get_deps, set_deps
from shared import snapstart
from tests.api_support import build_deps

if TYPE_CHECKING:
    from sqlalchemy.pool import QueuePool

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="a restore is simulated with fork")


def _draw_in_restored_copies(
    restore: Callable[[], None], draw: Callable[[], str], copies: int = 2
) -> list[str]:
    """What `draw` returns in `copies` forked children that each ran `restore` first."""
    snapshot = random.getstate()
    values = []
    for _ in range(copies):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one restored copy
            os.close(read_end)
            try:
                random.setstate(snapshot)  # undo fork's own reseed: the copy holds what the snapshot held
                restore()
                os.write(write_end, draw().encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as stream:
            values.append(stream.read().decode())
        os.waitpid(pid, 0)
    return values


@pytest.fixture
def snapshot_random() -> Iterator[None]:
    """The global generator in a state every copy would share: seeded once, before the snapshot."""
    state = random.getstate()
    random.seed(20261203)
    yield
    random.setstate(state)


def test_without_the_restore_hook_two_restored_copies_draw_the_same_numbers(snapshot_random: None) -> None:
    """The control: what the hook prevents is real."""
    values = _draw_in_restored_copies(lambda: None, lambda: repr(random.random()))
    assert values[0] == values[1]


def test_after_restore_two_restored_copies_draw_different_numbers(snapshot_random: None) -> None:
    values = _draw_in_restored_copies(snapstart.after_restore, lambda: repr(random.random()))
    assert values[0] != values[1]


def test_uuid4_needs_no_hook_it_reads_the_os_generator_at_each_call(snapshot_random: None) -> None:
    values = _draw_in_restored_copies(lambda: None, lambda: str(uuid.uuid4()))
    assert values[0] != values[1]


def test_install_is_a_no_op_outside_lambda() -> None:
    assert "snapshot_restore_py" not in sys.modules
    assert snapstart.install() is False


def test_install_hands_both_hooks_to_the_lambda_runtime_once(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: dict[str, list[object]] = {"before": [], "after": []}
    runtime = types.ModuleType(snapstart.RUNTIME_HOOKS_MODULE)
    runtime.register_before_snapshot = registered["before"].append  # type: ignore[attr-defined]
    runtime.register_after_restore = registered["after"].append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, snapstart.RUNTIME_HOOKS_MODULE, runtime)
    monkeypatch.setattr(snapstart, "_installed", False)
    assert snapstart.install() is True
    assert snapstart.install() is True
    assert registered == {"before": [snapstart.before_snapshot], "after": [snapstart.after_restore]}


def test_every_restore_hook_runs_even_when_one_fails_and_the_failure_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise OSError("boom")

    monkeypatch.setattr(snapstart, "_after", [broken, lambda: ran.append("next")])
    with pytest.raises(OSError, match="boom"):
        snapstart.after_restore()
    assert ran == ["broken", "next"]


def test_handlers_register_their_hooks_at_import() -> None:
    from functions.api import handler as api_handler
    from functions.telegram_bot import handler as bot_handler
    from functions.telegram_bot import restore_hooks as bot_hooks

    assert vars(api_handler)["restore_hooks"] is restore_hooks
    assert vars(bot_handler)["restore_hooks"] is bot_hooks
    assert restore_hooks.warm in snapstart._before and restore_hooks.start_clean in snapstart._after
    assert bot_hooks.warm in snapstart._before and bot_hooks.start_clean in snapstart._after
    assert snapstart._after[0] is random.seed  # the reseed first: the other hooks may draw


# -- the API ----------------------------------------------------------------------------------------


@pytest.fixture
def api_deps(tmp_path: Path) -> Iterator[None]:
    set_deps(build_deps(f"sqlite:///{tmp_path / 'api.db'}", tmp_path / "home"))
    yield
    set_deps(None)


def test_api_warm_answers_openapi_in_process_without_opening_a_database_connection(api_deps: None) -> None:
    connects: list[object] = []
    event.listen(get_deps().db.engine, "connect", lambda *_: connects.append(1))
    restore_hooks.warm()
    assert connects == []


def test_api_after_restore_disposes_the_pool_forgets_deps_credentials_and_verified_keys(
    api_deps: None,
) -> None:
    # given: the state a snapshot could carry: a pooled connection, built deps, a verified key
    before = get_deps()
    engine = before.db.engine
    with engine.connect() as connection:
        connection.execute(text("select 1"))
        snapshotted = connection.connection.dbapi_connection
    pool = cast("QueuePool", engine.pool)
    assert pool.checkedin() == 1
    auth.verified_keys.put("db", "digest", object())  # type: ignore[arg-type]
    # when
    restore_hooks.start_clean()
    # then: the engine's pool is a new, empty one; the snapshot's connection is never handed out again
    assert engine.pool is not pool and cast("QueuePool", engine.pool).checkedin() == 0
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is not snapshotted
    assert forget_deps() is None
    assert auth.verified_keys.get("db", "digest") is None


def test_api_after_restore_the_next_request_builds_fresh_deps(
    api_deps: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = get_deps()
    restore_hooks.start_clean()
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCH_DATABASE_URL", f"sqlite:///{tmp_path / 'api.db'}")
    after = get_deps()
    assert after is not before and after.db is not before.db
    set_deps(None)


# -- the bot consumer -------------------------------------------------------------------------------


def test_bot_warm_builds_no_runtime_and_restore_closes_one_built_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.telegram_bot import handler
    from functions.telegram_bot import restore_hooks as bot_hooks

    class Runtime:
        closed = False

        def close(self) -> None:
            self.closed = True

    built: list[Runtime] = []

    def build() -> Runtime:
        built.append(Runtime())
        return built[-1]

    monkeypatch.setattr(handler.container, "_build", build)
    monkeypatch.setattr(handler.container, "_close", Runtime.close)
    bot_hooks.warm()
    assert built == []  # no token read, no loop, no session in the snapshot
    runtime = handler.get_runtime()
    bot_hooks.start_clean()
    assert runtime.closed is True  # type: ignore[attr-defined]
    assert handler.get_runtime() is not runtime
    handler.reset()
