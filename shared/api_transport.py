"""The API client's transport: the HTTP session, Idempotency-Keys, error mapping and response
validation. `shared.api_client.ApiClient` adds one method per API call on top."""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts.api import Health
from shared.retry import Sleep, http_transient

M = TypeVar("M")


class ApiError(Exception):
    """The API answered with an error (4xx/5xx)."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []
        self.url = ""
        """The API's base URL (set by the transport): the CLI names it when the key is refused."""

    def __str__(self) -> str:
        return self.message


class NotFoundError(ApiError):
    """404: the thing does not exist, or belongs to someone else."""


class ConflictError(ApiError):
    """409: an illegal transition, a duplicate, or someone else got there first."""


class AuthError(ApiError):
    """401/403: no key, a wrong or revoked key, or a scope that does not allow this."""


class GoneError(ApiError):
    """The thing asked about has ended (e.g. a worker that was deleted)."""


class LimitExceededError(ApiError):
    """429: a per-person bound is reached; `fields` names it (e.g. `shared_ports_per_user`)."""


class DatabaseWakingError(ApiError):
    """503 `database_waking`: the API's database (Aurora Serverless v2) is resuming from its pause and did
    not answer within the API's own wait; `retry_after_s` is when to try again."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[str] | None = None, retry_after_s: float = 10
    ) -> None:
        super().__init__(status, code, message, fields)
        self.retry_after_s = retry_after_s


WAKING_CODE = "database_waking"
WAKING_MESSAGE = "the orchestrator's database is waking up (it pauses when idle); this takes ~15 s"
"""What a person is told, once, while the client waits for it."""


def _retry_after_s(response: httpx.Response, default: float = 10.0) -> float:
    try:
        return max(float(response.headers.get("retry-after", default)), 0.0)
    except ValueError:
        return default


class ApiUnreachable(Exception):
    """No answer from the API at all, or an answer from a server that is not the orchestrator API."""

    def __init__(self, url: str, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"cannot reach the API at {url}: {reason}")
        self.url = url


def _not_our_api(url: str, response: httpx.Response, what: str) -> ApiUnreachable:
    """Some other HTTP server answered (a wrong port or URL): its answer is no API error to act on."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    request = response.request
    reason = (
        f"it answered {request.method} {request.url.path} with HTTP {response.status_code} ({kind}) {what}"
    )
    return ApiUnreachable(
        url,
        reason,
        f"{url} is not the orchestrator API: {reason}; check the URL "
        "(--api-url, ORCH_API_URL or `orchestrator config show`)",
    )


def _is_transport_error(exc: BaseException) -> bool:
    """No answer at all (refused, reset, timed out): the same Idempotency-Key makes another try safe."""
    return isinstance(exc, httpx.TransportError)


@cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    """Built once per response type: a TypeAdapter costs far more than the validation it does."""
    return TypeAdapter(model)


@cache
def _verifying_context() -> ssl.SSLContext:
    """The CA bundle is loaded once per process (~0.1 s of CPU), not once per client (httpx's default)."""
    return httpx.create_ssl_context()


@cache
def _plain_http_context() -> ssl.SSLContext:
    """For an http:// API: no CA bundle to load. It still verifies and trusts no certificate, so a
    request that somehow goes to an https:// URL fails instead of going unchecked."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def tls_context(base_url: str) -> ssl.SSLContext:
    """The TLS context a client of `base_url` needs: the shared verifying one only for https://."""
    return _verifying_context() if base_url.lower().startswith("https://") else _plain_http_context()


