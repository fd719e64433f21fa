"""/usage and /budgets: what a person's agents and workers cost, and the limits that stop them.
/internal/tasks/{id}/budget: what a task may still spend (the graphs ask before a worker starts)."""

from __future__ import annotations

from functions.api.routers._common import new_router

router = new_router()
TAGS = ["spend"]
