"""The bot end to end on one machine: webhook -> telegram:updates -> aiogram consumer -> fake Bot API.

The API is the real handler on SQLite, in-process; the bot reaches it with a service-scope key,
as in AWS. Telegram is `FakeTelegram` on 127.0.0.1, which records every call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from functions.api.db import dispose_all
from functions.api.deps import set_deps
from functions.api.handler import lambda_handler as api_handler
from functions.telegram_bot.bot import BotDeps, refusal_key
from functions.telegram_bot.handler import BotRuntime
from functions.telegram_bot.handler import lambda_handler as bot_handler
from functions.telegram_webhook.handler import WebhookPorts
from functions.telegram_webhook.handler import lambda_handler as webhook_handler
from shared.api_client import ApiClient
from shared.apigw import LambdaTransport, http_api_event
from shared.contracts import PO_INBOX, TELEGRAM_UPDATES, ProductOwnerMessage, TelegramUpdateMessage
from shared.idempotency import SqliteIdempotency
from shared.queues.local import LocalQueue
from shared.queues.local_runner import QueuePoller
from shared.telegram.settings import TelegramSettings
from tests.api_support import ApiHarness, build_deps, install, migrated_sqlite
from tests.factories import drain
from tests.fakes.telegram_server import FakeTelegram, message_update

TOKEN = "123456789:AAfake-token_for-tests"
SECRET = "webhook-secret_for-tests"
ADMIN_TG = 999
ALICE_TG, BOB_TG, STRANGER_TG = 111, 222, 666


@dataclass
class World:
    telegram: FakeTelegram
    api: ApiHarness
    service: ApiClient
    queue: LocalQueue
    claims: SqliteIdempotency
    settings: TelegramSettings
    runtime: BotRuntime
    service_key: str = ""
    sleeps: list[float] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def post(self, update: dict[str, Any], secret: str | None = SECRET) -> tuple[int, dict[str, Any]]:
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers["x-telegram-bot-api-secret-token"] = secret
        event = http_api_event("POST", "/telegram/webhook", headers=headers, body=json.dumps(update))
        ports = WebhookPorts(secret=SECRET, queue=self.queue, claims=self.claims)
        result = webhook_handler(event, None, ports)
        return int(result["statusCode"]), json.loads(result["body"])

    def consume(self) -> tuple[int, int]:
        """One Lambda-style batch of telegram:updates through the real consumer handler."""
        poller = QueuePoller(
            self.queue, TELEGRAM_UPDATES, lambda e, c: bot_handler(e, c, runtime=self.runtime)
        )
        return poller.run_once()

    def say(self, from_id: int, text: str) -> list[str]:
        """Post one message through the webhook, consume it, return what the bot sent back."""
        before = len(self.telegram.sent_texts())
        assert self.post(message_update(from_id, text))[0] == 200
        assert self.consume() == (1, 0)
        return self.telegram.sent_texts()[before:]

    def client_for(self, name: str) -> ApiClient:
        return ApiClient("http://api.local", self.keys[name], transport=LambdaTransport(api_handler))


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def bot_runtime(telegram: FakeTelegram, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotRuntime]:
    """One per module, as one per Lambda container."""
    settings = TelegramSettings(
        home=tmp_path_factory.mktemp("telegram"),
        telegram_api_base=telegram.url,
        telegram_admins=[ADMIN_TG],
        telegram_send_attempts=3,
    )
    sleeps: list[float] = []
    runtime = BotRuntime(BotDeps(None, None, None, settings), TOKEN, sleep=sleeps.append)  # type: ignore[arg-type]
    runtime.sleeps = sleeps  # type: ignore[attr-defined]
    yield runtime
    runtime.close()


@pytest.fixture
def world(telegram: FakeTelegram, bot_runtime: BotRuntime, tmp_path: Path) -> Iterator[World]:
    api = install(build_deps(migrated_sqlite(tmp_path / "api.db"), tmp_path / "api-home"))
    # Service scope for tasks and projects; admin for /users (list, add), which the API keeps admin-only.
    _, service_key = api.new_user("orchestrator-telegram", scopes=["service", "admin"], is_admin=True)
    service = ApiClient("http://api.local", service_key, transport=LambdaTransport(api_handler))
    queue = LocalQueue(tmp_path / "queue.db", max_receives=2, visibility_timeout=0)
    claims = SqliteIdempotency(tmp_path / "claims.db")
    telegram.reset()
    sleeps: list[float] = bot_runtime.sleeps  # type: ignore[attr-defined]
    sleeps.clear()
    settings = bot_runtime.deps.settings
    bot_runtime.deps = BotDeps(api=service, queue=queue, claims=claims, settings=settings)
    world = World(telegram, api, service, queue, claims, settings, bot_runtime, service_key, sleeps)
    for name, tg in (("alice", ALICE_TG), ("bob", BOB_TG)):
        world.users[name], world.keys[name] = api.new_user(name, telegram_id=tg)
    try:
        yield world
    finally:
        service.close()
        queue.close()
        claims.close()
        set_deps(None)
        dispose_all()


# -- the done-when ----------------------------------------------------------------------------


def test_a_wrong_secret_is_refused_and_nothing_reaches_the_bot(world: World) -> None:
    for secret in ("wrong", None):
        status, body = world.post(message_update(ALICE_TG, "/projects"), secret=secret)
        assert status == 401 and body["code"] == "unauthorized"
    assert world.consume() == (0, 0)
    assert world.telegram.calls == []


def test_an_unknown_user_gets_one_refusal_and_nothing_else_happens(world: World) -> None:
    first = world.say(STRANGER_TG, "hello?")
    assert len(first) == 1 and "private" in first[0] and str(STRANGER_TG) in first[0]
    assert world.say(STRANGER_TG, "please build me a blog") == []
    assert world.say(STRANGER_TG, "/projects") == []
    assert [c.method for c in world.telegram.calls] == ["sendMessage"], "no typing, nothing else"
    assert drain(world.queue, PO_INBOX) == [], "a stranger's text never reaches a Product Owner"
    assert [u.telegram_id for u in world.service.list_users()] == [None, None, ALICE_TG, BOB_TG]


def test_a_duplicate_update_gets_one_reaction(world: World) -> None:
    update = message_update(ALICE_TG, "/projects")
    assert world.post(update) == (200, {"ok": True, "update_id": update["update_id"], "status": "queued"})
    assert world.post(update) == (200, {"ok": True, "update_id": update["update_id"], "status": "duplicate"})
    assert world.consume() == (1, 0)
    assert world.consume() == (0, 0)
    assert len(world.telegram.calls_to("sendMessage")) == 1


def test_projects_lists_the_senders_real_projects_with_status(world: World) -> None:
    with world.client_for("alice") as alice:
        alice.create_project("blog", "my blog")
        alice.create_project("shop")
        alice.update_project("shop", status="active")
    with world.client_for("bob") as bob:
        bob.create_project("bobs-secret")
    [answer] = world.say(ALICE_TG, "/projects")
    assert answer.splitlines() == ["Your projects (2):", "- blog: draft", "- shop: active"]
    [answer] = world.say(BOB_TG, "/projects")
    assert answer.splitlines() == ["Your projects (1):", "- bobs-secret: draft"]
    call = world.telegram.calls_to("sendMessage")[-1]
    assert call.params["chat_id"] == BOB_TG and "parse_mode" not in call.params


# -- commands ---------------------------------------------------------------------------------


def _running_task(world: World, owner: str = "alice", project: str = "blog") -> str:
    with world.client_for(owner) as client:
        client.create_project(project)
        task_id = client.start_engineering(project, "build a blog").id
    world.service.claim_task(task_id, worker="test")
    world.service.append_events(
        task_id, [{"type": "progress", "message": f"step {i}", "progress_pct": i * 10} for i in range(1, 8)]
    )
    return task_id


def test_status_shows_a_task_and_its_last_events_to_its_owner_only(world: World) -> None:
    task_id = _running_task(world)
    [answer] = world.say(ALICE_TG, f"/status {task_id}")
    assert f"Task {task_id}" in answer and "engineering of blog: RUNNING" in answer
    assert "step 7 (70%)" in answer and "step 3 (30%)" in answer and "step 2 " not in answer
    [answer] = world.say(ALICE_TG, "/status")
    assert answer.splitlines()[0] == "Your latest tasks:" and task_id in answer and "RUNNING" in answer
    [answer] = world.say(BOB_TG, f"/status {task_id}")
    assert answer.startswith(f"I can't find a task {task_id} of yours")
    [answer] = world.say(BOB_TG, "/status")
    assert answer == "You have no tasks yet."
    [answer] = world.say(ADMIN_TG, f"/status {task_id}")
    assert "engineering of blog: RUNNING" in answer, "an admin sees every task"


def test_status_pages_through_a_long_event_history_to_its_end(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functions.telegram_bot.bot as bot_module

    monkeypatch.setattr(bot_module, "EVENTS_PAGE", 3)  # 8 events: pages of 3, 3, 2
    task_id = _running_task(world)
    [answer] = world.say(ALICE_TG, f"/status {task_id}")
    assert "step 7 (70%)" in answer and "step 3 (30%)" in answer and "step 2 " not in answer


def test_status_lists_the_latest_five_tasks_newest_first(world: World) -> None:
    ids = []
    with world.client_for("alice") as alice:
        alice.create_project("blog")
        alice.create_project("shop")
        for i in range(7):
            ids.append(alice.start_engineering("blog" if i % 2 else "shop", f"spec {i}").id)
            world.service.cancel_task(ids[-1])  # one active task per project at a time
    [answer] = world.say(ALICE_TG, "/status")
    listed = [line.split()[1] for line in answer.splitlines()[1:-1]]
    assert listed == list(reversed(ids))[:5]


def test_cancel_cancels_the_senders_task_and_refuses_others(world: World) -> None:
    task_id = _running_task(world)
    [answer] = world.say(BOB_TG, f"/cancel {task_id}")
    assert "can't find" in answer and world.service.get_task(task_id).status == "RUNNING"
    [answer] = world.say(ALICE_TG, f"/cancel {task_id}")
    assert answer == f"Task {task_id} is CANCELLED."
    assert world.service.get_task(task_id).status == "CANCELLED"
    [answer] = world.say(ALICE_TG, f"/cancel {task_id}")
    assert answer.startswith(f"Task {task_id} can't be cancelled:")
    assert world.say(ALICE_TG, "/cancel") == ["Which task? Use /cancel <task>; /status lists your tasks."]
    [answer] = world.say(ALICE_TG, "/cancel ../../etc")
    assert "can't find" in answer


def test_an_admin_adds_a_user_who_can_then_use_the_bot(world: World) -> None:
    carol_tg = 333
    first = world.say(carol_tg, "/projects")
    assert "private" in first[0]
    assert world.say(ALICE_TG, f"/adduser {carol_tg}") == ["Only an administrator can add users."]
    [answer] = world.say(ADMIN_TG, f"/adduser {carol_tg} Carol Smith")
    assert answer.startswith(f"Added Carol Smith (Telegram id {carol_tg})")
    [carol] = [u for u in world.service.list_users() if u.telegram_id == carol_tg]
    assert carol.name == "Carol Smith" and not carol.is_admin
    assert world.say(carol_tg, "/projects") == ["You have no projects yet. Tell me what you'd like to build."]
    assert world.say(ADMIN_TG, f"/adduser {carol_tg}") == [
        f"A user with Telegram id {carol_tg} already exists."
    ]
    [usage] = world.say(ADMIN_TG, "/adduser carol")
    assert usage.startswith("Usage: /adduser <telegram id>")


def test_start_and_help_greet_and_show_admin_commands_only_to_admins(world: World) -> None:
    [hello] = world.say(ALICE_TG, "/start")
    assert hello.startswith("Hi alice!") and "/projects" in hello and "/adduser" not in hello
    [help_] = world.say(ADMIN_TG, "/help")
    assert "/adduser" in help_
    assert world.say(ALICE_TG, "/frobnicate") == ["I don't know that command. /help lists what I can do."]


def test_free_text_goes_to_the_product_owner_with_a_typing_indicator(world: World) -> None:
    update = message_update(ALICE_TG, "make me a blog with a Telegram login", language_code="de")
    assert world.post(update)[0] == 200
    assert world.consume() == (1, 0)
    [po] = drain(world.queue, PO_INBOX)
    assert isinstance(po, ProductOwnerMessage)
    assert (
        po.request_id,
        po.telegram_user_id,
        po.chat_id,
        po.message_id,
        po.text,
        po.user_id,
        po.language_code,
    ) == (
        f"tg:{update['update_id']}",
        ALICE_TG,
        ALICE_TG,
        update["message"]["message_id"],
        "make me a blog with a Telegram login",
        world.users["alice"]["id"],
        "de",
    )
    [typing] = world.telegram.calls
    assert (typing.method, typing.params) == ("sendChatAction", {"chat_id": ALICE_TG, "action": "typing"})


def test_an_admin_without_an_api_user_still_reaches_the_product_owner(world: World) -> None:
    world.say(ADMIN_TG, "hello PO")
    [po] = drain(world.queue, PO_INBOX)
    assert po.user_id is None and po.telegram_user_id == ADMIN_TG


def test_a_non_text_message_is_answered_not_dropped(world: World) -> None:
    update = message_update(ALICE_TG, None)
    update["message"]["sticker"] = {
        "file_id": "f",
        "file_unique_id": "u",
        "type": "regular",
        "width": 1,
        "height": 1,
        "is_animated": False,
        "is_video": False,
    }
    assert world.post(update)[0] == 200
    assert world.consume() == (1, 0)
    assert world.telegram.sent_texts() == ["I can only read text messages for now."]


# -- failures ---------------------------------------------------------------------------------


def test_a_429_is_retried_after_retry_after(world: World) -> None:
    world.telegram.fail("sendMessage", status=429, retry_after=3)
    assert world.say(ALICE_TG, "/projects") == ["You have no projects yet. Tell me what you'd like to build."]
    assert len(world.telegram.calls_to("sendMessage")) == 2
    assert world.sleeps == [3]


def test_when_every_attempt_fails_the_update_is_redelivered_and_answered_once(world: World) -> None:
    world.telegram.fail("sendMessage", status=502, description="Bad Gateway", times=3)
    assert world.post(message_update(STRANGER_TG, "hi"))[0] == 200
    assert world.consume() == (0, 1), "all attempts failed: the record fails, it is not dropped"
    assert len(world.sleeps) == 2, world.sleeps
    assert all(0 <= s - b <= 0.25 for s, b in zip(world.sleeps, (0.5, 1.0), strict=True)), (
        f"0.5 s then 1 s, each plus up to 0.25 s of jitter: {world.sleeps}"
    )
    assert len(world.telegram.calls_to("sendMessage")) == 3
    assert world.claims.claim(refusal_key(STRANGER_TG), 60) is True, (
        "the undelivered refusal's claim was released"
    )
    world.claims.release(refusal_key(STRANGER_TG))
    assert world.consume() == (1, 0), "the redelivery succeeds"
    assert world.consume() == (0, 0)
    assert len(world.telegram.calls_to("sendMessage")) == 4
    [refusal] = world.telegram.sent_texts()
    assert "private" in refusal


def test_a_poison_update_fails_alone_and_ends_in_the_dlq(world: World) -> None:
    broken = {"update_id": 5, "message": {"message_id": 1, "text": "no chat, no date"}}
    world.queue.publish(TELEGRAM_UPDATES, TelegramUpdateMessage(update_id=5, update=broken))
    mismatched = message_update(ALICE_TG, "/help")
    world.queue.publish(TELEGRAM_UPDATES, TelegramUpdateMessage(update_id=6, update=mismatched))
    world.queue.publish_raw(TELEGRAM_UPDATES, json.dumps({"update_id": "x", "update": []}))
    assert world.post(message_update(ALICE_TG, "/start"))[0] == 200
    assert world.consume() == (1, 3), "the good update in the same batch succeeds"
    assert world.consume() == (0, 3)
    assert world.consume() == (0, 0)
    reasons = sorted(d.reason or "" for d in world.queue.dead_letters(TELEGRAM_UPDATES))
    assert len(reasons) == 3
    assert any("not a Bot API Update" in r for r in reasons)
    assert any("does not match the update it carries" in r for r in reasons)
    assert any(r.startswith("contract:") for r in reasons)
    assert len(world.telegram.sent_texts()) == 1


def test_an_unreachable_api_fails_the_record_for_redelivery(world: World, tmp_path: Path) -> None:
    dead_api = ApiClient("http://127.0.0.1:9", "k", timeout=1)
    runtime = BotRuntime(BotDeps(dead_api, world.queue, world.claims, world.settings), TOKEN)
    try:
        assert world.post(message_update(ALICE_TG, "/projects"))[0] == 200
        poller = QueuePoller(world.queue, TELEGRAM_UPDATES, lambda e, c: bot_handler(e, c, runtime=runtime))
        assert poller.run_once() == (0, 1)
        assert world.consume() == (1, 0), "redelivered to a healthy consumer"
    finally:
        runtime.close()
        dead_api.close()


def test_long_answers_are_split_into_messages_telegram_accepts(world: World) -> None:
    text = "\n".join(f"line {i}: " + "z" * 90 for i in range(120))
    world.runtime.telegram.send_text(ALICE_TG, text)
    sent = world.telegram.sent_texts()
    assert len(sent) == 3 and all(len(s) <= 4096 for s in sent)
    assert "\n".join(sent) == text


def test_the_token_never_reaches_the_logs(world: World, capfd: pytest.CaptureFixture[str]) -> None:
    world.telegram.fail("sendMessage", status=500, times=3)
    assert world.post(message_update(ALICE_TG, "/projects"))[0] == 200
    assert world.consume() == (0, 1)
    out, err = capfd.readouterr()
    assert TOKEN.split(":")[1] not in out + err and SECRET not in out + err
    assert "telegram call failed; retrying" in err


def test_the_default_runtime_is_built_from_settings(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.telegram_bot import handler
    from shared.secrets.local import LocalSecrets

    home = Path(os.environ["ORCH_HOME"])
    secrets = LocalSecrets(home / "secrets.json")
    secrets.put("secret://telegram/bot_token", TOKEN)
    secrets.put("secret://local/service_api_key", world.service_key)
    for key, value in {
        "ORCH_TELEGRAM_BOT_TOKEN_REF": "secret://telegram/bot_token",
        "ORCH_TELEGRAM_API_BASE": world.telegram.url,
        "ORCH_SERVICE_API_KEY_REF": "secret://local/service_api_key",
        "ORCH_API_URL": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(key, value)
    handler.reset()
    try:
        runtime = handler.get_runtime()
        assert runtime is handler.get_runtime(), "one per process"
        assert runtime.bot.token == TOKEN and runtime.deps.settings.telegram_api_base == world.telegram.url
        assert runtime.deps.api.base_url == "http://127.0.0.1:9"
    finally:
        handler.reset()
    assert runtime.loop.is_closed()


# -- /secret PROJECT NAME ---------------------------------------------------------------------

VALUE = "s3cr3t-value-never-to-be-seen"


def _question(world: World) -> dict[str, Any]:
    """The bot's last question asking for a value (the Message Telegram made of it)."""
    asks = [c for c in world.telegram.calls_to("sendMessage") if "reply_markup" in c.params]
    assert asks, "no question was asked"
    assert asks[-1].params["reply_markup"]["force_reply"] is True
    return dict(asks[-1].result)


