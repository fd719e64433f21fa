"""The OpenAPI document, generated from the code: `python -m functions.api.openapi > docs/openapi.json`.

The checked-in copy is compared with the code in the test suite, so an API change shows up in review.

Routes declare their success codes (and what a 409 or 410 means for them); `declare_error_responses`
adds the answers every route can give, all with the `ErrorBody` schema, so a client (or schemathesis)
finds each status the API can return in the document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from shared.contracts.api import ErrorBody

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import Route

BEARER = "bearerAuth"
SECURITY_SCHEMES = {
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
    503: "The database is unreachable, or its schema is behind this code",
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
ERRORS_OF_A_PUBLIC_ROUTE = {404: "No route", 422: ERRORS_OF_EVERY_ROUTE[422], 500: ERRORS_OF_EVERY_ROUTE[500]}


def declare_error_responses(routes: Iterable[Route], public_paths: frozenset[str]) -> None:
    """Give every route its error responses (ErrorBody) next to the success codes it declares.

    Runs before the first request or document, while routes have not built their dependant yet
    (the dependant collects the response models).
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


def document() -> dict[str, object]:
    from functions.api.handler import OPENAPI_INFO, app

    return json.loads(app.get_openapi_json_schema(**OPENAPI_INFO))  # type: ignore[no-any-return]


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
