"""The stack as AWS runs it: each scenario drives real triggers through functions holding only their roles.

The scenarios share one rehearsal (see conftest) and run in this order; the last tests read what every
function called and fail on any call its role did not allow.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from infra_cdk import constants
from shared.contracts import ProvisionerResult
from tests.cloud.conftest import CloudCli, as_json
from tests.cloud.rehearsal import Rehearsal
from tests.ssh_host import SshHost

pytestmark = [pytest.mark.cloud, pytest.mark.slow, pytest.mark.postgres]


def _wait_task(rehearsal: Rehearsal, orch: CloudCli, task_id: str, timeout: float = 240) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        task: dict[str, Any] = as_json(orch("task", "show", task_id, "--json"))
        return task if task["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    try:
        result: dict[str, Any] = rehearsal.wait_for(
            finished, timeout, f"task {task_id} to finish", interval=1.0
        )
    except AssertionError as exc:  # say where it stands, not only that it did not end
        shown = orch("task", "show", task_id, "--json").stdout
        events = orch("task", "logs", task_id).stdout
        raise AssertionError(f"{exc}\ntask: {shown[:2000]}\nevents:\n{events[-3000:]}") from None
    return result


def test_the_migration_hook_built_the_schema_and_seeded_the_keys(rehearsal: Rehearsal) -> None:
    assert rehearsal.deploy_hook_result.result["admin"] == "created"
    health = httpx.get(f"{rehearsal.api_url}/health", timeout=30).json()
    assert health["database"] == "ok" and health["schema_revision"] == health["expected_revision"]
    # over TLS, the server's certificate verified against the bundle in the code (as RDS's would be)
    assert rehearsal.database_tls == "verify-full"
    from sqlalchemy import create_engine, text

    engine = create_engine(rehearsal.postgres_admin_url)
    with engine.connect() as connection:
        encrypted = connection.execute(
            text(
                "SELECT array_agg(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                "WHERE a.usename IN ('orchestrator', :api)"
            ),
            {"api": constants.DB_IAM_USER},
        ).scalar()
        # the API holds its connections as its own IAM login, which the deploy hook made a member of rds_iam
        api_users = connection.execute(
            text("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = :db AND usename = :api"),
            {"db": rehearsal.database["dbname"], "api": constants.DB_IAM_USER},
        ).all()
        member = connection.execute(
            text("SELECT pg_has_role(:api, 'rds_iam', 'member')"), {"api": constants.DB_IAM_USER}
        ).scalar()
    engine.dispose()
    assert encrypted and all(encrypted), encrypted
    assert api_users and member
    assert rehearsal.deploy_hook_result.result["app_login"] == constants.DB_IAM_USER


def test_the_api_signs_its_database_login_with_rds_db_connect_on_its_user_only(rehearsal: Rehearsal) -> None:
    """The token is signed locally (no AWS call): the guard checks the signer's policy as RDS would at login."""
    connects = [r for r in rehearsal.iam_records() if r["action"] == "rds-db:connect"]
    assert connects, "no IAM database login was signed"
    assert all(r["file"].endswith(f"-{constants.API_FUNCTION}") for r in connects), connects  # the API only
    assert all(r["allowed"] for r in connects), connects
    assert all(r["resource"].endswith(f"/{constants.DB_IAM_USER}") for r in connects), connects


def test_snapstart_functions_answer_from_a_restored_snapshot(rehearsal: Rehearsal) -> None:
    """The API and the bot consumer run their before-snapshot hooks (warm: settings, deps, /openapi.json in
    process) and after-restore hooks at init under their real environment and role (tests/cloud/lambda_host);
    every scenario below that calls them is then served by a restored environment, and the IAM guard saw
    whatever the warm-up called."""
    snapstarted = {spec.name for spec in rehearsal.lambda_.specs.values() if spec.snap_start}
    context = rehearsal.context
    prefix = f"{context.get('prefix', constants.DEFAULT_PREFIX)}-{context.get('env_name', constants.DEFAULT_ENV_NAME)}-"
    assert snapstarted == {prefix + constants.API_FUNCTION, prefix + constants.TELEGRAM_BOT_FUNCTION}
    health = httpx.get(f"{rehearsal.api_url}/health", timeout=60)
    assert health.status_code in (200, 503), (
        health.text
    )  # answered by the restored function, not an init error
    assert "ImportModuleError" not in health.text


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
    bad = httpx.post(
        f"{rehearsal.api_url}/projects",
        json={"name": "Not A Slug!"},
        timeout=30,
        headers={"authorization": f"Bearer {key}"},
    )
    assert 400 <= bad.status_code < 500 and "name" in bad.text


