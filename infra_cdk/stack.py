"""The one stack of the app: it wires the constructs together and exports what operators need."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.api import Api
from infra_cdk.constructs.audit_logs import AuditLogs
from infra_cdk.constructs.consumers import Consumers
from infra_cdk.constructs.data import Database
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.network import Network
from infra_cdk.constructs.observability import Observability
from infra_cdk.constructs.provider_logs import ProviderLogs
from infra_cdk.constructs.runtime import LambdaRuntime
from infra_cdk.constructs.schedules import Schedules
from infra_cdk.constructs.state import State
from infra_cdk.constructs.telegram import Telegram
from infra_cdk.constructs.workers import Workers


class OrchestratorStack(Stack):
    """Network, database, queues, graph state, the functions, the workers and observability of one environment."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(
            scope, construct_id, stack_name=config.stack_name, description=constants.STACK_DESCRIPTION
        )
        self.config = config
        Tags.of(self).add("project", constants.PROJECT_NAME)
        Tags.of(self).add("environment", config.env_name)

        self.audit_logs = AuditLogs(self, "AuditLogs")
        self.network = Network(self, "Network", config=config, log_bucket=self.audit_logs.bucket)
        self.database = Database(self, "Data", config=config, network=self.network)
        self.messaging = Messaging(self, "Messaging", config=config)
        self.state = State(self, "State", config=config, log_bucket=self.audit_logs.bucket)
        self.observability = Observability(self, "Observability", config=config, queues=self.messaging.queues)

        self.runtime = LambdaRuntime(self, "Runtime", config=config)
        self.api = Api(
            self,
            "Api",
            config=config,
            network=self.network,
            database=self.database,
            runtime=self.runtime,
        )
        self.workers = Workers(
            self,
            "Workers",
            config=config,
            network=self.network,
            runtime=self.runtime,
            messaging=self.messaging,
            api_url=self.api.url,
            service_key_secret=self.api.service_key_secret,
            log_bucket=self.audit_logs.bucket,
        )
        # workers resolve their job's secrets and their session through the API (issue 20)
        self.workers.grant_worker_resolution(self.api.function)
        self.telegram = Telegram(
            self,
            "Telegram",
            config=config,
            runtime=self.runtime,
            http_api=self.api.http_api,
            idempotency_table=self.state.idempotency_table,
        )
        self.consumers = Consumers(
            self,
            "Consumers",
            config=config,
            runtime=self.runtime,
            messaging=self.messaging,
            checkpoint_table=self.state.checkpoint_table,
            checkpoint_bucket=self.state.artifacts_bucket,
            idempotency_table=self.state.idempotency_table,
            workers=self.workers,
            telegram=self.telegram,
            api_url=self.api.url,
            service_key_secret=self.api.service_key_secret,
        )
        self.schedules = Schedules(
            self,
            "Schedules",
            config=config,
            runtime=self.runtime,
            messaging=self.messaging,
            api_url=self.api.url,
            service_key_secret=self.api.service_key_secret,
        )
        self.schedules.grant_marking(self.api.function)  # the "is there work?" signal (issue 23)
        self.messaging.grant_publishing(self.runtime.functions)
        self.provider_logs = ProviderLogs(
            self,
            "ProviderLogs",
            provider_users={
                "Custom::VpcRestrictDefaultSGCustomResourceProvider": [
                    self.network.vpc.node.find_child("RestrictDefaultSecurityGroupCustomResource")
                ],
                "AWSCDK.TriggerCustomResourceProviderCustomResourceProvider": [self.api.deploy_hook],
            },
        )
        self._observe()
        self._build_outputs()

    def _observe(self) -> None:
        self.observability.add_api(self.api.http_api)
        self.observability.add_task_metrics(constants.API_FUNCTION, constants.SCHEDULER_FUNCTION)
        self.observability.add_fargate(
            self.workers.cluster_name, [self.workers.worker_family, self.workers.ansible_family]
        )
        for name, function in self.runtime.functions.items():
            self.observability.add_function(function, name=name)
        self.observability.finish()

    def _build_outputs(self) -> None:
        outputs = {
            "ApiUrl": (self.api.url, "Base URL of the API (orchestrator config set api-url ...)"),
            "AdminKeySecretArn": (
                self.api.admin_key_secret.secret_arn,
                "Secrets Manager secret holding the first admin's API key",
            ),
            "ServiceKeySecretArn": (
                self.api.service_key_secret.secret_arn,
                "Secrets Manager secret holding the functions' service API key",
            ),
            "DeployHookFunctionName": (
                self.api.deploy_hook_function.function_name,
                "Invoke to re-run migrations and key seeding (e.g. after putting a new service key)",
            ),
            "WorkerClusterName": (self.workers.cluster.cluster_name, "ECS cluster of the Fargate workers"),
            "WorkerTaskDefinitionArn": (
                self.workers.worker_task.task_definition_arn,
                "Task definition the worker manager runs",
            ),
            "AnsibleRunnerTaskDefinitionArn": (
                self.workers.ansible_task.task_definition_arn,
                "Task definition of the Ansible runner (deploys)",
            ),
            "GitHubTokenReference": (
                self.config.github_token_ref,
                f"Where the functions and workers read the GitHub token (Secrets Manager name "
                f"{self.config.resource_prefix}/<path> for a path reference)",
            ),
            "DashboardUrl": (self.observability.dashboard_url, "CloudWatch dashboard"),
            "AlarmTopicArn": (self.observability.alarm_topic.topic_arn, "SNS topic every alarm notifies"),
            "DatabaseEndpoint": (self.database.endpoint_address, "PostgreSQL host (private)"),
            "DatabasePort": (self.database.endpoint_port, "PostgreSQL port"),
            "DatabaseSecretArn": (
                self.database.secret.secret_arn,
                "Secrets Manager secret with the DB master credentials (managed and rotated by RDS)",
            ),
            "CheckpointTableName": (self.state.checkpoint_table.table_name, "LangGraph checkpoint table"),
            "IdempotencyTableName": (
                self.state.idempotency_table.table_name,
                "Idempotency claims (Telegram update ids, refusal cool-downs)",
            ),
            "TelegramWebhookUrl": (
                f"{self.api.url}{self.telegram.webhook_path}",
                "orchestrator telegram set-webhook --url <this>",
            ),
            **self.telegram.bot_token_output(),
            "TelegramWebhookSecretArn": (
                self.telegram.webhook_secret.secret_arn,
                "The generated webhook secret (ORCH_TELEGRAM_WEBHOOK_SECRET_REF=secret://<this> for set-webhook)",
            ),
            "ArtifactsBucketName": (
                self.state.artifacts_bucket.bucket_name,
                "Artifacts and large checkpoints",
            ),
            "SessionsBucketName": (
                self.workers.sessions_bucket.bucket_name,
                "Agent session archives (ORCH_SESSION_BUCKET of the workers), under sessions/",
            ),
            "QueuePrefix": (self.config.resource_prefix, "ORCH_QUEUE_PREFIX for this stack's queues"),
        }
        for logical, pair in self.messaging.queues.items():
            outputs[f"{pair.queue.node.id}Url"] = (pair.queue.queue_url, f"SQS URL of {logical}")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
