"""The API: API Gateway HTTP API (payload v2) -> Powertools resolver -> one Router per resource.

Cold start imports only Powertools' resolver, pydantic and the settings: no SQLAlchemy, no router, no
contract model, no OpenAPI model (and no langgraph, aiogram, copier or ansible: a test enforces it). A
request includes the routers that serve its path's first segment (`ROUTERS_BY_SEGMENT`) before it is
resolved, so `GET /projects` loads the project routes and the ORM, never the workers' or the OpenAPI
document's models; `/openapi.json` and `/docs` include every router and configure the document first.
Routes keep the order an eager registration gives them (routers in `ROUTERS` order), whatever order
requests load them in, so which route answers a path never depends on what was asked before.
"""

from __future__ import annotations

import base64
import importlib
import re
import threading
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIResponseValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
    ResponseValidationError,
)
from pydantic import BaseModel
from pydantic_core import to_json

from functions.api import request_guard, restore_hooks
from functions.api.errors import (
    ApiError,
    DatabaseWaking,
    PayloadTooLarge,
    SchemaOutOfDate,
    Unauthorized,
    Unavailable,
)
from shared.handler_shell import lambda_entry
from shared.observability import correlation, get_logger
from shared.sessions.port import MAX_SESSION_BYTES

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from functions.api import auth
    from functions.api.deps import ApiDeps

DROPPED_CONNECTION_RETRY_AFTER_S = 1
"""`Retry-After` when the database connection dropped under a request (the pool reconnects at once)."""
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs"})
DOCUMENT_PATHS = frozenset({"/openapi.json", "/docs"})
"""Served once every router is included and the document configured."""

ROUTERS: tuple[str, ...] = tuple(
    "health projects tasks servers secrets users internal workers maintenance deployments releases sync spend "
    "gates news notices".split()
)
"""`functions.api.routers.<name>`, in the order their routes are matched."""

ROUTERS_BY_SEGMENT: dict[str, tuple[str, ...]] = {
    "health": ("health",),
    "projects": ("projects", "secrets", "deployments", "releases"),
    "tasks": ("tasks", "gates"),
    "servers": ("servers", "releases"),
    "users": ("users",),
    "api-keys": ("users",),
    "me": ("users",),
    "workers": ("workers",),
    "deployments": ("deployments",),
    "incidents": ("sync",),
    "budgets": ("spend",),
    "usage": ("spend",),
    "internal": (
        "servers",
        "internal",
        "workers",
        "maintenance",
        "deployments",
        "releases",
        "sync",
        "spend",
        "gates",
        "news",
        "notices",
    ),
}
"""Which routers have a route under each first path segment (a test compares it with the routers' routes):
a path whose segment is not here has no route (404 `no_route`, as before, after authentication)."""


def _json(body: Any) -> str:
    """Response bodies to JSON in Rust (pydantic-core), not `json.dumps`: the resolver's response validation
    has already turned the route's models into plain JSON values (pydantic does not validate our model
    instances again, it only serializes them), so this is the last pass over a 300-row list and took as long
    as building it. Non-ASCII text goes out as UTF-8 instead of `\\u` escapes: the same JSON."""
    return to_json(body).decode()


