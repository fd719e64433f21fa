"""The checked-in OpenAPI document matches the code (regenerate: python -m functions.api.openapi > docs/openapi.json)."""

from __future__ import annotations

import json
from pathlib import Path

from functions.api.openapi import document

CHECKED_IN = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_openapi_document_is_current() -> None:
    assert json.loads(CHECKED_IN.read_text()) == json.loads(json.dumps(document())), (
        "the API changed: run `python -m functions.api.openapi > docs/openapi.json` and commit it"
    )


def test_every_route_has_a_summary_and_a_tag() -> None:
    paths = document()["paths"]
    assert isinstance(paths, dict)
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert operation.get("tags"), f"{method.upper()} {path} has no tag"


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}
PUBLIC = {"/health"}


def _operations() -> list[tuple[str, str, dict[str, object]]]:
    paths = document()["paths"]
    assert isinstance(paths, dict)
    return [(path, method, op) for path, ops in paths.items() for method, op in ops.items()]


def test_the_bearer_scheme_is_declared_and_required_except_on_public_routes() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {  # type: ignore[index]
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],  # type: ignore[index]
    }
    assert doc["security"] == [{"bearerAuth": []}]
    assert document()["paths"]["/health"]["get"]["security"] == [{}]  # type: ignore[index]


def test_every_error_response_has_the_error_schema() -> None:
    for path, method, op in _operations():
        for code, response in op["responses"].items():  # type: ignore[attr-defined]
            if int(code) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == ERROR_SCHEMA, f"{method.upper()} {path} declares {code} with {schema}"


def test_every_status_an_operation_can_return_is_declared() -> None:
    for path, method, op in _operations():
        codes = set(op["responses"])  # type: ignore[call-overload]
        wanted = {"404", "422", "500"}
        if path not in PUBLIC:
            wanted |= {"401", "403", "503"}
            if method in ("post", "put", "patch"):
                wanted |= {"400", "413", "415"}
            if method in ("post", "put", "patch", "delete"):
                wanted |= {"409", "429"}
        assert wanted <= codes, f"{method.upper()} {path} does not declare {sorted(wanted - codes)}"


def test_routes_with_several_success_codes_declare_each() -> None:
    paths = document()["paths"]
    assert {"200", "201"} <= set(paths["/servers/{handle}/ports"]["post"]["responses"])  # type: ignore[index]
    assert {"200", "201"} <= set(paths["/internal/workers"]["post"]["responses"])  # type: ignore[index]
    next_message = paths["/internal/workers/{worker_id}/messages/next"]["post"]["responses"]  # type: ignore[index]
    assert {"200", "204", "410"} <= set(next_message)


def test_creating_routes_link_what_they_return_to_the_routes_that_take_it() -> None:
    paths = document()["paths"]
    links = paths["/projects"]["post"]["responses"]["201"]["links"]  # type: ignore[index]
    get_project = paths["/projects/{project_id}"]["get"]["operationId"]  # type: ignore[index]
    assert links[get_project]["parameters"] == {"project_id": "$response.body#/id"}
    started = paths["/projects/{project_id}/engineering"]["post"]["responses"]["202"]["links"]  # type: ignore[index]
    claim = paths["/internal/tasks/{task_id}/claim"]["post"]["operationId"]  # type: ignore[index]
    assert started[claim]["parameters"] == {"task_id": "$response.body#/id"}
