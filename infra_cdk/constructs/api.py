"""The API: an HTTP API in front of the API function, its keys, and the deploy hook that migrates the schema.

- **No RDS Proxy.** A Lambda container serves one request at a time and the API keeps a pool of two
  connections (`functions.api.db.make_engine`), so connections track concurrent requests, which a
  handful of CLI users and agents keep in the single digits; db.t4g.micro takes ~80. A proxy bills
  at least two vCPUs (~$22/month), more than half of the whole stack's idle cost, for a problem this
  load does not have. HTTP API throttling bounds the burst instead.
- **The function sits in the private subnets** with the functions' security group: PostgreSQL, and HTTPS
  over IPv6 to the dual-stack SQS and Secrets Manager endpoints (no NAT, no interface endpoint). It logs in
  to PostgreSQL with an IAM token (`rds-db:connect` on its one user), so it never reads the master secret.
- **Keys.** The stack generates two secrets: the first admin's key (read it from Secrets Manager
  after the deploy) and the service key the other functions and the workers use. The deploy hook
  (`functions.migrations`) seeds both through the API's own code after migrating, so the API function
  itself never reads the admin key.
- **Migrations on deploy**: a CDK trigger invokes the deploy hook after the database exists and
  again whenever the code changes; a failed migration fails the deploy.
- **Authentication happens in the function** (API keys checked before routing, `functions.api.handler`);
  the gateway only throttles and logs. The one other route, `POST /telegram/webhook`, is added by
  `infra_cdk.constructs.telegram` with its own function, which checks Telegram's secret header.
"""

from __future__ import annotations

import jsii
from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations, triggers
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants, environment
from infra_cdk.config import StackConfig
from infra_cdk.constructs.data import Database
from infra_cdk.constructs.network import Network
from infra_cdk.constructs.runtime import (
    LambdaRuntime,
    VpcPlacement,
    acknowledge_wildcard_resources,
    secret_name_arn,
    secret_name_arn_finding,
)

