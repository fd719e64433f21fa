"""The Product Owner's logic with fakes: who may talk to it, one worker per person, order, one answer
per message, and what reaches the chat."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.product_owner import handler as handler_module
from functions.product_owner.handler import lambda_handler
from functions.product_owner.logic import (
    ADMIN_REFUSED,
    NO_ACCOUNT,
    Busy,
    PoConfig,
    ProductOwner,
    start_claim,
)
from shared.api_client import AuthError
from shared.contracts import (
    PO_INBOX,
    PO_RESPONSES,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerResponse,
    ProductOwnerMessage,
    SendMessageResponse,
    WorkerActivity,
)
from shared.contracts.api import ApiKeyCreated, User, Worker, WorkerDetail
from shared.contracts.news import News
from shared.idempotency import SqliteIdempotency
from shared.queues.local import LocalQueue
from shared.queues.local_runner import sqs_event
from shared.secrets.local import LocalSecrets
from shared.workers.fargate import check_worker_env
from tests.factories import drain

NOW = datetime(2026, 11, 1, tzinfo=UTC)
ALICE_TG = 77


class FakeApi:
    def __init__(self) -> None:
        self.users = [
            User(id="u-alice", name="alice", telegram_id=ALICE_TG, is_admin=False, created_at=NOW),
            User(id="u-root", name="root", telegram_id=1, is_admin=True, created_at=NOW),
        ]
        self.workers: dict[str, WorkerDetail] = {}
        self.keys: list[tuple[str, list[str]]] = []
        self.sent: list[tuple[str, str, str, int]] = []
        self.started: dict[str, datetime] = {}
        self.revoked: set[str] = set()
        self.listed = 0
        self.news: dict[str, News] = {}
        self.news_seen: list[tuple[str, datetime]] = []

    def list_users(self) -> list[User]:
        return list(self.users)

    def create_api_key(
        self, user_id: str, name: str = "cli", scopes: list[str] | None = None
    ) -> ApiKeyCreated:
        if next(u for u in self.users if u.id == user_id).is_admin:
            raise AuthError(403, "forbidden", "the service cannot create keys for an admin user")
        self.keys.append((user_id, list(scopes or [])))
        return ApiKeyCreated(
            id=f"k{len(self.keys)}",
            user_id=user_id,
            name=name,
            prefix="orch_",
            scopes=scopes or [],
            created_at=NOW,
            revoked_at=None,
            key=f"orch_key_of_{user_id}_{len(self.keys)}",
        )

    def key_works(self, key: str) -> bool:
        return key not in self.revoked

    def record(self, worker_id: str, command: CreateWorkerCommand, status: str = "RUNNING") -> None:
        config = {**command.config.model_dump(mode="json"), "context": dict(command.context)}
        self.workers[worker_id] = WorkerDetail(
            id=worker_id,
            task_id=None,
            agent=command.config.agent,
            runtime_handle="pid:1",
            status=status,
            exit_reason=None,
            started_at=NOW,
            stopped_at=None,
            config=config,
            create_request_id=command.request_id,
        )

    def list_workers(
        self, task_id: str | None = None, status: str | None = None, name: str | None = None
    ) -> list[Worker]:
        self.listed += 1
        return [
            Worker(**w.model_dump())
            for w in self.workers.values()
            if (status is None or w.status in status.split(",")) and name in (None, w.config.get("name"))
        ]

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return self.workers[worker_id]

    def send_worker_message(
        self,
        worker_id: str,
        request_id: str,
        body: str,
        kind: str = "message",
        path: str | None = None,
        timeout_s: int = 1800,
        correlation_id: str | None = None,
    ) -> Any:
        """What the API keeps for a request id is the first body sent with it."""
        self.sent.append((worker_id, request_id, body, timeout_s))
        kept = next(b for w, rid, b, _ in self.sent if (w, rid) == (worker_id, request_id))
        return type("M", (), {"request_id": request_id, "body": kept})()

    def user_news(self, user_id: str) -> News:
        return self.news.get(user_id) or News(user_id=user_id, since=NOW)

    def mark_news_seen(self, user_id: str, until: datetime) -> None:
        self.news_seen.append((user_id, until))
        self.news.pop(user_id, None)

    def list_worker_messages(self, worker_id: str) -> list[Any]:
        """What the API holds: never started unless the test says so."""
        return [
            type(
                "M",
                (),
                {"request_id": rid, "body": body, "started_at": self.started.get(rid), "correlation_id": "c"},
            )()
            for w, rid, body, _ in self.sent
            if w == worker_id
        ]

    def delivered(self) -> list[str]:
        """What the worker reads, in order: the API keeps the first message of each request id."""
        seen: list[str] = []
        for _worker, request_id, _body, _timeout in self.sent:
            if request_id not in seen:
                seen.append(request_id)
        return seen


class FakeChat:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.typing_in: list[int] = []

    def send_text(self, chat_id: int, text: str) -> None:
        self.sent.append((chat_id, text))

    def typing(self, chat_id: int) -> None:
        self.typing_in.append(chat_id)


def make_po(tmp_path: Path) -> ProductOwner:
    """The PO over fakes (an API, a chat) and the local queue, secrets and claims in `tmp_path`."""
    api = FakeApi()
    return ProductOwner(
        api,
        LocalQueue(tmp_path / "queue.db"),
        LocalSecrets(tmp_path / "secrets.json"),  # type: ignore[arg-type]
        SqliteIdempotency(tmp_path / "claims.db"),
        FakeChat(),
        PoConfig(agent="command", agent_command="po-agent", timeout_s=120, api_url="http://api.test"),
        key_works=api.key_works,
    )


@pytest.fixture
def po(tmp_path: Path) -> ProductOwner:
    return make_po(tmp_path)


def _inbox(update_id: int, text: str = "make a blog", telegram_id: int = ALICE_TG) -> ProductOwnerMessage:
    return ProductOwnerMessage(
        request_id=f"tg:{update_id}",
        telegram_user_id=telegram_id,
        chat_id=telegram_id,
        message_id=update_id,
        text=text,
        language_code="de",
    )


def _chat(po: ProductOwner) -> FakeChat:
    assert isinstance(po.chat, FakeChat)
    return po.chat


def _api(po: ProductOwner) -> FakeApi:
    assert isinstance(po.api, FakeApi)
    return po.api


def test_a_stranger_is_told_how_to_get_in_and_nothing_starts(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1, telegram_id=999))
    assert _chat(po).sent == [(999, NO_ACCOUNT)]
    assert drain(po.queue, WORKER_COMMANDS) == []


def test_an_admin_account_is_refused_politely(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1, telegram_id=1))
    assert _chat(po).sent == [(1, ADMIN_REFUSED)]
    assert drain(po.queue, WORKER_COMMANDS) == []
    assert po.claims.claim(start_claim("u-root"), 10)  # released: the next message may try again


def test_the_first_message_starts_one_worker_with_the_persons_key_by_reference(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    assert isinstance(create, CreateWorkerCommand)
    config = create.config
    assert (config.name, config.agent, config.reply_queue) == ("po-u-alice", "command", PO_RESPONSES)
    assert config.env_vars == {
        "ORCH_API_URL": "http://api.test",
        "ORCH_API_KEY": "secret://po/u-alice/api_key",
    }
    check_worker_env(config.env_vars)  # references only: what a Fargate launch accepts
    assert config.model_dump()["agent_options"] == {"command": "po-agent"}
    assert (
        config.instructions and "orchestrator" in config.instructions and "one or two" in config.instructions
    )
    assert create.context["chat_id"] == str(ALICE_TG) and create.context["first_text"] == "make a blog"
    assert create.context["session_key"] == "po/u-alice"  # the conversation outlives the worker
    assert config.activity_every_s == 4  # typing… stays on while the agent works
    assert "repo_url" not in create.context
    assert po.secrets.get("secret://po/u-alice/api_key") == "orch_key_of_u-alice_1"
    assert _api(po).keys == [("u-alice", ["user"])]
    assert _chat(po).typing_in == [ALICE_TG]


def test_messages_wait_for_the_start_then_go_in_order_to_the_same_worker(po: ProductOwner) -> None:
    # given: the first message asked for a worker
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    # when: a second message arrives before the worker is even recorded, it waits (no second worker)
    with pytest.raises(Busy):
        po.on_inbox(_inbox(2, "with comments"))
    assert drain(po.queue, WORKER_COMMANDS) == [] and _api(po).sent == []
    # when: the worker is recorded but still starting, the message queues behind the first one
    _api(po).record("w-1", create, status="STARTING")
    po.on_inbox(_inbox(2, "with comments"))
    # then the create's answer sends the first message again, and a redelivered first message too:
    # duplicates by request id, which the API drops
    po.on_response(CreateWorkerResponse(request_id=create.request_id, success=True, worker_id="w-1"))
    po.on_inbox(_inbox(1))
    sent = _api(po).sent
    assert all(worker == "w-1" for worker, *_ in sent) and drain(po.queue, WORKER_COMMANDS) == []
    assert _api(po).delivered() == ["po:tg:1", "po:tg:2"]  # one worker, in arrival order
    _, _, first_body, timeout = sent[0]
    assert first_body.endswith("\n\nmake a blog") and "Telegram language: de" in first_body
    assert timeout == 120
    assert po.api.keys == [("u-alice", ["user"])]  # type: ignore[attr-defined]  # the key is made once


def test_a_failed_start_is_explained_and_frees_the_next_attempt(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create, status="FAILED")
    failed = CreateWorkerResponse(
        request_id=create.request_id, success=False, worker_id="w-1", error="no capacity"
    )
    po.on_response(failed)
    po.on_response(failed)  # redelivered: said once
    assert [text for _, text in _chat(po).sent] == [
        "I could not start your Product Owner (no capacity). Please write again in a moment."
    ]
    po.on_inbox(_inbox(2))
    [again] = drain(po.queue, WORKER_COMMANDS)
    assert isinstance(again, CreateWorkerCommand) and again.request_id == "po-create:tg:2"


def test_answers_reach_the_chat_once_and_failures_are_explained(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create)
    answer = SendMessageResponse(
        request_id="po:tg:1", success=True, worker_id="w-1", response="Started *blog*"
    )
    po.on_response(answer)
    po.on_response(answer)  # an outbox redelivery
    po.on_response(SendMessageResponse(request_id="po:tg:2", success=False, worker_id="w-1", error="timeout"))
    po.on_response(DeleteWorkerResponse(request_id="d1", success=True, worker_id="w-1"))
    assert _chat(po).sent == [
        (ALICE_TG, "Started *blog*"),
        (ALICE_TG, "Sorry, the Product Owner stopped: timeout. Your next message starts a new one."),
    ]


def test_the_handler_holds_a_busy_message_back_briefly(po: ProductOwner) -> None:
    po.queue.publish(PO_INBOX, _inbox(1))
    po.queue.publish(PO_INBOX, _inbox(2))
    received = po.queue.receive(PO_INBOX, 10, visibility_timeout=30)
    assert len(received) == 2
    event = sqs_event(f"arn:aws:sqs:local:000000000000:orch-{PO_INBOX.replace(':', '-')}", received)
    result = lambda_handler(event, None, po=po)
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == [received[1].message_id]
    assert [type(c).__name__ for c in drain(po.queue, WORKER_COMMANDS)] == ["CreateWorkerCommand"]


def test_a_message_the_worker_never_began_starts_a_new_po_instead_of_an_apology(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create)
    po.on_response(CreateWorkerResponse(request_id=create.request_id, success=True, worker_id="w-1"))
    # the worker idled out just as the message arrived: the API fails the message it never began
    ended = SendMessageResponse(
        request_id="po:tg:1", success=False, worker_id="w-1", error="worker w-1 has ended"
    )
    po.on_response(ended)
    [again] = drain(po.queue, PO_INBOX)
    assert (again.request_id, again.text, again.language_code, again.chat_id) == (
        "tg:1:again",
        "make a blog",
        "de",
        ALICE_TG,
    )
    assert _chat(po).sent == []  # no apology: the message will be answered by a new worker
    # once only: the same message failing again is explained
    po.on_response(
        SendMessageResponse(request_id="po:tg:1:again", success=False, worker_id="w-1", error="gone")
    )
    assert drain(po.queue, PO_INBOX) == []
    assert [text for _, text in _chat(po).sent] == [
        "Sorry, the Product Owner stopped: gone. Your next message starts a new one."
    ]


def test_a_message_the_agent_had_begun_is_not_run_twice(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create)
    po.on_response(CreateWorkerResponse(request_id=create.request_id, success=True, worker_id="w-1"))
    _api(po).started["po:tg:1"] = NOW
    po.on_response(SendMessageResponse(request_id="po:tg:1", success=False, worker_id="w-1", error="timeout"))
    assert drain(po.queue, PO_INBOX) == []
    assert [text for _, text in _chat(po).sent] == [
        "Sorry, the Product Owner stopped: timeout. Your next message starts a new one."
    ]


def test_a_revoked_key_is_replaced_when_the_next_po_starts(po: ProductOwner) -> None:
    # given: a first PO ran with the person's key, then an admin revoked that key and the PO ended
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create, status="STOPPED")
    po.claims.release(start_claim("u-alice"))
    _api(po).revoked.add("orch_key_of_u-alice_1")
    # when
    po.on_inbox(_inbox(2))
    # then: a new key, stored under the same reference (the worker config does not change)
    [again] = drain(po.queue, WORKER_COMMANDS)
    assert isinstance(again, CreateWorkerCommand)
    assert again.config.env_vars["ORCH_API_KEY"] == "secret://po/u-alice/api_key"
    assert po.secrets.get("secret://po/u-alice/api_key") == "orch_key_of_u-alice_2"
    assert _api(po).keys == [("u-alice", ["user"]), ("u-alice", ["user"])]


def test_a_working_key_is_kept(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create, status="STOPPED")
    po.claims.release(start_claim("u-alice"))
    po.on_inbox(_inbox(2))
    assert len(drain(po.queue, WORKER_COMMANDS)) == 1
    assert _api(po).keys == [("u-alice", ["user"])]


def test_activity_keeps_the_typing_indicator_on(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create)
    typed_before = len(_chat(po).typing_in)
    for _ in range(3):
        po.on_response(WorkerActivity(request_id="po:tg:1", success=True, worker_id="w-1"))
    po.on_response(WorkerActivity(request_id="po:x", success=True, worker_id="w-unknown"))
    po.on_response(
        WorkerActivity(request_id="po:tg:1", success=True, worker_id="w-1", timestamp=NOW)
    )  # stale
    assert _chat(po).typing_in[typed_before:] == [ALICE_TG] * 3
    assert _chat(po).sent == []  # activity is never a message


def test_the_live_worker_is_found_with_one_filtered_list(po: ProductOwner) -> None:
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create)
    listed = _api(po).listed
    assert (live := po.live_worker("u-alice")) is not None and live.id == "w-1"
    assert _api(po).listed == listed + 1
    assert po.live_worker("u-bob") is None


def test_a_message_held_back_too_often_is_requeued_not_dead_lettered(
    po: ProductOwner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_module, "BUSY_RETRY_S", 0)
    po.on_inbox(_inbox(1))  # a start is in flight, and its worker is not recorded yet
    drain(po.queue, WORKER_COMMANDS)
    po.queue.publish(PO_INBOX, _inbox(2, "with comments"))
    arn = f"arn:aws:sqs:local:000000000000:orch-{PO_INBOX.replace(':', '-')}"
    for attempt in range(1, 4):
        [record] = po.queue.receive(PO_INBOX, 1, visibility_timeout=0)
        result = lambda_handler(sqs_event(arn, [record]), None, po=po)
        assert bool(result["batchItemFailures"]) == (attempt < 3), attempt
    po.queue.delete(PO_INBOX, record.receipt_handle)  # what the poller does with a success
    [requeued] = drain(po.queue, PO_INBOX)  # a new message: its receive count starts again
    assert (requeued.request_id, requeued.text) == ("tg:2", "with comments")
    assert po.queue.dead_letters(PO_INBOX) == []


def test_the_instructions_ask_for_secrets_by_name_and_never_take_a_value() -> None:
    from functions.product_owner.instructions import PO_INSTRUCTIONS

    assert "`/secret PROJECT NAME`" in PO_INSTRUCTIONS
    assert "`orchestrator secret set PROJECT NAME`" in PO_INSTRUCTIONS  # what the person may run
    assert "`orchestrator secret list PROJECT --json`" in PO_INSTRUCTIONS
    assert "KEY VALUE" not in PO_INSTRUCTIONS
