"""The stack as AWS runs it: each scenario drives real triggers through functions holding only their roles.

The scenarios share one rehearsal (see conftest) and run in this order; the last tests read what every
function called and fail on any call its role did not allow.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.cloud.conftest import CloudCli, as_json
from tests.cloud.rehearsal import Rehearsal

pytestmark = [pytest.mark.cloud, pytest.mark.slow, pytest.mark.postgres]


def _wait_task(rehearsal: Rehearsal, orch: CloudCli, task_id: str, timeout: float = 240) -> dict:
    def finished() -> dict | None:
        task = as_json(orch("task", "show", task_id, "--json"))
        return task if task["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return rehearsal.wait_for(finished, timeout, f"task {task_id} to finish", interval=1.0)


def test_the_migration_hook_built_the_schema_and_seeded_the_keys(rehearsal: Rehearsal) -> None:
    assert rehearsal.deploy_hook_result.result["admin"] == "created"
    health = httpx.get(f"{rehearsal.api_url}/health", timeout=30).json()
    assert health["database"] == "ok" and health["schema_revision"] == health["expected_revision"]


def test_api_crud_with_keys_and_bad_input_gets_a_4xx(rehearsal: Rehearsal, orch: CloudCli) -> None:
    # given a user with their own key (through the real CLI and the HTTP API route)
    as_json(orch("user", "add", "alice", "--telegram-id", "5151", "--json"))
    key = as_json(orch("apikey", "create", "alice", "--json"))["key"]
    # when alice creates, reads and lists a project
    project = as_json(orch("project", "create", "--name", "alice-blog", "--json", key=key))
    assert as_json(orch("project", "show", "alice-blog", "--json", key=key))["id"] == project["id"]
    assert [p["name"] for p in as_json(orch("project", "list", "--json", key=key))] == ["alice-blog"]
    # then a stranger's key cannot see it, no key is a 401 and bad input is a 4xx naming the field
    assert httpx.get(f"{rehearsal.api_url}/projects", timeout=30).status_code == 401
    bad = httpx.post(f"{rehearsal.api_url}/projects", json={"name": "Not A Slug!"}, timeout=30,
                     headers={"authorization": f"Bearer {key}"})  # fmt: skip
    assert 400 <= bad.status_code < 500 and "name" in bad.text


def test_engineering_scaffolds_develops_and_tests_through_fargate_workers(
    rehearsal: Rehearsal, orch: CloudCli
) -> None:
    # given a project (GitHub repository created by the scaffolder on the fake GitHub)
    as_json(orch("project", "create", "--name", "blog", "--json"))
    # when engineering runs with the command agent (the fake developer baked into the worker image)
    started = as_json(orch("engineering", "start", "blog", "--spec", "add an answer() function",
                           "--agent", "command", "--json"))  # fmt: skip
    task = _wait_task(rehearsal, orch, started["id"])
    # then a commit landed on a branch of the GitHub repository, made by ECS tasks
    assert task["status"] == "COMPLETED", json.dumps(task, indent=1)[:3000]
    result = task["result"]
    assert result["commit_sha"] and result["branch"]
    assert "app/feature.py" in result["files_changed"]
    assert len(rehearsal.ecs.finished) >= 2, "developer and tester ran as ECS tasks"
