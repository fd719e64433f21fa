"""The API's PostgreSQL connection authenticates the server (ORCH_DATABASE_TLS=verify-full), against a real
PostgreSQL that speaks TLS with a certificate from a CA made for the test (`tests/tls_postgres.py`).

Before: pg8000 was given no `ssl_context`, so it negotiated TLS with CERT_NONE: the connection to RDS was
encrypted but any server could answer. The failing-before test is the wrong-CA one: it connected.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from functions.api.db import RDS_CA_BUNDLE, DatabaseTls, DatabaseTlsError, make_engine
from functions.api.deps import build_deps
from functions.api.settings import ApiSettings
from tests.tls_postgres import TlsPostgres, make_ca, tls_postgres, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no TLS PostgreSQL here: {unavailable()}")

SSL_IN_USE = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


@pytest.fixture(scope="module")
def pg() -> Iterator[TlsPostgres]:
    with tls_postgres() as server:
        yield server


def _ssl_in_use(url: str, tls: DatabaseTls) -> bool:
    engine = make_engine(url, tls)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(SSL_IN_USE).scalar_one())
    finally:
        engine.dispose()


def test_verify_full_with_the_servers_ca_connects_encrypted(pg: TlsPostgres) -> None:
    assert _ssl_in_use(pg.url, DatabaseTls("verify-full", pg.ca_pem_path)) is True


def test_verify_full_also_checks_the_host_name() -> None:
    # a server whose certificate (from the trusted CA) names another host is refused
    with tls_postgres(server_names=("db.example",)) as elsewhere:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch|doesn.t match"):
            _ssl_in_use(elsewhere.url, DatabaseTls("verify-full", elsewhere.ca_pem_path))


def test_verify_full_refuses_a_server_signed_by_another_ca(pg: TlsPostgres, tmp_path: Path) -> None:
    other = make_ca(tmp_path, "some other CA")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _ssl_in_use(pg.url, DatabaseTls("verify-full", other.pem_path))


def test_verify_full_defaults_to_the_rds_cas_which_do_not_sign_a_test_server(pg: TlsPostgres) -> None:
    assert RDS_CA_BUNDLE.is_file()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _ssl_in_use(pg.url, DatabaseTls("verify-full"))


def test_require_connects_encrypted_without_checking(pg: TlsPostgres) -> None:
    assert _ssl_in_use(pg.url, DatabaseTls("require")) is True


def test_unset_is_plaintext_to_a_loopback_host_and_disable_turns_tls_off(pg: TlsPostgres) -> None:
    assert make_url(pg.url).host == "127.0.0.1"
    assert _ssl_in_use(pg.url, DatabaseTls()) is False  # TLS on loopback protects nothing, costs ~20 ms
    assert _ssl_in_use(pg.url, DatabaseTls("require")) is True
    assert _ssl_in_use(pg.url, DatabaseTls("disable")) is False


def test_the_api_settings_reach_the_engine(
    pg: TlsPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_DATABASE_URL", pg.url)
    monkeypatch.setenv("ORCH_DATABASE_TLS", "verify-full")
    monkeypatch.setenv("ORCH_DATABASE_CA_BUNDLE", str(pg.ca_pem_path))
    deps = build_deps(ApiSettings())
    try:
        with deps.db.engine.connect() as conn:
            assert conn.execute(SSL_IN_USE).scalar_one() is True
    finally:
        deps.db.engine.dispose()


def test_a_missing_bundle_is_a_clear_startup_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(DatabaseTlsError, match="ORCH_DATABASE_CA_BUNDLE"):
        make_engine("postgresql+pg8000://u@db.example/x", DatabaseTls("verify-full", missing))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(DatabaseTlsError, match="not a readable PEM"):
        make_engine("postgresql+pg8000://u@db.example/x", DatabaseTls("verify-full", tmp_path / "junk.pem"))
