"""The API's repo-sync endpoint (github_sync reports through it): compare-and-set on the missing flag,
one incident per flip, service scope only."""

from __future__ import annotations

from typing import Any

import pytest

from functions.api.auth import Principal
from functions.api.routers import sync as sync_router
from shared.contracts.api import RepoSync
from tests.api_support import ApiHarness
from tests.factories import race

SERVICE = Principal(
    user_id="svc", telegram_id=None, is_admin=False, scopes=frozenset({"service"}), key_id="k"
)


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("syncer", scopes=["service"])
    return api.as_key(key)


def test_repo_sync_flags_a_vanished_repository_once_under_overlap(
    api: ApiHarness, service: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = api.new_project("blog")

    def report(missing: bool) -> Any:
        return service.post(
            f"/internal/projects/{project['id']}/repo-sync", {"missing": missing, "head": "abc"}
        )

    assert report(False).body["changed"] is False
    # four overlapping reporters, straight through the route (the HTTP resolver is one request at a time)
    monkeypatch.setattr(sync_router, "principal", lambda _router: SERVICE)
    results = race(4, lambda _i: sync_router.repo_sync(project["id"], RepoSync(missing=True)))
    monkeypatch.undo()
    assert sum(r.changed for r in results) == 1, results
    shown = api.get(f"/projects/{project['id']}").body
    assert shown["repo_missing"] is True and shown["repo_head"] is None
    assert [i["kind"] for i in api.get("/incidents").body] == ["repo_missing"]
    assert report(False).body["changed"] is True
    assert [i["kind"] for i in api.get("/incidents").body] == ["repo_back", "repo_missing"]
    assert api.as_key(api.new_user("bob")[1]).get("/incidents").body == []  # not bob's
    user_key = api.new_user("carol")[1]
    assert api.as_key(user_key).post(f"/internal/projects/{project['id']}/repo-sync", {}).status == 403