def test_engineering_scaffolds_develops_and_tests_through_fargate_workers(
    rehearsal: Rehearsal, orch: CloudCli
) -> None:
    # given a project (GitHub repository created by the scaffolder on the fake GitHub)
    as_json(orch("project", "create", "--name", "blog", "--json"))
    # when engineering runs with the command agent (the fake developer baked into the worker image)
    started = as_json(
        orch(
            "engineering",
            "start",
            "blog",
            "--spec",
            "add an answer() function",
            "--agent",
            "command",
            "--json",
        )
    )
    task = _wait_task(rehearsal, orch, started["id"])
    # then a commit landed on a branch of the GitHub repository, made by ECS tasks
    assert task["status"] == "COMPLETED", json.dumps(task, indent=1)[:3000]
    result = task["result"]
    assert result["commit_sha"] and result["branch"]
    assert "app/feature.py" in result["files_changed"]
    # one worker per engineering task: the developer's ECS task also ran the tests (a command message); the
    # task is COMPLETED before its worker is deleted, so the ECS task stops a moment later
    rehearsal.wait_for(
        lambda: len(rehearsal.ecs.finished) >= 1, 60, "the developer's and tests' ECS worker task to stop"
    )
    assert "tests passed" in orch("task", "logs", started["id"]).stdout


def test_the_ledger_holds_what_the_engineering_task_cost(rehearsal: Rehearsal, orch: CloudCli) -> None:
    """Issue 21: the developer's reported cost (the fake reports $0.25 a run) reaches the ledger through its
    worker's message result, and each Fargate worker's running time once its task-state event stops it."""
    [task] = as_json(orch("task", "list", "--project", "blog", "--type", "engineering", "--json"))

    def row() -> dict[str, Any] | None:
        usage = as_json(orch("usage", "--project", "blog", "--json"))
        found = [g for g in usage["by_task"] if g["key"] == task["id"]]
        return found[0] if found and found[0]["worker_cost_usd"] > 0 else None

    spent = rehearsal.wait_for(row, 120, "the engineering task's worker time in the ledger")
    assert spent["agent_cost_usd"] == 0.25 * spent["runs"] and spent["runs"] >= 1, spent
    shown = as_json(orch("task", "show", task["id"], "--json"))
    assert abs(shown["cost_usd"] - spent["cost_usd"]) < 1e-6, (shown["cost_usd"], spent)
    assert '"SpendUsd"' in rehearsal.function_log("api")


def test_the_coding_agent_in_a_worker_task_sees_no_cloud_credentials(rehearsal: Rehearsal) -> None:
    # the worker's container holds the task role's credentials (env, as ECS provides them); its agent must not
    dumps = list((rehearsal.workdir / "tasks").glob("*/tmp/agent-env.txt"))
    assert dumps, "no agent ran in a worker task"
    for dump in dumps:
        names = {line.split("=", 1)[0] for line in dump.read_text().splitlines() if "=" in line}
        leaked = sorted(
            n
            for n in names
            if n.startswith(("AWS_", "ECS_"))
            or n
            in (
                "ORCH_SERVICE_API_KEY_REF",
                "ORCH_API_KEY",
                "ORCH_API_URL",
                "ORCH_WORKER_TOKEN",
                "GITHUB_TOKEN",
            )
        )
        assert not leaked, f"{dump}: {leaked}"
        assert "ORCH_TASK_FILE" in names  # what the task grants does arrive


