"""Operator-provided secrets as SSM SecureString parameters (`secret://ssm/<path>`), against moto:
found, cached, missing (a clear error that says how to put it), the wrong type refused, read-only,
the local store unaffected, and the factory wiring the SSM client only when one is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from shared.secrets import InvalidSecretReference, SecretNotFound, SecretsError, build_secrets
from shared.secrets.aws import AwsSecrets
from shared.secrets.local import LocalSecrets
from shared.secrets.ssm import ParameterNotFound, SsmParameters, put_parameter_command
from shared.settings import AwsSettings, SecretsSettings

REGION = "us-east-1"
PREFIX = "orch-prod"
TOKEN_REF = "secret://ssm/telegram/bot_token"
TOKEN_NAME = "/orch-prod/telegram/bot_token"
TOKEN = "123456:AAE-test-token-value"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def _adapter(ssm: Any, clock: Clock | None = None, made: list[int] | None = None) -> AwsSecrets:
    def factory() -> Any:
        if made is not None:
            made.append(1)
        return ssm

    parameters = SsmParameters(PREFIX, factory, ttl_s=300, clock=clock or Clock())
    return AwsSecrets(
        PREFIX, client=boto3.client("secretsmanager", region_name=REGION), parameters=parameters
    )


def test_a_secure_string_is_read_decrypted_by_its_reference(ssm: Any) -> None:
    # given the operator's `aws ssm put-parameter --type SecureString`
    ssm.put_parameter(Name=TOKEN_NAME, Value=TOKEN, Type="SecureString")
    secrets = _adapter(ssm)

    # then the reference reads the plain value, and exists says so without decrypting
    assert secrets.get(TOKEN_REF) == TOKEN
    assert secrets.exists(TOKEN_REF)
    assert secrets.parameters.parameter_name("telegram/bot_token") == TOKEN_NAME


def test_a_value_is_cached_for_the_ttl_then_read_again(ssm: Any) -> None:
    ssm.put_parameter(Name=TOKEN_NAME, Value=TOKEN, Type="SecureString")
    clock = Clock()
    secrets = _adapter(ssm, clock)
    assert secrets.get(TOKEN_REF) == TOKEN
    ssm.put_parameter(Name=TOKEN_NAME, Value="654321:rotated", Type="SecureString", Overwrite=True)

    clock.now += 299
    assert secrets.get(TOKEN_REF) == TOKEN, "within the TTL the cached value answers, with no call"
    clock.now += 2
    assert secrets.get(TOKEN_REF) == "654321:rotated"


def test_a_clock_behind_the_cached_entry_reads_again(ssm: Any) -> None:
    """A SnapStart restore on another host may start the monotonic clock lower than the snapshot's."""
    ssm.put_parameter(Name=TOKEN_NAME, Value=TOKEN, Type="SecureString")
    clock = Clock()
    secrets = _adapter(ssm, clock)
    assert secrets.get(TOKEN_REF) == TOKEN
    ssm.put_parameter(Name=TOKEN_NAME, Value="654321:rotated", Type="SecureString", Overwrite=True)
    clock.now -= 500
    assert secrets.get(TOKEN_REF) == "654321:rotated"


def test_a_missing_parameter_is_secret_not_found_saying_how_to_put_it(ssm: Any) -> None:
    secrets = _adapter(ssm)
    with pytest.raises(SecretNotFound) as caught:
        secrets.get(TOKEN_REF)
    assert isinstance(caught.value, ParameterNotFound)
    message = str(caught.value)
    assert TOKEN_NAME in message and TOKEN_REF in message
    assert put_parameter_command(TOKEN_NAME) in message and "--type SecureString" in message
    assert not secrets.exists(TOKEN_REF)


@pytest.mark.parametrize("kind", ["String", "StringList"])
def test_a_parameter_that_is_not_a_secure_string_is_refused(ssm: Any, kind: str) -> None:
    ssm.put_parameter(Name=TOKEN_NAME, Value=TOKEN, Type=kind)
    secrets = _adapter(ssm)
    for read in (secrets.get, secrets.exists):
        with pytest.raises(SecretsError) as caught:
            read(TOKEN_REF)
        assert not isinstance(caught.value, SecretNotFound)
        message = str(caught.value)
        assert f"of type {kind}, not SecureString" in message and TOKEN not in message


def test_another_prefix_is_not_reachable_through_a_reference(ssm: Any) -> None:
    ssm.put_parameter(Name="/other-stack/telegram/bot_token", Value=TOKEN, Type="SecureString")
    with pytest.raises(ParameterNotFound):
        _adapter(ssm).get(TOKEN_REF)
    for escape in ("secret://ssm/../other-stack/telegram/bot_token", "secret://ssm//other-stack/x"):
        with pytest.raises(InvalidSecretReference):
            _adapter(ssm).get(escape)


def test_ssm_references_are_read_only_and_not_listed(ssm: Any) -> None:
    secrets = _adapter(ssm)
    with pytest.raises(InvalidSecretReference, match="can be read, not written"):
        secrets.put(TOKEN_REF, TOKEN)
    with pytest.raises(InvalidSecretReference, match="can be read, not deleted"):
        secrets.delete(TOKEN_REF)
    with pytest.raises(InvalidSecretReference, match="not listed"):
        secrets.list("secret://ssm/telegram/")
    assert ssm.describe_parameters()["Parameters"] == []


def test_a_denied_read_is_a_secrets_error_naming_the_parameter() -> None:
    client = boto3.client("ssm", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("get_parameter", "AccessDeniedException", "not authorized to GetParameter")
    with stubber, pytest.raises(SecretsError) as caught:
        SsmParameters(PREFIX, lambda: client).get(TOKEN_REF, "telegram/bot_token")
    assert not isinstance(caught.value, SecretNotFound)
    assert "AccessDeniedException" in str(caught.value) and TOKEN_NAME in str(caught.value)


def test_secrets_manager_references_never_make_an_ssm_client(ssm: Any) -> None:
    made: list[int] = []
    secrets = _adapter(ssm, made=made)
    secrets.put("secret://github/token", "ghp_x")
    assert secrets.get("secret://github/token") == "ghp_x"
    assert secrets.list("secret://") == ["secret://github/token"]
    assert made == []


def test_the_factory_reads_ssm_references_in_aws(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ssm.put_parameter(Name=TOKEN_NAME, Value=TOKEN, Type="SecureString")
    secrets = build_secrets(
        SecretsSettings(secrets_backend="aws", secrets_prefix=PREFIX), AwsSettings(aws_region=REGION)
    )
    assert secrets.get(TOKEN_REF) == TOKEN


def test_the_embedded_store_keeps_an_ssm_reference_like_any_other(tmp_path: Path) -> None:
    local = LocalSecrets(tmp_path / "secrets.json")
    local.put(TOKEN_REF, TOKEN)
    assert local.get(TOKEN_REF) == TOKEN and local.list("secret://ssm/") == [TOKEN_REF]
