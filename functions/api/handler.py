"""The API: API Gateway HTTP API (payload v2) -> Powertools resolver -> one Router per resource.

Cold start imports only Powertools, pydantic, SQLAlchemy and the routers: no langgraph,
aiogram, copier or ansible (a test enforces it).
"""

from __future__ import annotations

import base64
import re
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_core import to_json

from functions.api import auth, openapi, request_guard, restore_hooks, worker_tokens
from functions.api.db import schema_serves
from functions.api.deps import ApiDeps, get_deps
from functions.api.errors import (
    ApiError,
    DatabaseWaking,
    PayloadTooLarge,
    SchemaOutOfDate,
    Unauthorized,
    Unavailable,
)
from functions.api.migrations import HEAD_REVISION
from functions.api.routers import (
    deployments,
    gates,
    health,
    internal,
    maintenance,
    news,
    notices,
    projects,
    releases,
    secrets,
    servers,
    spend,
    sync,
    tasks,
    users,
    workers,
)
from shared.contracts.api import ErrorBody
from shared.handler_shell import lambda_entry
from shared.observability import correlation, get_logger
from shared.sessions.port import MAX_SESSION_BYTES

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs"})


def _json(body: Any) -> str:
    """Response bodies to JSON in Rust (pydantic-core), not `json.dumps`: the resolver's response validation
    has already turned the route's models into plain JSON values (pydantic does not validate our model
    instances again, it only serializes them), so this is the last pass over a 300-row list and took as long
    as building it. Non-ASCII text goes out as UTF-8 instead of `\\u` escapes: the same JSON."""
    return to_json(body).decode()


app = APIGatewayHttpResolver(enable_validation=True, serializer=_json)
logger = get_logger()


def _error(
    status: int,
    code: str,
    message: str,
    fields: list[str] | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    body = ErrorBody(code=code, message=message, fields=fields or [], details=details or [])
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(),
        headers=headers,
    )


def _retry_after(exc: ApiError) -> dict[str, str]:
    """`Retry-After` for a database still waking up (an Aurora writer resuming from its pause)."""
    return {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, DatabaseWaking) else {}


def _api_error(exc: ApiError) -> Response[Any]:
    return _error(exc.status, exc.code, exc.message, exc.fields, headers=_retry_after(exc) or None)


def _validation_error(exc: RequestValidationError) -> Response[Any]:
    if any(tuple(err.get("loc", ()))[:1] == ("response",) for err in exc.errors()):
        logger.error("response failed its own schema", extra={"errors": [str(e) for e in exc.errors()][:5]})
        return _error(500, "internal_error", "internal error: the response did not match its schema")
    fields, details = [], []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "body"
        name = ".".join(loc[1:]) or where
        if err.get("type") == "json_invalid":
            name = "body"
        fields.append(name)
        details.append(
            {"field": name, "in": where, "type": err.get("type"), "message": err.get("msg", err.get("type"))}
        )
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return _error(
        422, "validation_error", f"invalid request: {summary}", list(dict.fromkeys(fields)), details
    )


def _bad_response(exc: ResponseValidationError) -> Response[Any]:
    logger.error("response failed its own schema", extra={"errors": [str(e) for e in exc.errors()][:5]})
    return _error(500, "internal_error", "internal error: the response did not match its schema")


@app.not_found
def _not_found(exc: Exception) -> Response[Any]:
    event = app.current_event
    return _error(404, "no_route", f"no route for {event.http_method} {event.path}")