def test_a_deploy_goes_through_the_ansible_runner_task_to_an_ssh_host_and_is_smoke_tested(
    rehearsal: Rehearsal, orch: CloudCli, ssh_server: SshHost | None
) -> None:
    if ssh_server is None:
        from tests.ssh_host import skip_reason

        pytest.skip(f"no ssh test host: {skip_reason()}")
    # given the ssh host registered as the admin's server (its key stored by reference) and a project secret
    added = as_json(
        orch(
            "server",
            "add",
            "ssh-host",
            "--host",
            ssh_server.address,
            "--ssh-user",
            ssh_server.user,
            "--ssh-key-file",
            str(ssh_server.private_key_path),
            "--json",
        )
    )
    assert added["ssh_key_ref"].startswith("secret://servers/") and "BEGIN" not in json.dumps(added)
    assert orch("secret", "set", "blog", "GREETING", input="hello from secrets manager").returncode == 0
    # when the blog (engineered above) is deployed there: a server of the person's own, so the deploy waits
    # for their approval (issue 21's default) before anything touches it, and is approved from the CLI
    started = as_json(orch("deploy", "start", "blog", "--server", "ssh-host", "--json"))

    def waiting() -> dict[str, Any] | None:
        shown: dict[str, Any] = as_json(orch("task", "show", started["id"], "--json"))
        return shown if shown["status"] in ("WAITING_APPROVAL", "COMPLETED", "FAILED") else None

    parked = rehearsal.wait_for(waiting, 240, "the deploy waiting for approval")
    assert parked["status"] == "WAITING_APPROVAL", json.dumps(parked, indent=1)[:3000]
    assert parked["gate"]["kind"] == "deploy" and "ssh-host" in parked["gate"]["summary"], parked["gate"]
    runs_before = _runner_tasks(rehearsal)
    approved = as_json(orch("task", "approve", started["id"], "--comment", "rehearsal", "--json"))
    assert approved["status"] == "RUNNING", approved
    assert orch("task", "approve", started["id"]).returncode != 0, "a second answer is refused"
    task = _wait_task(rehearsal, orch, started["id"], timeout=280)
    # then the Ansible runner (an ECS task under its own role) deployed it over ssh and the URL answers
    assert task["status"] == "COMPLETED", json.dumps(task, indent=1)[:4000]
    assert _runner_tasks(rehearsal) > runs_before == 0, "the server was touched only once approved"
    url = task["result"]["deployed_url"]
    assert ssh_server.address in url
    assert httpx.get(f"{url.rstrip('/')}/health", timeout=10).status_code == 200
    # and no secret value travelled in the task, its events or the queue messages' logs
    assert "hello from secrets manager" not in json.dumps(task)
    assert "hello from secrets manager" not in rehearsal.function_log("")
    # the later scenarios (recovery, a dying runner) run on this server without asking again
    assert orch("project", "set", "blog", "--approval", "none").returncode == 0


def _runner_tasks(rehearsal: Rehearsal) -> int:
    """Ansible runner ECS tasks that have ended (each deploy, ping or provisioning is one)."""
    return sum(
        1
        for ended in rehearsal.ecs.finished.values()
        if ended["event"]["detail"].get("startedBy") == "orchestrator-ansible"
    )


def test_a_server_lost_and_back_is_provisioned_again_and_its_project_redeployed(
    rehearsal: Rehearsal, orch: CloudCli, ssh_server: SshHost | None
) -> None:
    """Issue 19: the API queues the recovery when a server flips unreachable -> up (its send to
    provisioner:queue), the provisioner provisions again and the blog deployed above is redeployed there."""
    if ssh_server is None:
        from tests.ssh_host import skip_reason

        pytest.skip(f"no ssh test host: {skip_reason()}")
    sqs = rehearsal.client("sqs")
    results = rehearsal.queue_url("MessagingProvisionerResults")

    def ping(request_id: str, reachable: bool) -> None:
        answer = ProvisionerResult(
            request_id=request_id,
            server_handle="ssh-host",
            status="success" if reachable else "failed",
            reachable=reachable,
            error=None if reachable else "UNREACHABLE: ssh: connect to host timed out",
        )
        sqs.send_message(QueueUrl=results, MessageBody=answer.model_dump_json())

    def deploys() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = as_json(
            orch("task", "list", "--project", "blog", "--type", "deploy", "--json")
        )
        return found

    def status() -> str:
        return str(as_json(orch("server", "show", "ssh-host", "--json"))["status"])

    before = {t["id"] for t in deploys()}
    assert before, "the ssh deploy scenario above left the blog deployed"
    # given the health job's pings say the server was lost
    ping("sync:ssh-host:lost", reachable=False)
    rehearsal.wait_for(lambda: status() == "unreachable", 90, "ssh-host recorded unreachable")
    # when a ping answers again
    ping("sync:ssh-host:back", reachable=True)

    # then a redeploy of the blog on ssh-host runs to completion and the service answers
    def redeployed() -> dict[str, Any] | None:
        new = [t for t in deploys() if t["id"] not in before]
        return new[0] if new and new[0]["status"] in ("COMPLETED", "FAILED") else None

    task = rehearsal.wait_for(redeployed, 400, "the recovery's redeploy of the blog")
    assert task["status"] == "COMPLETED", json.dumps(task, indent=1)[:4000]
    assert task["params"]["server"] == "ssh-host"
    url = task["result"]["deployed_url"]
    assert httpx.get(f"{url.rstrip('/')}/health", timeout=10).status_code == 200
    incidents = as_json(orch("incident", "list", "--json"))
    assert [i for i in incidents if i["kind"] == "service_redeployed"], incidents


