"""Who may send to which queue: the template against what the functions' code publishes.

`test_compute.test_consumers_send_only_to_the_queues_they_produce_for` checks the template against the
table; these check the table (and so the template) against the code that publishes.
"""

from __future__ import annotations

from typing import Any

from infra_cdk import constants
from shared.contracts import PO_INBOX, PROVISIONER_QUEUE, WORKER_COMMANDS
from shared.queues.naming import physical_name
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
