"""The AWS session store: one S3 object per key, `<prefix><key>.tar.gz`, encrypted at rest (SSE-S3).

- `load` of a missing key returns None. S3 answers 404 for a missing object only to a caller allowed
  `s3:ListBucket` on the bucket, and 403 AccessDenied to anyone else: the worker's task role has
  ListBucket on the sessions bucket for that reason (infra_cdk/constructs/workers.py). Any other error
  (no such bucket, access denied, throttling) is raised, never mistaken for "no session".
- boto3 is imported only when no client is given: importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from shared.sessions.port import ARCHIVE_SUFFIX, check_session, validate_key

CONTENT_TYPE = "application/gzip"
SERVER_SIDE_ENCRYPTION = "AES256"
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _error_code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def normalize_prefix(prefix: str) -> str:
    """`sessions` and `/sessions/` both mean `sessions/`; an empty prefix is the bucket's root."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


class Presigned(NamedTuple):
    """A request anyone holding it may make, for one object, until it expires: send exactly `headers`."""

    url: str
    headers: dict[str, str]


class S3SessionStore:
    """Session archives as S3 objects; one instance (and its boto3 client) may be shared by threads."""

    def __init__(self, bucket: str, prefix: str = "sessions/", client: Any = None) -> None:
        if not bucket:
            raise ValueError("the sessions bucket name must not be empty")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)

    def object_key(self, key: str) -> str:
        """The S3 key that holds `key`'s archive, for IAM policies and operators."""
        return f"{self.prefix}{validate_key(key)}{ARCHIVE_SUFFIX}"

    # -- the port ------------------------------------------------------------------------

    def load(self, key: str) -> bytes | None:
        object_key = self.object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except self.client.exceptions.ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def save(self, key: str, data: bytes) -> None:
        check_session(key, data)
        # One PUT is atomic: readers see the previous object or this one (S3 is strongly consistent).
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.object_key(key),
            Body=data,
            ServerSideEncryption=SERVER_SIDE_ENCRYPTION,
            ContentType=CONTENT_TYPE,
        )

    def delete(self, key: str) -> None:
        # DeleteObject of a missing key succeeds (204) on an unversioned bucket: idempotent already.
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    # -- for a worker without bucket access (issue 20) ------------------------------------------

    def presign(self, key: str, method: Literal["GET", "PUT"], expires_s: int = 900) -> Presigned:
        """A presigned GET (load) or PUT (save) of exactly `key`'s object. A PUT is signed with the
        encryption and content type `save` uses, so the uploader must send those `headers` too. S3 does not
        bound a presigned PUT's size: the uploader checks it (`check_session`) before sending."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        headers: dict[str, str] = {}
        if method == "PUT":
            params.update(ServerSideEncryption=SERVER_SIDE_ENCRYPTION, ContentType=CONTENT_TYPE)
            headers = {"Content-Type": CONTENT_TYPE, "x-amz-server-side-encryption": SERVER_SIDE_ENCRYPTION}
        operation = "get_object" if method == "GET" else "put_object"
        url = self.client.generate_presigned_url(
            operation, Params=params, ExpiresIn=expires_s, HttpMethod=method
        )
        return Presigned(str(url), headers)
