"""Builds the configured secrets adapter from settings: the only place that chooses."""

from __future__ import annotations

from shared.secrets.port import SecretsPort
from shared.settings import AwsSettings, SecretsSettings


def build_secrets(settings: SecretsSettings | None = None, aws: AwsSettings | None = None) -> SecretsPort:
    """Adapters are imported here, not at module level, so the embedded stack never loads boto3."""
    settings = settings or SecretsSettings()
    if settings.secrets_backend == "aws":
        import boto3

        from shared.secrets.aws import AwsSecrets

        aws = aws or AwsSettings()
        client = boto3.client("secretsmanager", region_name=aws.aws_region, endpoint_url=aws.aws_endpoint_url)
        return AwsSecrets(settings.secrets_prefix, client=client)
    from shared.secrets.local import LocalSecrets

    return LocalSecrets(settings.effective_secrets_file)
