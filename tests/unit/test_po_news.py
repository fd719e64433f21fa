"""The Product Owner hears how the person's tasks ended: the news goes in front of the next message handed
to the PO worker, and counts as told only once the worker's list holds that very text."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.product_owner.instructions import PO_INSTRUCTIONS
from functions.product_owner.logic import NEWS_HEADER, PERSON_HEADER, ProductOwner, build_prompt, news_block
from shared.api_client import ApiUnreachable
from shared.contracts import PO_INBOX, WORKER_COMMANDS, CreateWorkerResponse, SendMessageResponse
from shared.contracts.news import News, TaskOutcome
from tests.factories import drain
from tests.unit.test_product_owner import NOW, FakeApi, _api, _inbox, make_po

MARKER = NOW + timedelta(minutes=5)


@pytest.fixture
def po(tmp_path: Path) -> ProductOwner:
    return make_po(tmp_path)


def _ended(task_type: str, status: str, **facts: Any) -> TaskOutcome:
    return TaskOutcome(
        task_id=f"t-{task_type[:3]}",
        type=task_type,
        project_id="p1",
        project_name="blog",
        status=status,
        **facts,
    )


def _news(more: bool = False) -> News:
    """An engineering task stopped by its budget, then a deploy that serves."""
    items = [
        _ended(
            "engineering",
            "FAILED",
            failure_reason="budget",
            error="budget: the task budget $1.00 (spent $1.02)",
            cost_usd=1.02,
            finished_at=NOW,
        ),
        _ended("deploy", "COMPLETED", deployed_url="https://blog.example.org", finished_at=MARKER),
    ]
    return News(user_id="u-alice", since=NOW, items=items, marker=MARKER, more=more)


def _live_worker(po: ProductOwner) -> None:
    """Alice's PO worker is running and has had its first message."""
    po.on_inbox(_inbox(1))
    [create] = drain(po.queue, WORKER_COMMANDS)
    _api(po).record("w-1", create)
    po.on_response(CreateWorkerResponse(request_id=create.request_id, success=True, worker_id="w-1"))


def _body(po: ProductOwner, request_id: str) -> str:
    return next(body for _, rid, body, _ in _api(po).sent if rid == request_id)


def test_without_news_the_message_goes_as_before_and_nothing_is_marked(po: ProductOwner) -> None:
    _live_worker(po)
    po.on_inbox(_inbox(2, "how is my blog?"))
    assert _body(po, "po:tg:2") == f"{PERSON_HEADER}de):\n\nhow is my blog?"
    assert _api(po).news_seen == []


def test_news_goes_first_and_is_marked_told_after_the_handover(po: ProductOwner) -> None:
    # given
    _live_worker(po)
    _api(po).news["u-alice"] = _news()
    # when
    po.on_inbox(_inbox(2, "how is my blog?"))
    # then
    body = _body(po, "po:tg:2")
    news, _, message = body.partition(f"\n\n{PERSON_HEADER}")
    assert news.splitlines() == [
        NEWS_HEADER,
        "- engineering task t-eng on blog: FAILED (reason: budget); "
        "error: budget: the task budget $1.00 (spent $1.02); cost $1.02",
        "- deploy task t-dep on blog: COMPLETED, serving at https://blog.example.org",
    ]
    assert message == "de):\n\nhow is my blog?"
    assert _api(po).news_seen == [("u-alice", MARKER)]
    # the next message has no news again
    po.on_inbox(_inbox(3, "thanks"))
    assert not _body(po, "po:tg:3").startswith(NEWS_HEADER)
    assert _api(po).news_seen == [("u-alice", MARKER)]