def _unexpected(exc: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return _error(
        500, "internal_error", "internal error; the logs have the details under this correlation id"
    )


# Registered by call, not as decorators: Powertools' exception_handler is untyped and would erase the types.
app.exception_handler(ApiError)(_api_error)
app.exception_handler(RequestValidationError)(_validation_error)
app.exception_handler(ResponseValidationError)(_bad_response)
app.exception_handler(Exception)(_unexpected)


def _ensure_ready(deps: ApiDeps) -> None:
    """Bootstrap the first admin and refuse service while the schema is behind the code."""
    if deps.schema_ok:
        return
    with deps.lock:
        if deps.schema_ok:
            return
        revision = deps.db.schema_revision()
        if not schema_serves(revision):  # at this code's head, or ahead of it after a rollback
            raise SchemaOutOfDate(
                f"the database schema is at {revision or 'nothing'}, this API needs {HEAD_REVISION}: "
                "run `orchestrator db upgrade`"
            )
        key = (
            deps.settings.bootstrap_admin_key.get_secret_value()
            if deps.settings.bootstrap_admin_key
            else None
        )
        if key is None and deps.settings.bootstrap_admin_key_ref:
            key = deps.secrets.get(deps.settings.bootstrap_admin_key_ref)
        if key:
            with deps.db.session() as session:
                if auth.bootstrap_admin(session, key):
                    logger.info("bootstrapped the first admin user")
        deps.schema_ok = True


def _authenticate(event: dict[str, Any], headers: dict[str, str]) -> auth.Principal | None:
    """Before routing, so a caller without a key learns nothing about a route's body schema."""
    if event.get("rawPath") in PUBLIC_PATHS:
        return None
    deps = get_deps()
    _ensure_ready(deps)
    token = auth.bearer_token(headers.get("authorization"))
    with deps.db.session() as session:
        if worker_tokens.is_worker_token(token):
            return worker_tokens.authenticate(session, token)
        return auth.authenticate(session, token)


def _error_result(exc: ApiError) -> dict[str, Any]:
    body = ErrorBody(code=exc.code, message=exc.message, fields=exc.fields)
    return {
        "statusCode": exc.status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **_retry_after(exc)},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


for router in (
    health.router,
    projects.router,
    tasks.router,
    servers.router,
    secrets.router,
    users.router,
    internal.router,
    workers.router,
    maintenance.router,
    deployments.router,
    releases.router,
    sync.router,
    spend.router,
    gates.router,
    news.router,
    notices.router,
):
    app.include_router(router)

OPENAPI_TITLE, OPENAPI_VERSION = "codegen-orchestrator API", health.VERSION
app.configure_openapi(
    title=OPENAPI_TITLE,
    version=OPENAPI_VERSION,
    security_schemes=openapi.SECURITY_SCHEMES,
    security=openapi.SECURITY,
)
openapi.complete_responses(app._static_routes + app._dynamic_routes, PUBLIC_PATHS)
app.enable_swagger(path="/docs", title=OPENAPI_TITLE, version=OPENAPI_VERSION)


@app.get("/openapi.json", include_in_schema=False)
def openapi_json() -> Response[Any]:
    return Response(
        200,
        content_types.APPLICATION_JSON,
        app.get_openapi_json_schema(title=OPENAPI_TITLE, version=OPENAPI_VERSION),
    )


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(base64.b64decode(body, validate=False))
    return len(body.encode("utf-8"))


SESSION_ARCHIVE_PATH = re.compile(r"^/internal/workers/[^/]+/session/archive$")
SESSION_ARCHIVE_BODY = (MAX_SESSION_BYTES + 2) // 3 * 4 + 1024
"""A session archive saved through the API (embedded store) is base64 in JSON: its own, larger bound."""


def _body_limit(event: dict[str, Any], default: int) -> int:
    if SESSION_ARCHIVE_PATH.match(str(event.get("rawPath") or "")):
        return max(default, SESSION_ARCHIVE_BODY)
    return default


@lambda_entry
def lambda_handler(
    event: dict[str, Any], context: LambdaContext | None, deps: ApiDeps | None = None
) -> dict[str, Any]:
    """Entry point for API Gateway (HTTP API, payload v2) and for the embedded stack's HTTP server;
    the shell flushes the metrics the request counted."""
    if deps is not None:
        from functions.api.deps import set_deps

        set_deps(deps)
    request_id = (event.get("requestContext") or {}).get("requestId")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    with correlation(headers.get("x-correlation-id") or request_id):
        limit = _body_limit(event, get_deps().settings.max_body_bytes)
        if _body_size(event) > limit:
            return _error_result(PayloadTooLarge(f"request body is larger than {limit} bytes", ["body"]))
        try:
            caller = _authenticate(event, headers)
        except (Unauthorized, SchemaOutOfDate, DatabaseWaking) as exc:
            return _error_result(exc)
        except Exception:
            logger.exception("authentication failed unexpectedly")
            return _error_result(Unavailable("the database is not reachable right now; try again shortly"))
        refused = request_guard.check(event, headers)
        if refused is not None:
            return _error_result(refused)
        app.context.clear()
        if caller is not None:
            app.context.update(principal=caller)  # what append_context does, typed
        result = app.resolve(event, cast(LambdaContext, context))  # None in the embedded stack
        if int(result.get("statusCode", 200)) in (204, 304):
            result["body"] = ""  # no body may follow these; a stray "null" would corrupt keep-alive streams
        return result


restore_hooks.register()  # SnapStart in AWS: warm before the snapshot, start clean after each restore
