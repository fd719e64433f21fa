"""The stack's settings, read once from CDK context (`cdk.json`, `-c key=value`, or `build_app(context=...)`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from constructs import Node

from infra_cdk import constants
from shared.workers.fargate import DEFAULT_TASK_SIZES, TaskSize

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


def _as_github_owner(key: str, value: Any) -> str:
    """Required: the functions run with the GitHub repo host only (a local one has nowhere durable in Lambda)."""
    if value is None or str(value).strip() == "":
        raise ConfigError(
            f"context {key} is required: the GitHub user or organisation that owns the projects' "
            f"repositories (-c {key}=<user or org> on cdk synth / cdk deploy or python -m infra_cdk.app, or "
            f"in cdk.json's context; add "
            f"-c {constants.CONTEXT_GITHUB_OWNER_IS_ORG}=true for an organisation). The engineering, "
            "scaffolder, deploy and scheduler functions create and read repositories there."
        )
    from shared.repos.names import check_owner

    text = str(value).strip()
    try:
        check_owner(text)
    except ValueError as exc:
        raise ConfigError(
            f"context {key}={text!r} is not a GitHub user or organisation name: {exc}"
        ) from None
    return text


def _as_secret_reference(key: str, value: Any, default: str) -> str:
    from shared.secrets.refs import parse_reference

    text = default if value is None or str(value).strip() == "" else str(value).strip()
    try:
        parse_reference(text)
    except ValueError as exc:
        raise ConfigError(f"context {key}={text!r} is not a secret reference: {exc}") from None
    return text


def _as_env_object(key: str, value: Any, values: str) -> list[tuple[str, Any]]:
    """A JSON object (or a dict from cdk.json) of environment variable names, sorted; empty when unset."""
    import json
    import re

    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"context {key} is not a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"context {key} must be a JSON object of NAME -> {values}")
    for name in value:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(name)):
            raise ConfigError(f"context {key}: {name!r} is not an environment variable name")
    return [(str(name), item) for name, item in sorted(value.items())]


def _as_agent_secret_refs(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """`-c agent_secret_refs='{"ANTHROPIC_API_KEY": "secret://agents/anthropic"}'` (or a dict in cdk.json)."""
    return tuple(
        (name, _as_secret_reference(f"{key}.{name}", reference, ""))
        for name, reference in _as_env_object(key, value, "secret:// reference")
    )


def _as_agent_env(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """`-c agent_env='{"ANTHROPIC_BASE_URL": "https://llm-gateway.example.com"}'` (or a dict in cdk.json):
    plain values only, since they are written into the template; a credential goes in agent_secret_refs."""
    import re

    pairs = []
    for name, setting in _as_env_object(key, value, "value"):
        secretish = re.search(r"(TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIALS?)$", name)
        if secretish or str(setting).startswith("secret://"):
            raise ConfigError(f"context {key}: {name} looks like a credential: put it in agent_secret_refs")
        if not isinstance(setting, str | int | float) or isinstance(setting, bool):
            raise ConfigError(f"context {key}: {name} must be a string")
        pairs.append((name, str(setting)))
    return tuple(pairs)


def _as_worker_task_sizes(key: str, value: Any) -> tuple[tuple[str, TaskSize], ...]:
    """`-c worker_task_sizes='{"codex": {"cpu": 2048, "memory": 4096}}'` over the defaults (per agent)."""
    import json

    from shared.workers.fargate import parse_task_sizes

    sizes = dict(DEFAULT_TASK_SIZES)
    if value is not None and value != "":
        try:
            sizes.update(parse_task_sizes(value if isinstance(value, str) else json.dumps(value)))
        except ValueError as exc:
            raise ConfigError(f"context {key}: {exc}") from None
    return tuple(sorted(sizes.items()))


def _as_text(value: Any, default: str) -> str:
    return default if value is None else str(value).strip()


def _as_telegram_admins(key: str, value: Any) -> tuple[int, ...]:
    """Telegram user ids: `-c telegram_admins=111,222`, or a JSON list / number in cdk.json."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    admins: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if isinstance(item, bool) or not re.fullmatch(r"[1-9][0-9]{0,19}", text):
            raise ConfigError(f"context {key}={value!r} must be comma-separated Telegram user ids")
        admins.append(int(text))
    return tuple(admins)


def _as_database(key: str, value: Any) -> str:
    if value is None or str(value).strip() == "":
        return constants.DEFAULT_DATABASE
    text = str(value).strip().lower()
    if text not in constants.DATABASE_KINDS:
        raise ConfigError(f"context {key}={value!r} must be one of {', '.join(constants.DATABASE_KINDS)}")
    return text


