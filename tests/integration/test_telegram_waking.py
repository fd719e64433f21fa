"""The bot while the API's database wakes up: it says "waking up" once, waits as the API tells it, then answers;
past the client's wait the update fails and is redelivered. The world is tests/integration/test_telegram_bot.py's."""

from __future__ import annotations

import json

import httpx

from functions.api.handler import lambda_handler as api_handler
from functions.telegram_bot import texts
from functions.telegram_bot.bot import BotDeps
from functions.telegram_bot.handler import BotRuntime
from functions.telegram_bot.handler import lambda_handler as bot_handler
from shared.api_client import ApiClient
from shared.apigw import LambdaTransport
from shared.contracts import TELEGRAM_UPDATES
from shared.queues.local_runner import QueuePoller
from tests.fakes.telegram_server import message_update
from tests.integration import test_telegram_bot as bot_world
from tests.integration.test_telegram_bot import ALICE_TG, TOKEN, World

# the fixtures of that module's world, used here under their names
telegram, bot_runtime, world = bot_world.telegram, bot_world.bot_runtime, bot_world.world


class _AsleepFirst(httpx.BaseTransport):
    """The real API in-process, behind `asleep` answers of 503 database_waking (as the API gives past its wait)."""

    def __init__(self, asleep: int) -> None:
        self.asleep, self.calls = asleep, 0
        self.api = LambdaTransport(api_handler)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.asleep:
            body = {"code": "database_waking", "message": "the database is waking up", "fields": []}
            return httpx.Response(503, content=json.dumps(body), headers={"Retry-After": "5"})
        return self.api.handle_request(request)


def _waking_runtime(world: World, asleep: int, sleeps: list[float]) -> tuple[BotRuntime, ApiClient]:
    client = ApiClient(
        "http://api.local", world.service_key, transport=_AsleepFirst(asleep), sleep=sleeps.append
    )
    return BotRuntime(BotDeps(client, world.queue, world.claims, world.settings), TOKEN), client


def test_the_bot_says_waking_up_once_then_answers(world: World) -> None:
    sleeps: list[float] = []
    runtime, client = _waking_runtime(world, asleep=2, sleeps=sleeps)
    try:
        before = len(world.telegram.sent_texts())
        assert world.post(message_update(ALICE_TG, "/projects"))[0] == 200
        poller = QueuePoller(world.queue, TELEGRAM_UPDATES, lambda e, c: bot_handler(e, c, runtime=runtime))
        assert poller.run_once() == (1, 0)
        sent = world.telegram.sent_texts()[before:]
    finally:
        runtime.close()
        client.close()
    assert sent[0] == texts.WAKING
    assert len(sent) == 2 and sent[1] != texts.WAKING  # then the answer to /projects
    assert sleeps == [5.0, 5.0]


def test_past_the_wait_the_update_is_redelivered(world: World) -> None:
    sleeps: list[float] = []
    runtime, client = _waking_runtime(world, asleep=1000, sleeps=sleeps)
    try:
        assert world.post(message_update(ALICE_TG, "/projects"))[0] == 200
        poller = QueuePoller(world.queue, TELEGRAM_UPDATES, lambda e, c: bot_handler(e, c, runtime=runtime))
        assert poller.run_once() == (0, 1)  # failed: SQS redelivers it
    finally:
        runtime.close()
        client.close()
    assert sum(sleeps) <= ApiClient.WAKE_WAIT_S
    assert world.consume() == (1, 0), "answered on redelivery once the database is awake"
