"""Responses go out as JSON in one pass (`handler._OnePassResponses`): the same bytes as Powertools' own two
passes (`dump_python(mode="json")`, then the resolver's serializer), for models with times, JSON columns and
non-ASCII text; a route whose return value is not its annotated model still goes Powertools' way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIResponseValidationMiddleware,
)

from functions.api import handler
from functions.api.handler import lambda_handler
from shared.apigw import http_api_event
from tests.api_support import ADMIN_KEY, ApiHarness


def _raw(api: ApiHarness, method: str, path: str, body: str | None = None) -> tuple[int, str]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {ADMIN_KEY}"}
    result = lambda_handler(http_api_event(method, path, {}, headers, body), None, deps=api.deps)
    return int(result["statusCode"]), str(result.get("body") or "")


def test_the_resolver_uses_the_one_pass_middleware() -> None:
    """Powertools builds each route's middleware stack from this attribute (pinned to its version)."""
    assert type(handler.app._response_validation_middleware) is handler._OnePassResponses


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/projects", None),
        ("GET", "/projects/blog", None),
        ("PATCH", "/projects/blog", '{"description": "ещё ✓ \\"quoted\\""}'),
        ("GET", "/tasks", None),
        ("GET", "/me", None),
    ],
)
def test_the_bytes_are_the_ones_powertools_two_passes_gave(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: str | None
) -> None:
    assert (
        api.post("/projects", {"name": "blog", "description": "ünïcode ✓", "modules": ["backend"]}).status
        == 201
    )
    assert api.post("/projects/blog/engineering", {"spec": "x ✓"}).status == 202
    taken: list[type] = []
    one_pass: Callable[..., Any] = handler._OnePassResponses._serialize_response_with_validation

    def spying(self: Any, **options: Any) -> Any:
        out = one_pass(self, **options)
        taken.append(type(out))
        return out

    monkeypatch.setattr(handler._OnePassResponses, "_serialize_response_with_validation", spying)
    status, ours = _raw(api, method, path, body)
    assert status == 200, ours
    assert taken == [str], "the model went out as JSON text"
    monkeypatch.setattr(
        handler._OnePassResponses,
        "_serialize_response_with_validation",
        OpenAPIResponseValidationMiddleware._serialize_response_with_validation,
    )
    if method == "PATCH":  # the same change again: the same answer but for the update time
        return
    assert _raw(api, method, path, body) == (status, ours)