class _PerThreadResolver(APIGatewayHttpResolver):
    """Powertools keeps a request's state on the resolver (`context`: the route, its path arguments, our
    principal) and class-wide on `BaseRouter` (`current_event`, `lambda_context`): one request at a time,
    as a Lambda container takes them. Here that state is per thread, so the embedded stack's HTTP server
    resolves several requests at once (`cli.local.http.API_CONCURRENCY`); in AWS nothing changes.
    `resolve` is Powertools' own without its class-wide assignments (a test pins both to this version)."""

    _request = threading.local()

    @property
    def current_event(self) -> Any:
        return self._request.current_event

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._request.current_event = value

    @property
    def lambda_context(self) -> Any:
        return getattr(self._request, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._request.lambda_context = value

    @property
    def context(self) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self._request.context
        except AttributeError:
            found = self._request.context = {}
        return found

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._request.context = value

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        self.current_event = self._to_proxy_event(cast("dict[str, Any]", event))
        self.lambda_context = context
        try:
            return self._build_response(self._resolve())
        finally:
            self.context.clear()  # what Powertools' clear_context does


class _OnePassResponses(OpenAPIResponseValidationMiddleware):
    """Powertools checks a route's return value against its annotation, turns it into plain JSON values
    (`dump_python(mode="json")`), and the resolver's serializer (`_json`) writes those out: two passes over
    every response, a fifth of a 300-project listing's CPU. A value that already is the annotated model (all
    our routes return one: pydantic would not validate it again) goes out as JSON text in one pass
    (`dump_json`), which the resolver sends as it is; the same bytes. Anything else goes Powertools' way."""

    def _serialize_response_with_validation(
        self, *, field: Any, response_content: Any, **options: Any
    ) -> Any:
        plain = not options.get("include") and not options.get("exclude")
        if plain and type(response_content) is field.type_ and isinstance(response_content, BaseModel):
            return field._type_adapter.dump_json(response_content, by_alias=True).decode()
        return super()._serialize_response_with_validation(
            field=field, response_content=response_content, **options
        )


app = _PerThreadResolver(enable_validation=True, serializer=_json)
app._response_validation_middleware = _OnePassResponses(
    validation_serializer=_json, has_response_validation_error=app._has_response_validation_error
)


def _error(
    status: int,
    code: str,
    message: str,
    fields: list[str] | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    from shared.contracts.dto import ErrorBody

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
        get_logger().error(
            "response failed its own schema", extra={"errors": [str(e) for e in exc.errors()][:5]}
        )
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
    get_logger().error("response failed its own schema", extra={"errors": [str(e) for e in exc.errors()][:5]})
    return _error(500, "internal_error", "internal error: the response did not match its schema")


@app.not_found
def _not_found(exc: Exception) -> Response[Any]:
    event = app.current_event
    return _error(404, "no_route", f"no route for {event.http_method} {event.path}")


def _unexpected(exc: Exception) -> Response[Any]:
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy: the database connection dropped
        get_logger().warning("the database connection dropped during the request", exc_info=exc)
        return _error(
            Unavailable.status,
            Unavailable.code,
            "the database connection dropped; try again",
            headers={"Retry-After": str(DROPPED_CONNECTION_RETRY_AFTER_S)},
        )
    get_logger().exception("unhandled error")
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
    from functions.api import auth
    from functions.api.db import schema_serves
    from functions.api.migrations import HEAD_REVISION

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
                    get_logger().info("bootstrapped the first admin user")
        deps.schema_ok = True


def _authenticate(event: dict[str, Any], headers: dict[str, str]) -> auth.Principal | None:
    """Before routing, so a caller without a key learns nothing about a route's body schema."""
    if event.get("rawPath") in PUBLIC_PATHS:
        return None
    from functions.api import auth, worker_tokens
    from functions.api.deps import get_deps

    deps = get_deps()
    _ensure_ready(deps)
    token = auth.bearer_token(headers.get("authorization"))
    if worker_tokens.is_worker_token(token):
        with deps.db.session() as session:
            return worker_tokens.authenticate(session, token)
    known = auth.known_key(deps.db.engine, token)
    if known is not None:
        return known
    with deps.db.session() as session:
        return auth.authenticate(session, token)


def _error_result(exc: ApiError) -> dict[str, Any]:
    from shared.contracts.dto import ErrorBody

    body = ErrorBody(code=exc.code, message=exc.message, fields=exc.fields)
    return {
        "statusCode": exc.status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **_retry_after(exc)},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


_routes_lock = threading.Lock()
_included: set[str] = set()
_rank: dict[int, tuple[int, int]] = {}
"""id(route) -> (its router's place in ROUTERS, its place among that router's routes): the eager order."""
_document_ready = False


def _include(names: set[str]) -> None:
    """Include the named routers not included yet, complete their routes' responses and restore the order."""
    from functions.api import openapi

    for name in ROUTERS:
        if name not in names or name in _included:
            continue
        before = {id(route) for route in app._static_routes + app._dynamic_routes}
        app.include_router(importlib.import_module(f"functions.api.routers.{name}").router)
        added = [route for route in app._static_routes + app._dynamic_routes if id(route) not in before]
        openapi.complete_responses(added, PUBLIC_PATHS)
        _rank.update({id(route): (ROUTERS.index(name), n) for n, route in enumerate(added)})
        _included.add(name)
    _restore_order()


def _restore_order() -> None:
    """New sorted lists, not sorted in place: a request resolving in another thread reads them meanwhile
    (an in-place sort empties a list while it runs)."""
    last = (len(ROUTERS), 0)  # routes of the app itself (the document's) come after every router's
    app._static_routes = sorted(app._static_routes, key=lambda route: _rank.get(id(route), last))
    app._dynamic_routes = sorted(app._dynamic_routes, key=lambda route: _rank.get(id(route), last))


def include_routes_for(path: str) -> None:
    """Make the routes that may answer `path` resolvable: its segment's routers, or everything (and the
    OpenAPI document) for /openapi.json and /docs. Thread-safe; a no-op once they are in."""
    if path in DOCUMENT_PATHS:
        if not _document_ready:
            include_everything()
        return
    segment = path.split("/", 2)[1] if path.startswith("/") else ""
    wanted = set(ROUTERS_BY_SEGMENT.get(segment, ()))
    if wanted <= _included:
        return
    with _routes_lock:
        _include(wanted)


def include_everything() -> None:
    """Every router, the document's configuration (security schemes, links between operations), /docs and
    /openapi.json: what the document needs, and what a SnapStart snapshot should hold."""
    global _document_ready
    if _document_ready:
        return
    with _routes_lock:
        if _document_ready:
            return
        from functions.api import openapi

        _include(set(ROUTERS))
        openapi.link_created_resources(app._static_routes + app._dynamic_routes)
        title, version = openapi_title_and_version()
        app.configure_openapi(
            title=title,
            version=version,
            security_schemes=openapi.security_schemes(),
            security=openapi.SECURITY,
        )
        app.enable_swagger(path="/docs", title=title, version=version)
        app.get("/openapi.json", include_in_schema=False)(_openapi_json)
        _restore_order()
        _document_ready = True


def openapi_title_and_version() -> tuple[str, str]:
    from functions.api.routers import health

    return "codegen-orchestrator API", health.VERSION


def _openapi_json() -> Response[Any]:
    title, version = openapi_title_and_version()
    return Response(
        200, content_types.APPLICATION_JSON, app.get_openapi_json_schema(title=title, version=version)
    )


def _routed_path(event: dict[str, Any]) -> str:
    """The path the resolver matches (the raw path without a named stage), as Powertools reads it."""
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    try:
        return APIGatewayProxyEventV2(event).path
    except (KeyError, TypeError, AttributeError):
        return str(event.get("rawPath") or "")


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
    from functions.api.deps import get_deps

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
            get_logger().exception("authentication failed unexpectedly")
            return _error_result(Unavailable("the database is not reachable right now; try again shortly"))
        refused = request_guard.check(event, headers)
        if refused is not None:
            return _error_result(refused)
        include_routes_for(_routed_path(event))
        app.context.clear()
        if caller is not None:
            app.context.update(principal=caller)  # what append_context does, typed
        result = app.resolve(event, cast("LambdaContext", context))  # None in the embedded stack
        if int(result.get("statusCode", 200)) in (204, 304):
            result["body"] = ""  # no body may follow these; a stray "null" would corrupt keep-alive streams
        return result


restore_hooks.register()  # SnapStart in AWS: warm before the snapshot, start clean after each restore