def _reply(
    world: World, from_id: int, text: str, question: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    before = len(world.telegram.sent_texts())
    update = message_update(from_id, text, reply_to=question)
    assert world.post(update)[0] == 200
    assert world.consume() == (1, 0)
    return update["message"], world.telegram.sent_texts()[before:]


def _stored(world: World, project: str, name: str) -> str | None:
    with world.client_for("alice") as alice:
        project_id = alice.get_project(project).id
    reference = f"secret://projects/{project_id}/{name}"
    secrets = world.api.deps.secrets
    return secrets.get(reference) if secrets.exists(reference) else None


def test_a_secret_given_by_reply_is_stored_its_message_deleted_and_only_its_name_confirmed(
    world: World,
) -> None:
    # given: alice's project
    with world.client_for("alice") as alice:
        alice.create_project("blog")
    # when: she asks to give a secret, and replies to the question with its value
    [asked] = world.say(ALICE_TG, "/secret blog API_TOKEN")
    assert asked.startswith("🔒 Reply to this message with the value of API_TOKEN for blog.")
    message, [confirmed] = _reply(world, ALICE_TG, f"  {VALUE}\n", _question(world))
    # then: stored by reference through the API, her message deleted, the name confirmed
    assert confirmed == "Saved API_TOKEN for blog. I deleted your message with the value."
    assert (ALICE_TG, message["message_id"]) in world.telegram.deleted
    assert _stored(world, "blog", "API_TOKEN") == VALUE
    with world.client_for("alice") as alice:
        assert [s.name for s in alice.list_secrets("blog")] == ["API_TOKEN"]
    assert not any(VALUE in str(c.params) for c in world.telegram.calls)
    assert drain(world.queue, PO_INBOX) == [], "the value never reaches the Product Owner"
    # and: the wait is over, so her next message goes to the Product Owner again
    world.say(ALICE_TG, "thanks")
    assert [po.text for po in drain(world.queue, PO_INBOX)] == ["thanks"]


def test_secret_errors_get_one_clear_line_and_ask_nothing(world: World) -> None:
    with world.client_for("bob") as bob:
        bob.create_project("bobs-shop")
    with world.client_for("alice") as alice:
        alice.create_project("blog")
    not_found = "I can't find a project {} of yours. Your projects: /projects"
    assert world.say(ALICE_TG, "/secret nope API_TOKEN") == [not_found.format("nope")]
    assert world.say(ALICE_TG, "/secret bobs-shop API_TOKEN") == [not_found.format("bobs-shop")]
    [bad_name] = world.say(ALICE_TG, "/secret blog api-token")
    assert bad_name.startswith("api-token is not a secret name")
    assert world.say(ALICE_TG, "/secret") == [
        "Usage: /secret <project> <NAME>, e.g. /secret blog API_TOKEN. I then ask for the value."
    ]
    # the value typed into the command itself: deleted at once
    update = message_update(ALICE_TG, f"/secret blog API_TOKEN {VALUE}")
    assert world.post(update)[0] == 200 and world.consume() == (1, 0)
    assert (ALICE_TG, update["message"]["message_id"]) in world.telegram.deleted
    assert world.telegram.sent_texts()[-1].startswith("Please don't put the value in the command")
    assert not [c for c in world.telegram.calls_to("sendMessage") if "reply_markup" in c.params]
    assert _stored(world, "blog", "API_TOKEN") is None and drain(world.queue, PO_INBOX) == []


def test_while_a_value_is_owed_other_text_is_deleted_not_sent_to_the_po_and_cancel_ends_the_wait(
    world: World,
) -> None:
    with world.client_for("alice") as alice:
        alice.create_project("blog")
    world.say(ALICE_TG, "/secret blog API_TOKEN")
    question = _question(world)
    # the value sent without replying: deleted, held back, nothing stored
    update = message_update(ALICE_TG, VALUE)
    assert world.post(update)[0] == 200 and world.consume() == (1, 0)
    assert (ALICE_TG, update["message"]["message_id"]) in world.telegram.deleted
    assert world.telegram.sent_texts()[-1].startswith("I'm waiting for a secret value")
    assert drain(world.queue, PO_INBOX) == []
    # commands still work meanwhile; /cancel ends the wait
    assert world.say(ALICE_TG, "/projects")[0].startswith("Your projects (1)")
    assert world.say(ALICE_TG, "/cancel") == ["OK, I stopped waiting for the secret. Nothing was stored."]
    # a late reply to the cancelled question: deleted, not stored
    message, [expired] = _reply(world, ALICE_TG, VALUE, question)
    assert expired.startswith("That question has expired or was cancelled")
    assert (ALICE_TG, message["message_id"]) in world.telegram.deleted
    assert _stored(world, "blog", "API_TOKEN") is None
    assert world.say(ALICE_TG, "/cancel") == ["Which task? Use /cancel <task>; /status lists your tasks."]
    world.say(ALICE_TG, "hello again")
    assert [po.text for po in drain(world.queue, PO_INBOX)] == ["hello again"]


def test_cancel_as_a_reply_to_the_question_and_someone_elses_reply_store_nothing(world: World) -> None:
    with world.client_for("alice") as alice:
        alice.create_project("blog")
    world.say(ALICE_TG, "/secret blog API_TOKEN")
    question = _question(world)
    # bob replies to alice's question (a group chat would allow it): nothing of his is stored
    _, [bobs] = _reply(world, BOB_TG, "bob's value", question)
    assert bobs.startswith("That question has expired or was cancelled")
    _, [cancelled] = _reply(world, ALICE_TG, "/cancel", question)
    assert cancelled == "OK, I stopped waiting for the secret. Nothing was stored."
    assert _stored(world, "blog", "API_TOKEN") is None


def test_a_failing_api_leaves_the_question_open_for_the_redelivery(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world.client_for("alice") as alice:
        alice.create_project("blog")
    world.say(ALICE_TG, "/secret blog API_TOKEN")
    question = _question(world)

    def store_down(reference: str, value: str) -> None:
        raise RuntimeError("store down")

    with monkeypatch.context() as patched:
        patched.setattr(world.api.deps.secrets, "put", store_down)
        assert world.post(message_update(ALICE_TG, VALUE, reply_to=question))[0] == 200
        assert world.consume() == (0, 1), "the record fails and is redelivered"
    assert world.consume() == (1, 0)
    assert _stored(world, "blog", "API_TOKEN") == VALUE
    assert (
        world.telegram.sent_texts()[-1] == "Saved API_TOKEN for blog. I deleted your message with the value."
    )


def test_a_value_telegram_will_not_delete_is_stored_and_the_person_asked_to_delete_it(world: World) -> None:
    with world.client_for("alice") as alice:
        alice.create_project("blog")
    world.say(ALICE_TG, "/secret blog API_TOKEN")
    world.telegram.fail("deleteMessage", status=400, description="Bad Request: message can't be deleted")
    _, [said] = _reply(world, ALICE_TG, VALUE, _question(world))
    assert (
        said
        == "Saved API_TOKEN for blog. I could not delete your message with the value: please delete it yourself."
    )
    assert _stored(world, "blog", "API_TOKEN") == VALUE
