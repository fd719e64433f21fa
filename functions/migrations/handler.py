"""The deploy hook (a CDK trigger, run by CloudFormation on every deploy that changes the code).

1. Waits until PostgreSQL accepts the credentials in the RDS secret (a rotation may be in flight right
   after the database is created).
2. Runs `functions.migrations.bootstrap`: the migrations, the first admin from the admin-key secret (only
   when no admin exists yet), and the service key from its secret (a new value revokes the previous key).
3. Creates the API's IAM-authenticated login (`ORCH_DATABASE_APP_USER`) and grants it the tables' rows
   (`ensure_app_login`), also on a rollback: the previous API logs in the same way.

On a rollback the database is usually ahead of the previous code: then it changes nothing and succeeds,
rather than fail with "Can't locate revision" and leave the stack UPDATE_ROLLBACK_FAILED.
"""

from __future__ import annotations

from itertools import count
from typing import TYPE_CHECKING, Any

from functions.migrations.bootstrap import ServiceKey, bootstrap, ensure_app_login
from functions.migrations.settings import DeployHookSettings
from shared.handler_shell import lambda_entry
from shared.observability import get_logger
from shared.retry import poll_until

if TYPE_CHECKING:
    from functions.api.deps import ApiDeps

SERVICE_KEY_NAME = "aws-stack"
CONNECT_ATTEMPTS = 12
CONNECT_DELAY_S = 10.0


def wait_for_database(
    settings: DeployHookSettings, attempts: int = CONNECT_ATTEMPTS, delay_s: float = CONNECT_DELAY_S
) -> ApiDeps:
    """The API's dependencies once a connection succeeds, trying `attempts` times `delay_s` apart; the
    secret is read again on every attempt, since a rotation may change the password between two."""
    from sqlalchemy import text

    from functions.api.db import dispose_all
    from functions.api.deps import build_deps

    tries = count(1)

    def connect() -> ApiDeps | Exception:
        try:
            deps = build_deps(settings)
            with deps.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return deps
        except Exception as exc:  # driver, network or authentication: all mean "not yet"
            dispose_all()
            get_logger().warning(
                "database not ready",
                extra={"attempt": next(tries), "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return exc

    # initial == max: the same wait between every two attempts, no backoff
    outcome = poll_until(
        lambda result: not isinstance(result, Exception),
        attempts=attempts,
        initial_delay_s=delay_s,
        max_delay_s=delay_s,
    )(connect)
    if isinstance(outcome, Exception):
        raise RuntimeError(f"the database did not accept a connection after {attempts} attempts: {outcome}")
    return outcome


@lambda_entry
def on_deploy(
    event: dict[str, Any] | None,
    context: Any,
    deps: ApiDeps | None = None,
    settings: DeployHookSettings | None = None,
) -> dict[str, str]:
    """Lambda entry point (the trigger invokes it synchronously; an exception fails the deploy)."""
    settings = settings or DeployHookSettings()
    deps = deps or wait_for_database(settings)
    secrets = deps.secrets
    admin_key = secrets.get(settings.bootstrap_admin_key_ref) if settings.bootstrap_admin_key_ref else None
    service_key = (
        ServiceKey(secrets.get(settings.service_api_key_ref), SERVICE_KEY_NAME)
        if settings.service_api_key_ref
        else None
    )
    result = bootstrap(deps.db, admin_key, service_key)
    if settings.database_app_user:
        ensure_app_login(deps.db.engine, settings.database_app_user)
        result.app_login = settings.database_app_user
    outcome = result.model_dump(exclude_none=True)
    get_logger().info("deploy hook done", extra=outcome)
    return outcome
