"""Builds the configured queue adapter from settings: the only place that chooses."""

from __future__ import annotations

from shared.queues.port import QueuePort
from shared.settings import AwsSettings, QueueSettings


def build_queue(settings: QueueSettings | None = None, aws: AwsSettings | None = None) -> QueuePort:
    settings = settings or QueueSettings()
    if settings.queue_backend == "sqs":
        import boto3

        from shared.queues.sqs import SqsQueue

        aws = aws or AwsSettings()
        client = boto3.client("sqs", region_name=aws.aws_region, endpoint_url=aws.aws_endpoint_url)
        return SqsQueue(settings.queue_prefix, client=client, max_receives=settings.queue_max_receives)
    from shared.queues.local import LocalQueue

    return LocalQueue(
        settings.effective_queue_file,
        max_receives=settings.queue_max_receives,
        visibility_timeout=settings.queue_visibility_timeout,
    )
