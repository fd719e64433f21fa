"""The stack with `-c operator_secrets=ssm` (issue 23 item 4): the operator's secrets are SSM SecureString
parameters, and each function reads exactly its own.

The rehearsal's operator puts `/<prefix>/telegram/bot_token` and `/<prefix>/github/token` as SecureStrings
(the stack creates no secret for them). The bot, in its own process with its template role enforced, reads
its token from SSM and answers a Telegram update through the fake Bot API (which refuses any other token);
then, as the bot's and the scaffolder's template roles, the secrets adapter reads its own parameter and is
denied the other one and any other path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra_cdk import constants
from tests.cloud.rehearsal import Rehearsal

pytestmark = [pytest.mark.cloud, pytest.mark.slow, pytest.mark.postgres]

BOT_REF = constants.TELEGRAM_BOT_TOKEN_SSM_REF
GITHUB_REF = constants.DEFAULT_GITHUB_TOKEN_SSM_REF
REPO_ROOT = Path(__file__).parents[2]
STRANGER_ID = 424242


@pytest.fixture(scope="module")
def rehearsal_context() -> dict[str, Any]:
    return {"operator_secrets": "ssm"}


@pytest.fixture(scope="module")
def ssh_server() -> None:
    """This module deploys nothing to a server."""
    return None


def _spec(rehearsal: Rehearsal, function: str) -> Any:
    return rehearsal.lambda_.specs[f"{rehearsal.resource_prefix}-{function}"]


_PROBE = """
import json, os, sys
from tests.cloud import iam
probe = json.loads(os.environ.pop("SSM_PROBE"))
iam.install_guard(probe["statements"], probe["principal"], record_path=probe["record"])
from shared.secrets import SecretNotFound, SecretsError, build_secrets
secrets = build_secrets()
answers = {}
for reference in probe["references"]:
    try:
        answers[reference] = {"length": len(secrets.get(reference))}
    except SecretNotFound as exc:
        answers[reference] = {"missing": str(exc)}
    except SecretsError as exc:
        answers[reference] = {"error": str(exc)}
print(json.dumps(answers))
"""


def _resolve_as(rehearsal: Rehearsal, function: str, references: list[str], record: Path) -> dict[str, Any]:
    """The secrets adapter the function builds from its own environment, in a process whose every botocore
    call is checked against the function's template role (as the rehearsal checks the function itself)."""
    spec = _spec(rehearsal, function)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "AWS_"))}
    env.update(spec.environment)
    env.update(
        AWS_ENDPOINT_URL=rehearsal.moto_url,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="ASIAPROBE",
        AWS_SECRET_ACCESS_KEY="probe",
        PYTHONPATH=str(REPO_ROOT),
        SSM_PROBE=json.dumps(
            {
                "statements": spec.principal.statements,
                "principal": spec.principal.arn,
                "record": str(record),
                "references": references,
            }
        ),
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def test_the_bot_reads_its_token_from_ssm_and_answers_in_the_chat(rehearsal: Rehearsal) -> None:
    from tests.fakes.telegram_server import message_update

    # given no Secrets Manager secret holds the token: the stack made none
    assert not [
        lg
        for lg, _ in rehearsal.template.of_type("AWS::SecretsManager::Secret")
        if lg.startswith("TelegramBotToken")
    ]
    assert (
        _spec(rehearsal, constants.TELEGRAM_BOT_FUNCTION).environment["ORCH_TELEGRAM_BOT_TOKEN_REF"]
        == BOT_REF
    )

    # when a stranger writes to the bot through the webhook route
    secret = rehearsal.secret_value(rehearsal.physical_ref("TelegramWebhookSecret"))
    answer = httpx.post(
        f"{rehearsal.api_url}/telegram/webhook",
        json=message_update(STRANGER_ID, "hello"),
        headers={"x-telegram-bot-api-secret-token": secret},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    # then the bot answered them with the token from SSM (the fake Bot API answers 401 to any other token)
    rehearsal.wait_for(
        lambda: [
            c
            for c in rehearsal.telegram.calls_to("sendMessage")
            if str(c.params.get("chat_id")) == str(STRANGER_ID)
        ],
        120,
        "the bot's answer to the stranger",
    )
    bot_arn = _spec(rehearsal, constants.TELEGRAM_BOT_FUNCTION).principal.arn
    reads = [
        r
        for r in rehearsal.iam_records()
        if r["principal"] == bot_arn and r["action"] in ("ssm:GetParameter", "kms:Decrypt")
    ]
    parameter = f"parameter/{rehearsal.resource_prefix}/telegram/bot_token"
    assert {r["action"] for r in reads} == {"ssm:GetParameter", "kms:Decrypt"}, reads
    assert all(r["allowed"] for r in reads), reads
    assert all(r["resource"].endswith(parameter) for r in reads if r["action"] == "ssm:GetParameter"), reads


@pytest.mark.parametrize(
    ("function", "own", "other"),
    [
        (constants.TELEGRAM_BOT_FUNCTION, BOT_REF, GITHUB_REF),
        (constants.SCAFFOLDER_FUNCTION, GITHUB_REF, BOT_REF),
    ],
)
def test_a_function_role_reads_its_own_parameter_and_is_denied_any_other_path(
    rehearsal: Rehearsal, tmp_path: Path, function: str, own: str, other: str
) -> None:
    record = tmp_path / "probe.jsonl"
    elsewhere = "secret://ssm/telegram/other_token"
    answers = _resolve_as(rehearsal, function, [own, other, elsewhere], record)

    # its own reference resolves (the value is not printed: its length is)
    assert answers[own] == {"length": len(_expected_value(own))}, answers
    # another function's parameter and an unknown path under the same prefix are AccessDenied by the role,
    # before SSM is asked (the unknown path would otherwise be "not found")
    for reference in (other, elsewhere):
        error = answers[reference].get("error", "")
        assert "AccessDeniedException" in error and "ssm:GetParameter" in error, answers
    decisions = [json.loads(line) for line in record.read_text().splitlines()]
    denied = {
        d["resource"].rsplit(":parameter/", 1)[-1]
        for d in decisions
        if d["action"] == "ssm:GetParameter" and not d["allowed"]
    }
    prefix = rehearsal.resource_prefix
    assert denied == {f"{prefix}/{other.removeprefix('secret://ssm/')}", f"{prefix}/telegram/other_token"}
    # and the key: Decrypt through SSM is allowed for its own parameter only (the encryption context)
    decrypts = [d["allowed"] for d in decisions if d["action"] == "kms:Decrypt"]
    assert sorted(decrypts) == [False, False, True], decisions


def _expected_value(reference: str) -> str:
    from tests.cloud.rehearsal import GITHUB_TOKEN, TELEGRAM_TOKEN

    return TELEGRAM_TOKEN if reference == BOT_REF else GITHUB_TOKEN


def test_no_function_made_a_call_its_role_does_not_allow(rehearsal: Rehearsal) -> None:
    assert rehearsal.iam_records(), "the IAM guard recorded nothing: is it installed?"
    denied = rehearsal.denials()
    assert not denied, json.dumps(denied, indent=1)[:4000]
