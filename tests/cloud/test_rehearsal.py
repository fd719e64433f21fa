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


def test_a_worker_task_that_dies_fails_its_task_with_the_reason(rehearsal: Rehearsal, orch: CloudCli) -> None:
    # given the next worker task is killed right after it starts (as if Fargate lost it)
    as_json(orch("project", "create", "--name", "doomed", "--json"))
    rehearsal.ecs.kill_next = lambda task: True
    # when engineering starts there
    started = as_json(orch("engineering", "start", "doomed", "--spec", "anything", "--agent", "command", "--json"))
    task = _wait_task(rehearsal, orch, started["id"], timeout=180)
    # then the STOPPED event reached the worker-events function and the task failed, saying why
    assert task["status"] == "FAILED", task
    assert any("exit" in json.dumps(task).lower() or "stopped" in json.dumps(task).lower() for _ in [0]), task
    stopped = [f for f in rehearsal.ecs.finished.values() if f["exit_code"] != 0]
    assert stopped, "the killed task stopped with a non-zero exit code"


def test_a_poison_message_lands_in_its_dlq_and_the_rest_of_the_batch_succeeds(rehearsal: Rehearsal) -> None:
    sqs = rehearsal.client("sqs")
    queue = rehearsal.queue_url("MessagingWorkerCommands")
    dlq = rehearsal.queue_url("MessagingWorkerCommandsDlq")
    # a batch: one poison message, one valid delete of a worker that does not exist (a harmless no-op)
    good = {"version": "1", "correlation_id": str(uuid.uuid4()), "timestamp": "2026-12-03T00:00:00Z",
            "request_id": str(uuid.uuid4()), "command": "delete", "worker_id": "w-nobody"}  # fmt: skip
    sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "poison", "MessageBody": '{"command": "explode", "half a json'},
        {"Id": "good", "MessageBody": json.dumps(good)},
    ])  # fmt: skip

    def in_dlq() -> list[dict]:
        return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])

    dead = rehearsal.wait_for(in_dlq, 90, "the poison message in the DLQ")
    assert [m["Body"] for m in dead] == ['{"command": "explode", "half a json']
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_every_scheduled_job_runs_on_a_populated_system(rehearsal: Rehearsal, orch: CloudCli) -> None:
    # given the projects and tasks the scenarios above left; when every schedule rule fires once
    scheduled = [rule for rule in rehearsal.bus.rules if rule.schedule]
    assert len(scheduled) >= 7
    failures = {}
    for rule in scheduled:
        for outcome in rehearsal.bus.schedule(rule.name):
            if outcome.error is not None:
                failures[rule.name] = outcome.error
    # then none failed, and github_sync found the GitHub repositories (no false "repository missing")
    assert not failures, failures
    incidents = as_json(orch("incident", "list", "--json"))
    assert not [i for i in incidents if "missing" in json.dumps(i).lower()], incidents


def test_a_telegram_message_reaches_the_product_owner_and_its_answer_reaches_the_chat(
    rehearsal: Rehearsal, orch: CloudCli
) -> None:
    from tests.cloud.rehearsal import TELEGRAM_ADMIN_ID
    from tests.fakes.telegram_server import message_update

    # given the admin of the bot is a user
    as_json(orch("user", "add", "bot-admin", "--telegram-id", str(TELEGRAM_ADMIN_ID), "--json"))
    secret = rehearsal.secret_value(rehearsal.physical_ref("TelegramWebhookSecret"))
    url = f"{rehearsal.api_url}/telegram/webhook"
    update = message_update(TELEGRAM_ADMIN_ID, "make me a blog")
    # a wrong secret is refused at the route
    assert httpx.post(url, json=update, timeout=30, headers={"x-telegram-bot-api-secret-token": "nope"}).status_code == 401
    # when Telegram posts the update with the secret
    answer = httpx.post(url, json=update, timeout=30, headers={"x-telegram-bot-api-secret-token": secret})
    assert answer.status_code == 200, answer.text
    # then the bot hands it to the Product Owner, whose worker (an ECS task) answers into the chat
    rehearsal.wait_for(lambda: [t for t in rehearsal.telegram.sent_texts() if "AGENT_LOG" in t], 180,
                       "the Product Owner's answer in the chat")  # fmt: skip
    assert rehearsal.telegram.calls_to("sendChatAction"), "typing was shown while the PO worked"


def test_no_function_or_task_made_a_call_its_role_does_not_allow(rehearsal: Rehearsal) -> None:
    assert rehearsal.iam_records(), "the IAM guard recorded nothing: is it installed?"
    denied = rehearsal.denials()
    assert not denied, json.dumps(denied, indent=1)[:4000]


def test_the_harness_failed_nothing_on_its_side(rehearsal: Rehearsal) -> None:
    errors = [*rehearsal.ecs.errors, *(e for s in rehearsal.sources for e in s.errors)]
    assert not errors, errors
