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
