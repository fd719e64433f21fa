"""The API client's calls about spend: the usage ledger, budgets, and a task's remaining budget."""

from __future__ import annotations

from shared.api_transport import ApiTransport


class SpendCalls(ApiTransport):
    """Usage (`GET /usage`), budgets (`PUT/GET /budgets`), a task's budget check (internal)."""
