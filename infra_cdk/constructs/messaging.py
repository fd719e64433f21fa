"""One SQS queue and one DLQ per logical queue in `shared.contracts.QUEUES`.

Physical names come from `shared.queues.naming`, the function the SQS adapter uses, so
`ORCH_QUEUE_PREFIX=<stack name>` is all a function needs to find its queues.

Encryption is SQS-managed (SSE-SQS): the messages carry no secrets (secrets travel by
reference), and a customer key would add $1/month, KMS request charges on every send and
receive, and a key-policy grant for every producer, consumer, EventBridge rule and SNS
subscription, while IAM on the queue already decides who reads what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig
from shared.contracts import QUEUES
from shared.queues.naming import dlq_name, physical_name
from shared.topology import PUBLISHES


@dataclass(frozen=True)
class QueuePair:
    """A logical queue's SQS queue and its dead-letter queue."""

    logical_name: str
    queue: sqs.Queue
    dlq: sqs.Queue


def _construct_id(logical: str) -> str:
    """`ansible:deploy:queue` -> `AnsibleDeployQueue`."""
    return "".join(part.capitalize() for part in logical.replace(":", "-").replace("_", "-").split("-"))


class Messaging(Construct):
    """Every queue of the system with its DLQ, keyed by logical name."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self._prefix = config.resource_prefix
        self.queues: Mapping[str, QueuePair] = {logical: self._build_pair(logical) for logical in QUEUES}

    def _build_pair(self, logical: str) -> QueuePair:
        base_id = _construct_id(logical)
        dlq = self._build_dlq(logical, f"{base_id}Dlq")
        queue = sqs.Queue(
            self,
            base_id,
            queue_name=physical_name(self._prefix, logical),
            visibility_timeout=Duration.seconds(constants.visibility_timeout_seconds(logical)),
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dlq, max_receive_count=constants.QUEUE_MAX_RECEIVE_COUNT
            ),
        )
        return QueuePair(logical_name=logical, queue=queue, dlq=dlq)

    def _build_dlq(self, logical: str, construct_id: str) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            queue_name=dlq_name(self._prefix, logical),
            retention_period=Duration.days(constants.DLQ_RETENTION_DAYS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )

    def queue_url(self, logical: str) -> str:
        return self.queues[logical].queue.queue_url

    def grant_publishing(self, functions: Mapping[str, lambda_.IFunction]) -> None:
        """SendMessage for each function (by name: `api`, `worker-manager`...) on exactly the queues its code
        publishes to (`constants.QUEUE_PRODUCERS`, from `shared.topology.PUBLISHES`).

        The one place send permissions are granted. Every function must be declared there, even with no
        queue, and every declared function must exist: a function added without saying what it publishes,
        or a stale entry, fails the synth.
        """
        declared = {constants.function_name_part(name) for name in PUBLISHES}
        undeclared, unbuilt = sorted(set(functions) - declared), sorted(declared - set(functions))
        if undeclared or unbuilt:
            raise KeyError(
                "shared.topology.PUBLISHES must name every function of the stack and no other: "
                f"undeclared {undeclared}, not built {unbuilt}"
            )
        for name, function in functions.items():
            for logical in constants.QUEUE_PRODUCERS.get(name, ()):
                self.queues[logical].queue.grant_send_messages(function)
