"""Which PostgreSQL hosts an unset ORCH_DATABASE_TLS reaches without TLS: loopback ones only (against a real
TLS server: tests/integration/api/test_database_tls.py)."""

from __future__ import annotations

import pytest

from functions.api.db import DatabaseTls


@pytest.mark.parametrize(
    ("host", "plaintext"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        (None, True),  # pg8000's default host, or a unix socket
        ("db.example", False),
        ("mydb.cluster-abc.eu-west-1.rds.amazonaws.com", False),
        ("10.0.0.5", False),
        ("localhost.example.com", False),
    ],
)
def test_unset_keeps_pg8000s_default_tls_for_other_hosts(host: str | None, plaintext: bool) -> None:
    """Elsewhere, unset keeps pg8000's default: TLS if the server offers it (no `ssl_context` argument)."""
    assert DatabaseTls().connect_args(host) == ({"ssl_context": False} if plaintext else {})
    assert DatabaseTls("require").connect_args(host) == {"ssl_context": True}
