"""Every name, size and duration of the CDK app, in one place.

Plain Python values only (no `aws_cdk` import): reading a constant must not start jsii,
and later slices (consumer functions, workers) read the same numbers their queues were
sized from.
"""

from __future__ import annotations

from collections.abc import Mapping

from layers.bundles import CODE_ASSET_DIRS as CODE_ASSET_DIRS
from layers.bundles import FUNCTION_LAYERS as FUNCTION_LAYERS
from shared.contracts import (
    ANSIBLE_DEPLOY_QUEUE,
    ANSIBLE_DEPLOY_RESULTS,
    DEPLOY_QUEUE,
    ENGINEERING_QUEUE,
    PO_INBOX,
    PO_RESPONSES,
    PROGRESS_EVENTS,
    PROVISIONER_QUEUE,
    PROVISIONER_RESULTS,
    SCAFFOLDER_QUEUE,
    SCAFFOLDER_RESULTS,
    TELEGRAM_UPDATES,
    WORKER_COMMANDS,
    WORKER_RESPONSES,
)
from shared.idempotency import DYNAMODB_PARTITION_KEY, DYNAMODB_TTL_ATTRIBUTE
from shared.topology import PUBLISHES

# -- app, stack, context -------------------------------------------------------------------

PROJECT_NAME = "codegen-orchestrator"
DEFAULT_PREFIX = "codegen-orch"
DEFAULT_ENV_NAME = "dev"
STACK_DESCRIPTION = "codegen-orchestrator: API, consumers, Fargate workers, schedules, queues, database, dashboards and alarms"

CDK_OUTDIR_ENV = "CDK_OUTDIR"
"""Set by the CDK CLI; when absent (app run directly) the app writes DEFAULT_OUTDIR."""
DEFAULT_OUTDIR = "cdk.out"

CONTEXT_ENV_NAME = "env_name"
CONTEXT_PREFIX = "prefix"
CONTEXT_ENABLE_NAT_GATEWAY = "enable_nat_gateway"
CONTEXT_DELETION_PROTECTION = "deletion_protection"
CONTEXT_ALARM_EMAIL = "alarm_email"
CONTEXT_GITHUB_OWNER = "github_owner"
CONTEXT_GITHUB_OWNER_IS_ORG = "github_owner_is_org"
CONTEXT_GITHUB_TOKEN_REF = "github_token_ref"  # noqa: S105 - a context key
CONTEXT_WORKER_AGENT_PACKAGES = "worker_agent_packages"
CONTEXT_REQUIRE_LAYERS = "require_layers"
CONTEXT_AGENT_SECRET_REFS = "agent_secret_refs"  # noqa: S105 - a context key, not a secret
"""JSON object: env name -> secret:// reference of a coding agent's credential (e.g. ANTHROPIC_API_KEY)."""
CONTEXT_AGENT_ENV = "agent_env"
"""JSON object: plain (non-secret) env for the coding agents, set on the worker container: the model endpoint
(ANTHROPIC_BASE_URL, OPENAI_BASE_URL: a gateway such as LiteLLM or a Bedrock proxy) and the models
(ORCH_CLAUDE_MODEL, ORCH_CODEX_MODEL, ORCH_DROID_MODEL, or a CLI's own such as ANTHROPIC_MODEL)."""
CONTEXT_WORKER_TASK_SIZES = "worker_task_sizes"
"""JSON object: agent -> {"cpu": units, "memory": MiB}, over `shared.workers.fargate.DEFAULT_TASK_SIZES`."""
CONTEXT_TELEGRAM_ADMINS = "telegram_admins"
CONTEXT_LAYERS_DIR = "layers_dir"
CONTEXT_DATABASE = "database"
"""`aurora` (default: Aurora PostgreSQL Serverless v2 that pauses at 0 ACU) or `rds` (one always-on instance)."""
DATABASE_AURORA = "aurora"
DATABASE_RDS = "rds"
DATABASE_KINDS = (DATABASE_AURORA, DATABASE_RDS)
DEFAULT_DATABASE = DATABASE_AURORA
CONTEXT_OPERATOR_SECRETS = "operator_secrets"
"""Where the secrets the operator provides live: `secretsmanager` (default) or `ssm` (SecureString
parameters, $0 a month instead of $0.40 each): the Telegram bot token and the default GitHub token."""
OPERATOR_SECRETS_SECRETS_MANAGER = "secretsmanager"
OPERATOR_SECRETS_SSM = "ssm"
OPERATOR_SECRETS_STORES = (OPERATOR_SECRETS_SECRETS_MANAGER, OPERATOR_SECRETS_SSM)
DEFAULT_OPERATOR_SECRETS = OPERATOR_SECRETS_SECRETS_MANAGER

