"""Durable state: the LangGraph checkpoint table, the idempotency claims table and the artifacts bucket.

The table has the shape `langgraph_checkpoint_aws.DynamoDBSaver` reads and writes: string
`PK` / `SK`, expiry in the numeric `ttl` attribute. Checkpoints larger than 350 KB go to the
bucket under `checkpoints/`, tagged `ttl-days=<n>`; the lifecycle rule that expires them is
declared here with the ID the saver checks for, so the saver never rewrites the bucket's
lifecycle configuration at runtime (see `constants.checkpoint_lifecycle_rule_id`).

The claims table is `shared.idempotency.DynamoDbIdempotency`'s: string `pk`, expiry in the numeric
`expires_at` attribute; the Telegram webhook and bot consumer claim update ids and refusal
cool-downs there (conditional PutItem, DeleteItem to release).

The engineering and deploy functions get the table (ORCH_CHECKPOINT_TABLE) and this bucket
(ORCH_CHECKPOINT_BUCKET), and build DynamoDBSaver(table_name=..., ttl_seconds=constants.
CHECKPOINT_TTL_SECONDS, s3_offload_config={"bucket_name": ..., "key_prefix": "checkpoints"}); their
grants on the bucket are exactly the saver's calls (`infra_cdk.constructs.consumers`).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig


class State(Construct):
    """The checkpoint table, the idempotency table and the artifacts bucket."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, log_bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.checkpoint_table = self._build_checkpoint_table()
        self.idempotency_table = self._build_idempotency_table()
        self.artifacts_bucket = self._build_artifacts_bucket(log_bucket)

    def _build_checkpoint_table(self) -> dynamodb.Table:
        protected = self._config.deletion_protection
        return dynamodb.Table(
            self,
            "CheckpointTable",
            partition_key=dynamodb.Attribute(
                name=constants.CHECKPOINT_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(
                name=constants.CHECKPOINT_SORT_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=constants.CHECKPOINT_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The AWS managed key (aws/dynamodb): no monthly key fee, usage visible in CloudTrail.
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=protected,
            removal_policy=RemovalPolicy.RETAIN if protected else RemovalPolicy.DESTROY,
        )

    def _build_idempotency_table(self) -> dynamodb.Table:
        # Same protection switch as the checkpoint table: one stack-wide decision, and the table costs
        # nothing idle. Losing it would only let a duplicate Telegram update through once.
        protected = self._config.deletion_protection
        return dynamodb.Table(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(
                name=constants.IDEMPOTENCY_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=constants.IDEMPOTENCY_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=protected,
            removal_policy=RemovalPolicy.RETAIN if protected else RemovalPolicy.DESTROY,
        )

    def _build_artifacts_bucket(self, log_bucket: s3.IBucket) -> s3.Bucket:
        return s3.Bucket(
            self,
            "ArtifactsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=log_bucket,
            server_access_logs_prefix=constants.ACCESS_LOGS_PREFIX,
            lifecycle_rules=self._lifecycle_rules(),
            # Deleting a bucket that still holds objects fails anyway; keep it and say so.
            removal_policy=RemovalPolicy.RETAIN,
        )

    @staticmethod
    def _lifecycle_rules() -> list[s3.LifecycleRule]:
        checkpoint_days = constants.CHECKPOINT_S3_EXPIRATION_DAYS
        return [
            s3.LifecycleRule(
                id=constants.checkpoint_lifecycle_rule_id(),
                prefix=f"{constants.CHECKPOINT_S3_KEY_PREFIX.strip('/')}/",
                tag_filters={constants.CHECKPOINT_TTL_TAG_KEY: str(checkpoint_days)},
                expiration=Duration.days(checkpoint_days),
            ),
            s3.LifecycleRule(
                id="expire-artifacts",
                prefix=constants.ARTIFACTS_KEY_PREFIX,
                expiration=Duration.days(constants.ARTIFACT_RETENTION_DAYS),
            ),
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=Duration.days(constants.ABORT_INCOMPLETE_UPLOAD_DAYS),
            ),
        ]
