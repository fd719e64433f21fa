"""One contract, two adapters: everything in the first part runs against the local file and moto
Secrets Manager; then what only one adapter can show (file modes, processes, ARNs) and the factory."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from shared.secrets import (
    MAX_VALUE_BYTES,
    InvalidSecretReference,
    SecretNotFound,
    SecretsError,
    SecretsPort,
    SecretTooLargeError,
    arn_reference,
    build_secrets,
    make_reference,
)
from shared.secrets.aws import AwsSecrets
from shared.secrets.local import LocalSecrets
from shared.settings import AwsSettings, SecretsSettings

REGION = "us-east-1"
DB_REF = "secret://projects/p1/DATABASE_URL"
DB_URL = "postgresql://app:s3cr3t-Pa55w0rd@db.internal:5432/app"
SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBmZXN0aXZlLXRlc3Qta2V5LW9ubHktZm9yLXRoZS1zdWl0ZQAAAJg=\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture(params=["local", "aws"])
def secrets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretsPort]:
    if request.param == "local":
        yield LocalSecrets(tmp_path / "store" / "secrets.json")
    else:
        with mock_aws():
            yield AwsSecrets("test", client=boto3.client("secretsmanager", region_name=REGION))


@pytest.fixture
def local_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "secrets.json"


@pytest.fixture
def aws() -> Iterator[AwsSecrets]:
    with mock_aws():
        yield AwsSecrets("test", client=boto3.client("secretsmanager", region_name=REGION))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the contract ------------------------------------------------------------------------------


def test_put_then_get_round_trips(secrets: SecretsPort) -> None:
    assert isinstance(secrets, SecretsPort)
    secrets.put(DB_REF, DB_URL)
    assert secrets.get(DB_REF) == DB_URL


def test_put_overwrites(secrets: SecretsPort) -> None:
    secrets.put(DB_REF, DB_URL)
    secrets.put(DB_REF, DB_URL + "?sslmode=require")
    assert secrets.get(DB_REF) == DB_URL + "?sslmode=require"
    assert secrets.list("secret://projects/p1/") == [DB_REF]


@pytest.mark.parametrize(
    "value",
    [
        SSH_KEY,
        "pässwörd-日本語-🔑",
        'quotes " and \\ backslashes \\n and {"json": true}',
        "  leading and trailing whitespace \t\r\n",
        "x" * MAX_VALUE_BYTES,
    ],
    ids=["ssh-key", "unicode", "json-metacharacters", "whitespace", "largest"],
)
def test_values_come_back_byte_for_byte(secrets: SecretsPort, value: str) -> None:
    ref = make_reference("servers", "srv-1", "ssh_key")
    secrets.put(ref, value)
    assert secrets.get(ref) == value


def test_values_secrets_manager_cannot_store_are_refused_and_nothing_is_stored(secrets: SecretsPort) -> None:
    with pytest.raises(SecretTooLargeError, match=f"the limit is {MAX_VALUE_BYTES} bytes"):
        secrets.put(DB_REF, "x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(ValueError, match="is empty"):
        secrets.put(DB_REF, "")
    assert not secrets.exists(DB_REF)


def test_get_of_a_missing_secret_names_the_reference_and_no_value(secrets: SecretsPort) -> None:
    secrets.put("secret://projects/p1/OTHER", DB_URL)
    missing = "secret://projects/p1/MISSING"
    with pytest.raises(SecretNotFound) as raised:
        secrets.get(missing)
    assert isinstance(raised.value, KeyError)
    assert missing in str(raised.value)
    assert DB_URL not in str(raised.value) and DB_URL not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_delete_removes_and_is_idempotent(secrets: SecretsPort) -> None:
    secrets.put(DB_REF, DB_URL)
    secrets.delete(DB_REF)
    assert not secrets.exists(DB_REF)
    with pytest.raises(SecretNotFound):
        secrets.get(DB_REF)
    secrets.delete(DB_REF)
    secrets.delete("secret://projects/never/existed")


def test_a_deleted_secret_can_be_put_again(secrets: SecretsPort) -> None:
    secrets.put(DB_REF, DB_URL)
    secrets.delete(DB_REF)
    secrets.put(DB_REF, "again-value")
    assert secrets.get(DB_REF) == "again-value"


def test_exists(secrets: SecretsPort) -> None:
    assert not secrets.exists(DB_REF)
    secrets.put(DB_REF, DB_URL)
    assert secrets.exists(DB_REF)
    assert not secrets.exists("secret://projects/p1")  # a prefix is not a secret


def test_list_returns_references_strictly_under_a_prefix(secrets: SecretsPort) -> None:
    for ref in [
        "secret://projects/p1/DATABASE_URL",
        "secret://projects/p1/API_KEY",
        "secret://projects/p1/nested/TOKEN",
        "secret://projects/p10/DATABASE_URL",
        "secret://projects/P1/DATABASE_URL",
        "secret://servers/s1/ssh_key",
    ]:
        secrets.put(ref, f"value-of-{ref}")
    expected = [
        "secret://projects/p1/API_KEY",
        "secret://projects/p1/DATABASE_URL",
        "secret://projects/p1/nested/TOKEN",
    ]
    assert secrets.list("secret://projects/p1/") == expected
    assert secrets.list("secret://projects/p1") == expected
    assert secrets.list("secret://projects/p1/nested/") == ["secret://projects/p1/nested/TOKEN"]
    assert secrets.list("secret://projects/p2/") == []
    assert len(secrets.list("secret://")) == 6
    assert secrets.list("secret://servers/") == ["secret://servers/s1/ssh_key"]


def test_list_pages_through_more_than_one_page(secrets: SecretsPort) -> None:
    refs = sorted(make_reference("projects", "big", f"KEY_{i:03d}") for i in range(130))
    for ref in refs:
        secrets.put(ref, "v-" + ref)
    assert secrets.list("secret://projects/big/") == refs


@pytest.mark.parametrize(
    "reference", ["projects/p1/X", "secret://projects//X", "secret://a/../b", "secret://"]
)
def test_invalid_references_are_refused_by_every_operation(secrets: SecretsPort, reference: str) -> None:
    with pytest.raises(InvalidSecretReference):
        secrets.put(reference, DB_URL)
    with pytest.raises(InvalidSecretReference):
        secrets.get(reference)
    with pytest.raises(InvalidSecretReference):
        secrets.delete(reference)
    with pytest.raises(InvalidSecretReference):
        secrets.exists(reference)
    if reference != "secret://":  # the bare scheme is a valid prefix: everything
        with pytest.raises(InvalidSecretReference):
            secrets.list(reference)
    assert secrets.list("secret://") == []


def test_a_second_instance_sees_writes_at_once(secrets: SecretsPort, tmp_path: Path) -> None:
    other: SecretsPort
    if isinstance(secrets, LocalSecrets):
        other = LocalSecrets(secrets.path)
    else:
        assert isinstance(secrets, AwsSecrets)
        other = AwsSecrets("test", client=boto3.client("secretsmanager", region_name=REGION))
    secrets.put(DB_REF, DB_URL)
    assert other.get(DB_REF) == DB_URL
    other.put(DB_REF, "changed-value")
    assert secrets.get(DB_REF) == "changed-value"
    other.delete(DB_REF)
    assert not secrets.exists(DB_REF)


# -- local only: the file --------------------------------------------------------------------


def test_local_store_is_0600_in_a_0700_dir_after_create_and_every_write(local_path: Path) -> None:
    store = LocalSecrets(local_path)
    assert local_path.exists()
    assert _mode(local_path) == 0o600
    assert _mode(local_path.parent) == 0o700
    assert _mode(store.lock_path) == 0o600
    for ref, value in [(DB_REF, DB_URL), (DB_REF, "overwritten"), ("secret://servers/s1/ssh_key", SSH_KEY)]:
        store.put(ref, value)
        assert _mode(local_path) == 0o600
    store.delete(DB_REF)
    assert _mode(local_path) == 0o600
    assert sorted(p.name for p in local_path.parent.iterdir()) == ["secrets.json", "secrets.json.lock"], (
        "no temporary files are left behind"
    )


def test_local_store_is_0600_whatever_the_umask(local_path: Path) -> None:
    previous = os.umask(0o000)
    try:
        store = LocalSecrets(local_path)
        store.put(DB_REF, DB_URL)
    finally:
        os.umask(previous)
    assert _mode(local_path) == 0o600
    assert _mode(local_path.parent) == 0o700


def test_an_existing_data_dir_keeps_its_mode(tmp_path: Path) -> None:
    home = tmp_path / "shared-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # noqa: S103 - a data dir others may read is exactly the case under test
    LocalSecrets(home / "secrets.json")
    assert _mode(home) == 0o755


def test_loose_permissions_are_tightened_with_a_warning_that_shows_no_value(
    local_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    LocalSecrets(local_path).put(DB_REF, DB_URL)
    os.chmod(local_path, 0o644)
    capsys.readouterr()

    store = LocalSecrets(local_path)

    assert _mode(local_path) == 0o600
    err = capsys.readouterr().err
    assert "permissions tightened to 0600" in err and str(local_path) in err and "0o644" in err
    assert DB_URL not in err
    assert store.get(DB_REF) == DB_URL


def test_no_value_ever_reaches_the_logs(local_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalSecrets(local_path)
    store.put(DB_REF, DB_URL)
    store.put("secret://servers/s1/ssh_key", SSH_KEY)
    store.get(DB_REF)
    store.put(DB_REF, DB_URL + "-rotated")
    with pytest.raises(SecretNotFound):
        store.get("secret://projects/p1/MISSING")
    store.delete(DB_REF)

    err = capsys.readouterr().err
    assert DB_REF in err, "writes are logged (by reference)"
    for secret in (
        DB_URL,
        "s3cr3t-Pa55w0rd",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
    ):
        assert secret not in err


def test_a_corrupt_store_is_reported_without_its_content(local_path: Path) -> None:
    LocalSecrets(local_path)
    local_path.write_text('{"secrets": {"x": "s3cr3t-Pa55w0rd"', encoding="utf-8")
    with pytest.raises(SecretsError, match="not valid JSON") as raised:
        LocalSecrets(local_path).get(DB_REF)
    assert "s3cr3t" not in str(raised.value) and raised.value.__cause__ is None


def test_local_store_treats_an_arn_reference_like_any_key(local_path: Path) -> None:
    ref = arn_reference("arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-abc-AbCdEf")
    store = LocalSecrets(local_path)
    store.put(ref, '{"username": "app", "password": "pw-from-rds"}')
    assert store.get(ref) == '{"username": "app", "password": "pw-from-rds"}'
    assert store.list("secret://") == [], "an ARN is under no prefix"
    store.delete(ref)
    assert not store.exists(ref)


def _write_keys(path: str, writer: int, count: int) -> None:
    store = LocalSecrets(Path(path))
    for i in range(count):
        store.put(make_reference("writers", f"w{writer}", f"KEY_{i}"), f"value-{writer}-{i}")


def test_concurrent_processes_lose_no_write(local_path: Path) -> None:
    LocalSecrets(local_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_keys, args=(str(local_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    store = LocalSecrets(local_path)
    assert len(store.list("secret://writers/")) == 100
    assert all(
        store.get(f"secret://writers/w{w}/KEY_{i}") == f"value-{w}-{i}" for w in range(4) for i in range(25)
    )
    assert _mode(local_path) == 0o600


def test_concurrent_threads_lose_no_write(local_path: Path) -> None:
    store = LocalSecrets(local_path)

    def write_keys(writer: int) -> None:
        for i in range(25):
            store.put(f"secret://t/w{writer}/K{i}", f"v{writer}-{i}")

    threads = [threading.Thread(target=write_keys, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(store.list("secret://t/")) == 100


# -- AWS only ----------------------------------------------------------------------------------


def test_secret_names_are_prefix_slash_path(aws: AwsSecrets) -> None:
    aws.put(DB_REF, DB_URL)
    assert aws.secret_id(DB_REF) == "test/projects/p1/DATABASE_URL"
    assert aws.client.get_secret_value(SecretId="test/projects/p1/DATABASE_URL")["SecretString"] == DB_URL


def test_an_arn_reference_reads_the_secret_by_its_arn(aws: AwsSecrets) -> None:
    # given: a secret RDS created and manages, outside our prefix
    created = aws.client.create_secret(
        Name="rds!db-0f1e2d3c", SecretString='{"username": "app", "password": "pw-from-rds"}'
    )
    ref = arn_reference(created["ARN"])

    assert aws.get(ref) == '{"username": "app", "password": "pw-from-rds"}'
    assert aws.exists(ref)
    assert aws.list("secret://") == []
    with pytest.raises(InvalidSecretReference, match="can be read, not written"):
        aws.put(ref, "replaced")
    with pytest.raises(InvalidSecretReference, match="can be read, not deleted"):
        aws.delete(ref)

    missing = created["ARN"].replace("rds!db-0f1e2d3c", "rds!db-gone")
    with pytest.raises(SecretNotFound, match="rds!db-gone"):
        aws.get(arn_reference(missing))
    assert not aws.exists(arn_reference(missing))


def test_a_secret_scheduled_for_deletion_counts_as_absent_and_put_restores_it(aws: AwsSecrets) -> None:
    aws.put(DB_REF, DB_URL)
    aws.client.delete_secret(
        SecretId=aws.secret_id(DB_REF), RecoveryWindowInDays=7
    )  # by hand, in the console

    assert not aws.exists(DB_REF)
    with pytest.raises(SecretNotFound):
        aws.get(DB_REF)
    assert aws.list("secret://projects/") == []

    aws.put(DB_REF, "restored-value")
    assert aws.get(DB_REF) == "restored-value"


def test_names_our_references_cannot_express_are_not_listed(aws: AwsSecrets) -> None:
    aws.put(DB_REF, DB_URL)
    aws.client.create_secret(Name="test/projects/p1/made+by@hand", SecretString="x-value")
    aws.client.create_secret(Name="other/projects/p1/KEY", SecretString="x-value")
    aws.client.create_secret(Name="test-projects/p1/KEY", SecretString="x-value")
    assert aws.list("secret://projects/p1/") == [DB_REF]
    assert aws.list("secret://") == [DB_REF]


def test_an_unreachable_backend_is_a_secrets_error_without_the_value() -> None:
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(
        SecretsError, match="Secrets Manager put failed for secret://projects/p1/DATABASE_URL"
    ) as e:
        AwsSecrets("test", client=client).put(DB_REF, DB_URL)
    assert DB_URL not in str(e.value) and e.value.__cause__ is None and e.value.__suppress_context__


# -- the factory -------------------------------------------------------------------------------


def test_build_secrets_defaults_to_the_local_file_in_orch_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "h"))
    store = build_secrets()
    assert isinstance(store, LocalSecrets) and store.backend == "local"
    assert store.path == tmp_path / "h" / "secrets.json"


def test_build_secrets_honours_orch_secrets_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCH_SECRETS_BACKEND", "local")
    monkeypatch.setenv("ORCH_SECRETS_FILE", str(tmp_path / "elsewhere" / "s.json"))
    store = build_secrets()
    assert isinstance(store, LocalSecrets) and store.path == tmp_path / "elsewhere" / "s.json"


def test_build_secrets_picks_secrets_manager_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SECRETS_BACKEND", "aws")
    monkeypatch.setenv("ORCH_SECRETS_PREFIX", "prod")
    monkeypatch.setenv("ORCH_AWS_REGION", "eu-west-1")
    with mock_aws():
        store = build_secrets()
        assert isinstance(store, AwsSecrets) and store.backend == "aws"
        assert store.prefix == "prod"
        assert store.client.meta.region_name == "eu-west-1"
        store.put(DB_REF, DB_URL)
        assert (
            store.client.get_secret_value(SecretId="prod/projects/p1/DATABASE_URL")["SecretString"] == DB_URL
        )


def test_build_secrets_takes_explicit_settings() -> None:
    with mock_aws():
        store = build_secrets(
            SecretsSettings(secrets_backend="aws", secrets_prefix="stage"),
            AwsSettings(aws_region="us-west-2"),
        )
        assert isinstance(store, AwsSecrets)
        assert (store.prefix, store.client.meta.region_name) == ("stage", "us-west-2")
