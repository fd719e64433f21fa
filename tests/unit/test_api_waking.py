"""A database waking up (503 database_waking + Retry-After): the client says so once, waits as told within a
bound, asks again with the same Idempotency-Key; past the bound the CLI prints one line and exits 5."""

from __future__ import annotations

import httpx
import pytest

from cli.errors import ExitCode, say_waking
from cli.main import describe_error
from shared.api_client import ApiClient
from shared.api_transport import WAKING_MESSAGE, DatabaseWakingError
from tests.unit.test_api_transport import PROJECT


class _SleepsFirst:
    """The API answers `database_waking` to the first `sleeping` requests."""

    def __init__(self, sleeping: int, retry_after: str = "10") -> None:
        self.sleeping, self.retry_after, self.keys = sleeping, retry_after, list[str | None]()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        if len(self.keys) <= self.sleeping:
            body = {"code": "database_waking", "message": "the database is waking up", "fields": []}
            return httpx.Response(503, json=body, headers={"Retry-After": self.retry_after})
        return httpx.Response(201, json=PROJECT)


def _client(api: _SleepsFirst, sleeps: list[float], told: list[str]) -> ApiClient:
    return ApiClient(
        "http://api.local",
        "k",
        transport=httpx.MockTransport(api),
        idempotency_key="inv-1",
        sleep=sleeps.append,
        on_waking=told.append,
    )


def test_a_waking_database_is_waited_for_as_told_and_the_person_is_told_once() -> None:
    api, sleeps, told = _SleepsFirst(sleeping=2, retry_after="7"), list[float](), list[str]()

    project = _client(api, sleeps, told).create_project("blog")

    assert project.name == "blog"
    assert sleeps == [7.0, 7.0]
    assert told == [WAKING_MESSAGE]
    assert api.keys == ["inv-1.1"] * 3  # the same creating call, not a new one


def test_past_its_wait_the_client_gives_up_with_a_readable_error() -> None:
    api, sleeps, told = _SleepsFirst(sleeping=100), list[float](), list[str]()

    with pytest.raises(DatabaseWakingError) as caught:
        _client(api, sleeps, told).create_project("blog")

    assert sum(sleeps) <= ApiClient.WAKE_WAIT_S
    assert len(api.keys) == len(sleeps) + 1
    message, code = describe_error(caught.value) or ("", None)
    assert code == ExitCode.UNREACHABLE
    assert "waking up" in message and "\n" not in message


def test_the_cli_says_waking_up_in_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    say_waking(WAKING_MESSAGE)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "waking up" in captured.err
