"""The shared typed client against the real handler (through an in-process Lambda transport)."""

from __future__ import annotations

import pytest

from functions.api.handler import lambda_handler
from shared.api_client import ApiClient, ApiUnreachable, AuthError, ConflictError, NotFoundError
from shared.apigw import LambdaTransport
from shared.contracts.api import TaskStatus
from tests.api_support import ADMIN_KEY, ApiHarness


def _client(key: str | None = ADMIN_KEY) -> ApiClient:
    return ApiClient("http://api.local", key, transport=LambdaTransport(lambda e, c: lambda_handler(e, c)))


def test_client_round_trips_dtos(api: ApiHarness) -> None:
    with _client() as client:
        assert client.health().database == "ok"
        project = client.create_project("blog", "a blog", ["backend", "telegram"])
        assert client.get_project("blog").id == project.id
        task = client.start_engineering("blog", "build it", agent="command")
        assert task.status is TaskStatus.QUEUED
        claimed = client.claim_task(task.id, worker="test")
        assert claimed.status is TaskStatus.RUNNING
        client.append_events(task.id, [{"type": "progress", "message": "half", "progress_pct": 50}])
        assert [e.type for e in client.task_events(task.id)] == ["started", "progress"]
        client.append_events(task.id, [{"type": "progress", "message": f"step {i}"} for i in range(5)])
        latest = client.task_events(task.id, limit=2, latest=True)  # the notifier's one call
        assert [e.message for e in latest] == ["step 3", "step 4"] and latest[0].seq < latest[1].seq
        assert [e.type for e in client.task_events(task.id, limit=2)] == ["started", "progress"]
        done = client.complete_task(task.id, {"status": "success", "commit_sha": "abc"})
        assert done.result == {"status": "success", "commit_sha": "abc", "cost_usd": 0.0}
        assert [t.id for t in client.iter_tasks(project="blog", limit=1)] == [task.id]

        server = client.add_server("localhost", "127.0.0.1")
        assert client.allocate_port(server.handle, project.id).port == 8000
        client.set_secret("blog", "BOT_TOKEN", "v")
        assert [s.name for s in client.list_secrets("blog")] == ["BOT_TOKEN"]
        user = client.add_user("dora", telegram_id=5)
        created = client.create_api_key(user.id, scopes=["user"])
        assert _client(created.key).me().name == "dora"


def test_client_raises_typed_errors(api: ApiHarness) -> None:
    with _client() as client:
        with pytest.raises(NotFoundError, match="project 'nope' not found"):
            client.get_project("nope")
        client.create_project("blog")
        with pytest.raises(ConflictError) as info:
            client.create_project("blog")
        assert info.value.fields == ["name"]
    with pytest.raises(AuthError):
        _client("orch_bad").list_projects()


def test_client_reports_activity_and_lists_workers_by_name(api: ApiHarness) -> None:
    with _client() as client:
        config = {"name": "po-u1", "agent": "command", "reply_queue": "po:responses", "activity_every_s": 4}
        client.record_worker("w-po", "command", status="RUNNING", config=config)
        client.record_worker("w-other", "command", status="STOPPED", config={"name": "po-u1"})
        client.send_worker_message("w-po", "po:m-1", "hello")
        message = client.next_worker_message("w-po")
        assert message is not None

        assert client.worker_message_activity(message.id) is None
        client.worker_message_result(message.id, True, response="hi")
        with pytest.raises(ConflictError, match="not RUNNING"):
            client.worker_message_activity(message.id)

        assert [w.id for w in client.list_workers(name="po-u1", status="CREATED,STARTING,RUNNING")] == [
            "w-po"
        ]
        assert sorted(w.id for w in client.list_workers(name="po-u1")) == ["w-other", "w-po"]
        assert [w.id for w in client.list_workers(status="STOPPED")] == ["w-other"]


def test_unreachable_api_names_the_url() -> None:
    with pytest.raises(ApiUnreachable, match=r"cannot reach the API at http://127.0.0.1:9"):
        ApiClient("http://127.0.0.1:9", "k", timeout=2).list_projects()
