"""Incidents pushed to their owner in Telegram once per flip: API (incident + outbox notice) ->
progress:events -> notifier (claim, send, notified) -> fake Bot API.

The API is the real handler in-process (SQLite and PostgreSQL); the notifier reaches it with a
service key, as in AWS. A repository that vanishes and comes back is two flips: two incidents,
two messages, whatever the queue delivers again.
"""

from __future__ import annotations

import pytest

from shared.api_client import ApiClient, ApiError, ConflictError
from shared.contracts import PROGRESS_EVENTS, ProgressEvent
from shared.contracts.notices import ALREADY_NOTIFIED, IncidentNotice
from shared.contracts.projects import RepoSync
from shared.contracts.servers import Incident
from tests.factories import drain, race
from tests.integration.api import test_telegram_notifier as notifier_tests
from tests.integration.api.test_telegram_notifier import ALICE_TG, World

# the notifier's world (the same API, queue and fake Bot API), its fixtures used here as they are
telegram = notifier_tests.telegram
world = notifier_tests.world


def _flip(world: World, project: str, missing: bool) -> None:
    assert world.service.record_repo_sync(project, RepoSync(missing=missing, head="abc")).changed


def _incidents(world: World, client: ApiClient | None = None) -> list[Incident]:
    return sorted((client or world.alice).list_incidents(), key=lambda i: i.created_at)


def test_each_flip_is_pushed_once_and_a_redelivered_notice_sends_nothing(world: World) -> None:
    world.alice.create_project("blog")

    _flip(world, "blog", missing=True)
    assert world.consume() == (1, 0)
    [gone] = world.telegram.calls_to("sendMessage")
    assert gone.params["chat_id"] == ALICE_TG and "parse_mode" not in gone.params
    assert (
        gone.params["text"].startswith("⚠️ the repository of blog")
        and "is gone from its host" in gone.params["text"]
    )
    [incident] = _incidents(world)
    assert incident.notified_at is not None

    _flip(world, "blog", missing=False)
    assert world.consume() == (1, 0)
    texts = world.telegram.sent_texts()
    assert len(texts) == 2 and texts[1].startswith("🟢 the repository of blog is back")

    # the queue delivers both notices again (at least once): still two messages
    for shown in _incidents(world):
        world.queue.publish(PROGRESS_EVENTS, IncidentNotice(incident_id=shown.id))
    assert world.consume() == (2, 0)
    assert len(world.telegram.sent_texts()) == 2
    assert all(i.notified_at is not None for i in _incidents(world))


def test_incidents_of_users_without_telegram_are_recorded_but_not_queued(world: World) -> None:
    world.carol.create_project("cli-blog")
    _flip(world, "cli-blog", missing=True)
    assert [i.kind for i in _incidents(world, world.carol)] == ["repo_missing"]
    assert drain(world.queue, PROGRESS_EVENTS) == []
    with pytest.raises(ApiError) as refused:
        world.service.claim_incident_push(_incidents(world, world.carol)[0].id, "h")
    assert refused.value.status == 422


def test_notices_and_progress_events_share_the_queue(world: World) -> None:
    world.alice.create_project("blog")
    task_id = world.alice.start_engineering("blog", "build a blog").id
    world.service.claim_task(task_id, worker="test")
    _flip(world, "blog", missing=True)
    kinds = sorted(type(m).__name__ for m in drain(world.queue, PROGRESS_EVENTS))
    assert kinds == ["IncidentNotice", "ProgressEvent"]
    world.queue.publish(PROGRESS_EVENTS, IncidentNotice(incident_id=_incidents(world)[0].id))
    world.queue.publish(PROGRESS_EVENTS, ProgressEvent(type="progress", task_id=task_id, message="coding"))
    assert world.consume() == (2, 0)
    texts = world.telegram.sent_texts()
    assert len(texts) == 2 and any(t.startswith("⚠️ the repository of blog") for t in texts), texts
    assert any(t.startswith("blog · engineering") for t in texts), texts


def test_one_holder_pushes_at_a_time_and_only_it_marks_the_push(world: World) -> None:
    world.alice.create_project("blog")
    _flip(world, "blog", missing=True)
    incident_id = _incidents(world)[0].id

    results = race(6, lambda i: world.service.claim_incident_push(incident_id, f"h{i}"))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    losers = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, ConflictError) and r.code == "conflict" for r in losers), losers
    holder = f"h{results.index(winners[0])}"
    assert winners[0].chat_id == ALICE_TG and winners[0].project_name == "blog"

    with pytest.raises(ConflictError) as not_holder:
        world.service.mark_incident_notified(incident_id, "someone-else")
    assert not_holder.value.code == "conflict"
    assert world.service.mark_incident_notified(incident_id, holder).notified_at is not None
    for attempt in (
        lambda: world.service.claim_incident_push(incident_id, "late"),
        lambda: world.service.mark_incident_notified(incident_id, holder),
    ):
        with pytest.raises(ConflictError) as done:
            attempt()
        assert done.value.code == ALREADY_NOTIFIED
    with pytest.raises(ApiError) as person:
        world.alice.claim_incident_push(incident_id, "me")
    assert person.value.status == 403


def test_a_telegram_failure_keeps_the_incident_unpushed_and_the_redelivery_pushes_it_once(
    world: World,
) -> None:
    world.alice.create_project("blog")
    _flip(world, "blog", missing=True)
    world.telegram.fail("sendMessage", status=500, times=2)  # both attempts of one invocation
    assert world.consume() == (0, 1)
    assert _incidents(world)[0].notified_at is None
    # the failed invocation's claim still runs; once it has run out the redelivery pushes it
    _expire_push_claims(world)
    assert world.consume() == (1, 0)
    assert len(world.telegram.sent_texts()) == 1
    assert _incidents(world)[0].notified_at is not None


def _expire_push_claims(world: World) -> None:
    """What the passing of a claim's 60 seconds does, without waiting them."""
    from sqlalchemy import update

    from functions.api.models import Incident

    with world.api.deps.db.session() as session:
        session.execute(update(Incident).values(notify_claimed_until=None))
