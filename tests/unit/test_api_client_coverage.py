"""Every operation of the API (docs/openapi.json) has a typed method on `shared.api_client.ApiClient`.

Each row of CALLS names the method and how to call it; the test calls it against an httpx transport that
records the request and answers 418, and checks the method and path it sent. An operation missing from the
table fails, and so does a row whose method does not exist or sends another request.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.api_client import ApiClient, ApiError
from shared.contracts.api import DeploymentRecord, NotificationRecord, RepoSync
from shared.contracts.spend import BudgetSet, GateRequest

OPENAPI = Path(__file__).parents[2] / "docs" / "openapi.json"

CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "GET /health": ("health", (), {}),
    "GET /me": ("me", (), {}),
    # projects
    "GET /projects": ("list_projects", (), {}),
    "POST /projects": ("create_project", ("blog",), {}),
    "GET /projects/{project_id}": ("get_project", ("blog",), {}),
    "PATCH /projects/{project_id}": ("update_project", ("blog",), {"description": "d"}),
    "DELETE /projects/{project_id}": ("archive_project", ("blog",), {}),
    "POST /projects/{project_id}/delete": ("delete_project", ("blog",), {}),
    "POST /projects/{project_id}/engineering": ("start_engineering", ("blog", "spec"), {}),
    "POST /projects/{project_id}/deploy": ("start_deploy", ("blog", "local"), {}),
    "POST /projects/{project_id}/undeploy": ("start_undeploy", ("blog",), {}),
    "GET /projects/{project_id}/secrets": ("list_secrets", ("blog",), {}),
    "PUT /projects/{project_id}/secrets/{name}": ("set_secret", ("blog", "TOKEN", "v"), {}),
    "DELETE /projects/{project_id}/secrets/{name}": ("delete_secret", ("blog", "TOKEN"), {}),
    "GET /incidents": ("list_incidents", (), {}),
    "POST /internal/projects/{project_id}/repo-sync": ("record_repo_sync", ("blog", RepoSync()), {}),
    # deployments
    "GET /deployments": ("list_deployments", (), {}),
    "GET /projects/{project_id}/deployment": ("get_deployment", ("blog",), {}),
    "PUT /internal/deployments/{project_id}": (
        "record_deployment",
        ("blog", DeploymentRecord(server_handle="local", port=8000, url="http://x", health_url="http://x/h")),
        {},
    ),
    "POST /internal/deployments/{project_id}/health": ("report_health", ("blog", "up"), {}),
    # tasks
    "GET /tasks": ("list_tasks", (), {}),
    "GET /tasks/{task_id}": ("get_task", ("t1",), {}),
    "GET /tasks/{task_id}/events": ("task_events", ("t1",), {}),
    "POST /tasks/{task_id}/cancel": ("cancel_task", ("t1",), {}),
    "POST /tasks/{task_id}/retry": ("retry_task", ("t1",), {}),
    "POST /internal/tasks/{task_id}/claim": ("claim_task", ("t1",), {}),
    "POST /internal/tasks/{task_id}/heartbeat": ("heartbeat", ("t1",), {}),
    "POST /internal/tasks/{task_id}/wait": ("wait_for_input", ("t1", "why"), {}),
    "POST /internal/tasks/{task_id}/resume": ("input_arrived", ("t1",), {}),
    "POST /internal/tasks/{task_id}/complete": ("complete_task", ("t1", {}), {}),
    "POST /internal/tasks/{task_id}/fail": ("fail_task", ("t1", "boom"), {}),
    "POST /internal/tasks/{task_id}/events": ("append_events", ("t1", []), {}),
    "POST /internal/tasks/{task_id}/lease": ("take_lease", ("t1", "me"), {}),
    "DELETE /internal/tasks/{task_id}/lease": ("release_lease", ("t1", "me"), {}),
    "POST /internal/tasks/{task_id}/notification/claim": ("claim_notification", ("t1", "me"), {}),
    "PUT /internal/tasks/{task_id}/notification": (
        "record_notification",
        ("t1", NotificationRecord(holder="me")),
        {},
    ),
    "DELETE /internal/tasks/{task_id}/notification/claim": ("release_notification", ("t1", "me"), {}),
    # workers and their messages
    "POST /internal/workers": ("record_worker", ("w1", "claude"), {}),
    "GET /internal/workers/{worker_id}": ("get_worker", ("w1",), {}),
    "PATCH /internal/workers/{worker_id}": ("update_worker", ("w1", "RUNNING"), {}),
    "POST /internal/workers/{worker_id}/stopped": ("worker_stopped", ("w1", "done"), {}),
    "POST /internal/workers/{worker_id}/messages": ("send_worker_message", ("w1", "r1", "hi"), {}),
    "POST /internal/workers/{worker_id}/messages/next": ("next_worker_message", ("w1",), {}),
    "POST /internal/workers/{worker_id}/token": ("issue_worker_token", ("w1",), {}),
    "POST /internal/workers/{worker_id}/secrets": ("resolve_worker_secrets", ("w1", ["secret://x/y"]), {}),
    "POST /internal/workers/{worker_id}/session": ("worker_session_access", ("w1", "load"), {}),
    "GET /internal/workers/{worker_id}/session/archive": ("get_worker_session_archive", ("w1",), {}),
    "PUT /internal/workers/{worker_id}/session/archive": ("put_worker_session_archive", ("w1", b"x"), {}),
    "POST /internal/worker-messages/{message_id}/result": ("worker_message_result", (1, True), {}),
    "POST /internal/worker-messages/{message_id}/activity": ("worker_message_activity", (1,), {}),
    "GET /workers": ("list_workers", (), {}),
    "GET /workers/{worker_id}/messages": ("list_worker_messages", ("w1",), {}),
    "POST /workers/{worker_id}/stop": ("stop_worker", ("w1",), {}),
    # servers
    "GET /servers": ("list_servers", (), {}),
    "POST /servers": ("add_server", ("local", "127.0.0.1"), {}),
    "GET /servers/{handle}": ("get_server", ("local",), {}),
    "DELETE /servers/{handle}": ("remove_server", ("local",), {}),
    "PATCH /servers/{handle}": ("update_server", ("local",), {"host": "127.0.0.2"}),
    "POST /servers/{handle}/ports": ("allocate_port", ("local", "p1"), {}),
    "GET /servers/{handle}/ports": ("list_ports", ("local",), {}),
    "DELETE /servers/{handle}/ports/{port}": ("free_port", ("local", 8000), {}),
    "DELETE /servers/{handle}/ports": ("free_project_ports", ("local", "p1"), {}),
    # releases
    "GET /projects/{project_id}/releases": ("list_releases", ("blog",), {}),
    "GET /projects/{project_id}/releases/{number}": ("get_release", ("blog", 1), {}),
    "POST /projects/{project_id}/rollback": ("rollback", ("blog",), {"to": 1}),
    "POST /internal/releases": (
        "start_release",
        ("p1", "t1", "a" * 40, "main", "local", "a", 8000),
        {},
    ),
    "POST /internal/releases/{release_id}/finish": ("finish_release", ("r1", "serving"), {}),
    "POST /internal/servers/{handle}/check": ("record_server_check", ("local", "up"), {}),
    "POST /internal/servers/{handle}/recover": ("recover_server", ("local", "recovery:local:1"), {}),
    # users and keys
    "GET /users": ("list_users", (), {}),
    "POST /users": ("add_user", ("alice",), {}),
    "GET /users/{user_id}/api-keys": ("list_api_keys", ("u1",), {}),
    "POST /users/{user_id}/api-keys": ("create_api_key", ("u1",), {}),
    "DELETE /api-keys/{key_id}": ("revoke_api_key", ("k1",), {}),
    # gates (approvals and human reviews)
    "GET /internal/tasks/{task_id}/gate-needed": ("gate_needed", ("t1", "deploy"), {}),
    "POST /internal/tasks/{task_id}/gates": (
        "request_gate",
        ("t1", GateRequest(kind="plan", summary="s")),
        {},
    ),
    "GET /internal/tasks/{task_id}/gates/{kind}/{round}": ("get_gate", ("t1", "plan", 0), {}),
    "POST /internal/gates/expire": ("expire_gates", (), {}),
    "GET /tasks/{task_id}/gates": ("task_gates", ("t1",), {}),
    "POST /tasks/{task_id}/approve": ("approve_task", ("t1",), {}),
    "POST /tasks/{task_id}/reject": ("reject_task", ("t1",), {}),
    "POST /tasks/{task_id}/resume": ("resume_task", ("t1", "use bcrypt"), {}),
    # spend: the ledger and budgets
    "GET /usage": ("usage", (), {"project": "blog", "since": "2026-01-01"}),
    "PUT /budgets": ("set_budget", (BudgetSet(project="blog", usd=1, per="task"),), {}),
    "GET /budgets": ("budgets", (), {"project": "blog"}),
    "DELETE /budgets": ("clear_budget", ("task",), {"project": "blog"}),
    "GET /internal/tasks/{task_id}/budget": ("task_budget", ("t1",), {}),
    "GET /internal/users/{user_id}/news": ("user_news", ("u1",), {}),
    "POST /internal/users/{user_id}/news/seen": (
        "mark_news_seen",
        ("u1", datetime(2026, 12, 1, tzinfo=UTC)),
        {},
    ),
    "POST /internal/incidents/{incident_id}/notify-claim": ("claim_incident_push", ("i1", "notifier"), {}),
    "POST /internal/incidents/{incident_id}/notified": ("mark_incident_notified", ("i1", "notifier"), {}),
    "GET /internal/tasks/{task_id}/notification": ("task_notification", ("t1",), {}),
    # the scheduler's maintenance
    "POST /internal/maintenance/reap-stuck-tasks": ("reap_stuck_tasks", (), {}),
    "POST /internal/outbox/sweep": ("sweep_outbox", (), {}),
    "POST /internal/maintenance/collect-orphan-workers": ("collect_orphan_workers", (), {}),
}

WITHOUT_A_METHOD: dict[str, str] = {}
"""Operations no client method calls yet, each with the reason."""


def _operations() -> set[str]:
    paths = json.loads(OPENAPI.read_text())["paths"]
    return {f"{method.upper()} {path}" for path, ops in paths.items() for method in ops}


def _matches(operation: str, method: str, path: str) -> bool:
    op_method, template = operation.split(" ", 1)
    pattern = "".join(
        "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]+\})", template)
    )
    return op_method == method and re.fullmatch(pattern, path) is not None


def test_every_operation_is_in_the_table_or_says_why_not() -> None:
    operations = _operations()
    assert len(operations) > 50, "docs/openapi.json lists the API's operations"
    missing = operations - set(CALLS) - set(WITHOUT_A_METHOD)
    assert not missing, f"operations without a typed client method (add one, and a row in CALLS): {missing}"
    stale = (set(CALLS) | set(WITHOUT_A_METHOD)) - operations
    assert not stale, f"rows for operations the API no longer has: {stale}"
    assert not set(CALLS) & set(WITHOUT_A_METHOD), "an operation is listed as both called and not"


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_the_client_method_sends_the_operation(operation: str) -> None:
    name, args, kwargs = CALLS[operation]
    sent: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        return httpx.Response(418, json={"code": "teapot", "message": "recorded"})

    method = getattr(ApiClient, name, None)
    assert callable(method), f"ApiClient has no method {name!r} (the row for {operation})"
    with ApiClient("http://api.test", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(ApiError):
            getattr(client, name)(*args, **kwargs)
    assert len(sent) == 1, f"{name} sent {sent}"
    assert _matches(operation, *sent[0]), f"{name} sent {sent[0]}, not {operation}"


def test_the_path_check_refuses_a_near_miss() -> None:
    assert _matches("GET /tasks/{task_id}/events", "GET", "/tasks/t1/events")
    assert not _matches("GET /tasks/{task_id}/events", "GET", "/tasks/t1")
    assert not _matches("GET /tasks/{task_id}/events", "POST", "/tasks/t1/events")
    assert not _matches("GET /tasks/{task_id}", "GET", "/tasks/t1/events")
