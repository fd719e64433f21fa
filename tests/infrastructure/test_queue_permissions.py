"""Who may send to which queue: the template against what the functions' code publishes.

`test_compute.test_consumers_send_only_to_the_queues_they_produce_for` checks the template against the
table; these check the table (and so the template) against the code that publishes.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from functions.api.handler import ROUTERS as API_ROUTERS
from infra_cdk import constants
from layers.build import REPO_ROOT
from shared import contracts
from shared.contracts import (
    ANSIBLE_DEPLOY_RESULTS,
    DEPLOY_QUEUE,
    ENGINEERING_QUEUE,
    PO_INBOX,
    PO_RESPONSES,
    PROVISIONER_QUEUE,
    PROVISIONER_RESULTS,
    QUEUES,
    WORKER_COMMANDS,
    WORKER_RESPONSES,
)
from shared.queues.naming import physical_name
from shared.topology import PUBLISHES
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_compute import _actions, _function, _policy_statements, _resources, _role_of


def _sends(app: Synthesized, name: str) -> set[str]:
    """Physical names of the queues the function's role may SendMessage to."""
    queues = app.resources("AWS::SQS::Queue")
    _, props = _function(app, name)
    return {
        queues[resource["Fn::GetAtt"][0]]["Properties"]["QueueName"]
        for statement in _policy_statements(app, _role_of(props))
        if "sqs:SendMessage" in _actions(statement)
        for resource in _resources(statement)
    }


def _physical(app: Synthesized, *logical: str) -> set[str]:
    return {physical_name(app.stack.config.resource_prefix, queue) for queue in logical}


def test_the_product_owner_may_requeue_a_held_back_message_on_its_inbox(any_app: Synthesized) -> None:
    # functions.product_owner.handler publishes a message held back too often again on po:inbox, and
    # logic.ProductOwner._start_again_with re-queues one a dead worker never began; workers are created
    # on worker:commands.
    assert _sends(any_app, constants.PRODUCT_OWNER_FUNCTION) == _physical(any_app, PO_INBOX, WORKER_COMMANDS)


def test_the_scheduler_may_send_the_server_pings_of_server_sync(any_app: Synthesized) -> None:
    # functions.scheduler.jobs.server_sync publishes a batch of ProvisionerMessage pings
    assert _sends(any_app, constants.SCHEDULER_FUNCTION) == _physical(any_app, PROVISIONER_QUEUE)


# -- the table against the code ---------------------------------------------------------------------
#
# Each function's code is its handler module and every first-party module it imports, transitively
# (lazy imports inside functions included): an over-approximation of what can run. In it, every
# publish site is found: `<...queue...>.publish(Q, ...)` / `publish_batch` / `publish_raw`, and the
# API's `outbox.add(session, Q, ...)` (the outbox sweep publishes the row's queue). A site whose queue is
# a contracts constant or literal counts as it is; any other expression must be resolved in
# DYNAMIC_SITES, with the reason. What a function imports but cannot reach from its handler is in
# NOT_REACHED, with the reason. The rest must equal shared.topology.PUBLISHES for that function.
# Modules a handler imports by a computed name (`importlib.import_module`) are in LOADED_BY_NAME.

PUBLISH_METHODS = frozenset({"publish", "publish_batch", "publish_raw"})
SOURCE_ROOTS = (REPO_ROOT,)
REPLY_QUEUES = (WORKER_RESPONSES, PO_RESPONSES)
"""functions.api.services.workers.REPLY_QUEUES: where a worker's answers may go (its config's reply_queue)."""

LOADED_BY_NAME: dict[str, tuple[str, ...]] = {
    # the API includes its routers per request path (functions.api.handler.ROUTERS_BY_SEGMENT)
    "functions.api.handler": tuple(f"functions.api.routers.{name}" for name in API_ROUTERS),
}

DYNAMIC_SITES: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("functions/api/services/outbox.py", "row.queue"): (
        (),
        "the sweep publishes the queue a row was added with; each outbox.add site is counted itself",
    ),
    ("functions/api/services/tasks.py", "queue"): (
        (ENGINEERING_QUEUE, DEPLOY_QUEUE),
        "_message_for: engineering tasks on engineering:queue, deploy and undeploy on deploy:queue",
    ),
    ("functions/api/services/workers.py", "reply_queue(worker.config if worker is not None else None)"): (
        REPLY_QUEUES,
        "reply_queue(): the worker's configured reply queue, one of REPLY_QUEUES",
    ),
    ("functions/api/services/workers.py", "queue"): (REPLY_QUEUES, "queue = reply_queue(worker.config)"),
    ("functions/worker_manager/logic.py", "reply_queue or WORKER_RESPONSES"): (
        REPLY_QUEUES,
        "the command's or the worker's reply_queue (engineering leaves it empty, the PO sets po:responses)",
    ),
    ("functions/product_owner/handler.py", "queue"): (
        (PO_INBOX,),
        "only the po:inbox branch re-queues a held-back message (po:responses returns before)",
    ),
    ("functions/infra/launch.py", "result_queue(job)"): (
        (ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS),
        "worker_image.ansible_runner.results.result_queue: deploy/undeploy or provision/ping results",
    ),
}

