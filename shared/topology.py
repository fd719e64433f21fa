"""Which function consumes which queue, and which scheduled jobs run how often.

One table for both worlds: the CDK stack builds Lambda event sources and EventBridge schedules
from it, and `orchestrator local up` starts the same consumers and the same ticker.
Entries are added as the functions land; a function is never listed before it exists.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConsumerSpec:
    function: str
    handler: str
    """`module:function` of the real Lambda handler."""
    queues: tuple[str, ...]
    timeout_s: int = 60
    batch_size: int = 10
    max_concurrency: int = 2
    optional: bool = False
    """Started by the embedded stack only when asked for (the Telegram bot needs a bot token)."""


@dataclass(frozen=True)
class ScheduleSpec:
    job: str
    every_s: int
    description: str
    run_at_start: bool = True
    """Embedded ticker: run at once when the stack starts, or first after one interval (heavy jobs)."""


SCHEDULER_HANDLER = "functions.scheduler.handler:lambda_handler"

CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec(
        function="worker_manager",
        handler="functions.worker_manager.handler:lambda_handler",
        queues=("worker:commands",),
        timeout_s=60,
        batch_size=10,
        max_concurrency=2,
    ),
    ConsumerSpec(
        function="scaffolder",
        handler="functions.scaffolder.handler:lambda_handler",
        queues=("scaffolder:queue",),
        timeout_s=300,
        batch_size=1,
        max_concurrency=2,  # Lambda's minimum for an SQS event source
    ),
    ConsumerSpec(
        function="engineering",
        handler="functions.engineering.handler:lambda_handler",
        queues=("engineering:queue", "worker:responses", "scaffolder:results"),
        timeout_s=300,
        batch_size=5,
        max_concurrency=2,
    ),
    ConsumerSpec(
        function="deploy",
        handler="functions.deploy.handler:lambda_handler",
        queues=("deploy:queue", "ansible:deploy:results", "provisioner:results"),
        timeout_s=300,  # the smoke test waits up to ~30 s; no other wait happens inside an invocation
        batch_size=5,
        max_concurrency=2,
    ),
    ConsumerSpec(
        function="infra",
        handler="functions.infra.handler:lambda_handler",
        queues=("ansible:deploy:queue", "provisioner:queue"),
        timeout_s=900,  # embedded: the playbook runs inside the call; in AWS it only launches a Fargate task
        batch_size=1,
        max_concurrency=2,
    ),
    ConsumerSpec(
        function="telegram_bot",
        handler="functions.telegram_bot.handler:lambda_handler",
        queues=("telegram:updates",),
        timeout_s=90,  # one Bot API call may wait up to 3 x 20 s on 429s
        batch_size=5,
        max_concurrency=2,
        optional=True,
    ),
    ConsumerSpec(
        function="product_owner",
        handler="functions.product_owner.handler:lambda_handler",
        queues=("po:inbox", "po:responses"),
        timeout_s=60,  # a few API calls and Bot API sends; the agent itself runs in a worker
        batch_size=5,
        max_concurrency=2,
        optional=True,
    ),
    ConsumerSpec(
        function="telegram_notifier",
        handler="functions.telegram_notifier.handler:lambda_handler",
        queues=("progress:events",),
        timeout_s=60,  # a few API calls and Bot API sends; one 429 may wait up to 20 s
        batch_size=10,
        max_concurrency=2,
        optional=True,  # needs the bot token, like telegram_bot
    ),
)

SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("outbox_sweep", 60, "publish outbox rows a crash left unsent"),
    ScheduleSpec(
        "stuck_task_reaper", 60, "fail (or requeue) RUNNING tasks with no heartbeat; stop their workers"
    ),
    ScheduleSpec("orphan_worker_collector", 60, "stop workers whose task ended, too old, or unseen"),
    ScheduleSpec("dlq_watch", 300, "DLQ depths as metrics and an owner-facing summary"),
    ScheduleSpec(
        "health_checker", 60, "GET every deployed service's health URL; a flip is an incident, once"
    ),
    ScheduleSpec(
        "server_sync", 300, "ping every server (Ansible facts); a server that stops answering is an incident"
    ),
    ScheduleSpec(
        "github_sync", 600, "repository heads and open pull requests; a vanished repository is flagged"
    ),
    ScheduleSpec("gate_expiry", 300, "fail tasks whose approval or human review nobody answered in time"),
)

PUBLISHES: dict[str, tuple[str, ...]] = {
    # the outbox (functions.api.services.outbox): task messages, worker deletes, worker answers on
    # the worker's reply queue, Telegram users' progress events, and a recovered server's provisioning
    "api": (
        "engineering:queue",
        "deploy:queue",
        "provisioner:queue",
        "worker:commands",
        "worker:responses",
        "po:responses",
        "progress:events",
    ),
    "deploy_hook": (),  # migrations and key seeding only
    "scheduler": ("provisioner:queue",),  # server_sync's pings; the other jobs act through the API
    "worker_manager": ("worker:responses", "po:responses"),  # answers on the command's reply queue
    "worker_events": (),  # a stopped task is reported to the API
    "scaffolder": ("scaffolder:results",),
    "engineering": ("scaffolder:queue", "worker:commands"),
    "deploy": ("ansible:deploy:queue", "provisioner:queue"),
    # a job that cannot be launched, or a runner task that died, still answers with a failed result
    "infra": ("ansible:deploy:results", "provisioner:results"),
    "infra_events": ("ansible:deploy:results", "provisioner:results"),
    "telegram_webhook": ("telegram:updates",),
    "telegram_bot": ("po:inbox",),
    "telegram_notifier": (),
    # creates PO workers; re-queues on its own inbox a message held back too often and one a dead
    # worker never began
    "product_owner": ("worker:commands", "po:inbox"),
}
"""The queues each function's code publishes to: every AWS function, by its name here (consumers as
in CONSUMERS; `api`, `deploy_hook`, `scheduler`, `worker_events`, `infra_events`, `telegram_webhook`
for the others). The CDK stack grants SendMessage from this and from nothing else
(`infra_cdk.constants.QUEUE_PRODUCERS`), and tests/infrastructure/test_queue_permissions.py holds it
against every publish call in the code: a publish added without its entry fails that test, an entry
no code publishes to fails it too."""


RESETTERS: tuple[str, ...] = (
    "functions.worker_manager.handler:reset",
    "functions.engineering.handler:reset",
    "functions.scaffolder.handler:reset",
    "functions.deploy.handler:reset",
    "functions.infra.handler:reset",
    "functions.telegram_bot.handler:reset",
    "functions.telegram_notifier.handler:reset",
    "functions.product_owner.handler:reset",
    "functions.telegram_webhook.handler:reset",
)
"""Per-process state of consumer functions (one 'container'); the embedded stack resets it on start and stop."""


def import_handler(path: str):  # type: ignore[no-untyped-def]
    """`module:function` -> the callable (imported only when needed: handlers can be heavy)."""
    import importlib

    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


HANDLER_NEEDS: dict[str, tuple[str, ...]] = {"functions.telegram_bot.handler": ("aiogram",)}
"""Optional dependencies (an extra of the package) a handler module imports at its top: `LazyHandler.missing`
looks for them before a consumer starts (a test keeps this true of every consumer's module)."""

_HANDLER_IMPORTS = threading.Lock()
"""One lazy handler import at a time: two threads importing modules that import each other in a different
order get a partly initialised module from CPython's import machinery instead of waiting."""


class LazyHandler:
    """A consumer's handler, imported at its first batch, not when the embedded stack starts (what the
    consumers import, ~0.15 s of a start, then lands after `local up` returns, and a consumer that
    gets no message never loads its function; a Lambda container likewise loads its code at the first
    invocation). A module that fails to import fails that batch: its messages come back with the error
    as their reason and are tried again, as for any crash."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handler: Any = None

    def missing(self) -> list[str]:
        """The modules this handler needs that cannot be found, without importing it: its own module and
        the optional dependencies it imports first thing (`HANDLER_NEEDS`)."""
        module = self.path.partition(":")[0]
        return [name for name in (module, *HANDLER_NEEDS.get(module, ())) if not _findable(name)]

    def __call__(self, event: Any, context: Any) -> Any:
        handler = self._handler
        if handler is None:
            with _HANDLER_IMPORTS:
                if self._handler is None:
                    self._handler = import_handler(self.path)
                handler = self._handler
        return handler(event, context)


def _findable(name: str) -> bool:
    """Whether `name` can be imported as far as the import system can tell without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package that cannot be imported
        return False
