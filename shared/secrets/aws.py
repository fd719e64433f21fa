"""The AWS secrets adapter: Secrets Manager, one secret per reference, named `<prefix>/<path>`.

References whose path is an ARN (secrets another service owns, e.g. the RDS-generated
credentials) are read by that ARN directly and are read-only here: writing or deleting them
is their owner's business. Secrets scheduled for deletion (by hand, in the console) count as
absent; putting one restores it first. References in the `ssm/` namespace (`secret://ssm/<path>`)
are operator-provided SSM SecureString parameters `/<prefix>/<path>`, read through
`shared.secrets.ssm.SsmParameters` and read-only here too.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator
from typing import Any

from shared.observability import get_logger
from shared.secrets.port import InvalidSecretReference, SecretNotFound, SecretsError, check_value
from shared.secrets.redact import Redactor
from shared.secrets.refs import (
    SCHEME,
    SSM_NAMESPACE,
    is_arn,
    is_under,
    parse_prefix,
    parse_reference,
    reference_for,
    ssm_path,
)
from shared.secrets.ssm import SsmParameters

_PAGE_SIZE = 100


def _default_ssm_client() -> Any:
    import boto3

    return boto3.client("ssm")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class AwsSecrets:
    backend = "aws"

    def __init__(self, prefix: str, client: Any = None, parameters: SsmParameters | None = None) -> None:
        if not prefix.strip("/"):
            raise ValueError("the Secrets Manager name prefix must not be empty")
        if client is None:
            import boto3

            client = boto3.client("secretsmanager")
        self.client = client
        self.prefix = prefix.strip("/")
        # The SSM client is made on the first `ssm/` reference: most functions never read one.
        self.parameters = parameters or SsmParameters(self.prefix, _default_ssm_client)

    def secret_id(self, reference: str) -> str:
        """The Secrets Manager name (or ARN) a reference points at, for IAM policies and operators."""
        path = parse_reference(reference)
        return path if is_arn(path) else f"{self.prefix}/{path}"

    # -- the port ------------------------------------------------------------------------

    def put(self, reference: str, value: str) -> None:
        self._refuse_ssm(reference, "written")
        name = self._owned_secret_id(reference, "written")
        check_value(reference, value)
        client_error = self.client.exceptions.ClientError
        with self._errors("put", reference, value):
            for _attempt in range(2):
                try:
                    self.client.create_secret(Name=name, SecretString=value)
                    break
                except client_error as exc:
                    if _code(exc) != "ResourceExistsException":
                        raise
                try:
                    if "DeletedDate" in self.client.describe_secret(SecretId=name):
                        self.client.restore_secret(SecretId=name)
                    self.client.put_secret_value(SecretId=name, SecretString=value)
                    break
                except client_error as exc:
                    if _code(exc) != "ResourceNotFoundException":
                        raise
                    # Deleted between our calls by someone else: create it again.
            else:
                raise SecretsError(
                    f"Secrets Manager put failed for {reference}: it kept being deleted meanwhile"
                )
        get_logger().info("secret stored", extra={"reference": reference, "secrets_backend": self.backend})

    def get(self, reference: str) -> str:
        parameter = ssm_path(parse_reference(reference))
        if parameter is not None:
            return self.parameters.get(reference, parameter)
        name = self.secret_id(reference)
        with self._errors("get", reference):
            try:
                response = self.client.get_secret_value(SecretId=name)
            except self.client.exceptions.ClientError as exc:
                if _code(exc) == "InvalidRequestException" and self._pending_deletion(name):
                    raise SecretNotFound(reference) from None
                raise
        if "SecretString" not in response:
            raise SecretsError(f"{reference} holds a binary value; this port reads text values only")
        return str(response["SecretString"])

    def delete(self, reference: str) -> None:
        self._refuse_ssm(reference, "deleted")
        name = self._owned_secret_id(reference, "deleted")
        with self._errors("delete", reference):
            try:
                self.client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except self.client.exceptions.ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
                return
        get_logger().info("secret deleted", extra={"reference": reference, "secrets_backend": self.backend})

    def exists(self, reference: str) -> bool:
        parameter = ssm_path(parse_reference(reference))
        if parameter is not None:
            return self.parameters.exists(reference, parameter)
        name = self.secret_id(reference)
        with self._errors("exists", reference):
            try:
                # DescribeSecret, not GetSecretValue: asking whether a value exists must not read it.
                description = self.client.describe_secret(SecretId=name)
            except self.client.exceptions.ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return False
                raise
        return "DeletedDate" not in description

    def list(self, prefix_reference: str) -> builtins.list[str]:
        """Secrets Manager only: the operator's SSM parameters are named in settings, never listed."""
        prefix = parse_prefix(prefix_reference)
        if prefix.partition("/")[0] == SSM_NAMESPACE:
            raise SsmParameters.refuse_write(prefix_reference, prefix, "listed")
        name_prefix = f"{self.prefix}/{prefix}/" if prefix else f"{self.prefix}/"
        references: builtins.list[str] = []
        with self._errors("list", prefix_reference):
            pages = self.client.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [name_prefix]}],
                PaginationConfig={"PageSize": _PAGE_SIZE},
            )
            for page in pages:
                for entry in page.get("SecretList", []):
                    name = str(entry["Name"])
                    # The name filter ignores case, so check again; skip names our references cannot express.
                    if "DeletedDate" in entry or not name.startswith(name_prefix):
                        continue
                    path = name[len(self.prefix) + 1 :]
                    if is_under(path, prefix) and self._is_valid_path(path):
                        references.append(reference_for(path))
        return sorted(references)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _refuse_ssm(reference: str, verb: str) -> None:
        parameter = ssm_path(parse_reference(reference))
        if parameter is not None:
            raise SsmParameters.refuse_write(reference, parameter, verb)

    def _owned_secret_id(self, reference: str, verb: str) -> str:
        name = self.secret_id(reference)
        if is_arn(name):
            raise InvalidSecretReference(
                f"{reference} names a secret by ARN, which another service owns; it can be read, not {verb}"
            )
        return name

    def _pending_deletion(self, name: str) -> bool:
        try:
            return "DeletedDate" in self.client.describe_secret(SecretId=name)
        except self.client.exceptions.ClientError:
            return False

    @staticmethod
    def _is_valid_path(path: str) -> bool:
        try:
            parse_reference(SCHEME + path)
        except InvalidSecretReference:
            return False
        return not is_arn(path)

    @contextlib.contextmanager
    def _errors(self, operation: str, reference: str, value: str | None = None) -> Iterator[None]:
        """Backend failures become SecretsError naming the reference; the value is scrubbed from the
        AWS message and the original exception is not chained, since its text could echo the value."""
        from botocore.exceptions import BotoCoreError, ClientError

        redactor = Redactor([value] if value else [])
        try:
            yield
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise SecretNotFound(reference) from None
            message = redactor.redact(str(exc.response.get("Error", {}).get("Message", "")))
            raise SecretsError(
                f"Secrets Manager {operation} failed for {reference}: {_code(exc)}: {message}"
            ) from None
        except BotoCoreError as exc:
            message = redactor.redact(str(exc))
            raise SecretsError(
                f"Secrets Manager {operation} failed for {reference}: {type(exc).__name__}: {message}"
            ) from None
