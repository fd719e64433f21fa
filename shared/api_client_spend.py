"""The API client's calls about spend: the usage ledger, budgets, and a task's remaining budget."""

from __future__ import annotations

from datetime import date

from shared.api_transport import ApiTransport
from shared.contracts.spend import Budget, BudgetCheck, BudgetPeriod, BudgetSet, BudgetStatus, Usage


class SpendCalls(ApiTransport):
    """Usage (`GET /usage`), budgets (`PUT/GET/DELETE /budgets`), a task's budget check (internal)."""

    def usage(
        self, project: str | None = None, since: date | str | None = None, user: str | None = None
    ) -> Usage:
        """The caller's spend (an admin may name `user`), or a project's (id or name; the caller's)."""
        params = {"project": project, "since": str(since) if since is not None else None, "user": user}
        return self._as(Usage, self.request("GET", "/usage", params=params))

    def set_budget(self, body: BudgetSet) -> Budget:
        """A project's budget (its owner), or a person's (admins only)."""
        return self._as(Budget, self.request("PUT", "/budgets", json=self._body(body)))

    def clear_budget(self, per: BudgetPeriod, project: str | None = None, user: str | None = None) -> None:
        """Back to the default (fine when it was not set)."""
        self.request("DELETE", "/budgets", params={"per": per, "project": project, "user": user})

    def budgets(self, project: str | None = None, user: str | None = None) -> list[BudgetStatus]:
        """What applies, set or default, with this month's spend; the caller's own when neither is named."""
        params = {"project": project, "user": user}
        return self._as(list[BudgetStatus], self.request("GET", "/budgets", params=params))

    def task_budget(self, task_id: str) -> BudgetCheck:
        """Internal: what a task may still spend; `exhausted` means do not start a worker."""
        return self._as(BudgetCheck, self.request("GET", f"/internal/tasks/{task_id}/budget"))
