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
