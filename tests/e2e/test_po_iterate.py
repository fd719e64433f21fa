"""The Product Owner iterates: a second wish about a project the person already has becomes an
engineering task on that project, not a second project (the embedded stack with `--telegram`, a fake
Bot API, and the fake PO agent running the real `orchestrator` CLI with the person's key)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.e2e.test_product_owner import ADMIN_TG, _replies, po_stack  # noqa: F401  (a fixture used here)
from tests.fakes.telegram_server import message_update


@pytest.mark.slow
def test_a_second_wish_on_an_existing_project_is_an_engineering_task_on_it(
    po_stack: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    stack, telegram = po_stack
    admin_key = LocalSecrets(stack.home / "secrets.json").get("secret://local/admin_api_key")
    with ApiClient(stack.url, admin_key) as admin:
        alice = admin.add_user("alice", telegram_id=ADMIN_TG)

    # given: a first wish, answered with a new project
    telegram.push_update(message_update(ADMIN_TG, "make a blog"))
    telegram.wait_for(lambda: len(_replies(telegram)) >= 1, timeout=120)

    # when: a second wish about the same project
    telegram.push_update(message_update(ADMIN_TG, "now add comments to my blog, please"))
    telegram.wait_for(lambda: len(_replies(telegram)) >= 2, timeout=120)

    # then: an engineering task on that project, and still one project
    first, second = _replies(telegram)[:2]
    assert first.startswith("Started project blog, task "), first
    assert second.startswith("Changing project blog, task "), second
    with ApiClient(stack.url, admin_key) as admin:
        projects = [p for p in admin.list_projects() if p.owner_id == alice.id]
        assert [p.name for p in projects] == ["blog"], projects
        tasks = sorted(admin.iter_tasks(project=projects[0].id), key=lambda t: t.created_at)
    assert [t.type for t in tasks] == ["engineering", "engineering"], tasks
    assert tasks[0].id in first and tasks[1].id in second
    assert tasks[1].spec == "now add comments to my blog, please"
    assert all(t.user_id == alice.id for t in tasks)
