"""The Product Owner end to end: the embedded stack with `--telegram`, a fake Bot API, and a fake PO
agent (the `command` agent) that runs the real `orchestrator` CLI with the person's own key."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.api_client import ApiClient
from shared.contracts import PO_INBOX, ProductOwnerMessage
from shared.queues.local import LocalQueue
from shared.secrets.local import LocalSecrets
from tests.e2e.test_local_stack import Stack
from tests.fakes.telegram_server import FakeTelegram, message_update
from tests.process_hygiene import kill_workers

FAKES = Path(__file__).parents[1] / "fakes" / "agents"
TOKEN = "31337:po-e2e-token_for-tests"
ADMIN_TG = 5151


def _orchestrator() -> str:
    found = shutil.which("orchestrator", path=str(Path(sys.executable).parent))
    assert found, "the orchestrator console script is not installed in this environment"
    return found


@pytest.fixture
def po_stack() -> Iterator[tuple[Stack, FakeTelegram]]:
    home = Path(os.environ["ORCH_HOME"])
    with FakeTelegram(TOKEN) as telegram:
        stack = Stack(
            home,
            env={
                "ORCH_PO_AGENT": "command",
                "ORCH_PO_AGENT_COMMAND": str(FAKES / "po-agent"),
                "FAKE_PO_ORCHESTRATOR": _orchestrator(),
                "FAKE_PO_SLEEP": "2",
                "ORCH_TELEGRAM_BOT_TOKEN": TOKEN,
                "ORCH_TELEGRAM_API_BASE": telegram.url,
                "ORCH_TELEGRAM_ADMINS": str(ADMIN_TG),
                "ORCH_WORKER_IDLE_TIMEOUT_S": "60",
                "ORCH_QUEUE_VISIBILITY_TIMEOUT": "10",
            },
            args=("--telegram",),
        )
        stack.start()
        try:
            yield stack, telegram
        finally:
            if stack.process and stack.process.poll() is None:
                stack.stop()
            kill_workers(home)


def _replies(telegram: FakeTelegram) -> list[str]:
    """The PO's answers (the fake agent names its worker), not the task progress notices."""
    return [text for text in telegram.sent_texts() if "(w-" in text]


def test_a_wish_in_telegram_becomes_a_project_and_a_task_by_one_po_worker(
    po_stack: tuple[Stack, FakeTelegram],
) -> None:
    stack, telegram = po_stack
    admin_key = LocalSecrets(stack.home / "secrets.json").get("secret://local/admin_api_key")
    with ApiClient(stack.url, admin_key) as admin:
        alice = admin.add_user("alice", telegram_id=ADMIN_TG)

    # given: a wish, then (while the PO works on it) a second message, and the wish again (a duplicate)
    first = message_update(ADMIN_TG, "make a blog")
    telegram.push_update(first)
    telegram.wait_for(lambda: telegram.calls_to("sendChatAction"), timeout=30)
    telegram.push_update(message_update(ADMIN_TG, "with comments, please"))
    telegram.push_update(first)
    LocalQueue(stack.home / "queue.db").publish(
        PO_INBOX,
        ProductOwnerMessage(
            request_id=f"tg:{first['update_id']}",
            telegram_user_id=ADMIN_TG,
            chat_id=ADMIN_TG,
            message_id=first["message"]["message_id"],
            text="make a blog",
            user_id=alice.id,
        ),
    )  # a redelivered inbox message, past the bot's own duplicate check

    # then: two answers, in order, from one worker
    telegram.wait_for(lambda: len(_replies(telegram)) >= 2, timeout=90)
    time.sleep(3)  # room for a wrong third answer (the duplicate) to show up
    replies = _replies(telegram)
    assert len(replies) == 2, replies
    assert replies[0].startswith("Started project blog, task "), replies
    assert "<b>what</b> should it *show*?" in replies[0]  # plain text: sent as written, no parse mode
    assert replies[1].startswith("Noted: with comments, please"), replies
    worker_of = [reply.rsplit("(", 1)[1].split(")")[0] for reply in replies]
    assert worker_of[0] == worker_of[1] and worker_of[0].startswith("w-")

    with ApiClient(stack.url, admin_key) as admin:
        [project] = [p for p in admin.list_projects() if p.name == "blog"]
        assert project.owner_id == alice.id
        tasks = list(admin.iter_tasks(project=project.id))
        assert len(tasks) == 1 and tasks[0].user_id == alice.id and tasks[0].id in replies[0]
        detail = admin.get_worker(worker_of[0])
        assert detail.config["name"] == f"po-{alice.id}" and detail.task_id is None
        assert detail.config["env_vars"]["ORCH_API_KEY"] == f"secret://po/{alice.id}/api_key"
        messages = admin.list_worker_messages(detail.id)
        assert [m.status for m in messages] == ["DONE", "DONE"]

    # and the notifier: the task's status message, edited in place as it advances, then one final message
    def final_sent() -> bool:
        return any(text.startswith("✅ blog") for text in telegram.sent_texts())

    telegram.wait_for(final_sent, timeout=90)
    calls = [c for c in telegram.calls if c.status == 200 and c.method in ("sendMessage", "editMessageText")]
    texts = [str(c.params.get("text", "")) for c in calls]
    reply_at = next(i for i, t in enumerate(texts) if t.startswith("Started project blog"))
    final_at = next(i for i, t in enumerate(texts) if t.startswith("✅ blog"))
    status = [
        i
        for i, c in enumerate(calls)
        if c.method == "sendMessage" and texts[i].startswith("blog · engineering")
    ]
    edits = [
        i
        for i, c in enumerate(calls)
        if c.method == "editMessageText" and texts[i].startswith("blog · engineering")
    ]
    assert len(status) == 1, texts  # one status message for the task
    assert edits and status[0] < edits[0] < final_at, texts  # edited in place before the outcome
    assert reply_at < final_at, texts  # the PO's answer comes before the task's outcome
    assert sum(t.startswith("✅ blog") for t in texts) == 1, texts

    # and the conversation outlives its worker: stopped, the next message starts a new PO that remembers
    with ApiClient(stack.url, admin_key) as admin:
        admin.stop_worker(worker_of[0])
        deadline = time.monotonic() + 30
        while admin.get_worker(worker_of[0]).status not in ("STOPPED", "FAILED"):
            assert time.monotonic() < deadline, "the PO worker did not stop"
            time.sleep(0.2)
    telegram.push_update(message_update(ADMIN_TG, "what did I say?"))
    telegram.wait_for(lambda: any(r.startswith("Earlier you wrote:") for r in _replies(telegram)), timeout=60)
    [memory] = [r for r in _replies(telegram) if r.startswith("Earlier you wrote:")]
    assert "make a blog | with comments, please" in memory, memory
    assert memory.rsplit("(", 1)[1].split(")")[0] != worker_of[0]  # a new worker, the same conversation
    assert (stack.home / "sessions" / "po" / f"{alice.id}.tar.gz").exists()  # saved before the stop