_ACCESS_LOG_FIELDS = (
    "requestId",
    "requestTime",
    "ip",
    "httpMethod",
    "path",
    "routeKey",
    "status",
    "protocol",
    "responseLength",
    "responseLatency",
    "integrationLatency",
    "integrationErrorMessage",
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """An HTTP API stage's access-log settings (an interface in the CDK's Python binding)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._format = apigw.AccessLogFormat.custom(
            "{" + ",".join(f'"{field}":"$context.{field}"' for field in _ACCESS_LOG_FIELDS) + "}"
        )

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


class Api(Construct):
    """HTTP API -> API function; the admin and service keys; migrations and key seeding on deploy."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        network: Network,
        database: Database,
        runtime: LambdaRuntime,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self._database = database
        self._runtime = runtime
        self.admin_key_secret = self._build_key_secret(
            "AdminKey", "the first admin's API key (read it once after the first deploy)"
        )
        self.service_key_secret = self._build_key_secret(
            "ServiceKey", "the service-scope API key the functions and workers act with"
        )
        self.function = self._build_function()
        self.http_api = self._build_http_api()
        self.deploy_hook = self._build_deploy_hook()

    @property
    def url(self) -> str:
        """The API's base URL (the `$default` stage is served at the endpoint's root)."""
        return self.http_api.api_endpoint

    @property
    def _placement(self) -> VpcPlacement:
        return VpcPlacement(
            vpc=self._network.vpc,
            subnets=self._network.private_subnets,
            security_group=self._network.function_security_group,
            ipv6_out=True,
        )

    def _build_key_secret(self, construct_id: str, purpose: str) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=f"{self._config.resource_prefix}: {purpose}",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=constants.API_KEY_SECRET_LENGTH, exclude_punctuation=True, include_space=False
            ),
            # A new stack generates new keys; nothing outside the stack should outlive it holding them.
            removal_policy=RemovalPolicy.DESTROY,
        )
        Validations.of(secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="An API key, not a credential Secrets Manager can rotate by itself: a new value "
                "must also be registered in the API's key table. Rotate by putting a new value and "
                "invoking the deploy hook function (README: Deploy to AWS), which revokes the old key.",
            )
        )
        return secret

    # -- the function ---------------------------------------------------------------------------------

    def _build_function(self) -> lambda_.Function:
        prefix = self._config.resource_prefix
        function = self._runtime.function(
            self,
            "Function",
            name=constants.API_FUNCTION,
            handler=constants.API_HANDLER,
            timeout_seconds=constants.API_TIMEOUT_SECONDS,
            description=f"{prefix}: the HTTP API (Powertools resolver, SQLAlchemy on PostgreSQL)",
            environment_variables={
                **environment.database(self._database.endpoint_address, self._database.endpoint_port),
                **environment.database_iam_login(constants.DB_IAM_USER),
                **environment.dualstack_endpoints(),
                **environment.queues(self._config),
                **environment.secrets(self._config),
            },
            placement=self._placement,
        )
        self._database.grant_connect(function, constants.DB_IAM_USER)
        self._grant_owned_secrets(function)
        return function

    def _grant_owned_secrets(self, function: lambda_.Function) -> None:
        """Create, overwrite and delete the project and server secrets the API stores by reference."""
        prefix = self._config.resource_prefix
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:RestoreSecret",
                    "secretsmanager:DeleteSecret",
                ],
                resources=[
                    secret_name_arn(self, f"{prefix}/{constants.PROJECT_SECRETS_PATH}/*"),
                    secret_name_arn(self, f"{prefix}/{constants.SERVER_SECRETS_PATH}/*"),
                ],
            )
        )
        acknowledge_wildcard_resources(
            function,
            [
                secret_name_arn_finding(f"{prefix}/{constants.PROJECT_SECRETS_PATH}/*"),
                secret_name_arn_finding(f"{prefix}/{constants.SERVER_SECRETS_PATH}/*"),
            ],
            reason="The API writes the secrets users hand it (project secrets, server SSH keys) under "
            "names it makes at run time; each wildcard is the tail of a fixed name prefix "
            f"({prefix}/{constants.PROJECT_SECRETS_PATH}/, {prefix}/{constants.SERVER_SECRETS_PATH}/), "
            "and the actions are listed one by one. It cannot read those secrets back.",
        )

    # -- the gateway ----------------------------------------------------------------------------------

    def _build_http_api(self) -> apigwv2.HttpApi:
        prefix = self._config.resource_prefix
        http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{prefix}-api",
            description=f"{prefix}: the orchestrator API (authenticated with API keys by the function)",
            create_default_stage=False,
            default_integration=integrations.HttpLambdaIntegration(
                "ApiIntegration",
                self._runtime.entry_point(constants.API_FUNCTION),  # the SnapStart alias
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            ),
        )
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays[constants.LOG_RETENTION],
            removal_policy=RemovalPolicy.DESTROY,
        )
        apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=constants.API_THROTTLE_RATE_PER_SECOND, burst_limit=constants.API_THROTTLE_BURST
            ),
            access_log_settings=_AccessLogSettings(access_logs),
        )
        for route in http_api.node.find_all():
            if isinstance(route, apigwv2.CfnRoute):
                Validations.of(route).acknowledge(
                    Acknowledgment(
                        id="AwsSolutions-APIG4",
                        reason="The function authenticates every request with an API key before routing "
                        "(functions.api.handler._authenticate); only /health, /openapi.json and /docs are "
                        "public on purpose. A gateway authorizer would add a second key check per request.",
                    )
                )
        return http_api

    # -- migrations and keys on deploy ----------------------------------------------------------------

    def _build_deploy_hook(self) -> triggers.Trigger:
        prefix = self._config.resource_prefix
        hook = self._runtime.function(
            self,
            "DeployHook",
            name=constants.DEPLOY_HOOK_FUNCTION,
            handler=constants.DEPLOY_HOOK_HANDLER,
            timeout_seconds=constants.DEPLOY_HOOK_TIMEOUT_SECONDS,
            description=f"{prefix}: on deploy, Alembic migrations, then the first admin and the service key",
            environment_variables={
                **environment.database(self._database.endpoint_address, self._database.endpoint_port),
                **environment.database_master(self._database.secret.secret_arn, constants.DB_IAM_USER),
                **environment.dualstack_endpoints(),
                "ORCH_BOOTSTRAP_ADMIN_KEY_REF": environment.secret_reference(
                    self.admin_key_secret.secret_arn
                ),
                "ORCH_SERVICE_API_KEY_REF": environment.secret_reference(self.service_key_secret.secret_arn),
                **environment.secrets(self._config),
            },
            placement=self._placement,
        )
        for secret in (self._database.secret, self.admin_key_secret, self.service_key_secret):
            secret.grant_read(hook)
        self.deploy_hook_function = hook
        return triggers.Trigger(
            self,
            "DeployHookTrigger",
            handler=hook,
            timeout=Duration.seconds(constants.DEPLOY_HOOK_TIMEOUT_SECONDS),
            invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
            # After the database and its secret, and the network the hook reaches Secrets Manager through
            # (the IPv6 route out); before the API function, so new code meets a migrated schema.
            execute_after=[self._database, self._network],
            execute_before=[self.function],
            execute_on_handler_change=True,
        )
