"""A secret given by `/secret` goes to the secret store and nowhere else (issue 20, item 6).

The embedded stack with `--telegram` (long polling, the bot consumer, the Product Owner with a fake
`command` agent that keeps a transcript in its session folder), a fake Bot API. A person talks to
their PO, gives a canary by `/secret` (as a reply, and a second one without replying while the bot
waits), talks to the PO again. Then the canaries are looked for everywhere a value could leak to: every
file the stack and its workers wrote (logs, workspaces, transcripts, saved session archives,
unpacked), every Telegram call the stack made, every API answer the person and an admin can read
(events, worker messages, projects, tasks, secrets). The one place the value may be is the secret
store, under the secret's reference.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.e2e.test_local_stack import Stack
from tests.e2e.test_product_owner import FAKES, _orchestrator
from tests.fakes.telegram_server import FakeTelegram, message_update
from tests.process_hygiene import kill_workers

pytestmark = pytest.mark.slow

TOKEN = "31337:canary-token_for-tests"
ALICE_TG = 6161
SECRET_STORE = "secrets.json"
"""The local secrets port's file: where the value belongs."""
TRANSPORT = frozenset({"queue.db", "queue.db-wal", "queue.db-shm"})
"""The local queue, which carries the update holding the value to the bot (as SQS does in AWS). It is
no log, event or transcript, and the consumed message is deleted, but SQLite may keep the deleted
bytes in its write-ahead log or free pages until they are overwritten, so it is not searched here."""


@pytest.fixture
def telegram_stack() -> Iterator[tuple[Stack, FakeTelegram]]:
    home = Path(os.environ["ORCH_HOME"])
    with FakeTelegram(TOKEN) as telegram:
        env = {
            "ORCH_PO_AGENT": "command",
            "ORCH_PO_AGENT_COMMAND": str(FAKES / "po-agent"),
            "FAKE_PO_ORCHESTRATOR": _orchestrator(),
            "ORCH_TELEGRAM_BOT_TOKEN": TOKEN,
            "ORCH_TELEGRAM_API_BASE": telegram.url,
            "ORCH_LOG_LEVEL": "DEBUG",
            "ORCH_WORKER_WORKSPACE_ROOT": str(home.parent / "workspaces"),  # searched with the rest
        }
        stack = Stack(home, env=env, args=("--telegram",))
        stack.start()
        try:
            yield stack, telegram
        finally:
            if stack.process and stack.process.poll() is None:
                stack.stop()
            kill_workers(home)


def _wait(stack: Stack, telegram: FakeTelegram, check: Callable[[], Any], timeout: float = 60) -> Any:
    """`telegram.wait_for`, failing with the end of the stack's log (a PO worker starts slowly on a busy
    machine: the deadlines are generous, not speed goals)."""
    try:
        return telegram.wait_for(check, timeout=timeout)
    except AssertionError:
        lines = (stack.home.parent / "stack.err").read_text(errors="replace").splitlines()
        news = [line for line in lines if "scheduled job" not in line and not line.startswith('{"_aws"')]
        raise AssertionError("timed out; the stack's log ends with:\n" + "\n".join(news[-25:])) from None


def _po_replies(telegram: FakeTelegram) -> list[str]:
    return [text for text in telegram.sent_texts() if "(w-" in text]


def _say(telegram: FakeTelegram, text: str, reply_to: dict[str, Any] | None = None) -> dict[str, Any]:
    update = message_update(ALICE_TG, text, reply_to=reply_to)
    telegram.push_update(update)
    return dict(update["message"])


def _question(stack: Stack, telegram: FakeTelegram, name: str) -> dict[str, Any]:
    def asked() -> Any:
        return next(
            (
                c.result
                for c in telegram.calls_to("sendMessage")
                if c.status == 200 and name in str(c.params["text"])
            ),
            None,
        )

    return dict(_wait(stack, telegram, asked))


