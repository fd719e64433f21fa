"""Issue 16: references a caller owns, bounded resources per person, one port per project, and
idempotent creating calls. Each test names the defect it reproduces."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from functions.api.models import PortAllocation, Project, Server, new_id, utcnow
from tests.api_support import ApiHarness

# -- item 1: every reference a request stores belongs to the caller ----------------------


def _alice(api: ApiHarness) -> ApiHarness:
    _user, key = api.new_user("alice")
    return api.as_key(key)


@pytest.mark.parametrize(
    "reference",
    [
        "secret://servers/bobs-server/ssh_key",  # someone else's server key
        "secret://local/admin_api_key",  # the stack's own key
        "secret://projects/00000000-0000-0000-0000-000000000000/BOT_TOKEN",  # a project not hers
        "secret://shared/deploy_key",  # a shared reference no admin gave her
    ],
)
def test_a_user_cannot_point_a_server_at_a_secret_outside_her_scope(api: ApiHarness, reference: str) -> None:
    # given bob's server with an uploaded key
    bob = api.as_key(api.new_user("bob")[1])
    assert (
        bob.post("/servers", {"handle": "bobs-server", "host": "10.0.0.2", "ssh_private_key": "k"}).status
        == 201
    )
    alice = _alice(api)

    # when alice adds a server that uses a reference outside her scope
    refused = alice.post("/servers", {"handle": "mine", "host": "10.0.0.1", "ssh_key_ref": reference})

    # then it is refused, and nothing says whether the secret exists
    assert refused.status == 422, refused
    assert refused.body["fields"] == ["ssh_key_ref"]
    assert alice.get("/servers/mine").status == 404


def test_not_yours_and_does_not_exist_get_the_same_answer(api: ApiHarness) -> None:
    bob = api.as_key(api.new_user("bob")[1])
    bob.post("/servers", {"handle": "bobs-server", "host": "10.0.0.2", "ssh_private_key": "k"})
    alice = _alice(api)
    existing = alice.post(
        "/servers", {"handle": "mine", "host": "h", "ssh_key_ref": "secret://servers/bobs-server/ssh_key"}
    )
    missing = alice.post(
        "/servers", {"handle": "mine", "host": "h", "ssh_key_ref": "secret://servers/nobody/ssh_key"}
    )
    assert existing.status == missing.status == 422
    assert existing.body["message"].replace("bobs-server", "X") == missing.body["message"].replace(
        "nobody", "X"
    )


def test_a_user_may_use_her_own_server_scope_and_an_admin_may_grant_a_shared_key(api: ApiHarness) -> None:
    alice = _alice(api)
    own = alice.post(
        "/servers", {"handle": "mine", "host": "h", "ssh_key_ref": "secret://servers/mine/ssh_key"}
    )
    assert own.status == 201, own
    shared = api.post(
        "/servers", {"handle": "fleet", "host": "h", "ssh_key_ref": "secret://shared/deploy_key"}
    )
    assert shared.status == 201, shared
    # an admin, too, cannot aim a server at the stack's own keys
    stack_key = api.post(
        "/servers", {"handle": "evil", "host": "h", "ssh_key_ref": "secret://local/admin_api_key"}
    )
    assert stack_key.status == 422


def test_the_scope_check_for_the_runner_needs_no_database() -> None:
    from shared.secrets.scope import SecretScope, reference_allowed

    job = SecretScope(project_ids=frozenset({"p1"}), server_handles=frozenset({"srv"}), shared=True)
    assert reference_allowed("secret://projects/p1/BOT_TOKEN", job)
    assert reference_allowed("secret://projects/p1", job)
    assert reference_allowed("secret://servers/srv/ssh_key", job)
    assert reference_allowed("secret://shared/deploy_key", job)
    assert not reference_allowed("secret://projects/p10/BOT_TOKEN", job)
    assert not reference_allowed("secret://servers/other/ssh_key", job)
    assert not reference_allowed("secret://local/admin_api_key", job)
    assert not reference_allowed("secret://projects/p1/../p2/X", job)
    assert not reference_allowed("not a reference", job)
    assert not reference_allowed("secret://shared/deploy_key", SecretScope(project_ids=frozenset({"p1"})))


# -- item 2: bounded resources per person ---------------------------------------------------


@pytest.fixture
def limits(api: ApiHarness) -> Any:
    settings = api.deps.settings
    settings.limit_projects_per_user = 2
    settings.limit_active_tasks_per_user = 2
    settings.limit_tasks_per_hour = 3
    settings.limit_shared_ports_per_user = 1
    return settings


def test_projects_per_person_are_bounded_with_429_naming_the_limit(api: ApiHarness, limits: Any) -> None:
    alice = _alice(api)
    assert alice.new_project("one") and alice.new_project("two")
    refused = alice.post("/projects", {"name": "three"})
    assert refused.status == 429, refused
    assert refused.body["code"] == "limit_exceeded"
    assert refused.body["fields"] == ["projects_per_user"]
    assert "2" in refused.body["message"]
    assert api.post("/projects", {"name": "admins-are-not-bounded"}).status == 201
    # an archived project no longer counts
    assert alice.delete("/projects/one").status == 200
    assert alice.post("/projects", {"name": "three"}).status == 201


def test_concurrent_tasks_and_tasks_per_hour_are_bounded(api: ApiHarness, limits: Any) -> None:
    alice = _alice(api)
    alice.new_project("blog")
    assert alice.post("/projects/blog/engineering", {"spec": "a"}).status == 202
    second = alice.post("/projects/blog/engineering", {"spec": "b"})
    assert second.status == 202
    third = alice.post("/projects/blog/engineering", {"spec": "c"})
    assert third.status == 429 and third.body["fields"] == ["active_tasks_per_user"], third

    # a finished task frees its slot
    assert alice.post(f"/tasks/{second.body['id']}/cancel").status == 200
    assert alice.post("/projects/blog/engineering", {"spec": "c"}).status == 202

    # three started within the hour: the hourly bound holds even with every slot free
    for task in alice.get("/tasks").body["items"]:
        alice.post(f"/tasks/{task['id']}/cancel")
    hourly = alice.post("/projects/blog/engineering", {"spec": "d"})
    assert hourly.status == 429 and hourly.body["fields"] == ["tasks_per_hour"], hourly


def test_ports_on_a_shared_server_are_bounded_per_person(api: ApiHarness, limits: Any) -> None:
    # given the shared localhost server and alice holding one port on it
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1", "labels": {"builtin": "true"}})
    alice = _alice(api)
    one, two = alice.new_project("one"), alice.new_project("two")
    assert alice.post("/servers/localhost/ports", {"project_id": one["id"]}).status == 201
    # her project keeps its own port (no new one, no refusal)
    assert alice.post("/servers/localhost/ports", {"project_id": one["id"]}).status == 200

    # when a second project of hers asks -- even through the service key the deploy graph uses
    refused = api.post("/servers/localhost/ports", {"project_id": two["id"]})

    # then 429, naming the limit, and the deploy is refused before a task exists
    assert refused.status == 429 and refused.body["fields"] == ["shared_ports_per_user"], refused
    deploy = alice.post("/projects/two/deploy", {"server": "localhost"})
    assert deploy.status == 429 and deploy.body["fields"] == ["shared_ports_per_user"], deploy
    assert alice.post("/projects/one/deploy", {"server": "localhost"}).status == 202
    # on her own server there is no such bound
    alice.post("/servers", {"handle": "mine", "host": "10.0.0.1"})
    assert alice.post("/servers/mine/ports", {"project_id": two["id"]}).status == 201


# -- item 3: one allocation per project and server ------------------------------------------


def test_a_project_holding_two_ports_does_not_break_allocation(api: ApiHarness) -> None:
    # given a project that asked for a specific port after it already held one
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1"})
    blog = api.new_project("blog")
    assert api.post("/servers/localhost/ports", {"project_id": blog["id"]}).body["port"] == 8000
    moved = api.post("/servers/localhost/ports", {"project_id": blog["id"], "port": 8005})
    assert moved.status in (200, 201) and moved.body["port"] == 8005, moved

    # then the project still holds one port, and the next allocation answers (no 500)
    ports = api.get("/servers/localhost/ports").body
    assert [p["port"] for p in ports] == [8005]
    again = api.post("/servers/localhost/ports", {"project_id": blog["id"]})
    assert again.status == 200 and again.body["port"] == 8005, again


def test_the_schema_refuses_a_second_port_for_one_project(api: ApiHarness) -> None:
    from sqlalchemy.exc import IntegrityError

    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1"})
    blog = api.new_project("blog")
    with pytest.raises(IntegrityError), api.deps.db.session() as session:
        server = session.execute(select(Server)).scalar_one()
        for port in (8000, 8001):
            session.add(
                PortAllocation(
                    id=new_id(), server_id=server.id, port=port, project_id=blog["id"], created_at=utcnow()
                )
            )
            session.flush()
    with api.deps.db.session() as check:
        assert check.execute(select(Project)).scalar_one().name == "blog"


# -- item 7: idempotency keys ------------------------------------------------------------------


def _post(api: ApiHarness, path: str, body: dict[str, Any], key: str) -> Any:
    return api.call("POST", path, body, headers={"Idempotency-Key": key})


def test_a_retried_engineering_start_runs_once(api: ApiHarness) -> None:
    api.new_project("blog")
    first = _post(api, "/projects/blog/engineering", {"spec": "add a page"}, "k-1")
    again = _post(api, "/projects/blog/engineering", {"spec": "add a page"}, "k-1")
    assert first.status == again.status == 202, (first, again)
    assert first.body == again.body
    assert len(api.get("/tasks").body["items"]) == 1
    other = _post(api, "/projects/blog/engineering", {"spec": "something else"}, "k-1")
    assert other.status == 422 and other.body["fields"] == ["Idempotency-Key"], other
    fresh = _post(api, "/projects/blog/engineering", {"spec": "add a page"}, "k-2")
    assert fresh.status == 202 and fresh.body["id"] != first.body["id"]


def test_keys_belong_to_their_caller_and_cover_every_creating_route(api: ApiHarness) -> None:
    alice = _alice(api)
    created = _post(alice, "/projects", {"name": "blog"}, "same")
    assert created.status == 201 and _post(alice, "/projects", {"name": "blog"}, "same").body == created.body
    # another person using the same key gets their own answer, not alice's
    assert _post(api, "/projects", {"name": "shop"}, "same").status == 201
    server = _post(alice, "/servers", {"handle": "mine", "host": "10.0.0.1"}, "s")
    assert (
        server.status == 201
        and _post(alice, "/servers", {"handle": "mine", "host": "10.0.0.1"}, "s") == server
    )
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1", "labels": {"builtin": "true"}})
    deploy = _post(alice, "/projects/blog/deploy", {"server": "localhost"}, "d")
    assert (
        deploy.status == 202 and _post(alice, "/projects/blog/deploy", {"server": "localhost"}, "d") == deploy
    )


def test_an_expired_key_is_pruned_by_the_sweep_and_runs_again(api: ApiHarness) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from functions.api.models import IdempotencyKey

    api.new_project("blog")
    first = _post(api, "/projects/blog/engineering", {"spec": "x"}, "old")
    assert api.post("/internal/outbox/sweep").body["pruned"] == 0, "a fresh key is kept"
    with api.deps.db.session() as session:
        session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(days=2)))
    # an expired key is not replayed even before the sweep removes it
    second = _post(api, "/projects/blog/engineering", {"spec": "x"}, "old")
    assert second.status == 202 and second.body["id"] != first.body["id"]
    with api.deps.db.session() as session:
        session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(days=2)))
    assert api.post("/internal/outbox/sweep").body["pruned"] >= 1
    with api.deps.db.session() as session:
        assert session.execute(select(IdempotencyKey)).first() is None


def test_an_unusable_key_is_refused(api: ApiHarness) -> None:
    api.new_project("blog")
    long = _post(api, "/projects/blog/engineering", {"spec": "x"}, "k" * 300)
    assert long.status == 422, long


def test_the_migration_keeps_one_port_per_project_before_it_adds_the_index(tmp_path: Any) -> None:
    """A database where the defect already left two ports for one project still upgrades: the oldest
    allocation stays, the later one goes, then the unique index exists."""
    from datetime import timedelta

    from sqlalchemy import create_engine, text

    from functions.api.migrate import upgrade

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0007_task_notifications")
    now, later = utcnow().replace(tzinfo=None), (utcnow() + timedelta(seconds=5)).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (id, name, is_admin, created_at) VALUES ('u', 'u', 0, :t)"), {"t": now}
        )
        conn.execute(
            text(
                "INSERT INTO servers (id, handle, host, ssh_user, status, labels, owner_id, created_at, "
                "facts) VALUES ('s', 'localhost', 'h', 'root', 'up', '{}', 'u', :t, '{}')"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO projects (id, name, description, modules, status, owner_id, created_at, "
                "updated_at) VALUES ('p', 'blog', '', '[]', 'draft', 'u', :t, :t)"
            ),
            {"t": now},
        )
        for row_id, port, at in (("a", 8000, now), ("b", 8001, later)):
            conn.execute(
                text(
                    "INSERT INTO port_allocations (id, server_id, port, project_id, created_at) "
                    "VALUES (:id, 's', :port, 'p', :t)"
                ),
                {"id": row_id, "port": port, "t": at},
            )

    upgrade(engine)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, port FROM port_allocations")).all() == [("a", 8000)]
    engine.dispose()


class _LosesFirstReply:
    """The API handles the request, then the connection drops before the answer arrives (once)."""

    def __init__(self) -> None:
        from functions.api.handler import lambda_handler
        from shared.apigw import LambdaTransport

        self.inner = LambdaTransport(lambda e, c: lambda_handler(e, c))
        self.keys: list[str | None] = []

    def handle_request(self, request: Any) -> Any:
        import httpx

        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.keys.append(request.headers.get("idempotency-key"))
            if len(self.keys) == 1:
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        """Nothing to release: the wrapped transport belongs to the test client."""


def test_the_client_retries_a_lost_reply_with_the_same_key_and_the_task_runs_once(api: ApiHarness) -> None:
    from shared.api_client import ApiClient

    api.new_project("blog")
    transport = _LosesFirstReply()
    with ApiClient(
        "http://api.local", api.key, transport=transport, idempotency_key="invocation-1"
    ) as client:  # type: ignore[arg-type]
        task = client.start_engineering("blog", "build it")
    assert transport.keys == ["invocation-1.1", "invocation-1.1"], "the retry reuses the key"
    assert [t["id"] for t in api.get("/tasks").body["items"]] == [task.id]


def test_the_client_names_a_reached_limit(api: ApiHarness, limits: Any) -> None:
    from functions.api.handler import lambda_handler
    from shared.api_client import ApiClient, LimitExceededError
    from shared.apigw import LambdaTransport

    _user, key = api.new_user("alice")
    transport = LambdaTransport(lambda e, c: lambda_handler(e, c))
    with ApiClient("http://api.local", key, transport=transport) as client:
        client.create_project("one")
        client.create_project("two")
        with pytest.raises(LimitExceededError) as refused:
            client.create_project("three")
    assert refused.value.status == 429 and refused.value.fields == ["projects_per_user"]


def test_concurrent_twins_with_one_key_create_one_task(api: ApiHarness) -> None:
    """Twenty identical starts at once (the retried CLI call racing its original): one task."""
    from functions.api.auth import Principal
    from functions.api.services import idempotency, lookup, tasks
    from shared.contracts.api import EngineeringStart, Task, TaskType
    from tests.factories import race

    api.new_project("blog")
    me = api.get("/me").body
    caller = Principal(
        user_id=me["id"], telegram_id=None, is_admin=True, scopes=frozenset({"admin"}), key_id="k"
    )
    body = EngineeringStart(spec="build it")

    def start(_i: int) -> str:
        with api.deps.db.session() as session:
            claim = idempotency.claim(
                session, caller, "twin", "POST", "/projects/blog/engineering", body, 3600
            )
            if claim.replay:
                return str(claim.replay.body["id"])
            project = lookup.project(session, caller, "blog", for_update=True)
            task, _ = tasks.create(session, caller, project, TaskType.ENGINEERING, body.spec, {})
            dto = Task.model_validate(task)
            claim.remember(session, dto, 202)
            return dto.id

    results = race(20, start)
    assert all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 1
    assert len(api.get("/tasks").body["items"]) == 1