DEFAULT_ENABLE_NAT_GATEWAY = False
# Safe by default: a person has to say `-c deletion_protection=false` to make the database
# and the checkpoint table deletable by `cdk destroy`.
DEFAULT_DELETION_PROTECTION = True

# Lower-case letters, digits and single inner dashes: prefix and env name end up in SQS, alarm,
# dashboard, KMS alias and RDS identifiers; RDS is the strictest (letter first, no "--", no
# trailing "-", at most 63 characters in all).
NAME_PART_PATTERN = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
NAME_PART_MAX_LENGTH = 20

# -- network -------------------------------------------------------------------------------

VPC_CIDR = "10.40.0.0/16"
MAX_AZS = 2
SUBNET_CIDR_MASK = 24
PUBLIC_SUBNET_GROUP = "public"
# The same group name with or without a NAT gateway, so flipping the flag changes routes
# and tags in place instead of replacing the subnets the database lives in.
PRIVATE_SUBNET_GROUP = "private"
NAT_GATEWAY_COUNT_WHEN_ENABLED = 1
HTTPS_PORT = 443
# The VPC is dual-stack: an Amazon-provided /56, a /64 per subnet. The private subnets route IPv6 (only) out
# through an egress-only internet gateway, free, so the functions there reach the dual-stack endpoints of SQS
# and Secrets Manager without interface endpoints ($7.30 a month each per AZ) or a NAT gateway.
ANY_IPV6 = "::/0"
AWS_DUALSTACK_ENV = "AWS_USE_DUALSTACK_ENDPOINT"
"""botocore's switch: every client built in the process resolves the service's dual-stack (IPv4 + IPv6) endpoint."""

# -- data (PostgreSQL: Aurora Serverless v2 or one RDS instance) ------------------------------

DB_AURORA_POSTGRES_VERSION = "17.4"
"""Aurora PostgreSQL versions that scale to 0 ACU: 13.15, 14.12, 15.7, 16.3 and later, every 17."""
DB_AURORA_POSTGRES_MAJOR = "17"
DB_MIN_ACU = 0
"""0 = auto-pause: no capacity billed while paused; the first connection after a pause resumes it (~15 s)."""
DB_MAX_ACU = 2
DB_SECONDS_UNTIL_AUTO_PAUSE = 300
"""Idle seconds before Aurora pauses the writer (the minimum AWS allows; the maximum is a day)."""
DB_CLUSTER_SUFFIX = "aurora"
DB_IAM_USER = "orchestrator_api"
"""The API's login: IAM database authentication (a 15-minute token signed with the function's role, no
password); the deploy hook creates it and grants it the tables' rows, not their definitions."""
DB_WAKE_TIMEOUT_SECONDS = 20
"""ORCH_DATABASE_WAKE_TIMEOUT_S of the API: a resuming writer (~15 s) is waited for inside the function's 29 s;
past it the request gets 503 + Retry-After and the CLI / bot try again."""
DB_IDLE_SESSION_SECONDS = 60
"""ORCH_DATABASE_IDLE_SESSION_S of the API: PostgreSQL closes its connections idle this long, so a warm (frozen)
function's pool never keeps Aurora from pausing (it pauses only when no connection is open)."""
DB_POSTGRES_VERSION = "17"
DB_INSTANCE_TYPE = "t4g.micro"
DB_ALLOCATED_STORAGE_GB = 20
DB_MAX_ALLOCATED_STORAGE_GB = 100
DB_BACKUP_RETENTION_DAYS = 7
DB_NAME = "orchestrator"
DB_USERNAME = "orchestrator"
DB_PORT = 5432
DB_TLS_MODE = "verify-full"
"""ORCH_DATABASE_TLS of the API and the deploy hook: TLS with the server's certificate checked against the
RDS CA bundle and its host name (pg8000 would otherwise encrypt without authenticating the server)."""
DB_INSTANCE_SUFFIX = "postgres"
DB_LOG_EXPORTS = ("postgresql",)

