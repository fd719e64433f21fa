"""The functions' environment, block by block, mirroring the settings blocks in `shared.settings`.

Values only name things (queues, secrets by `secret://` reference, URLs); no secret value is ever
put in an environment variable. Plain Python: CDK tokens pass through as strings.
"""

from __future__ import annotations

from infra_cdk import constants
from infra_cdk.config import StackConfig
from shared.secrets.refs import SCHEME

Environment = dict[str, str]


def secret_reference(secret_arn: str) -> str:
    """`secret://<ARN>`: how settings name a secret another component created (see shared.secrets.refs)."""
    return f"{SCHEME}{secret_arn}"


def observability(function: str) -> Environment:
    return {
        "ORCH_SERVICE_NAME": function,
        "ORCH_LOG_LEVEL": constants.LAMBDA_LOG_LEVEL,
        "ORCH_HOME": constants.LAMBDA_HOME,
    }


def database(host: str, port: str) -> Environment:
    """Where the API's PostgreSQL is, and that its certificate is verified against the RDS CAs bundled with
    the code (`functions/api/rds-global-bundle.pem`): encrypted is not enough, the server must be RDS."""
    return {
        "ORCH_DATABASE_HOST": host,
        "ORCH_DATABASE_PORT": port,
        "ORCH_DATABASE_NAME": constants.DB_NAME,
        "ORCH_DATABASE_TLS": constants.DB_TLS_MODE,
    }


def database_iam_login(user: str) -> Environment:
    """The API logs in as `user` with an IAM token (no password, no Secrets Manager call), and waits for a
    paused database to resume up to `DB_WAKE_TIMEOUT_SECONDS`."""
    return {
        "ORCH_DATABASE_IAM_USER": user,
        "ORCH_DATABASE_WAKE_TIMEOUT_S": str(constants.DB_WAKE_TIMEOUT_SECONDS),
        "ORCH_DATABASE_IDLE_SESSION_S": str(constants.DB_IDLE_SESSION_SECONDS),
    }


def database_master(secret_arn: str, app_user: str) -> Environment:
    """The deploy hook: the master credentials (RDS-managed secret) and the login it creates for the API."""
    return {"ORCH_DATABASE_SECRET_REF": secret_reference(secret_arn), "ORCH_DATABASE_APP_USER": app_user}


def dualstack_endpoints() -> Environment:
    """Every boto3 client resolves dual-stack endpoints: the private subnets reach AWS over IPv6 only."""
    return {constants.AWS_DUALSTACK_ENV: "true"}


def queues(config: StackConfig) -> Environment:
    return {
        "ORCH_QUEUE_BACKEND": "sqs",
        "ORCH_QUEUE_PREFIX": config.resource_prefix,
        "ORCH_QUEUE_MAX_RECEIVES": str(constants.QUEUE_MAX_RECEIVE_COUNT),
    }


def secrets(config: StackConfig) -> Environment:
    return {"ORCH_SECRETS_BACKEND": "aws", "ORCH_SECRETS_PREFIX": config.resource_prefix}


def service_api(config: StackConfig, api_url: str, service_key_arn: str) -> Environment:
    """What `shared.service_client.build_service_client` reads: the API and the service key's reference."""
    return {
        "ORCH_API_URL": api_url,
        "ORCH_SERVICE_API_KEY_REF": secret_reference(service_key_arn),
        **secrets(config),
    }


def repo_host(config: StackConfig) -> Environment:
    """GitHub (`shared.repos.factory.RepoHostSettings`); the local host has nowhere durable in Lambda."""
    return {
        "ORCH_REPO_HOST": "github",
        "ORCH_GITHUB_TOKEN_REF": config.github_token_ref,
        "ORCH_GITHUB_OWNER_IS_ORG": "true" if config.github_owner_is_org else "false",
        "ORCH_GITHUB_OWNER": config.github_owner,
        # Repositories are <owner>/<name> (functions.engineering.settings.repo_owner, the scheduler's too).
        "ORCH_REPO_OWNER": config.github_owner,
    }


def agent_credentials(config: StackConfig) -> Environment:
    """`shared.settings.AgentCredentialSettings`: references only; the workers resolve them."""
    import json

    if not config.agent_secret_refs:
        return {}
    return {"ORCH_AGENT_SECRET_REFS": json.dumps(dict(config.agent_secret_refs), sort_keys=True)}


def agent_settings(config: StackConfig) -> Environment:
    """The coding agents' plain settings (-c agent_env): the model endpoint and models, on the worker
    container, where the wrapper reads the ORCH_ ones and passes the others on to the agent."""
    return dict(config.agent_env)


def idempotency(table_name: str) -> Environment:
    """`shared.idempotency.IdempotencySettings` on DynamoDB."""
    return {"ORCH_IDEMPOTENCY_BACKEND": "dynamodb", "ORCH_IDEMPOTENCY_TABLE": table_name}


def telegram_admins(config: StackConfig) -> Environment:
    """`ORCH_TELEGRAM_ADMINS`: comma-separated ids (empty: nobody may /adduser)."""
    return {"ORCH_TELEGRAM_ADMINS": ",".join(str(admin) for admin in config.telegram_admins)}


def region(region_name: str) -> Environment:
    return {"ORCH_AWS_REGION": region_name}