def _error_body(response: httpx.Response) -> dict[str, Any] | None:
    """The API's error body ({"code", "message", ...}), or None when the answer is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("code"), str) and isinstance(body.get("message"), str):
        return body
    return None


def _raise_for(response: httpx.Response, url: str) -> None:
    if response.status_code < 400:
        return
    body = _error_body(response)
    if body is None:
        if response.status_code >= 500 and response.status_code != 501:
            # a gateway or a crashing API: our error, worth its text, not a wrong URL
            raise ApiError(response.status_code, "error", response.text[:500] or response.reason_phrase)
        raise _not_our_api(url, response, "and no API error body")
    code, message, fields = body["code"], body["message"], body.get("fields") or []
    if response.status_code == 503 and code == WAKING_CODE:
        waking = DatabaseWakingError(503, code, message, fields, _retry_after_s(response))
        waking.url = url
        raise waking
    kind = {
        404: NotFoundError,
        409: ConflictError,
        401: AuthError,
        403: AuthError,
        410: GoneError,
        429: LimitExceededError,
    }.get(response.status_code, ApiError)
    error = kind(response.status_code, code, message, fields)
    error.url = url
    raise error


class ApiTransport:
    """With `idempotency_key` (the CLI makes one per invocation), every creating call carries an
    `Idempotency-Key` derived from it (`<key>.<n>` for the client's n-th creating call) and is
    retried on a dropped connection with the same key, so the API creates the thing once (the
    shared `http_transient` policy: a short backoff with jitter between tries)."""

    CREATE_ATTEMPTS = 3
    RETRY_BASE_DELAY_S = 0.2
    RETRY_MAX_DELAY_S = 2.0
    WAKE_WAIT_S = 45.0
    """How long a call waits, in all, for a database that is waking up (the API waits ~20 s of it itself)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        sleep: Sleep = time.sleep,
        on_waking: Callable[[str], None] | None = None,
    ) -> None:
        self._idempotency_key = idempotency_key
        self.on_waking = on_waking
        """Told `WAKING_MESSAGE` once per call that waits for the database (the CLI prints it, the bot says it)."""
        self._sleep = sleep
        self._creates = 0
        self._before_change: list[Callable[[], None]] = []
        self._before_close: list[Callable[[], None]] = []
        self._in_callbacks = threading.local()
        headers = {"user-agent": "orchestrator-client/0.1"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if correlation_id:
            headers["x-correlation-id"] = correlation_id
        self.base_url = base_url.rstrip("/")
        self._direct: Any = None
        """The embedded stack's own API, called without httpx's client (`shared.apigw.DirectCall`)."""
        # only a process that imported shared.apigw can serve its API in-process: a function's cold start
        # (an API client in AWS) need not import it to learn that nothing is registered
        apigw: Any = sys.modules.get("shared.apigw")
        if transport is None and apigw is not None:
            transport = apigw.in_process_transport(self.base_url)
            if transport is not None:
                self._direct = apigw.DirectCall(transport, self.base_url, headers)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=tls_context(self.base_url),
        )

    def before_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` before every request that is not a GET (`shared.graphs.progress`: a graph's held
        progress events go out before whatever it changes next)."""
        self._before_change.append(callback)

    def before_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the client is closed, before it is (a graph's held progress events, every
        thread's, go out when its function is reset or the stack stops, instead of failing on a closed
        client)."""
        self._before_close.append(callback)

    def flush_before_change(self) -> None:
        """Run the `before_change` callbacks now, as a change would (a graph's held progress events are
        sent; a test that calls a graph's nodes directly reads them after this)."""
        if not self._before_change or getattr(self._in_callbacks, "active", False):
            return
        with self.without_before_change():
            for callback in self._before_change:
                callback()

    @contextmanager
    def without_before_change(self) -> Iterator[None]:
        """This thread's requests inside run no `before_change` callbacks: a callback's own sends, so that
        one callback's send neither lets another's overtake it nor waits on another's lock."""
        previous = getattr(self._in_callbacks, "active", False)
        self._in_callbacks.active = True
        try:
            yield
        finally:
            self._in_callbacks.active = previous

    def close(self) -> None:
        callbacks, self._before_close = self._before_close, []  # once: a second close has nothing to send
        try:
            with self.without_before_change():
                for callback in callbacks:
                    callback()
        finally:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        """One call; `idempotent` (a creating call) sends the next Idempotency-Key when the client has
        one, and then a dropped connection is retried with that same key. A database waking up is waited
        for (`WAKE_WAIT_S` in all, as its Retry-After says): the API answers that before it touches anything
        (it could not open a connection), so asking again is safe for every call."""
        if method != "GET":
            self.flush_before_change()
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        headers: dict[str, str] = {}
        attempts = 1
        if idempotent and self._idempotency_key:
            self._creates += 1
            headers["idempotency-key"] = f"{self._idempotency_key}.{self._creates}"
            attempts = self.CREATE_ATTEMPTS
        waited, told = 0.0, False
        while True:
            try:
                return self._send(method, path, json, clean, headers, attempts)
            except DatabaseWakingError as exc:
                if waited + exc.retry_after_s > self.WAKE_WAIT_S:
                    exc.message = (
                        f"{WAKING_MESSAGE}; still asleep after {waited:.0f} s, try again in a moment"
                    )
                    raise
                if self.on_waking is not None and not told:
                    self.on_waking(WAKING_MESSAGE)
                    told = True
                self._sleep(exc.retry_after_s)
                waited += exc.retry_after_s

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any],
        headers: dict[str, str],
        attempts: int,
    ) -> Any:
        """One request (the same Idempotency-Key on every try), retried on a dropped connection."""
        if self._direct is not None:
            try:
                response = self._direct.request(method, path, json, params, headers)
            except httpx.TransportError as exc:
                raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from None
            return self._answer(response)
        policy = http_transient(
            _is_transport_error,
            attempts=attempts,
            base_delay_s=self.RETRY_BASE_DELAY_S,
            max_delay_s=self.RETRY_MAX_DELAY_S,
            sleep=self._sleep,
            what="API call",
        )
        try:
            response = policy(self._http.request, method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from None
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> Any:
        _raise_for(response, self.base_url)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise _not_our_api(self.base_url, response, "that is not JSON") from None

    def _as(self, model: type[M] | Any, data: Any) -> M:
        try:
            return _adapter(model).validate_python(data)  # type: ignore[no-any-return, arg-type]
        except ValidationError as exc:
            reason = f"its answer does not have the API's shape ({exc.error_count()} errors)"
            raise ApiUnreachable(
                self.base_url,
                reason,
                f"{self.base_url} does not answer as the orchestrator API: {reason}; another server, or a "
                "client and an API of different versions",
            ) from None

    @staticmethod
    def _body(model: BaseModel | None = None, **fields: Any) -> dict[str, Any]:
        if model is not None:
            return model.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in fields.items() if v is not None}

    # -- health, me --------------------------------------------------------------------

    def health(self) -> Health:
        try:
            response = self._http.get("/health")
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from None
        if response.status_code not in (200, 503):
            _raise_for(response, self.base_url)
        try:
            return Health.model_validate(response.json())
        except ValueError:
            raise _not_our_api(self.base_url, response, "that is not the API's health") from None
