"""The secrets port, its two adapters (Secrets Manager with SSM SecureString for `secret://ssm/...`, local file),
references and redaction."""

from shared.secrets.factory import build_secrets
from shared.secrets.port import (
    MAX_VALUE_BYTES,
    InvalidSecretReference,
    SecretNotFound,
    SecretsError,
    SecretsPort,
    SecretTooLargeError,
)
from shared.secrets.redact import MASK, Redactor
from shared.secrets.refs import SCHEME, arn_reference, is_arn, make_reference, parse_prefix, parse_reference

__all__ = [
    "MASK",
    "MAX_VALUE_BYTES",
    "SCHEME",
    "InvalidSecretReference",
    "Redactor",
    "SecretNotFound",
    "SecretTooLargeError",
    "SecretsError",
    "SecretsPort",
    "arn_reference",
    "build_secrets",
    "is_arn",
    "make_reference",
    "parse_prefix",
    "parse_reference",
]
