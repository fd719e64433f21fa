"""The session store port (AI agent session archives that outlive a worker), its two adapters and the factory.

    store = build_session_store()        # S3 if ORCH_SESSION_BUCKET is set, else files in ORCH_HOME
    archive = store.load("po/usr_ab12")  # None the first time
    store.save("po/usr_ab12", new_archive)

The factory and its settings (pydantic-settings, ~0.1 s) load on first use, and the adapters
(`shared.sessions.local.LocalSessionStore`, `shared.sessions.s3.S3SessionStore`) only from their own
modules: importing the port or an adapter stays cheap, and nothing here loads boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.sessions.port import (
    MAX_SESSION_BYTES,
    SessionStore,
    SessionTooLarge,
    check_session,
    validate_key,
)

if TYPE_CHECKING:
    from shared.sessions.factory import SessionSettings, build_session_store

_FACTORY_NAMES = frozenset({"SessionSettings", "build_session_store"})

__all__ = [
    "MAX_SESSION_BYTES",
    "SessionSettings",
    "SessionStore",
    "SessionTooLarge",
    "build_session_store",
    "check_session",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    if name in _FACTORY_NAMES:
        from shared.sessions import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
