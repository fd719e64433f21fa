"""The API client's transport retries a creating call on a dropped connection through the shared
`http_transient` policy (same Idempotency-Key, a short backoff), and nothing else; and it loads the CA
bundle once per process, and only for an https:// API."""

from __future__ import annotations

import ssl

import httpx
import pytest

from shared.api_client import ApiClient, ApiUnreachable

PROJECT = {
    "id": "p-1",
    "name": "blog",
    "description": "",
    "modules": ["backend"],
    "agent": None,
    "repo_url": None,
    "status": "draft",
    "owner_id": "u-1",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


class _DropsFirst:
    """httpx's own MockTransport behind a counter: the first `drops` requests get no answer."""

    def __init__(self, drops: int) -> None:
        self.drops, self.keys = drops, list[str | None]()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        if len(self.keys) <= self.drops:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(201, json=PROJECT)


def _client(answer: _DropsFirst, sleeps: list[float], key: str | None = "inv-1") -> ApiClient:
    return ApiClient(
        "http://api.local",
        "k",
        transport=httpx.MockTransport(answer),
        idempotency_key=key,
        sleep=sleeps.append,
    )


def test_a_creating_call_is_retried_with_the_same_key_after_a_short_backoff() -> None:
    answer, sleeps = _DropsFirst(drops=2), list[float]()

    project = _client(answer, sleeps).create_project("blog")

    assert project.name == "blog"
    assert answer.keys == ["inv-1.1"] * 3
    assert len(sleeps) == 2 and all(0 < s <= ApiClient.RETRY_MAX_DELAY_S for s in sleeps)


def test_a_creating_call_gives_up_after_its_attempts() -> None:
    answer, sleeps = _DropsFirst(drops=ApiClient.CREATE_ATTEMPTS), list[float]()

    with pytest.raises(ApiUnreachable, match="connection refused"):
        _client(answer, sleeps).create_project("blog")
    assert len(answer.keys) == ApiClient.CREATE_ATTEMPTS


def test_without_an_idempotency_key_nothing_is_retried() -> None:
    answer, sleeps = _DropsFirst(drops=1), list[float]()

    with pytest.raises(ApiUnreachable):
        _client(answer, sleeps, key=None).create_project("blog")
    assert answer.keys == [None] and sleeps == []


def _tls_context_of(client: ApiClient) -> ssl.SSLContext:
    """The context httpx's connection pool opens TLS connections with (httpcore's own attribute)."""
    context: ssl.SSLContext = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    return context


def test_https_clients_share_one_verifying_context() -> None:
    # given two clients of https:// APIs
    first, second = ApiClient("https://api.example"), ApiClient("https://other.example:8443")

    # then the CA bundle was loaded once, into the one context both verify with
    context = _tls_context_of(first)
    assert context is _tls_context_of(second)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0


def test_an_http_client_loads_no_ca_bundle_and_trusts_no_certificate() -> None:
    context = _tls_context_of(ApiClient("http://127.0.0.1:8787"))

    assert context.cert_store_stats()["x509_ca"] == 0
    # fails closed: were an https:// URL requested through it, no certificate would pass
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context is not _tls_context_of(ApiClient("HTTPS://api.example"))