def test_news_is_marked_only_after_the_api_holds_the_message(po: ProductOwner) -> None:
    class Refusing(FakeApi):
        def send_worker_message(self, *args: object, **kwargs: object) -> object:
            raise ApiUnreachable("http://api.test", "down", "the API is down")

    _live_worker(po)
    refusing = Refusing()
    refusing.__dict__.update(_api(po).__dict__)
    po.api = refusing  # type: ignore[assignment]
    refusing.news["u-alice"] = _news()
    with pytest.raises(ApiUnreachable):
        po.on_inbox(_inbox(2, "how is my blog?"))
    assert refusing.news_seen == [], "a message not handed over told nothing: its redelivery carries the news"


def test_a_redelivered_message_does_not_count_later_news_as_told(po: ProductOwner) -> None:
    # given: message 2 was handed over without news, then a task ended
    _live_worker(po)
    po.on_inbox(_inbox(2, "how is my blog?"))
    _api(po).news["u-alice"] = _news()
    # when: message 2 is redelivered (the API keeps its first text)
    po.on_inbox(_inbox(2, "how is my blog?"))
    # then: the news waits for the next message
    assert _api(po).news_seen == []
    po.on_inbox(_inbox(3, "and now?"))
    assert _body(po, "po:tg:3").startswith(NEWS_HEADER) and _api(po).news_seen == [("u-alice", MARKER)]


def test_the_first_message_to_a_new_worker_carries_the_news(po: ProductOwner) -> None:
    _api(po).news["u-alice"] = _news(more=True)
    po.on_inbox(_inbox(1, "how is my blog?"))
    [create] = drain(po.queue, WORKER_COMMANDS)
    assert _api(po).news_seen == [], "nothing handed over yet: the worker is starting"
    _api(po).record("w-1", create)
    po.on_response(CreateWorkerResponse(request_id=create.request_id, success=True, worker_id="w-1"))
    body = _body(po, "po:tg:1")
    assert body.startswith(NEWS_HEADER) and body.endswith("\n\nhow is my blog?")
    assert "- (more tasks ended: `orchestrator task list --json`)" in body
    assert _api(po).news_seen == [("u-alice", MARKER)]


def test_news_the_api_cannot_give_never_holds_the_message_back(po: ProductOwner) -> None:
    class NoNews(FakeApi):
        def user_news(self, user_id: str) -> News:
            raise ApiUnreachable("http://api.test", "timeout", "the API did not answer")

    _live_worker(po)
    no_news = NoNews()
    no_news.__dict__.update(_api(po).__dict__)
    po.api = no_news  # type: ignore[assignment]
    po.on_inbox(_inbox(2, "how is my blog?"))
    assert _body(po, "po:tg:2") == f"{PERSON_HEADER}de):\n\nhow is my blog?"
    assert no_news.news_seen == []


def test_a_message_with_news_the_worker_never_began_is_requeued_as_the_persons_words(
    po: ProductOwner,
) -> None:
    _live_worker(po)
    _api(po).news["u-alice"] = _news()
    po.on_inbox(_inbox(2, "how is my blog?\n\nand the shop?"))
    po.on_response(
        SendMessageResponse(
            request_id="po:tg:2", success=False, worker_id="w-1", error="worker w-1 has ended"
        )
    )
    [again] = drain(po.queue, PO_INBOX)
    assert (again.text, again.language_code) == ("how is my blog?\n\nand the shop?", "de")


def test_a_prompt_without_news_is_unchanged_from_before() -> None:
    assert build_prompt("hi", None) == "Message from the person (Telegram language: unknown):\n\nhi"
    assert news_block(News(user_id="u", since=NOW)) == ""


def test_the_instructions_know_spend_gates_and_answer_from_facts() -> None:
    for needed in (
        "orchestrator usage",
        "orchestrator budget show",
        "orchestrator budget set",
        "orchestrator task approve TASK",
        "orchestrator task reject TASK",
        "orchestrator task resume TASK --guidance",
        "WAITING_APPROVAL",
        "WAITING_HUMAN_REVIEW",
        "`budget`",
        NEWS_HEADER,
    ):
        assert needed in PO_INSTRUCTIONS, needed
    assert "never guess" in PO_INSTRUCTIONS
