"""GET /health: no auth; reports database reachability, schema state and readiness."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions.api.db import schema_serves
from functions.api.deps import get_deps
from functions.api.migrations import HEAD_REVISION
from functions.api.routers._common import created, new_router
from functions.api.services.readiness import is_ready
from shared.contracts.api import Health

router = new_router()
VERSION = "0.1.0"


@router.get(
    "/health",
    summary="Liveness, database state and readiness (200 only when ready for work)",
    tags=["health"],
    response_description="Health",
)
def health() -> Response[Health]:
    db = get_deps().db
    ready = is_ready()
    try:
        revision = db.schema_revision()
    except Exception:
        body = Health(
            status="degraded",
            database="unreachable",
            expected_revision=HEAD_REVISION,
            version=VERSION,
            ready=ready,
        )
        return created(body, 503)
    state = "ok" if schema_serves(revision) else "schema_out_of_date"  # ahead (a rollback) serves
    body = Health(
        status="ok" if state == "ok" and ready else "degraded",
        database=state,
        schema_revision=revision,
        expected_revision=HEAD_REVISION,
        version=VERSION,
        ready=ready,
    )
    return created(body, 200 if body.status == "ok" else 503)
