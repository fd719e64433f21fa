"""The Product Owner hears how the work it started ended (issue 21): "how is my blog?" after the task ended
is answered from the "What happened since we last spoke:" block the consumer put before the message, and
the same question again finds no news (the marker moved) and falls back to the task list (the embedded
stack with `--telegram`, a fake Bot API, the fake PO agent running the real `orchestrator` CLI)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.e2e.test_product_owner import ADMIN_TG, _replies, po_stack  # noqa: F401  (a fixture used here)
from tests.fakes.telegram_server import message_update

ENDED = ("COMPLETED", "FAILED", "CANCELLED")


@pytest.mark.slow
def test_how_is_my_blog_is_answered_from_the_tasks_outcome_once(
    po_stack: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    stack, telegram = po_stack
    admin_key = LocalSecrets(stack.home / "secrets.json").get("secret://local/admin_api_key")
    with ApiClient(stack.url, admin_key) as admin:
        admin.add_user("alice", telegram_id=ADMIN_TG)

    # given: a wish that became a task, and that task has ended
    telegram.push_update(message_update(ADMIN_TG, "make a blog"))
    telegram.wait_for(lambda: len(_replies(telegram)) >= 1, timeout=120)
    started = _replies(telegram)[0]
    assert started.startswith("Started project blog, task "), started
    task_id = started.removeprefix("Started project blog, task ").split(" ", 1)[0]
    with ApiClient(stack.url, admin_key) as admin:
        ended = telegram.wait_for(lambda: admin.get_task(task_id).status.value in ENDED, timeout=120)
        assert ended
        status = admin.get_task(task_id).status.value

    # when: the person asks how it went
    telegram.push_update(message_update(ADMIN_TG, "how is my blog?"))
    telegram.wait_for(lambda: len(_replies(telegram)) >= 2, timeout=120)

    # then: the PO had the outcome in front of the message
    told = _replies(telegram)[1]
    assert told.startswith("What happened since we last spoke:"), told
    assert f"engineering task {task_id} on blog: {status}" in told, told

    # and asked again, there is no news: the PO checks the task list instead
    telegram.push_update(message_update(ADMIN_TG, "how is my blog?"))
    telegram.wait_for(lambda: len(_replies(telegram)) >= 3, timeout=120)
    again = _replies(telegram)[2]
    assert again.startswith("No news; tasks: "), again
    assert f"{task_id} {status}" in again, again