def test_a_worker_task_that_dies_fails_its_task_with_the_reason(rehearsal: Rehearsal, orch: CloudCli) -> None:
    # given the next worker task is killed right after it starts (as if Fargate lost it)
    as_json(orch("project", "create", "--name", "doomed", "--json"))
    rehearsal.ecs.kill_next = lambda task: task.get("startedBy") == "orchestrator-worker"  # not a runner
    # when engineering starts there
    started = as_json(
        orch("engineering", "start", "doomed", "--spec", "anything", "--agent", "command", "--json")
    )
    task = _wait_task(rehearsal, orch, started["id"], timeout=300)
    # then the STOPPED event reached the worker-events function and the task failed, saying why
    assert task["status"] == "FAILED", task
    assert "Essential container in task exited" in json.dumps(task), json.dumps(task, indent=1)[:3000]
    stopped = [f for f in rehearsal.ecs.finished.values() if f["exit_code"] != 0]
    assert stopped, "the killed task stopped with a non-zero exit code"


def test_a_poison_message_lands_in_its_dlq_and_the_rest_of_the_batch_succeeds(rehearsal: Rehearsal) -> None:
    sqs = rehearsal.client("sqs")
    queue = rehearsal.queue_url("MessagingWorkerCommands")
    dlq = rehearsal.queue_url("MessagingWorkerCommandsDlq")
    # a batch: one poison message, one valid delete of a worker that does not exist (a harmless no-op)
    good = {
        "version": "1",
        "correlation_id": str(uuid.uuid4()),
        "timestamp": "2026-12-03T00:00:00Z",
        "request_id": str(uuid.uuid4()),
        "command": "delete",
        "worker_id": "w-nobody",
    }
    sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "poison", "MessageBody": '{"command": "explode", "half a json'},
            {"Id": "good", "MessageBody": json.dumps(good)},
        ],
    )

    def in_dlq() -> list[dict[str, Any]]:
        answer = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

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
    assert (
        httpx.post(
            url, json=update, timeout=30, headers={"x-telegram-bot-api-secret-token": "nope"}
        ).status_code
        == 401
    )
    # when Telegram posts the update with the secret
    answer = httpx.post(url, json=update, timeout=30, headers={"x-telegram-bot-api-secret-token": secret})
    assert answer.status_code == 200, answer.text
    # and a second message while the PO worker is still starting (it is held back and requeued)
    follow_up = message_update(TELEGRAM_ADMIN_ID, "with comments, please")
    assert (
        httpx.post(
            url, json=follow_up, timeout=30, headers={"x-telegram-bot-api-secret-token": secret}
        ).status_code
        == 200
    )
    # then the bot hands both to the Product Owner, whose worker (an ECS task) answers each into the chat
    rehearsal.wait_for(
        lambda: len([t for t in rehearsal.telegram.sent_texts() if "AGENT_LOG" in t]) >= 2,
        240,
        "the Product Owner's two answers in the chat",
    )
    assert rehearsal.telegram.calls_to("sendChatAction"), "typing was shown while the PO worked"
    # and the PO worker can be stopped from the CLI (the delete goes through the API's outbox)
    workers = as_json(orch("worker", "list", "--json"))
    po_workers = [
        w for w in workers if w["status"] in ("RUNNING", "STARTING", "IDLE") and w.get("task_id") is None
    ]
    for worker in po_workers:
        assert orch("worker", "stop", worker["id"]).returncode == 0


