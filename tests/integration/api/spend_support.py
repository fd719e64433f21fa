"""What the ledger and budget tests share: a person with a project and a task, a worker for it, and
agent runs answered the way the wrapper answers them (its result dict carries the cost)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Any

from functions.api.handler import lambda_handler
from shared.api_client import ApiClient
from shared.apigw import LambdaTransport
from tests.api_support import ApiHarness

_request_ids = count(1)


@dataclass
class Person:
    user: dict[str, Any]
    key: str
    api: ApiHarness

    @property
    def id(self) -> str:
        return str(self.user["id"])

    def client(self) -> ApiClient:
        return client(self.key)


def client(key: str) -> ApiClient:
    return ApiClient("http://api.local", key, transport=LambdaTransport(lambda e, c: lambda_handler(e, c)))


def person(api: ApiHarness, name: str = "alice") -> Person:
    user, key = api.new_user(name)
    return Person(user, key, api.as_key(key))


def task(owner: Person, project: str = "blog") -> dict[str, Any]:
    """A new engineering task on `project` (created first when the owner has none by that name)."""
    if owner.api.get(f"/projects/{project}").status == 404:
        owner.api.new_project(project)
    reply = owner.api.post(f"/projects/{project}/engineering", {"spec": "build it"})
    assert reply.status in (201, 202), reply
    return reply.body  # type: ignore[no-any-return]


def worker(
    api: ApiHarness, worker_id: str, task_id: str | None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    reply = api.post(
        "/internal/workers",
        {"id": worker_id, "agent": "claude_code", "task_id": task_id, "config": config or {}},
    )
    assert reply.status == 201, reply
    return reply.body  # type: ignore[no-any-return]


def run(api: ApiHarness, worker_id: str, result: dict[str, Any] | None, success: bool = True) -> int:
    """One agent run: a message queued, taken by the wrapper and answered with `result`; its id."""
    sent = api.post(
        f"/internal/workers/{worker_id}/messages", {"request_id": f"r-{next(_request_ids)}", "body": "go"}
    )
    assert sent.status == 201, sent
    taken = api.post(f"/internal/workers/{worker_id}/messages/next")
    assert taken.status == 200 and taken.body["id"] == sent.body["id"], taken
    done = api.post(
        f"/internal/worker-messages/{taken.body['id']}/result",
        {"success": success, "response": "done", "result": result},
    )
    assert done.status == 200, done
    return int(taken.body["id"])


def spent(cost_usd: float, tokens: int = 100, model: str = "sonnet") -> dict[str, Any]:
    """The wrapper's result dict for a run that cost `cost_usd`."""
    return {
        "status": "success",
        "cost_usd": cost_usd,
        "input_tokens": tokens,
        "output_tokens": tokens // 2,
        "cache_tokens": tokens * 3,
        "model": model,
        "agent": "claude_code",
        "duration_ms": 1500,
    }