def _files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file below `root`, archives also unpacked (a saved session is a .tar.gz)."""
    skipped = TRANSPORT | {SECRET_STORE}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skipped):
        data = path.read_bytes()
        yield str(path.relative_to(root)), data
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                for member in archive.getmembers():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        yield f"{path.relative_to(root)}!{member.name}", extracted.read()
        elif path.name.endswith(".gz"):
            yield f"{path.relative_to(root)}!", gzip.decompress(data)


def _api_answers(client: ApiClient, project_id: str) -> dict[str, Any]:
    """Everything the caller can read about the project and its workers, as the API answers it."""
    answers: dict[str, Any] = {}
    for path in (
        "/me",
        "/projects",
        f"/projects/{project_id}",
        f"/projects/{project_id}/secrets",
        "/workers",
    ):
        answers[path] = client.request("GET", path)
    for task in client.iter_tasks():
        answers[f"/tasks/{task.id}"] = client.request("GET", f"/tasks/{task.id}")
        answers[f"/tasks/{task.id}/events"] = client.request("GET", f"/tasks/{task.id}/events")
    for worker in client.list_workers():
        answers[f"/workers/{worker.id}/messages"] = client.request("GET", f"/workers/{worker.id}/messages")
    return answers


def test_a_secret_given_by_telegram_appears_nowhere_but_the_secret_store(
    telegram_stack: tuple[Stack, FakeTelegram],
) -> None:
    stack, telegram = telegram_stack
    replied, held_back = f"canary-{uuid.uuid4().hex}", f"canary-{uuid.uuid4().hex}"
    admin_key = LocalSecrets(stack.home / SECRET_STORE).get("secret://local/admin_api_key")
    with ApiClient(stack.url, admin_key) as admin:
        alice = admin.add_user("alice", telegram_id=ALICE_TG)
        alice_key = admin.create_api_key(alice.id, scopes=["user"]).key
    with ApiClient(stack.url, alice_key) as as_alice:
        project = as_alice.create_project("shop", "a shop")

    # given: a conversation with the Product Owner (its transcript is saved after every answer)
    _say(telegram, "hello")
    _wait(stack, telegram, lambda: _po_replies(telegram), timeout=240)

    # when: a secret given as a reply to the bot's question
    _say(telegram, "/secret shop API_TOKEN")
    value_message = _say(telegram, replied, reply_to=_question(stack, telegram, "API_TOKEN"))
    _wait(stack, telegram, lambda: "Saved API_TOKEN for shop." in " ".join(telegram.sent_texts()))
    # and a second one sent without replying while the bot waits, then cancelled
    _say(telegram, "/secret shop OTHER_TOKEN")
    _question(stack, telegram, "OTHER_TOKEN")
    stray_message = _say(telegram, held_back)
    _wait(stack, telegram, lambda: "I'm waiting for a secret value" in " ".join(telegram.sent_texts()))
    _say(telegram, "/cancel")
    _wait(stack, telegram, lambda: "I stopped waiting" in " ".join(telegram.sent_texts()))
    # and the conversation goes on
    _say(telegram, "what did I say?")
    _wait(
        stack, telegram, lambda: any(r.startswith("Earlier you wrote:") for r in _po_replies(telegram)), 240
    )

    # then: both messages holding a value were deleted, and the PO heard neither
    assert {
        (ALICE_TG, value_message["message_id"]),
        (ALICE_TG, stray_message["message_id"]),
    } <= telegram.deleted
    [memory] = [r for r in _po_replies(telegram) if r.startswith("Earlier you wrote:")]
    assert "hello" in memory
    # and the value is in the secret store under its reference, readable by its owner's project only
    reference = f"secret://projects/{project.id}/API_TOKEN"
    assert LocalSecrets(stack.home / SECRET_STORE).get(reference) == replied
    with ApiClient(stack.url, alice_key) as as_alice:
        assert [s.name for s in as_alice.list_secrets("shop")] == ["API_TOKEN"]
        answers = {"alice": _api_answers(as_alice, project.id)}
    with ApiClient(stack.url, admin_key) as admin:
        answers["admin"] = _api_answers(admin, project.id)
    # and neither canary is in any API answer, any Telegram call of the stack, any file but the store
    seen_by_api = json.dumps(answers)
    sent = [json.dumps(c.params) for c in telegram.calls if c.method != "getUpdates"]
    assert stack.stop() == 0  # logs flushed, sessions saved
    files = list(_files(stack.home.parent))
    transcripts = [data for name, data in files if name.startswith("orch-home/sessions/po/") and "!" in name]
    assert any(b"what did I say?" in data for data in transcripts), (
        "the saved PO session, unpacked, is searched"
    )
    assert any(name.startswith("workspaces/") for name, _ in files), "the PO's workspace is searched"
    assert any(name.endswith("stack.err") and b"secret stored" in data for name, data in files), (
        "the stack's log"
    )
    for canary in (replied, held_back):
        assert canary not in seen_by_api
        assert not [s for s in sent if canary in s]
        assert [name for name, data in files if canary.encode() in data] == []
