"""The webhook's ack path: secret check, body validation, dedupe, queueing (local queue + SQLite claims)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from functions.telegram_webhook import handler as webhook
from functions.telegram_webhook.handler import SECRET_HEADER, WebhookPorts, lambda_handler
from shared.apigw import http_api_event
from shared.contracts import TELEGRAM_UPDATES, TelegramUpdateMessage
from shared.idempotency import SqliteIdempotency
from shared.queues.local import LocalQueue
from shared.queues.port import QueueError, QueuePort
from tests.factories import drain
from tests.fakes.telegram_server import message_update

SECRET = "s3cret-Token_for-tests"


@pytest.fixture
def ports(tmp_path: Path) -> Iterator[WebhookPorts]:
    queue = LocalQueue(tmp_path / "queue.db", visibility_timeout=0)
    claims = SqliteIdempotency(tmp_path / "claims.db")
    yield WebhookPorts(secret=SECRET, queue=queue, claims=claims)
    queue.close()
    claims.close()


def _post(
    ports: WebhookPorts,
    body: Any,
    secret: str | None = SECRET,
    raw: str | bytes | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    payload = raw if raw is not None else json.dumps(body)
    result = lambda_handler(
        http_api_event(method, "/telegram/webhook", headers=headers, body=payload), None, ports
    )
    assert result["headers"]["content-type"] == "application/json"
    return int(result["statusCode"]), json.loads(result["body"])


def test_a_good_update_is_queued_and_acknowledged(ports: WebhookPorts) -> None:
    update = message_update(111, "hello", update_id=42)
    status, body = _post(ports, update)
    assert (status, body) == (200, {"ok": True, "update_id": 42, "status": "queued"})
    [queued] = drain(ports.queue, TELEGRAM_UPDATES)
    assert isinstance(queued, TelegramUpdateMessage)
    assert (queued.update_id, queued.update, queued.request_id) == (42, update, "tg:42")


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper()])
def test_a_missing_or_wrong_secret_is_refused_and_nothing_is_processed(
    ports: WebhookPorts, secret: str | None
) -> None:
    status, body = _post(ports, message_update(111, update_id=7), secret=secret)
    assert status == 401 and body["code"] == "unauthorized"
    assert drain(ports.queue, TELEGRAM_UPDATES) == []
    assert ports.claims.claim("tg:update:7", 60), "a refused request did not even claim its update_id"


def test_the_secret_is_checked_before_the_body(ports: WebhookPorts) -> None:
    status, _ = _post(ports, None, secret="wrong", raw="not json")
    assert status == 401


def test_without_a_configured_secret_every_request_is_refused(ports: WebhookPorts) -> None:
    ports.secret = None
    for secret in (None, "", "anything"):
        assert _post(ports, message_update(1), secret=secret)[0] == 401
    assert drain(ports.queue, TELEGRAM_UPDATES) == []


def test_header_names_are_case_insensitive(ports: WebhookPorts) -> None:
    event = http_api_event("POST", "/telegram/webhook", body=json.dumps(message_update(5, update_id=5)))
    event["headers"] = {SECRET_HEADER.upper(): SECRET}  # as a non-normalising proxy would pass it
    assert lambda_handler(event, None, ports)["statusCode"] == 200


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "the body is empty"),
        ("not json", "the body is not JSON"),
        ("[1, 2]", "must be a JSON object (an Update), got an array"),
        ('"text"', "got a string"),
        ("null", "got null"),
        ("{}", "the update has no update_id"),
        ('{"update_id": "5"}', "update_id must be an integer, got a string"),
        ('{"update_id": 5.5}', "update_id must be an integer, got a number"),
        ('{"update_id": true}', "update_id must be an integer, got a boolean"),
        ('{"update_id": -1}', "update_id must not be negative"),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(ports: WebhookPorts, raw: str, problem: str) -> None:
    status, body = _post(ports, None, raw=raw)
    assert status == 400, body
    assert body["ok"] is False and body["code"] == "bad_request" and problem in body["message"]
    assert drain(ports.queue, TELEGRAM_UPDATES) == []


def test_a_base64_body_is_decoded(ports: WebhookPorts) -> None:
    update = message_update(5, "héllo", update_id=77)
    event = http_api_event(
        "POST", "/telegram/webhook", headers={SECRET_HEADER: SECRET}, body=json.dumps(update).encode()
    )
    event["body"], event["isBase64Encoded"] = base64.b64encode(json.dumps(update).encode()).decode(), True
    assert lambda_handler(event, None, ports)["statusCode"] == 200
    assert drain(ports.queue, TELEGRAM_UPDATES)[0].update == update
    event["body"] = "%%% not base64"
    assert lambda_handler(event, None, ports)["statusCode"] == 400


def test_only_post_is_accepted(ports: WebhookPorts) -> None:
    assert _post(ports, message_update(5), method="GET")[0] == 405


def test_a_duplicate_update_is_acknowledged_but_queued_once(ports: WebhookPorts) -> None:
    update = message_update(111, update_id=900)
    assert _post(ports, update) == (200, {"ok": True, "update_id": 900, "status": "queued"})
    assert _post(ports, update) == (200, {"ok": True, "update_id": 900, "status": "duplicate"})
    assert len(drain(ports.queue, TELEGRAM_UPDATES)) == 1


class FlakyQueue:
    """A queue that fails its first publish (SQS throttling, a locked file)."""

    backend = "flaky"

    def __init__(self, inner: QueuePort) -> None:
        self.inner, self.failures = inner, 1

    def publish(self, queue: str, message: BaseModel) -> str:
        if self.failures:
            self.failures -= 1
            raise QueueError("throttled")
        return self.inner.publish(queue, message)


def test_a_queue_failure_answers_503_and_the_retry_is_not_taken_for_a_duplicate(ports: WebhookPorts) -> None:
    inner = ports.queue
    ports.queue = FlakyQueue(inner)  # type: ignore[assignment]
    update = message_update(111, update_id=31)
    status, body = _post(ports, update)
    assert status == 503 and body["code"] == "unavailable"
    assert drain(inner, TELEGRAM_UPDATES) == []
    assert _post(ports, update) == (
        200,
        {"ok": True, "update_id": 31, "status": "queued"},
    )  # Telegram's retry
    assert [m.update_id for m in drain(inner, TELEGRAM_UPDATES)] == [31]


def test_a_huge_update_is_acknowledged_and_dropped_so_telegram_stops_retrying(
    ports: WebhookPorts, caplog: pytest.LogCaptureFixture
) -> None:
    # Telegram redelivers anything but a 2xx for a day: a 413 made it resend the update forever
    update = message_update(111, "x" * 300_000, update_id=32)
    status, body = _post(ports, update)
    assert (status, body) == (200, {"ok": True, "update_id": 32, "status": "dropped"})
    assert drain(ports.queue, TELEGRAM_UPDATES) == []
    assert "too large to queue" in caplog.text


@pytest.mark.parametrize("depth", [100_000, 200])
def test_a_deeply_nested_body_is_answered_not_raised_on(ports: WebhookPorts, depth: int) -> None:
    raw = '{"update_id": 1, "message": ' + "[" * depth + "]" * depth + "}"
    status, body = _post(ports, None, raw=raw)
    assert status == 400 and "nested too deep" in body["message"]
    assert drain(ports.queue, TELEGRAM_UPDATES) == []


@pytest.mark.parametrize("update_id", [10**30, 2**63])
def test_an_update_id_beyond_a_signed_64_bit_integer_is_refused(ports: WebhookPorts, update_id: int) -> None:
    status, body = _post(ports, None, raw=f'{{"update_id": {update_id}}}')
    assert status == 400 and "update_id must be at most" in body["message"]
    assert drain(ports.queue, TELEGRAM_UPDATES) == []


def test_the_largest_signed_64_bit_update_id_is_accepted(ports: WebhookPorts) -> None:
    assert _post(ports, message_update(5, update_id=2**63 - 1))[0] == 200


def test_ports_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET", SECRET)
    webhook.reset()
    try:
        event = http_api_event(
            "POST",
            "/telegram/webhook",
            headers={SECRET_HEADER: SECRET},
            body=json.dumps(message_update(5, update_id=5)),
        )
        assert lambda_handler(event, None)["statusCode"] == 200
        queue = LocalQueue(Path(str(tmp_path / "orch-home" / "queue.db")))
        assert [m.update_id for m in drain(queue, TELEGRAM_UPDATES)] == [5]
        assert (tmp_path / "orch-home" / "idempotency.db").exists()
    finally:
        webhook.reset()


def test_a_secret_reference_is_resolved_through_the_secrets_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.secrets.local import LocalSecrets

    LocalSecrets(tmp_path / "orch-home" / "secrets.json").put("secret://telegram/webhook_secret", SECRET)
    monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET_REF", "secret://telegram/webhook_secret")
    webhook.reset()
    try:
        assert webhook.build_ports().secret == SECRET
    finally:
        webhook.reset()


def test_a_broken_configuration_answers_503_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET", "has spaces and is wrong")
    webhook.reset()
    try:
        event = http_api_event("POST", "/telegram/webhook", headers={SECRET_HEADER: "x"}, body="{}")
        result = lambda_handler(event, None)
        assert result["statusCode"] == 503
        assert "has spaces" not in result["body"] and "has spaces" not in capsys.readouterr().err
    finally:
        webhook.reset()
