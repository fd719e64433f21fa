"""The API's SnapStart hooks (`shared.snapstart`): warm before the snapshot, start clean after each restore.

Before the snapshot: settings are validated, the dependencies built (no database connection: building them
connects nowhere) and `/openapi.json` answered once in process, which runs the resolver, its validation and
every route's models through their first use; a version whose settings do not validate fails to publish.
After a restore: the dependencies are forgotten and every engine's pool emptied without touching its
sockets (a connection in a snapshot is dead in every copy), so the first request builds them anew with a fresh
IAM token; the verified-key cache is dropped (it is per process and must not outlive a copy's start).
Imported by the handler at its cold start, so what the hooks use is imported when they run.
"""

from __future__ import annotations

from shared import snapstart

WARM_PATH = "/openapi.json"
"""Public, answered from the code alone: no key, no database."""


def warm_event(path: str = WARM_PATH) -> dict[str, object]:
    """A minimal API Gateway HTTP API (payload 2.0) GET, as the resolver reads it."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "snapstart.invalid"},
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "snapstart-warm",
            "routeKey": "$default",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def warm() -> None:
    from functions.api.handler import lambda_handler

    result = lambda_handler(warm_event(), None)
    if result.get("statusCode") != 200:
        raise RuntimeError(f"warming {WARM_PATH} before the snapshot answered {result.get('statusCode')}")


def start_clean() -> None:
    from functions.api import auth
    from functions.api.db import dispose_all
    from functions.api.deps import forget_deps

    deps = forget_deps()
    if deps is not None:
        deps.db.engine.dispose(close=False)  # drop the pool's connections without writing to their sockets
    dispose_all()  # any other engine cached per URL
    auth.verified_keys.clear()


def register() -> bool:
    """Register the hooks; hand them to the Lambda runtime when it offers SnapStart (see `shared.snapstart`)."""
    snapstart.on_snapshot(warm)
    snapstart.on_restore(start_clean)
    return snapstart.install()
