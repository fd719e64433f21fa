"""The stack's settings, read once from CDK context (`cdk.json`, `-c key=value`, or `build_app(context=...)`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from constructs import Node

from infra_cdk import constants

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """A context value the stack cannot be built from."""


def _as_bool(key: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"context {key}={value!r} is not a boolean (use true or false)")


def _as_name_part(key: str, value: Any, default: str) -> str:
    text = default if value is None else str(value)
    if len(text) > constants.NAME_PART_MAX_LENGTH or not re.match(constants.NAME_PART_PATTERN, text):
        raise ConfigError(
            f"context {key}={text!r} must be at most {constants.NAME_PART_MAX_LENGTH} characters "
            "of lower-case letters, digits and single inner dashes, starting with a letter"
        )
    return text


def _as_email(key: str, value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not _EMAIL.match(text):
        raise ConfigError(f"context {key}={text!r} is not an email address")
    return text


@dataclass(frozen=True)
class StackConfig:
    """What varies between deployments of the same app."""

    env_name: str = constants.DEFAULT_ENV_NAME
    prefix: str = constants.DEFAULT_PREFIX
    enable_nat_gateway: bool = constants.DEFAULT_ENABLE_NAT_GATEWAY
    deletion_protection: bool = constants.DEFAULT_DELETION_PROTECTION
    alarm_email: str | None = None

    @property
    def stack_name(self) -> str:
        return f"{self.prefix}-{self.env_name}"

    @property
    def resource_prefix(self) -> str:
        """Prefix of physical names; also the functions' ORCH_QUEUE_PREFIX."""
        return self.stack_name

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        get = node.try_get_context
        return cls(
            env_name=_as_name_part(
                constants.CONTEXT_ENV_NAME, get(constants.CONTEXT_ENV_NAME), constants.DEFAULT_ENV_NAME
            ),
            prefix=_as_name_part(
                constants.CONTEXT_PREFIX, get(constants.CONTEXT_PREFIX), constants.DEFAULT_PREFIX
            ),
            enable_nat_gateway=_as_bool(
                constants.CONTEXT_ENABLE_NAT_GATEWAY,
                get(constants.CONTEXT_ENABLE_NAT_GATEWAY),
                constants.DEFAULT_ENABLE_NAT_GATEWAY,
            ),
            deletion_protection=_as_bool(
                constants.CONTEXT_DELETION_PROTECTION,
                get(constants.CONTEXT_DELETION_PROTECTION),
                constants.DEFAULT_DELETION_PROTECTION,
            ),
            alarm_email=_as_email(constants.CONTEXT_ALARM_EMAIL, get(constants.CONTEXT_ALARM_EMAIL)),
        )
