"""Operator-provided secrets in SSM SecureString (`-c operator_secrets=ssm`, issue 23 item 4): the stack
creates no secret for the bot token, and ssm:GetParameter is granted on exactly the parameters each
function resolves, to exactly those functions (plus kms:Decrypt only through SSM for those parameters)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra_cdk import constants
from infra_cdk.config import ConfigError
from tests.infrastructure.conftest import DEFAULT_CONTEXT, Synthesized, synthesize
from tests.infrastructure.idle_cost import idle_lines
from tests.infrastructure.test_compute import _actions, _env, _functions, _resources, _role_of

SSM_CONTEXT: dict[str, Any] = {
    **DEFAULT_CONTEXT,
    "operator_secrets": "ssm",
    "agent_secret_refs": '{"ANTHROPIC_API_KEY": "secret://ssm/agents/anthropic", '
    '"OPENAI_API_KEY": "secret://agents/openai"}',
}
BOT = "telegram/bot_token"
GITHUB = "github/token"
AGENT = "agents/anthropic"

EXPECTED_PARAMETERS = {
    constants.TELEGRAM_BOT_FUNCTION: {BOT},
    constants.TELEGRAM_NOTIFIER_FUNCTION: {BOT},
    constants.PRODUCT_OWNER_FUNCTION: {BOT},
    constants.SCAFFOLDER_FUNCTION: {GITHUB},
    constants.ENGINEERING_FUNCTION: {GITHUB},
    constants.DEPLOY_FUNCTION: {GITHUB},
    constants.SCHEDULER_FUNCTION: {GITHUB},
    constants.API_FUNCTION: {GITHUB, AGENT},
    "ansible task role": {GITHUB},
}
"""Who resolves which `secret://ssm/<path>`: the bot token's readers, the GitHub token's (the scheduler's
github_sync; the API resolves it and the agent key for workers), and nobody else."""


@pytest.fixture(scope="module")
def ssm_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk-ssm"), SSM_CONTEXT)


def _roles(app: Synthesized) -> dict[str, str]:
    """Role logical id -> who holds it: a function's short name, the Ansible task role, else the id."""
    named = {_role_of(props): name for name, (_, props) in _functions(app).items()}
    ansible = app.task_definition(constants.ANSIBLE_FAMILY_SUFFIX)["TaskRoleArn"]["Fn::GetAtt"][0]
    named[ansible] = "ansible task role"
    return named


