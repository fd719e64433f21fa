"""GET /projects pages like GET /tasks (cursor on creation order); the shared client still sees them all."""

from __future__ import annotations

from typing import Any

import pytest

from functions.api.handler import lambda_handler
from shared import api_client
from shared.apigw import LambdaTransport
from shared.contracts.api import PROJECTS_PAGE_MAX
from tests.api_support import ADMIN_KEY, ApiHarness


def _pages(api: ApiHarness, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        reply = api.get("/projects", limit=limit, cursor=cursor)
        assert reply.status == 200, reply
        pages.append([p["name"] for p in reply.body["items"]])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return pages


def test_projects_come_a_page_at_a_time_oldest_first(api: ApiHarness) -> None:
    names = [f"p-{i}" for i in range(7)]
    for name in names:
        api.new_project(name)

    pages = _pages(api, limit=3)

    assert pages == [names[0:3], names[3:6], names[6:7]]
    assert api.get("/projects").body == {"items": api.get("/projects").body["items"], "next_cursor": None}
    assert len(api.get("/projects").body["items"]) == 7, "the default page (50) holds them all"


def test_a_person_pages_through_their_own_projects_only(api: ApiHarness) -> None:
    _, key = api.new_user("alice")
    alice = api.as_key(key)
    api.new_project("admins")
    for name in ("a1", "a2", "a3"):
        assert alice.post("/projects", {"name": name}).status == 201

    assert _pages(alice, limit=2) == [["a1", "a2"], ["a3"]]
    _, key = api.new_user("bob")
    assert api.as_key(key).get("/projects").body == {"items": [], "next_cursor": None}


def test_a_cursor_that_is_not_ours_is_a_422_naming_it(api: ApiHarness) -> None:
    reply = api.get("/projects", cursor="not-a-cursor")
    assert reply.status == 422 and reply.body["fields"] == ["cursor"]
    assert api.get("/projects", limit=0).status == 422
    assert api.get("/projects", limit=PROJECTS_PAGE_MAX + 1).status == 422
    assert api.get("/projects", limit=PROJECTS_PAGE_MAX).status == 200


def test_the_client_follows_the_cursors(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_client, "PROJECTS_PAGE_MAX", 3)  # the client asks for pages of 3
    for i in range(7):
        api.new_project(f"p-{i}")
    asked: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        asked.append(event["rawQueryString"])
        return lambda_handler(event, context)

    with api_client.ApiClient("http://api.local", ADMIN_KEY, transport=LambdaTransport(handler)) as client:
        listed = client.list_projects()
    assert [p.name for p in listed] == [f"p-{i}" for i in range(7)]
    assert len(asked) == 3 and all("limit=3" in query for query in asked)
