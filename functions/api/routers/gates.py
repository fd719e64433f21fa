"""/tasks/{id}/approve, /reject, /resume: a person answers a task's gate (an approval or a human review).
/internal/tasks/{id}/gates: a graph parks its task at a gate (service scope)."""

from __future__ import annotations

from functions.api.routers._common import new_router

router = new_router()
TAGS = ["gates"]