def _statements_by_holder(app: Synthesized) -> dict[str, list[dict[str, Any]]]:
    names = _roles(app)
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in app.resources("AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            holder = names.get(role["Ref"], role["Ref"])
            found.setdefault(holder, []).extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def _parameter_path(arn: Any, prefix: str) -> str:
    """`parameter/<prefix>/<path>` out of the Fn::Join the template spells the ARN as."""
    parts = arn["Fn::Join"][1]
    tail = parts[-1]
    marker = f":parameter/{prefix}/"
    assert isinstance(tail, str) and tail.startswith(marker), arn
    return tail[len(marker) :]


def test_ssm_reads_are_granted_on_exactly_the_resolved_parameters_to_exactly_their_readers(
    ssm_app: Synthesized,
) -> None:
    prefix = ssm_app.stack.config.resource_prefix
    granted: dict[str, set[str]] = {}
    for holder, statements in _statements_by_holder(ssm_app).items():
        for statement in statements:
            ssm_actions = {a for a in _actions(statement) if a.startswith("ssm:")}
            if not ssm_actions:
                continue
            assert ssm_actions == {"ssm:GetParameter"} and set(_actions(statement)) == ssm_actions, holder
            assert statement["Effect"] == "Allow" and "Condition" not in statement
            granted.setdefault(holder, set()).update(
                _parameter_path(arn, prefix) for arn in _resources(statement)
            )
    assert granted == EXPECTED_PARAMETERS


def test_kms_decrypt_is_only_through_ssm_for_the_parameters_the_role_may_read(ssm_app: Synthesized) -> None:
    holders = _statements_by_holder(ssm_app)
    decrypting = set()
    for holder, statements in holders.items():
        readable = [r for s in statements if "ssm:GetParameter" in _actions(s) for r in _resources(s)]
        for statement in statements:
            if not any(a.startswith("kms:") for a in _actions(statement)):
                continue
            assert _actions(statement) == ["kms:Decrypt"], holder
            condition = statement["Condition"]["StringEquals"]
            assert set(condition) == {"kms:ViaService", "kms:EncryptionContext:PARAMETER_ARN"}
            assert condition["kms:ViaService"]["Fn::Join"][1][0] == "ssm."
            context = condition["kms:EncryptionContext:PARAMETER_ARN"]
            context = context if isinstance(context, list) else [context]
            assert all(arn in readable for arn in context), holder
            decrypting.add(holder)
    assert decrypting == set(EXPECTED_PARAMETERS)


def test_the_stack_creates_no_secret_for_the_bot_token_and_says_where_to_put_it(
    ssm_app: Synthesized, default_app: Synthesized
) -> None:
    secrets = len(ssm_app.resources("AWS::SecretsManager::Secret"))
    assert secrets == len(default_app.resources("AWS::SecretsManager::Secret")) - 1
    assert ssm_app.resources("AWS::SSM::Parameter") == {}  # CloudFormation cannot make a SecureString
    outputs = ssm_app.template_json["Outputs"]
    assert "TelegramBotTokenSecretArn" not in outputs
    parameter = outputs["TelegramBotTokenParameterName"]
    assert parameter["Value"] == f"/{ssm_app.stack.config.resource_prefix}/{BOT}"
    assert "aws ssm put-parameter --name <this> --type SecureString" in parameter["Description"]


def test_the_functions_name_the_parameters_by_reference(ssm_app: Synthesized) -> None:
    for name in (constants.TELEGRAM_BOT_FUNCTION, constants.TELEGRAM_NOTIFIER_FUNCTION):
        assert _env(ssm_app, name)["ORCH_TELEGRAM_BOT_TOKEN_REF"] == constants.TELEGRAM_BOT_TOKEN_SSM_REF
    assert (
        _env(ssm_app, constants.ENGINEERING_FUNCTION)["ORCH_GITHUB_TOKEN_REF"] == "secret://ssm/github/token"
    )


def test_an_explicit_github_token_reference_wins_over_the_ssm_default(tmp_path_factory: Any) -> None:
    from infra_cdk.app import build_app

    context = {**SSM_CONTEXT, "github_token_ref": "secret://github/token"}
    _app, stack = build_app(outdir=str(tmp_path_factory.mktemp("cdk-ssm-explicit")), context=context)
    assert stack.config.github_token_ref == "secret://github/token" and stack.config.bot_token_in_ssm


def test_the_default_stack_keeps_the_bot_token_in_secrets_manager_and_grants_no_ssm(
    default_app: Synthesized,
) -> None:
    assert "TelegramBotTokenSecretArn" in default_app.template_json["Outputs"]
    for holder, statements in _statements_by_holder(default_app).items():
        for statement in statements:
            assert not any(a.startswith(("ssm:", "kms:Decrypt")) for a in _actions(statement)), holder


def test_an_unknown_store_is_refused(tmp_path_factory: Any) -> None:
    from infra_cdk.app import build_app

    with pytest.raises(ConfigError, match="operator_secrets"):
        build_app(
            outdir=str(tmp_path_factory.mktemp("cdk-bad")),
            context={**DEFAULT_CONTEXT, "operator_secrets": "vault"},
        )


def test_moving_the_bot_token_to_ssm_saves_one_secret_month(
    ssm_app: Synthesized, default_app: Synthesized
) -> None:
    def secrets_line(app: Synthesized) -> float:
        (line,) = [x for x in idle_lines(app.template_json) if x.resource == "Secrets Manager secrets"]
        return line.monthly

    assert round(secrets_line(default_app) - secrets_line(ssm_app), 2) == 0.40


def test_every_function_that_names_an_ssm_token_in_its_environment_may_read_it(ssm_app: Synthesized) -> None:
    """Derived from the environment, so a function that starts naming the token without its grant fails here."""
    prefix = ssm_app.stack.config.resource_prefix
    holders = _statements_by_holder(ssm_app)
    for name in _functions(ssm_app):
        env = _env(ssm_app, name) if "Environment" in _functions(ssm_app)[name][1] else {}
        named = {
            str(env[key]).removeprefix("secret://ssm/")
            for key in ("ORCH_GITHUB_TOKEN_REF", "ORCH_TELEGRAM_BOT_TOKEN_REF")
            if str(env.get(key, "")).startswith("secret://ssm/")
        }
        readable = {
            _parameter_path(arn, prefix)
            for s in holders.get(name, [])
            if "ssm:GetParameter" in _actions(s)
            for arn in _resources(s)
        }
        assert named <= readable, name
