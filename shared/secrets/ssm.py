"""Operator-provided secrets as SSM Parameter Store SecureString parameters, read-only.

`secret://ssm/<path>` names the parameter `/<prefix>/<path>`, read with
`GetParameter(WithDecryption=True)`. Standard parameters cost nothing and the `aws/ssm` key is free,
where a Secrets Manager secret costs $0.40 a month; but CloudFormation cannot create a SecureString,
so only values the operator puts there by hand (`aws ssm put-parameter --type SecureString`) live
here: the stack's generated secrets stay in Secrets Manager. A parameter of another type (String,
StringList) is refused: it is stored in clear and readable by anyone who may describe parameters.

Values are cached per process for `ttl_s` (these are non-rotating secrets read on every message
otherwise); a cache miss costs one GetParameter, and a changed value is seen within `ttl_s`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.secrets.port import InvalidSecretReference, SecretNotFound, SecretsError

DEFAULT_TTL_S = 300.0
SECURE_STRING = "SecureString"


def put_parameter_command(name: str) -> str:
    """What the operator runs to store (or replace) the value: docs and errors say the same."""
    return f"aws ssm put-parameter --name {name} --type {SECURE_STRING} --overwrite --value <value>"


class ParameterNotFound(SecretNotFound):
    """No parameter at the name a `secret://ssm/...` reference maps to; says how to put one."""

    def __init__(self, reference: str, name: str) -> None:
        super().__init__(reference)
        self.parameter_name = name

    def __str__(self) -> str:
        return (
            f"no SSM parameter {self.parameter_name} for {self.reference}; the operator stores it with "
            f"`{put_parameter_command(self.parameter_name)}`"
        )


class SsmParameters:
    """Reads `secret://ssm/<path>` references for the AWS adapter (`shared.secrets.aws.AwsSecrets`)."""

    def __init__(
        self,
        prefix: str,
        client_factory: Callable[[], Any],
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not prefix.strip("/"):
            raise ValueError("the SSM parameter prefix must not be empty")
        self.prefix = prefix.strip("/")
        self._client_factory = client_factory
        self._client: Any = None
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}

    def parameter_name(self, path: str) -> str:
        """`/<prefix>/<path>` for the path after `ssm/` (for IAM policies, docs and operators)."""
        return f"/{self.prefix}/{path}"

    def get(self, reference: str, path: str) -> str:
        name = self.parameter_name(path)
        cached = self._cache.get(name)
        now = self._clock()
        # A clock behind the entry (a SnapStart restore on another host) counts as expired.
        if cached is not None and 0 <= now - cached[0] < self._ttl_s:
            return cached[1]
        parameter = self._read(reference, name, decrypt=True)
        value = str(parameter["Value"])
        self._cache[name] = (now, value)
        return value

    def exists(self, reference: str, path: str) -> bool:
        """Without decryption: asking whether a value exists must not read it."""
        try:
            self._read(reference, self.parameter_name(path), decrypt=False)
        except SecretNotFound:
            return False
        return True

    @staticmethod
    def refuse_write(reference: str, path: str, verb: str) -> InvalidSecretReference:
        return InvalidSecretReference(
            f"{reference} names an SSM SecureString parameter the operator provides; it can be read, "
            f"not {verb} (CloudFormation cannot create one and no function is granted to write it)"
        )

    def _read(self, reference: str, name: str, *, decrypt: bool) -> dict[str, Any]:
        with self._errors(reference, name):
            if self._client is None:
                self._client = self._client_factory()
            parameter: dict[str, Any] = self._client.get_parameter(Name=name, WithDecryption=decrypt)[
                "Parameter"
            ]
        kind = str(parameter.get("Type", ""))
        if kind != SECURE_STRING:
            self._cache.pop(name, None)
            raise SecretsError(
                f"{reference} is the SSM parameter {name} of type {kind or 'unknown'}, not {SECURE_STRING}: a "
                f"secret is stored encrypted; replace it with `{put_parameter_command(name)}`"
            )
        return parameter

    @contextlib.contextmanager
    def _errors(self, reference: str, name: str) -> Iterator[None]:
        """Backend failures become SecretsError naming the reference and parameter, never chained."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "ParameterNotFound":
                raise ParameterNotFound(reference, name) from None
            raise SecretsError(
                f"SSM GetParameter failed for {reference} ({name}): {code}: {error.get('Message', '')}"
            ) from None
        except BotoCoreError as exc:
            raise SecretsError(
                f"SSM GetParameter failed for {reference} ({name}): {type(exc).__name__}: {exc}"
            ) from None