# -- messaging (SQS) -----------------------------------------------------------------------

QUEUE_MAX_RECEIVE_COUNT = 5
QUEUE_RETENTION_DAYS = 4
DLQ_RETENTION_DAYS = 14
# AWS guidance for Lambda event sources: visibility timeout >= 6x the function timeout.
VISIBILITY_TIMEOUT_FACTOR = 6

CONSUMER_TIMEOUT_SECONDS: Mapping[str, int] = {
    # Graph consumers run one step of a LangGraph graph and interrupt() before any long
    # wait, so a step is short; 5 minutes leaves room for a slow LLM or git call.
    ENGINEERING_QUEUE: 300,
    DEPLOY_QUEUE: 300,
    WORKER_RESPONSES: 300,
    SCAFFOLDER_RESULTS: 300,
    # The deploy graph resumes on its results; its smoke test waits up to ~30 s inside one step.
    ANSIBLE_DEPLOY_RESULTS: 300,
    PROVISIONER_RESULTS: 300,
    # The Product Owner consumer: a few API calls and Bot API sends per record; the agent itself
    # runs in a worker (its turn is the worker message's timeout, not this function's).
    PO_INBOX: 60,
    PO_RESPONSES: 60,
    # Copier + git push of a fresh repository.
    SCAFFOLDER_QUEUE: 300,
    # These only start or stop Fargate tasks (in AWS the playbook runs in the Ansible runner task,
    # not inside the infra function: see AWS_LAUNCH_ONLY_CONSUMERS).
    PROVISIONER_QUEUE: 60,
    ANSIBLE_DEPLOY_QUEUE: 60,
    WORKER_COMMANDS: 60,
    # The bot consumer: one Bot API call may wait up to 3 x 20 s on 429s (shared.topology).
    TELEGRAM_UPDATES: 90,
    # The progress notifier: a few API calls and Bot API sends per record; one 429 may wait 20 s.
    PROGRESS_EVENTS: 60,
}
"""The timeout each queue's consuming function must be given (the consumers slice reads this)."""


def consumer_timeout_seconds(logical_queue: str) -> int:
    """The consuming function's timeout for `logical_queue`; KeyError names a queue without one."""
    try:
        return CONSUMER_TIMEOUT_SECONDS[logical_queue]
    except KeyError:
        raise KeyError(f"no consumer timeout for queue {logical_queue!r} in infra_cdk.constants") from None


def visibility_timeout_seconds(logical_queue: str) -> int:
    return VISIBILITY_TIMEOUT_FACTOR * consumer_timeout_seconds(logical_queue)


# -- state (checkpoints, artifacts, logs) ----------------------------------------------------

