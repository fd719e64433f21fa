"""The OpenAPI document, generated from the code: `python -m functions.api.openapi > docs/openapi.json`.

The checked-in copy is compared with the code in the test suite, so an API change shows up in review.
Nothing here is imported at the API's cold start: the handler includes routers as requests need them and
completes their responses then; the document's own models (Powertools' OpenAPI models) load only when
`/openapi.json` or `/docs` is asked for.

Routes declare their success codes (and what a 409 or 410 means for them); `complete_responses`
adds the answers every route can give, all with the `ErrorBody` schema, so a client (or schemathesis)
finds each status the API can return in the document.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any

from shared.contracts.dto import ErrorBody

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme

BEARER = "bearerAuth"


def security_schemes() -> dict[str, SecurityScheme]:
    """The document's security schemes (built when the document is: Powertools' OpenAPI models are ~0.1 s)."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return {
        BEARER: HTTPBearer(
            description="An API key (`orchestrator` CLI: `orchestrator login`), as `Bearer <key>`."
        )
    }


SECURITY: list[dict[str, list[str]]] = [{BEARER: []}]
ANONYMOUS: list[dict[str, list[str]]] = [{}]

ERRORS_OF_EVERY_ROUTE = {
    401: "No API key, or one that is unknown or revoked",
    403: "The key's scope does not allow this operation",
    404: "No such resource (or not yours: the same answer)",
    422: "Validation error: `fields` names the offending parameters",
    500: "Internal error; the logs have the details under the correlation id",
    503: "The database is unreachable, still waking up (`database_waking`, with Retry-After), or its schema "
    "is behind this code",
}
ERRORS_OF_A_BODY = {
    400: "The body is not UTF-8, or its JSON nests too deep",
    413: "The body is larger than the API accepts",
    415: "The body is not application/json",
}
ERRORS_OF_A_CHANGE = {
    409: "Conflicts with the resource's current state",
    429: "A per-person limit is reached: the message names it",
}
CREATES = {
    ("POST", "/projects"): {"project_id": "id"},
    ("POST", "/projects/{project_id}/engineering"): {"task_id": "id"},
    ("POST", "/projects/{project_id}/deploy"): {"task_id": "id"},
    ("POST", "/servers"): {"handle": "handle"},
    ("POST", "/servers/{handle}/ports"): {"port": "port"},
    ("POST", "/users"): {"user_id": "id"},
    ("POST", "/internal/workers"): {"worker_id": "id"},
    ("POST", "/internal/workers/{worker_id}/messages"): {"message_id": "id"},
}
"""What a creating operation's answer identifies: the path parameter it fills, from which body field."""

ERRORS_OF_A_PUBLIC_ROUTE = {404: "No route", 422: ERRORS_OF_EVERY_ROUTE[422], 500: ERRORS_OF_EVERY_ROUTE[500]}


def complete_responses(routes: list[Route], public_paths: frozenset[str]) -> None:
    """Give every route its error responses (ErrorBody) next to the success codes it declares.

    Runs as a router is included, before its routes have built their dependant (the dependant collects the
    response models); `link_created_resources` adds the links once every route is there.
    """
    for route in routes:
        declared: dict[int, Any] = dict(route.responses or {})
        successes = {code: spec for code, spec in declared.items() if code < 400}
        if not successes:
            successes = {route.status_code: {"description": "Successful Response"}}
        if route.path in public_paths:
            route.security = ANONYMOUS
            errors = dict(ERRORS_OF_A_PUBLIC_ROUTE)
        else:
            errors = dict(ERRORS_OF_EVERY_ROUTE)
            if route.method in ("POST", "PUT", "PATCH"):
                errors |= ERRORS_OF_A_BODY
            if route.method in ("POST", "PUT", "PATCH", "DELETE"):
                errors |= ERRORS_OF_A_CHANGE
        errors |= {code: spec.get("description", "") for code, spec in declared.items() if code >= 400}
        route.responses = successes | {
            code: {"description": text, "content": {"application/json": {"model": ErrorBody}}}
            for code, text in sorted(errors.items())
        }


def _path_parameters(openapi_path: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", openapi_path))


def link_created_resources(routes: list[Route]) -> None:
    """OpenAPI links from each creating operation to the operations that take what it created.

    A client sees where an id leads; schemathesis' stateful phase follows them, so it reaches
    the routes behind an id (tasks, workers, messages) with ids that exist. Links live in the success
    responses' specs, which only the document reads: adding them after a route has served is sound.
    """
    for route in routes:
        fills = CREATES.get((route.method, route.openapi_path))
        if not fills or not route.responses:
            continue
        own = _path_parameters(route.openapi_path)
        given = {name: f"$request.path.{name}" for name in own} | {
            name: f"$response.body#/{field}" for name, field in fills.items()
        }
        links = {
            target.operation_id: {
                "operationId": target.operation_id,
                "parameters": {name: given[name] for name in sorted(_path_parameters(target.openapi_path))},
            }
            for target in routes
            if target is not route
            and set(fills) & _path_parameters(target.openapi_path)
            and _path_parameters(target.openapi_path) <= set(given)
        }
        for code, spec in route.responses.items():
            if 200 <= code < 300 and code != 204 and links:
                spec["links"] = links


def document() -> dict[str, object]:
    from functions.api.handler import app, include_everything, openapi_title_and_version

    include_everything()
    title, version = openapi_title_and_version()
    return json.loads(app.get_openapi_json_schema(title=title, version=version))  # type: ignore[no-any-return]


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
