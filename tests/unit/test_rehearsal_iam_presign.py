"""The rehearsal's IAM guard checks presigned URLs when they are signed (tests/cloud/iam.py): a URL acts
with its signer's permissions when used, and its use bypasses botocore, so the signer's policy is the
one to check. The API presigns workers' session archives (issue 20)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.cloud import iam

PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/ApiRole/function"
SESSIONS = "arn:aws:s3:::sessions-bucket"


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rehearsal")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rehearsal")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    path = tmp_path / "iam.jsonl"
    iam.install_guard(
        [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{SESSIONS}/sessions/*"}],
        PRINCIPAL,
        iam.Env(region="us-east-1", account="123456789012"),
        path,
    )
    yield path
    iam.uninstall_guard()


def test_a_url_the_signer_may_use_is_signed_and_recorded_as_allowed(record: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "sessions-bucket", "Key": "sessions/po/u1.tar.gz"}, ExpiresIn=900
    )
    assert "sessions/po/u1.tar.gz" in url and "Signature" in url
    (entry,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert (entry["action"], entry["resource"], entry["allowed"]) == (
        "s3:GetObject",
        f"{SESSIONS}/sessions/po/u1.tar.gz",
        True,
    )


def test_a_url_the_signer_may_not_use_is_a_denial_on_the_record(record: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    with pytest.raises(ClientError, match=r"presigned URL: .*s3:PutObject"):
        s3.generate_presigned_url(
            "put_object", Params={"Bucket": "sessions-bucket", "Key": "sessions/po/u1.tar.gz"}, ExpiresIn=900
        )
    with pytest.raises(ClientError, match="s3:GetObject"):
        s3.generate_presigned_url("get_object", Params={"Bucket": "sessions-bucket", "Key": "other/x"})
    assert [e["allowed"] for e in iam.read_record(record)] == [False, False]
    assert len(iam.denials(record)) == 2


def test_uninstalling_restores_plain_signing(record: Path) -> None:
    iam.uninstall_guard()
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "k"})
    assert iam.read_record(record) == []