def _as_operator_secrets(key: str, value: Any) -> str:
    if value is None or str(value).strip() == "":
        return constants.DEFAULT_OPERATOR_SECRETS
    text = str(value).strip().lower()
    if text not in constants.OPERATOR_SECRETS_STORES:
        raise ConfigError(
            f"context {key}={value!r} must be one of {', '.join(constants.OPERATOR_SECRETS_STORES)}"
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
    database: str = constants.DEFAULT_DATABASE
    """`aurora` (Serverless v2, pauses when idle) or `rds` (one always-on instance): `-c database=rds`."""
    deletion_protection: bool = constants.DEFAULT_DELETION_PROTECTION
    alarm_email: str | None = None
    github_owner: str = field(kw_only=True)
    """Owner of the projects' repositories (required: `-c github_owner=<user or org>`)."""
    github_owner_is_org: bool = False
    github_token_ref: str = constants.DEFAULT_GITHUB_TOKEN_REF
    """`secret://<path>` (Secrets Manager `<resource prefix>/<path>`), `secret://<ARN>`, or
    `secret://ssm/<path>` (the SecureString parameter `/<resource prefix>/<path>`)."""
    operator_secrets: str = constants.DEFAULT_OPERATOR_SECRETS
    """`secretsmanager` or `ssm`: where the Telegram bot token lives (and the GitHub token by default)."""
    worker_agent_packages: str = constants.DEFAULT_WORKER_AGENT_PACKAGES
    """npm packages baked into the worker image (its AGENT_NPM_PACKAGES build argument)."""
    require_layers: bool = False
    """Refuse to synthesize with a layer that `python -m layers.build` has not built (or built stale)."""
    layers_dir: str = constants.DEFAULT_LAYERS_DIR
    """Where `python -m layers.build` wrote the layers; relative paths are from the repository root."""
    telegram_admins: tuple[int, ...] = ()
    """Telegram user ids the bot lets /adduser (ORCH_TELEGRAM_ADMINS); none by default."""
    agent_secret_refs: tuple[tuple[str, str], ...] = ()
    """Coding agents' credentials by reference (ORCH_AGENT_SECRET_REFS); workers may read exactly these."""
    agent_env: tuple[tuple[str, str], ...] = ()
    """Plain env for the coding agents on the worker container: model endpoint and model settings."""
    worker_task_sizes: tuple[tuple[str, TaskSize], ...] = tuple(sorted(DEFAULT_TASK_SIZES.items()))
    """Fargate cpu/memory per agent (ORCH_FARGATE_TASK_SIZES of the worker manager); others: the task definition's."""

    @property
    def stack_name(self) -> str:
        return f"{self.prefix}-{self.env_name}"

    @property
    def resource_prefix(self) -> str:
        """Prefix of physical names; also the functions' ORCH_QUEUE_PREFIX."""
        return self.stack_name

    @property
    def bot_token_in_ssm(self) -> bool:
        return self.operator_secrets == constants.OPERATOR_SECRETS_SSM

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        get = node.try_get_context
        operator_secrets = _as_operator_secrets(
            constants.CONTEXT_OPERATOR_SECRETS, get(constants.CONTEXT_OPERATOR_SECRETS)
        )
        in_ssm = operator_secrets == constants.OPERATOR_SECRETS_SSM
        return cls(
            operator_secrets=operator_secrets,
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
            database=_as_database(constants.CONTEXT_DATABASE, get(constants.CONTEXT_DATABASE)),
            deletion_protection=_as_bool(
                constants.CONTEXT_DELETION_PROTECTION,
                get(constants.CONTEXT_DELETION_PROTECTION),
                constants.DEFAULT_DELETION_PROTECTION,
            ),
            alarm_email=_as_email(constants.CONTEXT_ALARM_EMAIL, get(constants.CONTEXT_ALARM_EMAIL)),
            github_owner=_as_github_owner(
                constants.CONTEXT_GITHUB_OWNER, get(constants.CONTEXT_GITHUB_OWNER)
            ),
            github_owner_is_org=_as_bool(
                constants.CONTEXT_GITHUB_OWNER_IS_ORG, get(constants.CONTEXT_GITHUB_OWNER_IS_ORG), False
            ),
            github_token_ref=_as_secret_reference(
                constants.CONTEXT_GITHUB_TOKEN_REF,
                get(constants.CONTEXT_GITHUB_TOKEN_REF),
                constants.DEFAULT_GITHUB_TOKEN_SSM_REF if in_ssm else constants.DEFAULT_GITHUB_TOKEN_REF,
            ),
            worker_agent_packages=_as_text(
                get(constants.CONTEXT_WORKER_AGENT_PACKAGES), constants.DEFAULT_WORKER_AGENT_PACKAGES
            ),
            require_layers=_as_bool(
                constants.CONTEXT_REQUIRE_LAYERS, get(constants.CONTEXT_REQUIRE_LAYERS), False
            ),
            layers_dir=_as_text(get(constants.CONTEXT_LAYERS_DIR), constants.DEFAULT_LAYERS_DIR),
            telegram_admins=_as_telegram_admins(
                constants.CONTEXT_TELEGRAM_ADMINS, get(constants.CONTEXT_TELEGRAM_ADMINS)
            ),
            agent_secret_refs=_as_agent_secret_refs(
                constants.CONTEXT_AGENT_SECRET_REFS, get(constants.CONTEXT_AGENT_SECRET_REFS)
            ),
            agent_env=_as_agent_env(constants.CONTEXT_AGENT_ENV, get(constants.CONTEXT_AGENT_ENV)),
            worker_task_sizes=_as_worker_task_sizes(
                constants.CONTEXT_WORKER_TASK_SIZES, get(constants.CONTEXT_WORKER_TASK_SIZES)
            ),
        )
