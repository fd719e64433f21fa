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
        from shared.secrets.ssm import SsmParameters

        aws = aws or AwsSettings()
        where = {"region_name": aws.aws_region, "endpoint_url": aws.aws_endpoint_url}
        client = boto3.client("secretsmanager", **where)
        parameters = SsmParameters(settings.secrets_prefix, lambda: boto3.client("ssm", **where))
        return AwsSecrets(settings.secrets_prefix, client=client, parameters=parameters)
    from shared.secrets.local import LocalSecrets

    return LocalSecrets(settings.effective_secrets_file)
