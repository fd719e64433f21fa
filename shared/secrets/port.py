"""The secrets port: where credentials live, addressed by `secret://<path>` references.

The database and queue messages carry only references, never values; a value is read at
the last moment by whoever needs it. Two real adapters implement the port: `AwsSecrets`
(Secrets Manager) and `LocalSecrets` (one 0600 JSON file in ORCH_HOME). Both pass one
contract suite (tests/integration/test_secrets_contract.py).

No error message, log line or exception chain from this package contains a secret value.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

MAX_VALUE_BYTES = 65536
"""Secrets Manager's limit for one secret value; the local store enforces the same."""


class SecretsError(RuntimeError):
    """The secrets backend could not do what was asked."""


class SecretNotFound(SecretsError, KeyError):
    """No value is stored at the reference. A KeyError, so mapping-style callers can catch it."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(reference)

    def __str__(self) -> str:
        # KeyError's own __str__ would print repr(reference) in quotes.
        return f"no secret stored at {self.reference}"


class InvalidSecretReference(SecretsError, ValueError):
    """A reference that is not `secret://<path>`, or an operation the reference does not allow."""


class SecretTooLargeError(SecretsError, ValueError):
    """Refused rather than truncated."""

    def __init__(self, reference: str, size: int, limit: int = MAX_VALUE_BYTES) -> None:
        self.reference, self.size, self.limit = reference, size, limit
        super().__init__(f"value for {reference} is {size} bytes; the limit is {limit} bytes (not stored)")


def check_value(reference: str, value: str) -> None:
    """Both adapters refuse the same values, so code that works embedded works against AWS.

    Empty values are refused because Secrets Manager cannot store them.
    """
    if not isinstance(value, str):
        raise TypeError(f"value for {reference} must be str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"value for {reference} is empty; delete the secret instead")
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise SecretTooLargeError(reference, size)


@runtime_checkable
class SecretsPort(Protocol):
    """References everywhere (`secret://projects/<id>/DATABASE_URL`); adapters map them to storage."""

    backend: str

    def put(self, reference: str, value: str) -> None:
        """Store `value` at `reference`, replacing any previous value."""
        ...

    def get(self, reference: str) -> str:
        """The current value; `SecretNotFound` if there is none."""
        ...

    def delete(self, reference: str) -> None:
        """Remove the value at once (no recovery window); deleting a missing secret is not an error."""
        ...

    def exists(self, reference: str) -> bool:
        """Whether `get` would return a value."""
        ...

    def list(self, prefix_reference: str) -> list[str]:
        """Sorted references strictly under a prefix (`secret://projects/<id>/`); never values."""
        ...
