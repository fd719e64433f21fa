"""The scheduler's outbox sweep, through the real API (service scope)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from functions.api.handler import lambda_handler as api_handler
from functions.api.models import OutboxMessage, utcnow
from functions.scheduler.handler import UnknownJob, lambda_handler
from shared.api_client import ApiClient, AuthError
from shared.apigw import LambdaTransport
from shared.work_signal import WorkKind
from tests.api_support import ApiHarness


def _client(key: str) -> ApiClient:
    return ApiClient("http://api.local", key, transport=LambdaTransport(api_handler))


def test_sweep_publishes_rows_left_behind(api: ApiHarness) -> None:
    _, service_key = api.new_user("svc", scopes=["service"])

    class Down:
        backend = "down"

        def publish_raw(self, *a: object, **k: object) -> str:
            raise ConnectionError("down")

    real = api.deps.queue
    api.deps.__dict__["queue"] = Down()
    api.new_project("blog")
    api.post("/projects/blog/engineering", {"spec": "x"})
    api.deps.__dict__["queue"] = real

    with _client(service_key) as service:
        signal = api.deps.work_signal  # the API's insert marked it: the sweep looks
        fresh = lambda_handler({"job": "outbox_sweep"}, None, api=service, signal=signal)
        assert fresh["sent"] == 0, "rows younger than a few seconds are left to the API itself"
        assert fresh["pending"] == 1
        with api.deps.db.session() as session:
            session.execute(update(OutboxMessage).values(created_at=utcnow() - timedelta(seconds=30)))
        swept = lambda_handler({"job": "outbox_sweep"}, None, api=service, signal=signal)
        # nothing left, but the mark is too fresh to settle: the next tick looks once more
        assert swept == {
            "job": "outbox_sweep",
            "claimed": 1,
            "sent": 1,
            "failed": 0,
            "pending": 0,
            "settled": 0,
        }
        assert lambda_handler({"job": "outbox_sweep"}, None, api=service, signal=signal)["sent"] == 0
    assert len(real.receive("engineering:queue", visibility_timeout=30)) == 1


def test_sweep_needs_service_scope(api: ApiHarness) -> None:
    _, user_key = api.new_user("plain")
    api.deps.work_signal.mark([WorkKind.OUTBOX])
    with _client(user_key) as plain, pytest.raises(AuthError):
        lambda_handler({"job": "outbox_sweep"}, None, api=plain, signal=api.deps.work_signal)


def test_unknown_job_is_refused(api: ApiHarness) -> None:
    with pytest.raises(UnknownJob, match="unknown job 'nope'"):
        lambda_handler({"job": "nope"}, None, api=_client("x"))
