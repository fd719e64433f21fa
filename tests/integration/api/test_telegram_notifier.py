"""The progress notifier end to end: API (outbox) -> progress:events -> notifier -> fake Bot API.

The API is the real handler in-process (SQLite and PostgreSQL); the notifier reaches it with a
service key, as in AWS, and talks to `FakeTelegram` on 127.0.0.1, which records every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.api.db import dispose_all
from functions.api.deps import set_deps
from functions.api.handler import lambda_handler as api_handler
from functions.telegram_notifier.handler import lambda_handler as notifier_handler
from functions.telegram_notifier.notifier import Notifier
from shared.api_client import ApiClient
from shared.apigw import LambdaTransport
from shared.contracts import PROGRESS_EVENTS
from shared.queues.local import LocalQueue
from shared.queues.local_runner import QueuePoller, sqs_event
from shared.telegram.client import TelegramClient
from tests.api_support import ApiHarness, build_deps, install
from tests.factories import drain, progress_event, race
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "123456789:AAnotifier-token_for-tests"
ALICE_TG = 111


@dataclass
class World:
    api: ApiHarness
    service: ApiClient
    queue: LocalQueue
    telegram: FakeTelegram
    alice: ApiClient
    carol: ApiClient
    bots: list[TelegramClient]

    def notifier(self) -> Notifier:
        bot = TelegramClient(
            TOKEN, self.telegram.url, timeout=5, attempts=2, base_delay_s=0, sleep=lambda _s: None
        )
        self.bots.append(bot)
        return Notifier(self.service, bot, claim_wait_s=0.02)

    def consume(self) -> tuple[int, int]:
        notifier = self.notifier()
        poller = QueuePoller(
            self.queue, PROGRESS_EVENTS, lambda e, c: notifier_handler(e, c, notifier=notifier)
        )
        return poller.run_once()

    def methods(self) -> list[str]:
        return [c.method for c in self.telegram.calls if c.status == 200]


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as fake:
        yield fake


@pytest.fixture
def world(database_url: str, tmp_path: Path, telegram: FakeTelegram) -> Iterator[World]:
    deps = build_deps(database_url, tmp_path / "home")
    queue = LocalQueue(tmp_path / "queue.db", max_receives=5, visibility_timeout=0)
    deps.queue_factory = lambda: queue
    api = install(deps)
    telegram.reset()
    _, service_key = api.new_user("orchestrator-notifier", scopes=["service"])
    _, alice_key = api.new_user("alice", telegram_id=ALICE_TG)
    _, carol_key = api.new_user("carol")  # a CLI user: no Telegram id
    transport = LambdaTransport(api_handler)
    clients = [
        ApiClient("http://api.local", key, transport=transport) for key in (service_key, alice_key, carol_key)
    ]
    world = World(api, clients[0], queue, telegram, alice=clients[1], carol=clients[2], bots=[])
    try:
        yield world
    finally:
        for bot in world.bots:
            bot.close()
        for client in clients:
            client.close()
        queue.close()
        set_deps(None)
        if database_url.startswith("sqlite"):
            dispose_all()


def _running(world: World, client: ApiClient | None = None, project: str = "blog") -> str:
    client = client or world.alice
    client.create_project(project)
    task_id = client.start_engineering(project, "build a blog").id
    world.service.claim_task(task_id, worker="test")
    return task_id


def _progress(world: World, task_id: str, message: str, pct: int, step: str) -> None:
    world.service.append_events(
        task_id, [{"type": "progress", "message": message, "progress_pct": pct, "current_step": step}]
    )


def _status_message_id(world: World, task_id: str) -> int | None:
    message_id = world.service.claim_notification(task_id, "probe").message_id
    world.service.release_notification(task_id, "probe")
    return message_id


def test_one_status_message_edited_on_change_only_and_one_final_message(world: World) -> None:
    task_id = _running(world)
    assert world.consume() == (1, 0)
    assert world.methods() == ["sendMessage"]
    status = world.telegram.calls_to("sendMessage")[0]
    assert status.params["chat_id"] == ALICE_TG and "parse_mode" not in status.params
    assert status.params["text"] == "blog · engineering · started (attempt 1)"

    _progress(world, task_id, "running make test", 50, "tester")
    assert world.consume() == (1, 0)
    [edit] = world.telegram.calls_to("editMessageText")
    assert edit.params["message_id"] == _status_message_id(world, task_id)
    assert edit.params["text"] == "blog · engineering · 50% [tester] running make test"

    _progress(world, task_id, "running make test", 50, "tester")  # the same picture: no edit
    assert world.consume() == (1, 0)
    assert world.methods() == ["sendMessage", "editMessageText"]

    world.service.complete_task(
        task_id, {"commit_sha": "abc1234def", "branch": "main", "pr_url": "https://github.com/o/blog/pull/1"}
    )
    assert world.consume() == (1, 0)
    assert world.methods() == ["sendMessage", "editMessageText", "editMessageText", "sendMessage"]
    assert world.telegram.calls_to("editMessageText")[-1].params["text"] == "blog · engineering · completed"
    assert world.telegram.sent_texts()[-1] == (
        "✅ blog: the change is done.\ncommit abc1234def on branch main\nPull request: https://github.com/o/blog/pull/1"
    )

    # the same events again (redelivery, reordering): nothing new reaches Telegram
    for kind in ("started", "progress", "completed"):
        world.queue.publish(PROGRESS_EVENTS, progress_event(type=kind, task_id=task_id))
    assert world.consume() == (3, 0)
    assert len(world.telegram.calls) == 4


def test_two_consumers_on_the_same_batch_create_one_status_and_one_final(world: World) -> None:
    task_id = _running(world)
    _progress(world, task_id, "cloning", 10, "developer")
    world.service.complete_task(task_id, {"deployed_url": "x"})
    batch = world.queue.receive(PROGRESS_EVENTS, 10)
    assert len(batch) == 3
    event = sqs_event("arn:aws:sqs:local:0:orch-progress-events", batch)
    notifiers = [world.notifier(), world.notifier()]
    answers: list[Any] = race(2, lambda i: notifier_handler(event, None, notifier=notifiers[i]))
    failed = {f["itemIdentifier"] for a in answers for f in a["batchItemFailures"]}
    # the losers' records come back (redelivery) and find the work done
    for _ in range(3):
        if not failed:
            break
        again = notifier_handler(
            sqs_event("arn", [m for m in batch if m.message_id in failed]), None, notifier=notifiers[0]
        )
        failed = {f["itemIdentifier"] for f in again["batchItemFailures"]}
    assert not failed
    assert world.telegram.sent_texts() == ["blog · engineering · completed", "✅ blog: the change is done."]
    assert world.telegram.calls_to("editMessageText") == []


def test_a_telegram_500_on_the_final_message_fails_the_record_and_redelivery_sends_it_once(
    world: World,
) -> None:
    task_id = _running(world)
    assert world.consume() == (1, 0)
    world.service.fail_task(
        task_id, 'Traceback (most recent call last):\n  File "x.py"\nValueError: no Makefile'
    )
    world.telegram.fail("sendMessage", status=500, times=2)  # both attempts of one invocation
    assert world.consume() == (0, 1)
    assert world.consume() == (1, 0)
    finals = [t for t in world.telegram.sent_texts() if t.startswith("❌")]
    assert finals == ["❌ blog · engineering failed: ValueError: no Makefile"]
    assert world.consume() == (0, 0)


def test_a_deleted_status_message_is_replaced_by_a_new_one(world: World) -> None:
    task_id = _running(world)
    assert world.consume() == (1, 0)
    world.telegram.fail("editMessageText", status=400, description="Bad Request: message to edit not found")
    _progress(world, task_id, "writing code", 30, "developer")
    assert world.consume() == (1, 0)
    assert world.telegram.sent_texts()[-1] == "blog · engineering · 30% [developer] writing code"
    new_id = _status_message_id(world, task_id)
    _progress(world, task_id, "still writing", 40, "developer")
    assert world.consume() == (1, 0)
    assert world.telegram.calls_to("editMessageText")[-1].params["message_id"] == new_id


def test_tasks_of_users_without_telegram_publish_no_progress_events(world: World) -> None:
    task_id = _running(world, world.carol, project="cli-blog")
    _progress(world, task_id, "coding", 20, "developer")
    world.service.complete_task(task_id, {})
    assert drain(world.queue, PROGRESS_EVENTS) == []


def test_a_notification_claim_has_one_holder_at_a_time(world: World) -> None:
    from shared.api_client import ConflictError

    task_id = _running(world)
    results = race(8, lambda i: world.service.claim_notification(task_id, f"h{i}"))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and all(isinstance(r, ConflictError) for r in results if r not in winners)
    with pytest.raises(ConflictError):
        world.service.claim_notification(task_id, "late")


def test_a_retried_task_gets_its_own_final_message(world: World) -> None:
    task_id = _running(world)
    world.service.fail_task(task_id, "tests still fail")
    assert world.consume()[1] == 0
    first_finals = len(world.telegram.calls_to("sendMessage"))
    world.alice.retry_task(task_id)
    world.service.claim_task(task_id, worker="test")
    world.service.complete_task(task_id, {"commit_sha": "abc1234def", "branch": "main"})
    while world.consume() != (0, 0):
        pass
    finals = world.telegram.sent_texts()
    assert len(world.telegram.calls_to("sendMessage")) == first_finals + 1, finals
    assert finals[-1].startswith("✅ blog"), finals
