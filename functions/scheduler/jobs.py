"""Each scheduled job is a small function of the API client; it returns what it did (counts)."""

from __future__ import annotations

from collections.abc import Callable

from shared.api_client import ApiClient

Job = Callable[[ApiClient], dict[str, int]]


def outbox_sweep(api: ApiClient) -> dict[str, int]:
    """Publish outbox rows older than a few seconds (the API publishes fresh ones itself)."""
    report = api.request("POST", "/internal/outbox/sweep")
    return {k: int(report[k]) for k in ("claimed", "sent", "failed")}


JOBS: dict[str, Job] = {"outbox_sweep": outbox_sweep}
