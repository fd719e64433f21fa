"""What a worker reaches with its own token (issue 20): only the secret references its job names, only its
own conversation's session (through the API, or a presigned S3 URL really used against moto), and a person
has at most ORCH_LIMIT_WORKERS_PER_USER live workers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

import shared.sessions.port as session_port
from functions.api.handler import lambda_handler
from shared.api_client import ApiClient, ApiError
from shared.apigw import LambdaTransport
from tests.api_support import ApiHarness, install

PO = "product_owner"


def _task(api: ApiHarness, key: str, project: str) -> str:
    person = api.as_key(key)
    person.new_project(project)
    return str(person.post(f"/projects/{project}/engineering", {"spec": "x"}).body["id"])


def _record(api: ApiHarness, worker_id: str, task_id: str | None, config: dict[str, Any]) -> Any:
    return api.post(
        "/internal/workers", {"id": worker_id, "agent": "command", "task_id": task_id, "config": config}
    )


def _token(api: ApiHarness, worker_id: str) -> str:
    reply = api.post(f"/internal/workers/{worker_id}/token", {})
    assert reply.status == 201, reply
    return str(reply.body["token"])


def _client(token: str) -> ApiClient:
    return ApiClient("http://api.local", token, transport=LambdaTransport(lambda e, c: lambda_handler(e, c)))


def _po_config(user_id: str, env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    context = {"role": PO, "user_id": user_id, "session_key": f"po/{user_id}"}
    return {"agent": "command", "context": context, "env_vars": env_vars or {}}


# -- secrets ------------------------------------------------------------------------------------


def test_a_worker_resolves_exactly_the_references_its_job_names(api: ApiHarness) -> None:
    alice, alice_key = api.new_user("alice", telegram_id=1)
    bob, _ = api.new_user("bob", telegram_id=2)
    task = _task(api, alice_key, "alices")
    project_id = api.as_key(alice_key).get("/projects/alices").body["id"]
    assert (
        api.as_key(alice_key).put("/projects/alices/secrets/TOKEN", {"value": "project-value"}).status == 200
    )
    secrets = api.deps.secrets
    secrets.put("secret://agents/github", "gh-value")
    secrets.put(f"secret://po/{alice['id']}/api_key", "alice-po-key")
    secrets.put(f"secret://po/{bob['id']}/api_key", "bob-po-key")
    project_ref = f"secret://projects/{project_id}/TOKEN"
    env = {"GITHUB_TOKEN": "secret://agents/github", "APP_TOKEN": project_ref, "PLAIN": "not-a-ref"}
    assert _record(api, "w-a", task, {"agent": "command", "env_vars": env}).status == 201
    assert (
        _record(
            api, "po-a", None, _po_config(alice["id"], {"ORCH_API_KEY": f"secret://po/{alice['id']}/api_key"})
        ).status
        == 201
    )

    worker = _client(_token(api, "w-a"))
    assert worker.resolve_worker_secrets("w-a", ["secret://agents/github"]) == {
        "secret://agents/github": "gh-value"
    }
    for refused in (
        project_ref,
        f"secret://po/{bob['id']}/api_key",
        "secret://agents/other",
        "secret://local/admin",
    ):
        with pytest.raises(ApiError) as caught:
            worker.resolve_worker_secrets("w-a", ["secret://agents/github", refused])
        assert caught.value.status == 403 and caught.value.fields == ["refs"] and refused in str(caught.value)
    with pytest.raises(ApiError) as caught:
        worker.resolve_worker_secrets("po-a", [f"secret://po/{alice['id']}/api_key"])
    assert caught.value.status == 403, "another worker's references: refused"

    po = _client(_token(api, "po-a"))
    mine = f"secret://po/{alice['id']}/api_key"
    assert po.resolve_worker_secrets("po-a", [mine]) == {mine: "alice-po-key"}
    with pytest.raises(ApiError) as caught:
        po.resolve_worker_secrets("po-a", [f"secret://po/{bob['id']}/api_key"])
    assert caught.value.status == 403
    service = api.post("/internal/workers/w-a/secrets", {"refs": ["secret://agents/github"]})
    assert service.status == 403, "not even the service resolves through a worker's route"
    assert api.as_key(_token(api, "w-a")).post("/internal/workers/w-a/secrets", {"refs": []}).body[
        "fields"
    ] == ["refs"]


def test_a_named_reference_without_a_value_is_a_404_naming_it(api: ApiHarness) -> None:
    _, alice_key = api.new_user("alice", telegram_id=1)
    task = _task(api, alice_key, "alices")
    _record(api, "w-a", task, {"agent": "command", "env_vars": {"GITHUB_TOKEN": "secret://agents/missing"}})
    reply = api.as_key(_token(api, "w-a")).post(
        "/internal/workers/w-a/secrets", {"refs": ["secret://agents/missing"]}
    )
    assert reply.status == 404 and reply.body["fields"] == ["refs"]


# -- sessions -----------------------------------------------------------------------------------


def _po_workers(api: ApiHarness) -> tuple[str, str]:
    alice, _ = api.new_user("alice", telegram_id=1)
    bob, bob_key = api.new_user("bob", telegram_id=2)
    _record(api, "po-a", None, _po_config(alice["id"]))
    _record(api, "po-b", None, _po_config(bob["id"]))
    _record(api, "w-b", _task(api, bob_key, "bobs"), {"agent": "command"})
    return alice["id"], bob["id"]


def test_a_worker_loads_and_saves_only_its_own_session_through_the_api(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_id, _ = _po_workers(api)
    po = _client(_token(api, "po-a"))
    assert po.worker_session_access("po-a", "load").url == "/internal/workers/po-a/session/archive"
    assert po.load_worker_session("po-a") is None
    po.save_worker_session("po-a", b"\x1f\x8b archive")
    assert po.load_worker_session("po-a") == b"\x1f\x8b archive"
    assert api.deps.sessions.load(f"po/{alice_id}") == b"\x1f\x8b archive"

    for other in ("po-b", "w-b"):
        for method, path, body in (
            ("POST", f"/internal/workers/{other}/session", {"op": "load"}),
            ("GET", f"/internal/workers/{other}/session/archive", None),
            ("PUT", f"/internal/workers/{other}/session/archive", {"data_b64": "eA=="}),
        ):
            assert api.as_key(_token(api, "po-a")).call(method, path, body).status == 403, (method, path)
    assert api.post("/internal/workers/po-a/session", {"op": "load"}).status == 403, (
        "the service has no business here"
    )
    no_session = api.as_key(_token(api, "w-b")).post("/internal/workers/w-b/session", {"op": "save"})
    assert no_session.status == 404 and "no conversation session" in no_session.body["message"]

    token = _token(api, "po-a")
    bad = api.as_key(token).put("/internal/workers/po-a/session/archive", {"data_b64": "not base64!"})
    assert bad.status == 422 and bad.body["fields"] == ["data_b64"]
    monkeypatch.setattr(session_port, "MAX_SESSION_BYTES", 4)
    too_big = api.as_key(token).put("/internal/workers/po-a/session/archive", {"data_b64": "eHh4eHh4"})
    assert too_big.status == 413 and too_big.body["fields"] == ["data_b64"]


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_an_s3_session_travels_by_presigned_urls_for_exactly_that_object(
    api: ApiHarness, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = api.deps.settings.model_copy(
        update={"session_bucket": "sessions-test", "aws_endpoint_url": moto_s3, "aws_region": "us-east-1"}
    )
    api = install(dataclasses.replace(api.deps, settings=settings))
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_s3)
    s3.create_bucket(Bucket="sessions-test")
    alice_id, _ = _po_workers(api)
    po = _client(_token(api, "po-a"))

    access = po.worker_session_access("po-a", "save")
    assert access.url.startswith(f"{moto_s3}/sessions-test/sessions/po/{alice_id}.tar.gz?")
    assert "X-Amz-Signature=" in access.url and "X-Amz-Expires=900" in access.url
    assert access.headers["x-amz-server-side-encryption"] == "AES256"
    sent: list[tuple[str, bool]] = []
    real_send = httpx.Client.send

    def spy(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if str(request.url).startswith(moto_s3):
            sent.append((request.method, "authorization" in request.headers))
        return real_send(client, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", spy)
    assert po.load_worker_session("po-a") is None
    po.save_worker_session("po-a", b"\x1f\x8b s3 archive")
    stored = s3.get_object(Bucket="sessions-test", Key=f"sessions/po/{alice_id}.tar.gz")
    assert stored["Body"].read() == b"\x1f\x8b s3 archive" and stored["ServerSideEncryption"] == "AES256"
    assert po.load_worker_session("po-a") == b"\x1f\x8b s3 archive"
    assert sent == [("GET", False), ("PUT", False), ("GET", False)], "straight to S3, never with the token"
    assert (
        api.as_key(_token(api, "po-a")).post("/internal/workers/po-b/session", {"op": "load"}).status == 403
    )


# -- the per-person cap -------------------------------------------------------------------------


def test_a_person_has_at_most_the_limit_of_live_workers(api: ApiHarness) -> None:
    alice, alice_key = api.new_user("alice", telegram_id=1)
    _, bob_key = api.new_user("bob", telegram_id=2)
    task = _task(api, alice_key, "alices")
    assert api.deps.settings.limit_workers_per_user == 4
    assert _record(api, "po-a", None, _po_config(alice["id"])).status == 201, "her Product Owner counts"
    for n in range(3):
        assert _record(api, f"w-{n}", task, {"agent": "command"}).status == 201
    refused = _record(api, "w-3", task, {"agent": "command"})
    assert refused.status == 429 and refused.body["fields"] == ["workers_per_user"]
    assert "ORCH_LIMIT_WORKERS_PER_USER" in refused.body["message"]
    assert _record(api, "w-0", task, {"agent": "command"}).status == 200, "a redelivery is not a new worker"
    assert _record(api, "w-b", _task(api, bob_key, "bobs"), {"agent": "command"}).status == 201, "bob's own"
    assert _record(api, "w-admin", _task(api, api.key, "admins"), {"agent": "command"}).status == 201
    assert api.post("/internal/workers/w-0/stopped", {"reason": "done"}).status == 200
    assert _record(api, "w-3", task, {"agent": "command"}).status == 201, "an ended worker frees its place"
