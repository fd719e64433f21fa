"""Logical queue names (`engineering:queue`) to physical SQS names (`orch-engineering-queue`)."""

from __future__ import annotations

import re

from shared.contracts import resolve_queue

DLQ_SUFFIX = "-dlq"


def physical_name(prefix: str, logical: str) -> str:
    """SQS names allow only [A-Za-z0-9_-], at most 80 characters."""
    name = resolve_queue(logical).name
    physical = f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]', '-', name)}"
    if len(physical) + len(DLQ_SUFFIX) > 80:
        raise ValueError(f"queue name {physical!r} is too long for SQS with the DLQ suffix")
    return physical


def dlq_name(prefix: str, logical: str) -> str:
    return physical_name(prefix, logical) + DLQ_SUFFIX


def logical_from_arn(queue_arn: str, prefix: str | None = None) -> str:
    """The logical queue behind an SQS ARN (the Lambda event's eventSourceARN)."""
    from shared.contracts import QUEUES

    physical = queue_arn.rsplit(":", 1)[-1]
    found: list[str] = []
    for logical in QUEUES:
        suffix = re.sub(r"[^A-Za-z0-9_-]", "-", logical)
        if physical.endswith(f"-{suffix}") and (prefix is None or physical == f"{prefix}-{suffix}"):
            found.append(logical)
    if not found:
        raise ValueError(f"no logical queue for {queue_arn!r}")
    # the longest match wins: `orch-ansible-deploy-queue` also ends with `-deploy-queue`
    return max(found, key=len)
