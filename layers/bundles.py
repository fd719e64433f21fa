"""What each Lambda function ships: the one code asset every function shares, plus its layers.

Read by the layer build (`python -m layers.build --sizes`) and by the CDK app (`infra_cdk.constants`
re-exports both), so the build tool never imports the CDK app. The keys are the functions' names
(`infra_cdk.constants.*_FUNCTION`; tests/infrastructure checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping

CODE_ASSET_DIRS = ("shared", "functions", "cli", "worker_image")
"""The one code asset every function shares (its layers differ); the rest of the repository stays out."""

FUNCTION_LAYERS: Mapping[str, tuple[str, ...]] = {
    "api": ("api",),
    # Migrations and keys: the API's code (functions.api.migrate, auth) and its dependencies, Alembic.
    "deploy-hook": ("api",),
    "worker-manager": ("base",),
    "worker-events": ("base",),
    "scheduler": ("base",),
    "scaffolder": ("scaffold",),
    "engineering": ("graph",),
    "deploy": ("graph",),
    # Launches the Ansible runner (boto3 from the runtime); imports worker_image.ansible_runner's
    # job models from the code asset, which are pydantic only.
    "infra": ("base",),
    "infra-events": ("base",),
    "telegram-bot": ("bot",),
    # The ack path: never aiogram (~2 s to import), only settings, the queue and the claims table.
    "telegram-webhook": ("base",),
    # Bot API calls through the stdlib client (never aiogram) and the typed API client.
    "telegram-notifier": ("base",),
    # Bot API calls through the stdlib client (never aiogram), the API, the queue, claims and secrets.
    "product-owner": ("base",),
}
"""Each function's layers (`layers/<name>.txt`): only what it imports (tests/unit/test_layers.py checks)."""