def test_the_notifier_reports_a_telegram_users_task_in_their_chat(
    rehearsal: Rehearsal, orch: CloudCli
) -> None:
    from tests.cloud.rehearsal import TELEGRAM_ADMIN_ID

    # given the bot's admin (a Telegram user) starts engineering with their own key
    key = as_json(orch("apikey", "create", "bot-admin", "--json"))["key"]
    as_json(orch("project", "create", "--name", "tg-blog", "--json", key=key))
    started = as_json(
        orch(
            "engineering",
            "start",
            "tg-blog",
            "--spec",
            "add an answer() function",
            "--agent",
            "command",
            "--json",
            key=key,
        )
    )
    task = _wait_task(rehearsal, orch, started["id"])
    assert task["status"] == "COMPLETED", task
    # then the notifier put one status message in their chat and one final message
    rehearsal.wait_for(
        lambda: [t for t in rehearsal.telegram.sent_texts() if t.startswith("✅ tg-blog")],
        90,
        "the notifier's final message",
    )
    chats = {str(c.params.get("chat_id")) for c in rehearsal.telegram.calls_to("sendMessage")}
    assert str(TELEGRAM_ADMIN_ID) in chats


def test_an_ansible_job_that_cannot_be_built_is_answered_with_a_failed_result(rehearsal: Rehearsal) -> None:
    from shared.contracts import AnsibleDeployMessage, ProvisionerMessage

    sqs = rehearsal.client("sqs")
    # given jobs for a server nobody registered (as a stale message would carry)
    provision = ProvisionerMessage(request_id=str(uuid.uuid4()), server_handle="gone-server", job_type="ping")
    deploy = AnsibleDeployMessage(
        request_id=str(uuid.uuid4()),
        project_id=str(uuid.uuid4()),
        project_name="gone",
        repo_full_name="acme/gone",
        server_ip="203.0.113.9",
        port=8000,
        server_handle="gone-server",
    )
    sqs.send_message(
        QueueUrl=rehearsal.queue_url("MessagingProvisionerQueue"), MessageBody=provision.model_dump_json()
    )
    sqs.send_message(
        QueueUrl=rehearsal.queue_url("MessagingAnsibleDeployQueue"), MessageBody=deploy.model_dump_json()
    )
    # then the infra function answers each with a failed result instead of silence
    rehearsal.wait_for(
        lambda: (
            rehearsal.sends("ConsumersInfra", "provisioner-results")
            and rehearsal.sends("ConsumersInfra", "ansible-deploy-results")
        ),
        60,
        "failed results from the infra function",
    )


def test_a_runner_task_that_dies_is_answered_by_the_task_state_event(
    rehearsal: Rehearsal, orch: CloudCli
) -> None:
    servers = [s for s in as_json(orch("server", "list", "--json")) if s["handle"] == "ssh-host"]
    if not servers:
        pytest.skip("needs the ssh host registered by the deploy scenario")
    # given the next Ansible runner task dies before it can publish anything
    rehearsal.ecs.kill_next = lambda task: task.get("startedBy") == "orchestrator-ansible"
    # when server_sync pings the servers
    [rule] = [r for r in rehearsal.bus.rules if r.name.endswith("job-server_sync")]
    assert all(outcome.error is None for outcome in rehearsal.bus.schedule(rule.name))
    # then the STOPPED event made the infra-events function publish the failed ping result
    rehearsal.wait_for(
        lambda: rehearsal.sends("AnsibleEventsFunction", "provisioner-results"),
        120,
        "the failed result from the task-state event",
    )
    # and an undeploy whose runner dies fails its task with the reason (nothing waits forever)
    rehearsal.ecs.kill_next = lambda task: task.get("startedBy") == "orchestrator-ansible"
    stopped = as_json(orch("deploy", "stop", "blog", "--no-wait", "--json"))
    task = _wait_task(rehearsal, orch, stopped["id"], timeout=120)
    assert task["status"] == "FAILED" and "exited" in json.dumps(task), json.dumps(task)[:2000]
    assert rehearsal.sends("AnsibleEventsFunction", "ansible-deploy-results")


