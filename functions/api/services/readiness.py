"""Whether the process serving the API is ready for work, for `GET /health`.

In AWS the API is ready once it answers: nothing else shares its process. The embedded stack serves
the API while it is still starting (it registers its built-in server through it), then starts the
consumers and writes the CLI's config with the admin key; until it says so, /health reports
`ready: false` with 503, so a script that waits for /health can use the CLI as soon as it answers 200.
"""

from __future__ import annotations

import threading

_ready = threading.Event()
_ready.set()


def mark_starting() -> None:
    """The process serves the API but is not ready for work yet."""
    _ready.clear()


def mark_ready() -> None:
    _ready.set()


def is_ready() -> bool:
    return _ready.is_set()
