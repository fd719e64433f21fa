"""How much each common request asks of the database, counted with SQLAlchemy's `before_cursor_execute`
(tests/benchmarks/bench_api.py prints the same table): the bounds are what the code reached (issue 24), so
a change that adds a query or a transaction to these paths fails here and says which statements ran."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.api_support import ApiHarness, Reply
from tests.benchmarks.bench_api import count_statements

# request -> (SQL statements without BEGIN, transactions), for a person's key verified a moment ago
BOUNDS = {
    "get project": (1, 1),  # the project with its deployment (for deployed_url) joined in
    "list projects": (1, 1),  # one page, the live URLs joined in
    "create project": (4, 1),  # name taken?, lock the owner, count their projects, insert
    # lock project, owner; the limits' counts; task and outbox (one INSERT on PostgreSQL); mark sent
    "create engineering task": (6, 2),
    "list releases": (2, 1),  # the project, one page of releases with their servers joined in
}


@pytest.fixture
def alice(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("alice", telegram_id=42)
    person = api.as_key(key)
    assert person.post("/projects", {"name": "blog"}).status == 201
    return person


def requests_of(alice: ApiHarness) -> dict[str, Callable[[], Reply]]:
    """The common requests, by name (tests/integration/api/test_round_trips.py sends them too)."""
    return {
        "get project": lambda: alice.get("/projects/blog"),
        "list projects": lambda: alice.get("/projects"),
        "create project": lambda: alice.post("/projects", {"name": "shop"}),
        "create engineering task": lambda: alice.post("/projects/blog/engineering", {"spec": "x"}),
        "list releases": lambda: alice.get("/projects/blog/releases"),
    }


@pytest.mark.parametrize("request_name", list(BOUNDS))
def test_statements_per_request_stay_within_their_bound(
    api: ApiHarness, alice: ApiHarness, request_name: str
) -> None:
    send = requests_of(alice)[request_name]
    assert alice.get("/me").status == 200  # the key is verified (and cached) like on any busy API

    with count_statements(api.deps.db.engine) as counted:
        reply = send()

    assert reply.status < 300, reply
    statements = [sql for sql in counted.sql if not sql.startswith("BEGIN")]
    most_statements, most_transactions = BOUNDS[request_name]
    assert len(statements) <= most_statements, "\n".join(statements)
    assert counted.transactions <= most_transactions, "\n".join(statements)


def test_the_task_message_still_reaches_the_queue_once(api: ApiHarness, alice: ApiHarness) -> None:
    reply = alice.post("/projects/blog/engineering", {"spec": "x"})
    assert reply.status == 202, reply
    [message] = api.deps.queue.receive("engineering:queue", visibility_timeout=30)
    body = json.loads(message.body)
    assert body["task_id"] == reply.body["id"] and body["user_id"] == 42, "the Telegram id came with the key"
    assert message.attributes["outbox_id"]
    assert api.deps.queue.receive("engineering:queue", visibility_timeout=30) == []
