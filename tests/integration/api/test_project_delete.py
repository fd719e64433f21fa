"""Deleting a project through the real Lambda handler: refused while it works or runs, then its ports,
secrets (rows and values) and tasks go, its name is free again, and another user's project is not found.
A second undeploy of a stopped project returns the undeploy that stopped it instead of queueing another."""

from __future__ import annotations

from typing import Any

import pytest

from shared.secrets.port import SecretNotFound
from tests.api_support import ApiHarness


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("deployer", scopes=["service"])
    return api.as_key(key)


def _record(service: ApiHarness, project: str, status: str, port: int = 8000) -> None:
    url = f"http://127.0.0.1:{port}"
    reply = service.put(
        f"/internal/deployments/{project}",
        {"server_handle": "local", "port": port, "url": url, "health_url": url + "/health", "status": status},
    )
    assert reply.status == 200, reply


def _finish(api: ApiHarness, task_id: str) -> None:
    assert api.post(f"/internal/tasks/{task_id}/claim", {"worker": "test"}).status == 200
    assert api.post(f"/internal/tasks/{task_id}/complete", {"result": {"status": "success"}}).status == 200


def _deployed_blog(api: ApiHarness, service: ApiHarness) -> dict[str, Any]:
    blog = api.new_project("blog")
    assert api.post("/servers", {"handle": "local", "host": "127.0.0.1"}).status == 201
    assert api.post("/servers/local/ports", {"project_id": blog["id"]}).body["port"] == 8000
    assert api.put("/projects/blog/secrets/BOT_TOKEN", {"value": "s3cret"}).status == 200
    deploy = api.post("/projects/blog/deploy", {"server": "local"}).body
    _finish(api, deploy["id"])
    _record(service, "blog", "deployed")
    return blog


def test_delete_is_refused_while_deployed_or_busy_then_removes_everything(
    api: ApiHarness, service: ApiHarness
) -> None:
    # given a deployed project with a port and a secret
    blog = _deployed_blog(api, service)
    reference = f"secret://projects/{blog['id']}/BOT_TOKEN"

    deployed = api.post("/projects/blog/delete")
    assert deployed.status == 409 and "orchestrator deploy stop blog" in deployed.body["message"]
    undeploy = api.post("/projects/blog/undeploy").body
    busy = api.post("/projects/blog/delete")
    assert busy.status == 409 and undeploy["id"] in busy.body["message"], "the running task is named"
    _finish(api, undeploy["id"])
    _record(service, "blog", "stopped")

    # when
    deleted = api.post("/projects/blog/delete")

    # then
    assert deleted.status == 200, deleted
    assert deleted.body["name"] == "blog" and deleted.body["freed_ports"] == ["local:8000"]
    assert deleted.body["removed_secrets"] == ["BOT_TOKEN"] and deleted.body["deleted_tasks"] == 2
    assert api.get("/projects/blog").status == 404
    assert api.get(f"/tasks/{undeploy['id']}").status == 404
    assert api.get("/servers/local/ports").body == []
    with pytest.raises(SecretNotFound):
        api.deps.secrets.get(reference)
    assert api.post("/projects", {"name": "blog"}).status == 201, "the name is free again"
    assert api.post("/projects/nothing/delete").status == 404


def test_someone_elses_project_is_not_found_and_stays(api: ApiHarness) -> None:
    alice = api.as_key(api.new_user("alice")[1])
    bob = api.as_key(api.new_user("bob")[1])
    alice.new_project("blog")

    assert bob.post("/projects/blog/delete").status == 404
    assert alice.get("/projects/blog").status == 200
    assert api.post("/projects/blog/delete").status == 200, "an admin may delete anyone's"


def test_a_second_undeploy_returns_the_first_and_queues_nothing(api: ApiHarness, service: ApiHarness) -> None:
    _deployed_blog(api, service)
    first = api.post("/projects/blog/undeploy")
    assert first.status == 202
    _finish(api, first.body["id"])
    _record(service, "blog", "stopped")

    again = api.post("/projects/blog/undeploy")

    assert again.status == 200 and again.body["id"] == first.body["id"]
    assert again.body["status"] == "COMPLETED"
    assert len(api.get("/tasks", project_id="blog", type="undeploy").body["items"]) == 1
