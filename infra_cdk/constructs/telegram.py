"""Telegram: the bot token and webhook secret, and the webhook function behind `POST /telegram/webhook`.

- **Both secrets are created by the stack** (no context ARNs to pass). The webhook secret is generated
  (letters and digits, inside Telegram's `secret_token` alphabet) and never leaves AWS except through
  `orchestrator telegram set-webhook`, which reads it by reference and registers it with Telegram. The
  bot token cannot be generated: the stack creates its secret with a random placeholder (not a valid
  token) and the operator puts the one from @BotFather into it (`aws secretsmanager put-secret-value
  --secret-id <TelegramBotTokenSecretArn> ...`); the bot consumer reads it at its next cold start.
  With `-c operator_secrets=ssm` the stack creates no secret for the token (CloudFormation cannot create
  a SecureString): it is the SecureString parameter `/<prefix>/telegram/bot_token` the operator puts
  (`aws ssm put-parameter --type SecureString`), referenced as `secret://ssm/telegram/bot_token`, and
  the functions that read it may GetParameter on exactly that parameter.
- **The route has no gateway authorizer**: Telegram cannot sign requests or send an API key; it sends
  the webhook secret in `X-Telegram-Bot-Api-Secret-Token`, which the function compares in constant
  time before anything else (401 otherwise). The stage's throttling applies to this route too.
- **The webhook function is the ack path only**: the base layer (no aiogram), outside the VPC, may
  read the webhook secret, send to `telegram:updates` and claim / release update ids in the
  idempotency table. The slow work is the bot consumer's (`infra_cdk.constructs.consumers`).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants, environment
from infra_cdk.config import StackConfig
from infra_cdk.constructs.runtime import LambdaRuntime, Reader, grant_reference_read
from shared.secrets.refs import parse_reference, ssm_path
from shared.secrets.ssm import put_parameter_command


def grant_claims(table: dynamodb.ITable, function: lambda_.IFunction) -> None:
    """What `shared.idempotency.DynamoDbIdempotency` calls: a conditional PutItem and DeleteItem, no reads."""
    table.grant(function, *constants.IDEMPOTENCY_ACTIONS)


class Telegram(Construct):
    """The two Telegram secrets and the webhook (function + route)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        runtime: LambdaRuntime,
        http_api: apigwv2.HttpApi,
        idempotency_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._runtime = runtime
        prefix = config.resource_prefix
        self.bot_token_secret: secretsmanager.Secret | None = None
        if config.bot_token_in_ssm:
            self.bot_token_reference = constants.TELEGRAM_BOT_TOKEN_SSM_REF
        else:
            self.bot_token_secret = self._build_bot_token_secret(prefix)
            self.bot_token_reference = environment.secret_reference(self.bot_token_secret.secret_arn)
        self.webhook_secret = self._build_secret(
            "WebhookSecret",
            description=f"{prefix}: the Telegram webhook secret token (X-Telegram-Bot-Api-Secret-Token), "
            "generated; registered with Telegram by `orchestrator telegram set-webhook`.",
            length=constants.TELEGRAM_WEBHOOK_SECRET_LENGTH,
            rotation="The webhook secret is shared with Telegram through setWebhook, which a Secrets "
            "Manager rotation function cannot call with the bot's token in step; rotate with "
            "`orchestrator telegram set-webhook --new-secret`, which stores a new value here and "
            "registers it with Telegram in one step.",
        )
        self.webhook_function = self._build_webhook_function(idempotency_table)
        self.webhook_route = self._build_route(http_api)

    @property
    def webhook_path(self) -> str:
        return constants.TELEGRAM_WEBHOOK_PATH

    def grant_bot_token_read(self, grantee: Reader) -> None:
        """Read the bot token where it lives (its secret, or its one SSM parameter)."""
        if self.bot_token_secret is not None:
            self.bot_token_secret.grant_read(grantee)
        else:
            grant_reference_read(self, grantee, self.bot_token_reference, self._config.resource_prefix)

    def bot_token_output(self) -> dict[str, tuple[str, str]]:
        """The stack output that tells the operator where to put the token from @BotFather."""
        if self.bot_token_secret is not None:
            return {
                "TelegramBotTokenSecretArn": (
                    self.bot_token_secret.secret_arn,
                    "Put the bot token from @BotFather here after the first deploy (it starts as a placeholder)",
                )
            }
        name = f"/{self._config.resource_prefix}/{ssm_path(parse_reference(self.bot_token_reference))}"
        return {
            "TelegramBotTokenParameterName": (
                name,
                "Put the bot token from @BotFather here: "
                f"{put_parameter_command('<this>')} (a SecureString; the stack cannot create one)",
            )
        }

    def _build_bot_token_secret(self, prefix: str) -> secretsmanager.Secret:
        return self._build_secret(
            "BotTokenSecret",
            description=f"{prefix}: the Telegram bot token from @BotFather. Starts as a random placeholder: "
            "put the real token here after the first deploy (aws secretsmanager put-secret-value).",
            length=constants.TELEGRAM_BOT_TOKEN_PLACEHOLDER_LENGTH,
            rotation="A Telegram bot token is issued by @BotFather, not by anything Secrets Manager can "
            "call: rotate it with /revoke in @BotFather and put the new value here; the bot consumer "
            "reads it at its next cold start.",
        )

    def _build_secret(
        self, construct_id: str, *, description: str, length: int, rotation: str
    ) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=length, exclude_punctuation=True, include_space=False
            ),
            # Like the API keys: made for this stack, nothing outside it should outlive it holding them.
            removal_policy=RemovalPolicy.DESTROY,
        )
        Validations.of(secret).acknowledge(Acknowledgment(id="AwsSolutions-SMG4", reason=rotation))
        return secret

    def _build_webhook_function(self, idempotency_table: dynamodb.ITable) -> lambda_.Function:
        name = constants.TELEGRAM_WEBHOOK_FUNCTION
        function = self._runtime.function(
            self,
            "WebhookFunction",
            name=name,
            handler=constants.TELEGRAM_WEBHOOK_HANDLER,
            timeout_seconds=constants.TELEGRAM_WEBHOOK_TIMEOUT_SECONDS,
            description=f"{self._config.resource_prefix}: Telegram webhook (secret header check, dedup, "
            "queue on telegram:updates)",
            environment_variables={
                "ORCH_TELEGRAM_WEBHOOK_SECRET_REF": environment.secret_reference(
                    self.webhook_secret.secret_arn
                ),
                **environment.secrets(self._config),
                **environment.queues(self._config),
                **environment.idempotency(idempotency_table.table_name),
            },
        )
        self.webhook_secret.grant_read(function)
        grant_claims(idempotency_table, function)
        return function

    def _build_route(self, http_api: apigwv2.HttpApi) -> apigwv2.HttpRoute:
        (route,) = http_api.add_routes(
            path=constants.TELEGRAM_WEBHOOK_PATH,
            methods=[apigwv2.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration(
                "TelegramWebhookIntegration",
                self.webhook_function,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            ),
            # Explicitly none: a default authorizer added to the API later must not lock Telegram out.
            authorizer=apigwv2.HttpNoneAuthorizer(),
        )
        Validations.of(route).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG4",
                reason="Telegram cannot send an API key or sign requests; it sends the webhook secret in "
                "X-Telegram-Bot-Api-Secret-Token, which the function checks in constant time before "
                "reading the body (401 otherwise). The stage throttles this route like every other.",
            )
        )
        return route
