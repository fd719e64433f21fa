"""The SQS consumers: one function per `shared.topology.CONSUMERS` entry, one event source per queue it reads.

The table the embedded stack starts its pollers from is the table this builds from, so a consumer
added there shows up here (and fails the synth loudly until its wiring below says what it may do).

- Every event source reports partial batch failures (`ReportBatchItemFailures`): the handlers
  return `batchItemFailures` (`shared.queues.consume`), and only the failed records come back.
- Batch size and maximum concurrency come from the table. Lambda's floor for an SQS event
  source's maximum concurrency is 2; a smaller value in the table is raised to it (the embedded
  stack still runs one poller).
- The timeout is the one the queue's visibility timeout was sized from (`constants.
  CONSUMER_TIMEOUT_SECONDS`): visibility stays at least six timeouts. It must equal the topology's,
  except for `constants.AWS_LAUNCH_ONLY_CONSUMERS` (infra): in AWS it only starts an Ansible runner
  task, while its topology timeout covers the embedded run, where the playbook runs inside the call.
- Consumers run outside the VPC: they reach the API over HTTPS and GitHub on the internet, with
  no NAT gateway; none of them touches the database. The deploy function must stay out: its smoke
  test GETs the deployed service on the internet, which the private subnets cannot reach without NAT.
- The Telegram bot is `optional` in the topology (the embedded stack needs a token to start it); in
  AWS it is always deployed, and reads its token from the secret `infra_cdk.constructs.telegram` made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants, environment
from infra_cdk.config import StackConfig
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.runtime import (
    LambdaRuntime,
    acknowledge_wildcard_resources,
    grant_reference_read,
    lambda_handler_path,
    pascal,
    secret_name_arn,
    secret_name_arn_finding,
)
from infra_cdk.constructs.telegram import Telegram, grant_claims
from infra_cdk.constructs.workers import Workers
from shared.topology import CONSUMERS, ConsumerSpec


def consumer_timeout_seconds(spec: ConsumerSpec) -> int:
    """The shortest timeout any of its queues was sized for (one function serves all its queues)."""
    return min(constants.consumer_timeout_seconds(queue) for queue in spec.queues)


def check_consumer_timeout(spec: ConsumerSpec) -> int:
    """The function timeout for `spec`; refuses a topology timeout the queues were not sized for."""
    timeout = consumer_timeout_seconds(spec)
    name = constants.function_name_part(spec.function)
    launch_only = name in constants.AWS_LAUNCH_ONLY_CONSUMERS
    if (timeout < spec.timeout_s and not launch_only) or timeout > spec.timeout_s:
        raise ValueError(
            f"consumer {spec.function!r}: shared.topology says {spec.timeout_s} s but its queues were sized "
            f"for {timeout} s (infra_cdk.constants.CONSUMER_TIMEOUT_SECONDS); move them together"
        )
    return timeout


def event_source_max_concurrency(spec: ConsumerSpec) -> int:
    return max(constants.SQS_EVENT_SOURCE_MIN_CONCURRENCY, spec.max_concurrency)


class Consumers(Construct):
    """One Lambda per consumer function in the topology, keyed by its name (`worker-manager`...)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        runtime: LambdaRuntime,
        messaging: Messaging,
        checkpoint_table: dynamodb.ITable,
        checkpoint_bucket: s3.IBucket,
        idempotency_table: dynamodb.ITable,
        workers: Workers,
        telegram: Telegram,
        api_url: str,
        service_key_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._runtime = runtime
        self._messaging = messaging
        self._checkpoint_table = checkpoint_table
        self._checkpoint_bucket = checkpoint_bucket
        self._idempotency_table = idempotency_table
        self._workers = workers
        self._telegram = telegram
        self._api_url = api_url
        self._service_key_secret = service_key_secret
        wiring: Mapping[str, Callable[[], dict[str, str]]] = {
            constants.WORKER_MANAGER_FUNCTION: self._worker_manager_environment,
            constants.SCAFFOLDER_FUNCTION: self._repo_host_environment,
            constants.ENGINEERING_FUNCTION: self._graph_environment,
            constants.DEPLOY_FUNCTION: self._graph_environment,
            constants.INFRA_FUNCTION: self._infra_environment,
            constants.TELEGRAM_BOT_FUNCTION: self._telegram_bot_environment,
            constants.TELEGRAM_NOTIFIER_FUNCTION: self._telegram_notifier_environment,
            constants.PRODUCT_OWNER_FUNCTION: self._product_owner_environment,
        }
        self.functions: dict[str, lambda_.Function] = {}
        for spec in CONSUMERS:
            name = constants.function_name_part(spec.function)
            if name not in wiring:
                raise KeyError(
                    f"consumer {spec.function!r} (shared.topology) has no wiring in infra_cdk.constructs."
                    "consumers: say which environment and permissions it gets"
                )
            self.functions[name] = self._build_consumer(spec, name, wiring[name]())
        self._grant_specifics()

    def _build_consumer(
        self, spec: ConsumerSpec, name: str, extra_environment: dict[str, str]
    ) -> lambda_.Function:
        function = self._runtime.function(
            self,
            pascal(name),
            name=name,
            handler=lambda_handler_path(spec.handler),
            timeout_seconds=check_consumer_timeout(spec),
            description=f"{self._config.resource_prefix}: consumes {', '.join(spec.queues)}",
            environment_variables={
                **environment.queues(self._config),
                **environment.service_api(self._config, self._api_url, self._service_key_secret.secret_arn),
                **extra_environment,
            },
        )
        self._service_key_secret.grant_read(function)
        for logical in spec.queues:
            self._runtime.entry_point(name).add_event_source(  # the SnapStart alias if it has one
                event_sources.SqsEventSource(
                    self._messaging.queues[logical].queue,
                    batch_size=spec.batch_size,
                    max_concurrency=event_source_max_concurrency(spec),
                    report_batch_item_failures=True,
                )
            )
        return function

    # -- per consumer ------------------------------------------------------------------------------

    def _worker_manager_environment(self) -> dict[str, str]:
        return self._workers.manager_environment()

    def _repo_host_environment(self) -> dict[str, str]:
        return environment.repo_host(self._config)

    def _graph_environment(self) -> dict[str, str]:
        """Engineering and deploy: a LangGraph graph checkpointed in DynamoDB, repositories on GitHub."""
        return {
            **environment.repo_host(self._config),
            **environment.agent_credentials(self._config),
            "ORCH_CHECKPOINTER": "dynamodb",
            "ORCH_CHECKPOINT_TABLE": self._checkpoint_table.table_name,
            "ORCH_CHECKPOINT_TTL_S": str(constants.CHECKPOINT_TTL_SECONDS),
            # values over ~350 KB go to <bucket>/checkpoints/ (DynamoDB items stop at 400 KB)
            "ORCH_CHECKPOINT_BUCKET": self._checkpoint_bucket.bucket_name,
        }

    def _infra_environment(self) -> dict[str, str]:
        return self._workers.infra_environment()

    def _telegram_bot_environment(self) -> dict[str, str]:
        return {
            "ORCH_TELEGRAM_BOT_TOKEN_REF": self._telegram.bot_token_reference,
            **environment.telegram_admins(self._config),
            **environment.idempotency(self._idempotency_table.table_name),
        }

    def _telegram_notifier_environment(self) -> dict[str, str]:
        """Sends and edits as the bot: its token by reference (read permission in _grant_specifics)."""
        return {"ORCH_TELEGRAM_BOT_TOKEN_REF": self._telegram.bot_token_reference}

    def _product_owner_environment(self) -> dict[str, str]:
        """Answers as the bot (its token by reference); PO workers reach the API at the same URL."""
        return {**self._telegram_bot_environment(), **environment.agent_credentials(self._config)}

    def _grant_product_owner(self) -> None:
        """Read the bot token, claim, and keep each person's PO key under `<prefix>/po/`."""
        po = self.functions[constants.PRODUCT_OWNER_FUNCTION]
        self._telegram.grant_bot_token_read(po)
        grant_claims(self._idempotency_table, po)
        pattern = f"{self._config.resource_prefix}/{constants.PO_SECRETS_PATH}/*"
        po.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutSecretValue",
                ],
                resources=[secret_name_arn(self, pattern)],
            )
        )
        acknowledge_wildcard_resources(
            po,
            [secret_name_arn_finding(pattern)],
            reason="The Product Owner stores one user-scope API key per person, named at run time under "
            "a fixed prefix of this stack; the actions are listed one by one and none deletes.",
        )

    def _grant_checkpoint_offload(self, function: lambda_.Function) -> None:
        """Exactly what DynamoDBSaver's S3 offload calls (langgraph-checkpoint-aws storage_strategy.py).

        At construction GetBucketLifecycleConfiguration, to find the stack's rule (so it never puts one:
        no s3:PutLifecycleConfiguration); per large value PutObject with a `ttl-days` tag (PutObject and
        PutObjectTagging) and GetObject, under `checkpoints/` only. DeleteObjects comes only with
        delete_thread, which no graph calls: the lifecycle rule expires the values with their items.
        """
        prefix = f"{constants.CHECKPOINT_S3_KEY_PREFIX.strip('/')}/"
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadWriteOffloadedCheckpoints",
                actions=["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"],
                resources=[self._checkpoint_bucket.arn_for_objects(f"{prefix}*")],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="FindCheckpointLifecycleRule",
                actions=["s3:GetLifecycleConfiguration"],
                resources=[self._checkpoint_bucket.bucket_arn],
            )
        )
        bucket_id = Stack.of(self).get_logical_id(self._checkpoint_bucket.node.default_child)  # type: ignore[arg-type]
        acknowledge_wildcard_resources(
            function,
            [f"<{bucket_id}.Arn>/{prefix}*"],
            reason="The saver names offloaded checkpoint values at run time (thread, checkpoint and "
            f"channel) under the one prefix {prefix} the stack's lifecycle rule expires; the actions are "
            "listed one by one (put with its expiry tag, get), none deletes or lists.",
        )

    def _grant_specifics(self) -> None:
        self._grant_product_owner()
        self._workers.grant_manage_workers(self.functions[constants.WORKER_MANAGER_FUNCTION])
        self._workers.grant_launch_ansible(self.functions[constants.INFRA_FUNCTION])
        for name in (
            constants.SCAFFOLDER_FUNCTION,
            constants.ENGINEERING_FUNCTION,
            constants.DEPLOY_FUNCTION,
        ):
            grant_reference_read(
                self, self.functions[name], self._config.github_token_ref, self._config.resource_prefix
            )
        for name in (constants.ENGINEERING_FUNCTION, constants.DEPLOY_FUNCTION):
            self._checkpoint_table.grant_read_write_data(self.functions[name])
            self._grant_checkpoint_offload(self.functions[name])
        bot = self.functions[constants.TELEGRAM_BOT_FUNCTION]
        self._telegram.grant_bot_token_read(bot)
        self._telegram.grant_bot_token_read(self.functions[constants.TELEGRAM_NOTIFIER_FUNCTION])
        grant_claims(self._idempotency_table, bot)
