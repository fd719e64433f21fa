"""Builds the configured session store from settings: the only place that chooses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from shared.sessions.port import SessionStore
from shared.settings import AwsSettings, HomeSettings

DEFAULT_PREFIX = "sessions/"
"""The key prefix in the bucket; the worker's IAM policy grants exactly `<bucket>/sessions/*`."""


class SessionSettings(HomeSettings, AwsSettings):
    """Where agent session archives live: an S3 bucket when ORCH_SESSION_BUCKET is set, else ORCH_HOME."""

    session_bucket: Annotated[
        str | None,
        Field(
            pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            description="S3 bucket of the session archives; set = S3, unset (or empty) = local files.",
        ),
    ] = None
    session_prefix: Annotated[
        str,
        Field(
            pattern=r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/){0,4}$",
            description="Key prefix in the bucket, ending in '/' (or empty for the bucket's root).",
        ),
    ] = DEFAULT_PREFIX
    session_dir: Annotated[
        Path | None, Field(description="Local archives' directory; default $ORCH_HOME/sessions.")
    ] = None

    @field_validator("session_bucket", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An env template often carries `ORCH_SESSION_BUCKET=`: that means "no bucket", not an invalid one.
        return None if value == "" else value

    @property
    def effective_session_dir(self) -> Path:
        return (self.session_dir or self.home / "sessions").expanduser()


def build_session_store(settings: SessionSettings | None = None) -> SessionStore:
    """Adapters are imported here, not at module level, so the embedded stack never loads boto3."""
    settings = settings or SessionSettings()
    if settings.session_bucket:
        import boto3
        from botocore.config import Config

        from shared.sessions.s3 import S3SessionStore

        # SigV4: what AWS requires of the presigned URLs the API hands a worker (S3SessionStore.presign).
        client = boto3.client(
            "s3",
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            config=Config(signature_version="s3v4"),
        )
        return S3SessionStore(settings.session_bucket, prefix=settings.session_prefix, client=client)
    from shared.sessions.local import LocalSessionStore

    return LocalSessionStore(settings.effective_session_dir)