def test_a_message_whose_po_worker_dies_before_beginning_it_is_not_lost(rehearsal: Rehearsal) -> None:
    from tests.cloud.rehearsal import TELEGRAM_ADMIN_ID
    from tests.fakes.telegram_server import message_update

    secret = rehearsal.secret_value(rehearsal.physical_ref("TelegramWebhookSecret"))
    answered = len([t for t in rehearsal.telegram.sent_texts() if "AGENT_LOG" in t])
    # given the next PO worker task dies as it starts (the previous PO worker was stopped): at once, since a
    # worker that loads from bytecode can begin the message within half a second, and its death is then real
    rehearsal.ecs.kill_after_s = 0.0
    rehearsal.ecs.kill_next = lambda task: task.get("startedBy") == "orchestrator-worker"  # not a runner
    update = message_update(TELEGRAM_ADMIN_ID, "are you there?")
    assert (
        httpx.post(
            f"{rehearsal.api_url}/telegram/webhook",
            json=update,
            timeout=30,
            headers={"x-telegram-bot-api-secret-token": secret},
        ).status_code
        == 200
    )
    # then the message goes back to po:inbox, a new PO worker starts and answers it
    rehearsal.wait_for(lambda: rehearsal.sends("ProductOwner", "po-inbox"), 120, "the message re-queued")
    rehearsal.wait_for(
        lambda: len([t for t in rehearsal.telegram.sent_texts() if "AGENT_LOG" in t]) > answered,
        180,
        "the answer from the new PO worker",
    )


def _running_worker_task(rehearsal: Rehearsal) -> dict[str, str]:
    """The RunTask environment of a worker task still running (the last scenario's PO worker waits for its
    next message): everything its container was given."""
    ecs = rehearsal.client("ecs")

    def find() -> dict[str, str] | None:
        for arn in list(rehearsal.ecs.running):
            (task,) = ecs.describe_tasks(cluster=rehearsal.ecs.cluster_arn, tasks=[arn])["tasks"]
            for override in task.get("overrides", {}).get("containerOverrides", []):
                env = {e["name"]: e["value"] for e in override.get("environment", [])}
                if "ORCH_WORKER_TOKEN" in env:
                    return env
        return None

    found: dict[str, str] = rehearsal.wait_for(find, 60, "a running worker task")
    return found


