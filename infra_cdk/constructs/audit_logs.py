"""The bucket that receives S3 server access logs and VPC flow logs."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra_cdk import constants


class AuditLogs(Construct):
    """A private, encrypted, SSL-only log bucket whose objects expire."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket = self._build_bucket()

    def _build_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "Bucket",
            # S3 server access logging delivers only to SSE-S3 buckets, not SSE-KMS.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=Duration.days(constants.ACCESS_LOG_RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(
                        constants.ABORT_INCOMPLETE_UPLOAD_DAYS
                    ),
                )
            ],
            # Logs are evidence: they outlive the stack (a non-empty bucket could not be deleted anyway).
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket itself; logging it into itself would loop and "
                "logging it elsewhere only moves the problem. Its writers are S3 log delivery and VPC "
                "flow logs, both by bucket policy.",
            )
        )
        return bucket
