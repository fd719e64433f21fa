"""The GitHub REST API as the repo host talks to it: one authenticated call at a time.

The token is read by reference on first use and kept, re-read once when GitHub answers 401 (so a
rotated token is picked up without a restart), and scrubbed from every error message. A call is
retried once on a 5xx, a rate limit worth waiting for, or a dropped connection.
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import quote

import httpx

from shared.repos.port import RepoHostError
from shared.retry import once_more
from shared.secrets import Redactor, SecretNotFound, SecretsError, SecretsPort

API_VERSION = "2022-11-28"
USER_AGENT = "codegen-orchestrator"
_MAX_RETRY_WAIT_S = 10.0
"""A retry that would have to wait longer than this (a primary rate limit resetting in minutes) is not made."""


def messages(response: httpx.Response) -> list[str]:
    """GitHub's error text: the top-level `message` plus each entry of `errors`."""
    try:
        data = response.json()
    except ValueError:
        return [response.text[:300]] if response.text else []
    if not isinstance(data, dict):
        return []
    found = [str(data["message"])] if data.get("message") else []
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            text = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
            found.append(str(text))
        else:
            found.append(str(error))
    return found


def mentions(response: httpx.Response, phrase: str) -> bool:
    """Whether GitHub's error text says `phrase` (lower case): how "already exists" is told apart."""
    return any(phrase in message.lower() for message in messages(response))


class _TryAgain(Exception):
    """The first response deserves the second and last try, after `delay_s` seconds."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"retry in {delay_s:g}s")
        self.delay_s = delay_s


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, _TryAgain | httpx.TransportError)


class GitHubApi:
    """Calls to one GitHub API (github.com's or an Enterprise server's) with the token at `token_ref`."""

    def __init__(
        self,
        api_url: str,
        token_ref: str,
        secrets: SecretsPort,
        client: httpx.Client | None = None,
        *,
        timeout: float = 15.0,
        retry_delay: float = 1.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token_ref = token_ref
        self.secrets = secrets
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self.retry_delay = retry_delay
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=self.timeout)
        self._token: str | None = None
        self._redactor = Redactor()

    def close(self) -> None:
        """Closes the HTTP client if this object made it."""
        if self._owns_client:
            self._client.close()

    def token(self) -> str:
        """The token, read from the secrets store on first use."""
        if self._token is None:
            self._token = self._read_token()
        return self._token

    def _read_token(self) -> str:
        try:
            token = self.secrets.get(self.token_ref).strip()
        except SecretNotFound:
            raise RepoHostError(f"no GitHub token is stored at {self.token_ref}") from None
        except SecretsError as exc:
            raise RepoHostError(f"could not read the GitHub token at {self.token_ref}: {exc}") from None
        if not token:
            raise RepoHostError(f"the GitHub token at {self.token_ref} is empty")
        self._redactor.add(
            token, quote(token, safe=""), base64.b64encode(f"x-access-token:{token}".encode()).decode()
        )
        return token

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }

    def request(
        self, method: str, path_or_url: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """One call, retried once on a 5xx, a rate limit or a dropped connection, and once with a
        re-read token on a 401 (it may have been rotated)."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.api_url + path_or_url
        response: httpx.Response | None = None
        try:
            for attempt in once_more(_worth_retrying, before_retry=self._wait_before_retry):
                with attempt:
                    token = self.token()
                    response = self._client.request(
                        method,
                        url,
                        json=json,
                        params=params,
                        headers=self._headers(token),
                        timeout=self.timeout,
                        follow_redirects=True,
                    )
                    if attempt.retry_state.attempt_number == 1:
                        self._ask_for_retry(response, token)
        except httpx.TransportError as exc:
            message = self._redactor.redact(str(exc)) or type(exc).__name__
            raise RepoHostError(f"GitHub {method} {path_or_url} failed: {message}") from None
        assert response is not None
        return response

    def _ask_for_retry(self, response: httpx.Response, token: str) -> None:
        """Raises `_TryAgain` when the first response deserves the second try: a 401 when the token
        read again differs from `token` (it was rotated), a 5xx or rate limit worth waiting for."""
        if response.status_code == 401:
            fresh = self._read_token()
            if fresh != token:
                self._token = fresh
                raise _TryAgain(0.0)
            return
        delay = self._retry_delay_for(response)
        if delay is not None:
            raise _TryAgain(delay)

    def _wait_before_retry(self, exc: BaseException) -> None:
        """The wait depends on what the first try got (none after a rotated token, Retry-After on a
        rate limit), so it is made here rather than by the policy's fixed delay."""
        time.sleep(exc.delay_s if isinstance(exc, _TryAgain) else self.retry_delay)

    def _retry_delay_for(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the one retry, or None when the response should not be retried."""
        status = response.status_code
        rate_limited = self._is_rate_limited(response)
        if not (status >= 500 or rate_limited):
            return None
        delay = self.retry_delay
        retry_after = response.headers.get("retry-after")
        reset = response.headers.get("x-ratelimit-reset")
        if retry_after and retry_after.isdigit():
            delay = float(retry_after)
        elif (
            rate_limited
            and response.headers.get("x-ratelimit-remaining") == "0"
            and reset
            and reset.isdigit()
        ):
            delay = max(0.0, float(reset) - time.time())
        return delay if delay <= _MAX_RETRY_WAIT_S else None

    @staticmethod
    def _is_rate_limited(response: httpx.Response) -> bool:
        if response.status_code == 429:
            return True
        return response.status_code == 403 and (
            response.headers.get("x-ratelimit-remaining") == "0" or mentions(response, "rate limit")
        )

    def error(self, response: httpx.Response, what: str) -> RepoHostError:
        """The failed `response` to doing `what` as an error a person can act on, the token scrubbed."""
        status = response.status_code
        detail = self._redactor.redact("; ".join(messages(response))) or response.reason_phrase
        if self._is_rate_limited(response):
            return RepoHostError(f"GitHub rate limit hit while {what} ({status}): {detail}")
        if status in (401, 403):
            return RepoHostError(
                f"GitHub refused the token (check the secret at {self.token_ref}) while {what}: {status} {detail}"
            )
        return RepoHostError(f"GitHub failed {what}: {status} {detail}")