def _worker_role_decisions(rehearsal: Rehearsal, calls: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Each call as the worker task role would make it (its credentials act as that role), evaluated by the
    rehearsal's IAM evaluator against the template's statements; nothing is sent."""
    from tests.cloud import iam

    (definition,) = [
        d["Properties"]
        for _, d in rehearsal.template.of_type("AWS::ECS::TaskDefinition")
        if str(d["Properties"]["Family"]).endswith("-worker")
    ]
    principal = rehearsal.principal(definition["TaskRoleArn"])
    lookup = rehearsal.client("secretsmanager")

    def secret_arn(secret_id: str) -> str | None:
        return str(lookup.describe_secret(SecretId=secret_id)["ARN"])

    env = iam.Env(region="us-east-1", account=iam.DEFAULT_ACCOUNT_ID, secret_arn=secret_arn)
    return [
        (f"{service}:{operation}", iam.evaluate(principal.statements, r.action, r.resource, r.context))
        for service, operation, params in calls
        for r in iam.authorization_requests(service, operation, params, env)
    ]


def test_a_worker_s_credentials_reach_nothing_but_its_own_job(rehearsal: Rehearsal, orch: CloudCli) -> None:
    """Issue 20: everything credential-like in a worker task's environment (the task role's AWS credentials,
    its per-task token) is tried against AWS and the API: another person's key, project, task, worker and
    session, the stack's service key and the sessions bucket are all refused; its own job is not."""
    env = _running_worker_task(rehearsal)
    token, own = env["ORCH_WORKER_TOKEN"], env["ORCH_WORKER_ID"]
    assert not {"ORCH_SERVICE_API_KEY_REF", "ORCH_API_KEY", "ORCH_SESSION_BUCKET"} & set(env)
    admin = {"authorization": f"Bearer {rehearsal.admin_key}"}
    users = {
        u["name"]: u["id"] for u in httpx.get(f"{rehearsal.api_url}/users", headers=admin, timeout=30).json()
    }
    # another person's Product Owner key, as the Product Owner function stores one
    prefix = rehearsal.physical_ref("ApiServiceKey").split(":secret:")[-1].split("/")[0]
    other_po = f"{prefix}/po/{users['alice']}/api_key"
    rehearsal.client("secretsmanager").create_secret(Name=other_po, SecretString="alice-po-key-canary")
    sessions = rehearsal.physical_ref("WorkersSessionsBucket")
    service_key = rehearsal.physical_ref("ApiServiceKey")

    # AWS, with the task role's credentials: every read is denied
    decisions = _worker_role_decisions(
        rehearsal,
        [
            ("secretsmanager", "GetSecretValue", {"SecretId": service_key}),
            ("secretsmanager", "GetSecretValue", {"SecretId": other_po}),
            ("s3", "GetObject", {"Bucket": sessions, "Key": f"sessions/po/{users['alice']}.tar.gz"}),
            ("s3", "PutObject", {"Bucket": sessions, "Key": f"sessions/po/{users['bot-admin']}.tar.gz"}),
            ("s3", "ListObjectsV2", {"Bucket": sessions}),
        ],
    )
    assert len(decisions) == 5
    assert not [(call, d.reason) for call, d in decisions if d.allowed]

    # the API, with the per-task token: its own worker answers (so the refusals below are not a dead token)
    bearer = {"authorization": f"Bearer {token}"}
    api = rehearsal.api_url
    mine = httpx.get(f"{api}/internal/workers/{own}", headers=bearer, timeout=30)
    assert mine.status_code == 200, mine.text
    own_refs = sorted(
        v
        for v in (mine.json().get("config") or {}).get("env_vars", {}).values()
        if str(v).startswith("secret://")
    )
    if own_refs:
        resolved = httpx.post(
            f"{api}/internal/workers/{own}/secrets", json={"refs": own_refs}, headers=bearer, timeout=30
        )
        assert resolved.status_code == 200 and sorted(resolved.json()["values"]) == own_refs, resolved.text
    # and everything of anyone else's is refused
    alice_project = as_json(orch("project", "show", "alice-blog", "--json"))["id"]
    others = [w["id"] for w in as_json(orch("worker", "list", "--json")) if w["id"] != own]
    assert others, "no other worker to try"
    tasks = httpx.get(f"{api}/tasks", headers=admin, timeout=30).json()
    task_ids = [t["id"] for t in (tasks["items"] if isinstance(tasks, dict) else tasks)]
    assert task_ids, "no task to try"
    attempts = [
        ("GET", f"/projects/{alice_project}", None),
        ("GET", "/projects", None),
        ("GET", f"/tasks/{task_ids[0]}", None),
        ("GET", "/tasks", None),
        ("GET", "/users", None),
        ("GET", f"/internal/workers/{others[0]}", None),
        ("POST", f"/internal/workers/{others[0]}/session", {"op": "load"}),
        ("POST", f"/internal/workers/{own}/secrets", {"refs": [f"secret://po/{users['alice']}/api_key"]}),
        ("POST", f"/internal/workers/{own}/secrets", {"refs": [f"secret://{service_key}"]}),
        ("POST", f"/internal/workers/{own}/token", {"ttl_s": 600}),
    ]
    refused = {
        f"{method} {path}": httpx.request(method, f"{api}{path}", json=body, headers=bearer, timeout=30)
        for method, path, body in attempts
    }
    allowed = {what: r.status_code for what, r in refused.items() if r.status_code not in (401, 403)}
    assert not allowed, allowed
    assert "alice-po-key-canary" not in json.dumps({k: r.text for k, r in refused.items()})


def test_no_function_or_task_made_a_call_its_role_does_not_allow(rehearsal: Rehearsal) -> None:
    assert rehearsal.iam_records(), "the IAM guard recorded nothing: is it installed?"
    denied = rehearsal.denials()
    assert not denied, json.dumps(denied, indent=1)[:4000]


def test_every_queue_send_grant_was_exercised(rehearsal: Rehearsal) -> None:
    """Each SendMessage grant of each role was used by a scenario: so removing any one of them from the CDK
    code makes a scenario's publish fail (and the test above with it). A grant nobody exercised is either
    dead (remove it) or a path the rehearsal still lacks (add a scenario)."""
    granted = rehearsal.send_grants()
    used = {
        (r["principal"], r["resource"])
        for r in rehearsal.iam_records()
        if r["action"] == "sqs:SendMessage" and r["allowed"]
    }
    unexercised = sorted(
        f"{principal.rsplit('/', 1)[-1]} -> {queue.rsplit(':', 1)[-1]}" for principal, queue in granted - used
    )
    assert not unexercised, "grants no scenario used:\n" + "\n".join(unexercised)


def test_the_harness_failed_nothing_on_its_side(rehearsal: Rehearsal) -> None:
    errors = [*rehearsal.ecs.errors, *(e for s in rehearsal.sources for e in s.errors)]
    assert not errors, errors