# Key schema and TTL attribute that langgraph_checkpoint_aws.DynamoDBSaver reads and writes
# (unified_repository.py: Key={"PK": {"S": ...}, "SK": {"S": ...}}, item["ttl"] = {"N": ...}).
CHECKPOINT_PARTITION_KEY = "PK"
CHECKPOINT_SORT_KEY = "SK"
CHECKPOINT_TTL_ATTRIBUTE = "ttl"
CHECKPOINT_TTL_DAYS = 30
CHECKPOINT_TTL_SECONDS = CHECKPOINT_TTL_DAYS * 86_400
"""Pass as DynamoDBSaver(ttl_seconds=...) so the S3 rule below is the one the saver looks for."""
CHECKPOINT_S3_KEY_PREFIX = "checkpoints"
"""Pass as s3_offload_config={"key_prefix": ...}."""
# The saver's own rounding: whole days, rounded up, at least one.
CHECKPOINT_S3_EXPIRATION_DAYS = max(1, (CHECKPOINT_TTL_SECONDS + 86_399) // 86_400)
CHECKPOINT_TTL_TAG_KEY = "ttl-days"

# The claims table of `shared.idempotency.DynamoDbIdempotency` (Telegram update ids, refusal
# cool-downs): a string partition key and the epoch-seconds TTL attribute the adapter writes.
IDEMPOTENCY_PARTITION_KEY = DYNAMODB_PARTITION_KEY
IDEMPOTENCY_TTL_ATTRIBUTE = DYNAMODB_TTL_ATTRIBUTE
IDEMPOTENCY_ACTIONS = ("dynamodb:PutItem", "dynamodb:DeleteItem")
"""What the adapter calls: a conditional put to claim, a delete to release; it never reads an item."""


def checkpoint_lifecycle_rule_id(key_prefix: str = CHECKPOINT_S3_KEY_PREFIX) -> str:
    """The lifecycle rule ID DynamoDBSaver looks for before adding its own.

    The saver (storage_strategy.py `_ensure_s3_lifecycle_policy`) puts a bucket lifecycle
    configuration at runtime unless a rule with this ID exists. The stack declares the rule
    itself, so the saver finds it and never rewrites a CloudFormation-owned configuration,
    and the functions need no s3:PutLifecycleConfiguration.
    """
    return f"{key_prefix.strip('/').replace('/', '-')}-ttl-expiration-{CHECKPOINT_S3_EXPIRATION_DAYS}d"


ARTIFACTS_KEY_PREFIX = "artifacts/"
ARTIFACT_RETENTION_DAYS = 90
ABORT_INCOMPLETE_UPLOAD_DAYS = 7

ACCESS_LOG_RETENTION_DAYS = 90
ACCESS_LOGS_PREFIX = "s3-access/"
FLOW_LOGS_PREFIX = "vpc-flow-logs/"

SESSIONS_KEY_PREFIX = "sessions/"
"""Where `shared.sessions.S3SessionStore` keeps agent session archives (ORCH_SESSION_PREFIX); the worker
task role may read, write and delete objects under it, and list the bucket (so that a missing archive
answers 404, not 403), nothing else."""
SESSION_RETENTION_DAYS = 30
"""A session archive not saved again for this long expires (each save writes a new object, resetting the
clock): a person back after a month starts a fresh conversation with the Product Owner."""
SESSION_ABORT_INCOMPLETE_UPLOAD_DAYS = 1
"""A worker's upload takes seconds; parts left by one killed mid-upload go the next day."""
SESSIONS_ACCESS_LOGS_PREFIX = f"{ACCESS_LOGS_PREFIX}sessions/"
"""Under ACCESS_LOGS_PREFIX, so the sessions bucket's access logs expire with the rest but stay apart."""

LOG_RETENTION = "ONE_MONTH"
"""An aws_logs.RetentionDays member name, for CloudWatch log groups this stack owns."""

# -- observability -------------------------------------------------------------------------

ALARM_PERIOD_SECONDS = 300
DLQ_ALARM_THRESHOLD = 0
"""Any message in a DLQ alarms: each one is work that will not finish by itself."""
OLDEST_MESSAGE_ALARM_FLOOR_SECONDS = 900
FUNCTION_ERROR_RATE_ALARM_PERCENT = 5
DASHBOARD_WIDGET_WIDTH = 8
DASHBOARD_WIDGET_HEIGHT = 6


def oldest_message_alarm_seconds(logical_queue: str) -> int:
    """Age of the oldest message that means a queue's consumers are stuck.

    Two visibility timeouts: one failed receive (the message comes back after one
    visibility timeout) does not page anyone; a consumer that stopped consuming does, long
    before a poison message would finish its five receives and reach the DLQ.
    """
    return max(OLDEST_MESSAGE_ALARM_FLOOR_SECONDS, 2 * visibility_timeout_seconds(logical_queue))


# -- compute: Lambda functions -------------------------------------------------------------

LAMBDA_RUNTIME = "PYTHON_3_12"
"""An aws_lambda.Runtime member name; layers.build.PYTHON_VERSION builds the layers for the same Python."""
LAMBDA_ARCHITECTURE = "X86_64"
"""An aws_lambda.Architecture member name; the layers hold manylinux x86_64 wheels."""
LAMBDA_HOME = "/tmp/orchestrator"  # noqa: S108 - the only writable directory in Lambda
"""ORCH_HOME in Lambda. Nothing durable lives there in AWS (database, queues, checkpoints are remote)."""
LAMBDA_LOG_LEVEL = "INFO"

CODE_ASSET_EXCLUDES = ("**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/*.egg-info")
DEFAULT_LAYERS_DIR = "layers/build"

METRICS_NAMESPACE = "CodegenOrchestrator"
"""Where the functions' EMF metrics go (shared.settings.ObservabilitySettings.metrics_namespace)."""

API_FUNCTION = "api"
DEPLOY_HOOK_FUNCTION = "deploy-hook"
WORKER_EVENTS_FUNCTION = "worker-events"
SCHEDULER_FUNCTION = "scheduler"
WORKER_MANAGER_FUNCTION = "worker-manager"
SCAFFOLDER_FUNCTION = "scaffolder"
ENGINEERING_FUNCTION = "engineering"
DEPLOY_FUNCTION = "deploy"
INFRA_FUNCTION = "infra"
INFRA_EVENTS_FUNCTION = "infra-events"
TELEGRAM_BOT_FUNCTION = "telegram-bot"
TELEGRAM_WEBHOOK_FUNCTION = "telegram-webhook"
TELEGRAM_NOTIFIER_FUNCTION = "telegram-notifier"
PRODUCT_OWNER_FUNCTION = "product-owner"

API_HANDLER = "functions.api.handler.lambda_handler"
DEPLOY_HOOK_HANDLER = "functions.migrations.handler.on_deploy"
WORKER_EVENTS_HANDLER = "functions.worker_manager.handler.ecs_event_handler"
INFRA_EVENTS_HANDLER = "functions.infra.handler.ecs_event_handler"
TELEGRAM_WEBHOOK_HANDLER = "functions.telegram_webhook.handler.lambda_handler"


def function_name_part(topology_name: str) -> str:
    """`worker_manager` (shared.topology) -> `worker-manager` (names, labels and the tables below)."""
    return topology_name.replace("_", "-")


FUNCTION_MEMORY_MB: Mapping[str, int] = {
    # Lambda CPU scales with memory; cold starts import pydantic + SQLAlchemy (API) or LangGraph.
    API_FUNCTION: 512,
    DEPLOY_HOOK_FUNCTION: 512,
    WORKER_MANAGER_FUNCTION: 256,
    WORKER_EVENTS_FUNCTION: 256,
    SCHEDULER_FUNCTION: 256,
    SCAFFOLDER_FUNCTION: 1024,
    ENGINEERING_FUNCTION: 1024,
    DEPLOY_FUNCTION: 1024,
    INFRA_FUNCTION: 256,
    INFRA_EVENTS_FUNCTION: 256,
    # aiogram's import alone is ~2 s on a laptop core; more memory is more CPU for the cold start.
    TELEGRAM_BOT_FUNCTION: 512,
    TELEGRAM_WEBHOOK_FUNCTION: 256,
    TELEGRAM_NOTIFIER_FUNCTION: 256,
    PRODUCT_OWNER_FUNCTION: 256,
}

API_TIMEOUT_SECONDS = 29
"""An HTTP API waits at most 30 s for its integration; the function gives up first."""
DEPLOY_HOOK_TIMEOUT_SECONDS = 300
"""Waits up to two minutes for the database (a first rotation may be running), then migrates."""
WORKER_EVENTS_TIMEOUT_SECONDS = 60
INFRA_EVENTS_TIMEOUT_SECONDS = 60
SCHEDULER_TIMEOUT_SECONDS = 60
TELEGRAM_WEBHOOK_TIMEOUT_SECONDS = 15
"""The ack path: claim, queue, answer; a cold start resolves the webhook secret first. Telegram
retries an update it got no 2xx for, and duplicates are dropped by the claim."""

AWS_LAUNCH_ONLY_CONSUMERS: frozenset[str] = frozenset({INFRA_FUNCTION})
"""Consumers whose `shared.topology` timeout covers the embedded run (the playbook runs inside the
call there); in AWS they only start a Fargate task, so their function timeout is the shorter one
their queues were sized for (CONSUMER_TIMEOUT_SECONDS)."""

SQS_EVENT_SOURCE_MIN_CONCURRENCY = 2
"""Lambda's lower bound for an SQS event source's maximum concurrency; a smaller table value is raised to it."""

QUEUE_PRODUCERS: Mapping[str, tuple[str, ...]] = {
    function_name_part(function): queues for function, queues in PUBLISHES.items() if queues
}
"""Which queues each function may send to (consuming is granted by its event sources): derived from
`shared.topology.PUBLISHES`, the code's own table, which tests/infrastructure checks against the code."""

# -- api -----------------------------------------------------------------------------------

API_THROTTLE_RATE_PER_SECOND = 50
API_THROTTLE_BURST = 100
API_5XX_ALARM_PERCENT = 5
API_KEY_SECRET_LENGTH = 64
"""Characters of generated key material (letters and digits: ~380 bits)."""
PROJECT_SECRETS_PATH = "projects"
SERVER_SECRETS_PATH = "servers"
PO_SECRETS_PATH = "po"
"""The PO function stores each person's user-scope key as `secret://po/<user_id>/api_key`; PO workers read it."""
"""The API writes `secret://projects/<id>/<name>` and `secret://servers/<handle>/ssh_key` (Secrets
Manager `<resource prefix>/projects/...`, `<resource prefix>/servers/...`)."""
DEFAULT_GITHUB_TOKEN_REF = "secret://github/token"  # noqa: S105 - a reference, not a token
"""Secrets Manager `<resource prefix>/github/token`, created by the operator (README: Deploy to AWS)."""
DEFAULT_GITHUB_TOKEN_SSM_REF = "secret://ssm/github/token"  # noqa: S105 - a reference, not a token
"""With `-c operator_secrets=ssm`: the SecureString parameter `/<resource prefix>/github/token`."""
TELEGRAM_BOT_TOKEN_SSM_REF = "secret://ssm/telegram/bot_token"  # noqa: S105 - a reference, not a token
"""With `-c operator_secrets=ssm`: the SecureString parameter `/<resource prefix>/telegram/bot_token`."""

# -- telegram ------------------------------------------------------------------------------

TELEGRAM_WEBHOOK_PATH = "/telegram/webhook"
"""The HTTP API route Telegram posts updates to (`orchestrator telegram set-webhook --url <ApiUrl>/telegram/webhook`)."""
TELEGRAM_WEBHOOK_SECRET_LENGTH = 64
"""Letters and digits only: inside Telegram's secret_token alphabet (1-256 of A-Za-z0-9_-)."""
TELEGRAM_BOT_TOKEN_PLACEHOLDER_LENGTH = 32
"""The bot token secret starts as random letters (not a valid token) until the operator puts the real one."""

# -- workers (ECS Fargate) -----------------------------------------------------------------

WORKER_CLUSTER_SUFFIX = "workers"
WORKER_FAMILY_SUFFIX = "worker"
WORKER_CONTAINER_NAME = "worker"
"""The container the worker manager's RunTask overrides address (ORCH_FARGATE_CONTAINER_NAME)."""
WORKER_CPU = 1024
WORKER_MEMORY_MIB = 4096
"""A coding agent (Node) plus the project's own tests; Fargate bills only while a worker runs. The size of a
worker whose agent has none in `-c worker_task_sizes` (default: `shared.workers.fargate.DEFAULT_TASK_SIZES`)."""
WORKER_DOCKERFILE = "worker_image/Dockerfile"
ANSIBLE_FAMILY_SUFFIX = "ansible-runner"
ANSIBLE_CONTAINER_NAME = "ansible-runner"
ANSIBLE_CPU = 512
ANSIBLE_MEMORY_MIB = 1024
ANSIBLE_DOCKERFILE = "worker_image/ansible.Dockerfile"
ANSIBLE_SERVICE_NAME = "ansible-runner"
"""ORCH_SERVICE_NAME of the runner's logs."""
SSH_PORT = 22
"""The runner reaches target servers on 22 (worker_image.ansible_runner.job.Target.ssh_port's default,
the only port the infra function sets)."""
IMAGE_DOCKERIGNORE = "worker_image/Dockerfile.dockerignore"
"""Both images build from the repository root; this file says what of it is their build context."""
DEFAULT_WORKER_AGENT_PACKAGES = "@anthropic-ai/claude-code@2.1.332"
"""The default agent (claude-code) needs its CLI in the image: the version the real_agent tests run (`make agents`)."""
ECS_EVENT_MAX_AGE_HOURS = 6
ECS_EVENT_RETRY_ATTEMPTS = 8

# -- schedules -----------------------------------------------------------------------------

SCHEDULE_RULE_INFIX = "job"
"""Rule names are `<resource prefix>-job-<job>`."""
