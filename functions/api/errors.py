"""Domain errors: each maps to an HTTP status and a stable `code` in the JSON body."""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []


class BadRequest(ApiError):
    """The body cannot be read at all (not UTF-8, nested too deep): 400 before any validation."""

    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Gone(ApiError):
    status, code = 410, "gone"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ApiError):
    status, code = 422, "validation_error"


class LimitExceeded(ApiError):
    """A per-person bound (`ORCH_LIMIT_*`) is reached; `fields` names the limit."""

    status, code = 429, "limit_exceeded"


class SchemaOutOfDate(ApiError):
    status, code = 503, "schema_out_of_date"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


class DatabaseWaking(ApiError):
    """The database did not answer within the API's wait: an Aurora Serverless v2 writer resuming from its
    pause (~15 s). Answered 503 with `Retry-After`; clients say "waking up" and try again."""

    status, code = 503, "database_waking"

    def __init__(self, message: str, retry_after_s: int = 10) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
