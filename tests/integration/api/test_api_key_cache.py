"""Verified API keys are cached for a few seconds (functions/api/auth.py): no query for a known key,
revocation here takes effect at once, elsewhere within the TTL."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from functions.api import auth
from functions.api.auth import Principal, VerifiedKeys
from functions.api.models import ApiKey, utcnow
from tests.api_support import ApiHarness
from tests.benchmarks.bench_api import count_statements


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(auth.verified_keys, "clock", lambda: now[0])
    auth.verified_keys.clear()
    return now


def test_a_known_key_is_not_looked_up_again(api: ApiHarness, clock: list[float]) -> None:
    _, key = api.new_user("alice")
    alice = api.as_key(key)
    assert alice.get("/me").status == 200

    with count_statements(api.deps.db.engine) as counted:
        assert alice.get("/me").status == 200
    assert not any("api_keys" in sql for sql in counted.sql), counted.sql

    clock[0] += auth.verified_keys.ttl_s + 0.1
    with count_statements(api.deps.db.engine) as counted:
        assert alice.get("/me").status == 200
    assert any("api_keys" in sql for sql in counted.sql), "looked up again once the entry expired"


def test_revoking_through_the_api_refuses_the_key_at_once(api: ApiHarness, clock: list[float]) -> None:
    user, key = api.new_user("alice")
    alice = api.as_key(key)
    assert alice.get("/me").status == 200  # cached now
    [row] = api.get(f"/users/{user['id']}/api-keys").body

    assert api.delete(f"/api-keys/{row['id']}").status == 200

    denied = alice.get("/me")
    assert denied.status == 401 and "revoked" in denied.body["message"]


def test_a_revocation_elsewhere_holds_within_the_ttl(api: ApiHarness, clock: list[float]) -> None:
    _, key = api.new_user("alice")
    alice = api.as_key(key)
    assert alice.get("/me").status == 200
    with api.deps.db.session() as session:  # another process: a plain UPDATE, no ORM attribute event here
        session.execute(
            update(ApiKey).where(ApiKey.key_hash == auth.hash_key(key)).values(revoked_at=utcnow())
        )

    clock[0] += auth.verified_keys.ttl_s - 0.5
    assert alice.get("/me").status == 200, "still cached: the documented bound"
    clock[0] += 0.6
    assert alice.get("/me").status == 401


def test_wrong_keys_are_never_cached(api: ApiHarness, clock: list[float]) -> None:
    for _ in range(2):
        assert api.as_key("orch_not_a_key").get("/me").status == 401


def _principal(n: int) -> Principal:
    return Principal(
        user_id=f"u{n}", telegram_id=None, is_admin=False, scopes=frozenset({"user"}), key_id=f"k{n}"
    )


def test_the_cache_is_bounded_and_keyed_per_database() -> None:
    cache = VerifiedKeys(ttl_s=5.0, max_entries=2, clock=lambda: 5.0)
    for n in range(3):
        cache.put("db-a", f"h{n}", _principal(n))

    assert cache.get("db-a", "h0") is None, "the oldest entry made room"
    assert cache.get("db-a", "h2") == _principal(2)
    assert cache.get("db-b", "h2") is None, "another database's key is not this one's"
