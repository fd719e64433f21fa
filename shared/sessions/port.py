"""The session store port: where an AI agent's session archive (tar.gz bytes) waits for the next worker.

A worker is short-lived (a Fargate task in AWS, a subprocess embedded); the agent's conversation
must outlive it. The worker wrapper loads the archive for a key such as `po/<user_id>` before the
agent starts and saves it when the agent stops. Two adapters implement the port: `LocalSessionStore`
(files under ORCH_HOME) and `S3SessionStore` (one object per key); both pass one contract suite
(tests/integration/test_session_store.py) and refuse the same keys and sizes, so code that works
embedded works against AWS.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

MAX_SESSION_BYTES = 64 * 1024 * 1024
"""Refuse bigger archives: a session that large is a runaway agent, and the worker holds it in memory."""

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}){0,4}$")
"""One to five `/`-separated segments of letters, digits, `_`, `.` and `-`, each starting with a letter or
digit: safe as a relative file path (no `..`, no hidden files, no absolute path) and as an S3 key part."""

ARCHIVE_SUFFIX = ".tar.gz"
"""Appended to a key to name its file or object: `po/x` -> `po/x.tar.gz`, so key `po`'s archive
(`po.tar.gz`) and the directory of the `po/...` keys (`po/`) sit side by side."""

MAX_KEY_SEGMENTS = 5
MAX_SEGMENT_LENGTH = 100


class SessionTooLarge(ValueError):
    """Refused rather than truncated: a cut archive would not unpack."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key, self.size, self.limit = key, size, limit
        super().__init__(
            f"session archive for {key} is {size} bytes; the limit is {limit} bytes (not stored)"
        )


def validate_key(key: str) -> str:
    """The key unchanged if both adapters can store it safely; `ValueError` saying what is wrong otherwise."""
    if not isinstance(key, str):
        raise TypeError(f"a session key must be str, not {type(key).__name__}")
    if not key:
        raise ValueError("a session key must not be empty")
    if key.startswith("/"):
        raise ValueError(f"session key {key!r} must be relative (no leading '/')")
    if ".." in key:
        raise ValueError(f"session key {key!r} must not contain '..'")
    segments = key.split("/")
    if "" in segments:
        raise ValueError(f"session key {key!r} has an empty segment ('//' or a trailing '/')")
    if len(segments) > MAX_KEY_SEGMENTS:
        raise ValueError(f"session key {key!r} has {len(segments)} segments; at most {MAX_KEY_SEGMENTS}")
    for segment in segments:
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise ValueError(
                f"session key segment {segment[:20]!r}... is too long "
                f"({len(segment)} characters; at most {MAX_SEGMENT_LENGTH})"
            )
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"session key {key!r} has invalid characters: each '/'-separated segment must start with a "
            "letter or digit and hold only letters, digits, '_', '.' and '-'"
        )
    return key


def check_session(key: str, data: bytes) -> None:
    """What every `save` checks first, so both adapters refuse the same things."""
    validate_key(key)
    if not isinstance(data, bytes):
        raise TypeError(f"session archive for {key} must be bytes, not {type(data).__name__}")
    # Read the module global at call time, so tests can lower the limit instead of allocating 64 MB.
    if len(data) > MAX_SESSION_BYTES:
        raise SessionTooLarge(key, len(data), MAX_SESSION_BYTES)


@runtime_checkable
class SessionStore(Protocol):
    """Session archives by key (`po/<user_id>`); an adapter maps keys to files or objects."""

    def load(self, key: str) -> bytes | None:
        """The archive last saved under `key`, or None if there is none (a first session)."""
        ...

    def save(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous archive at once (never half of one)."""
        ...

    def delete(self, key: str) -> None:
        """Forget the archive under `key`; deleting a missing one is not an error."""
        ...