NOT_REACHED: dict[str, dict[str, str]] = {
    "worker_events": {
        queue: "ecs_event_handler only calls WorkerManager.runtime_stopped, which reports to the API"
        for queue in REPLY_QUEUES
    },
}


@dataclass(frozen=True)
class PublishSite:
    path: str
    line: int
    queue_expression: str

    def queues(self) -> tuple[str, ...]:
        expression = ast.parse(self.queue_expression, mode="eval").body
        if isinstance(expression, ast.Constant) and expression.value in QUEUES:
            return (expression.value,)
        if isinstance(expression, ast.Name) and getattr(contracts, expression.id, None) in QUEUES:
            return (getattr(contracts, expression.id),)
        resolved = DYNAMIC_SITES.get((self.path, self.queue_expression))
        assert resolved is not None, (
            f"{self.path}:{self.line} publishes to `{self.queue_expression}`: say which queues that can be "
            "in DYNAMIC_SITES (tests/infrastructure/test_queue_permissions.py)"
        )
        return resolved[0]


def _module_path(module: str) -> Path | None:
    for root in SOURCE_ROOTS:
        base = root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@functools.cache
def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@functools.cache
def _code_of(handler_module: str) -> dict[Path, ast.AST]:
    """The handler's module and every first-party module it imports, transitively (packages' __init__ too)."""
    found: dict[Path, ast.AST] = {}
    pending = [handler_module]
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = _module_path(".".join(parts[:depth]))
            if path is None or path in found:
                continue
            found[path] = _parse(path)
            pending.extend(_imported_modules(found[path]))
        pending.extend(LOADED_BY_NAME.get(module, ()))
    return found


def _publish_sites(path: Path, tree: ast.AST) -> Iterator[PublishSite]:
    relative = str(path.relative_to(REPO_ROOT))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = ast.unparse(node.func.value)
        if node.func.attr in PUBLISH_METHODS and "queue" in receiver.lower():
            argument = node.args[0] if node.args else None
        elif node.func.attr == "add" and receiver == "outbox":
            argument = node.args[1] if len(node.args) > 1 else None
        else:
            continue
        assert argument is not None, (
            f"{relative}:{node.lineno}: the queue is not the expected positional argument"
        )
        yield PublishSite(relative, node.lineno, ast.unparse(argument))


def _handler_modules(app: Synthesized) -> dict[str, str]:
    """Topology-style function name (`worker_manager`) -> its handler's module, from the template."""
    prefix = app.stack.config.resource_prefix + "-"
    return {
        props["FunctionName"].removeprefix(prefix).replace("-", "_"): props["Handler"].rpartition(".")[0]
        for props in (r["Properties"] for r in app.resources("AWS::Lambda::Function").values())
        if isinstance(props.get("FunctionName"), str) and props["FunctionName"].startswith(prefix)
    }


def _published_by(handler_module: str) -> dict[str, list[PublishSite]]:
    queues: dict[str, list[PublishSite]] = {}
    for path, tree in _code_of(handler_module).items():
        for site in _publish_sites(path, tree):
            for queue in site.queues():
                queues.setdefault(queue, []).append(site)
    return queues


def test_every_function_declares_what_it_publishes(default_app: Synthesized) -> None:
    assert set(_handler_modules(default_app)) == set(PUBLISHES)


def test_each_function_may_send_to_exactly_the_queues_its_code_publishes_to(default_app: Synthesized) -> None:
    for function, module in sorted(_handler_modules(default_app).items()):
        published = _published_by(module)
        not_reached = NOT_REACHED.get(function, {})
        assert set(not_reached) <= set(published), f"{function}: stale NOT_REACHED entries"
        expected = set(published) - set(not_reached)
        sites = {queue: [f"{s.path}:{s.line}" for s in published[queue]] for queue in sorted(expected)}
        assert set(PUBLISHES[function]) == expected, f"{function}: its code publishes to {sites}"
        assert _sends(default_app, constants.function_name_part(function)) == _physical(
            default_app, *expected
        )


def test_every_dynamic_publish_site_is_still_in_the_code(default_app: Synthesized) -> None:
    seen = {
        (site.path, site.queue_expression)
        for module in _handler_modules(default_app).values()
        for path, tree in _code_of(module).items()
        for site in _publish_sites(path, tree)
    }
    assert set(DYNAMIC_SITES) <= seen
