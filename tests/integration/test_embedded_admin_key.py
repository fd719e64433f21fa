"""The embedded stack starts again after an admin revoked its bootstrap key (issue 16, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.local.stack import ADMIN_KEY_REF, EmbeddedStack
from shared.api_client import ApiClient, AuthError
from shared.secrets.local import LocalSecrets
from tests.embedded_support import start_stack


def _revoke_own_key(stack: EmbeddedStack) -> None:
    with ApiClient(stack.server.url, stack.admin_key) as admin:
        me = admin.me()
        [bootstrap] = [k for k in admin.list_api_keys(me.id) if k.name == "bootstrap"]
        admin.revoke_api_key(bootstrap.id)


def test_a_revoked_bootstrap_key_is_replaced_on_the_next_start(embedded_home: Path) -> None:
    # given a stack whose admin revoked the key the stack keeps for itself
    first = start_stack(embedded_home)
    old_key = first.admin_key
    assert first.notices == []
    try:
        _revoke_own_key(first)
    finally:
        first.stop()

    # when it starts again
    second = start_stack(embedded_home)
    try:
        # then it is up with a new admin key, stored for the next start, and said so in one line
        assert second.admin_key and second.admin_key != old_key
        assert LocalSecrets(embedded_home / "secrets.json").get(ADMIN_KEY_REF) == second.admin_key
        assert len(second.notices) == 1 and "revoked" in second.notices[0] and "\n" not in second.notices[0]
        with ApiClient(second.server.url, second.admin_key) as admin:
            assert admin.me().is_admin
        with ApiClient(second.server.url, old_key) as stale, pytest.raises(AuthError):
            stale.me()
    finally:
        second.stop()

    # and the start after that has nothing to recover
    third = start_stack(embedded_home)
    try:
        assert third.notices == [] and third.admin_key == second.admin_key
    finally:
        third.stop()
