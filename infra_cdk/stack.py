"""The one stack of the app: it wires the constructs together and exports what operators need."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.audit_logs import AuditLogs
from infra_cdk.constructs.data import Database
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.network import Network
from infra_cdk.constructs.observability import Observability
from infra_cdk.constructs.state import State


class OrchestratorStack(Stack):
    """Network, database, queues, graph state and observability of one environment."""

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
        self._build_outputs()

    def _build_outputs(self) -> None:
        outputs = {
            "DashboardUrl": (self.observability.dashboard_url, "CloudWatch dashboard"),
            "AlarmTopicArn": (self.observability.alarm_topic.topic_arn, "SNS topic every alarm notifies"),
            "DatabaseEndpoint": (self.database.endpoint_address, "PostgreSQL host (private)"),
            "DatabasePort": (self.database.endpoint_port, "PostgreSQL port"),
            "DatabaseSecretArn": (
                self.database.secret.secret_arn,
                "Secrets Manager secret with the DB credentials",
            ),
            "CheckpointTableName": (self.state.checkpoint_table.table_name, "LangGraph checkpoint table"),
            "ArtifactsBucketName": (
                self.state.artifacts_bucket.bucket_name,
                "Artifacts and large checkpoints",
            ),
            "QueuePrefix": (self.config.resource_prefix, "ORCH_QUEUE_PREFIX for this stack's queues"),
        }
        for logical, pair in self.messaging.queues.items():
            outputs[f"{pair.queue.node.id}Url"] = (pair.queue.queue_url, f"SQS URL of {logical}")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
