"""The infra consumer: launching Ansible runner jobs locally (real runner, real ping of the built-in
localhost target) and on Fargate (moto's ECS), building jobs from queue messages, answering for runner
tasks that died without a word (ECS task-state events), and which queues the consumers accept."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.moto_api import state_manager

from functions.deploy.handler import lambda_handler as deploy_handler
from functions.infra.handler import ecs_event_handler
from functions.infra.handler import lambda_handler as infra_handler
from functions.infra.launch import (
    JOB_ENV,
    STARTED_BY,
    FargateLauncher,
    LocalLauncher,
    RunInProgress,
    job_key,
)
from functions.infra.logic import Infra
from shared.api_client import NotFoundError
from shared.contracts import (
    ANSIBLE_DEPLOY_QUEUE,
    ANSIBLE_DEPLOY_RESULTS,
    DEPLOY_QUEUE,
    PROVISIONER_QUEUE,
    PROVISIONER_RESULTS,
    AnsibleDeployMessage,
    AnsibleDeployResult,
    ProvisionerMessage,
    ProvisionerResult,
)
from shared.contracts.api import Server
from shared.queues.local import LocalQueue
from shared.queues.local_runner import sqs_event
from shared.queues.naming import logical_from_arn
from shared.secrets.factory import build_secrets
from shared.settings import QueueSettings
from tests.factories import drain
from worker_image.ansible_runner.job import RunnerJob, Target

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
LOCALHOST = Target(handle="localhost", host="127.0.0.1", connection="local")
ARN = "arn:aws:sqs:us-east-1:123456789012:orch-{}"

needs_ansible = pytest.mark.skipif(
    shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None,
    reason="ansible-core is not installed in this environment",
)


@pytest.fixture
def queue() -> Iterator[LocalQueue]:
    """The local queue in this test's ORCH_HOME (tests/conftest.py): the runner's `--publish`, a child
    process with the same environment, writes to the same file."""
    local = LocalQueue(QueueSettings().effective_queue_file, visibility_timeout=30)
    yield local
    local.close()


def _ping(request_id: str = "ping-1") -> RunnerJob:
    return RunnerJob(
        request_id=request_id, correlation_id="corr-1", kind="ping", target=LOCALHOST, timeout_s=60
    )


def _provision(request_id: str = "provision-1") -> RunnerJob:
    """A job of localhost that runs the runner process (a local ping is answered without one)."""
    return _ping(request_id).model_copy(update={"kind": "provision"})


# -- LocalLauncher -------------------------------------------------------------------------


@pytest.mark.slow
@needs_ansible
def test_a_local_run_publishes_once_and_a_redelivery_is_a_duplicate_or_waits(
    queue: LocalQueue, tmp_path: Path
) -> None:
    launcher = LocalLauncher(queue, tmp_path / "runs", timeout_s=60)
    job = _provision()
    job_file = tmp_path / "runs" / f"{job_key(job.request_id)}.json"
    outcome: list[Any] = []
    first = threading.Thread(target=lambda: outcome.append(launcher.launch(job)))

    # while the first delivery runs the job, a second delivery is told to come back later
    first.start()
    deadline = time.monotonic() + 20
    while not job_file.exists() and first.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job_file.exists(), "the first run holds the lock and has written its job file"
    with pytest.raises(RunInProgress, match="provision-1"):
        launcher.launch(job)
    first.join(timeout=120)

    assert outcome == ["ran"]
    [result] = drain(queue, PROVISIONER_RESULTS)
    assert isinstance(result, ProvisionerResult)
    assert (result.request_id, result.status, result.reachable) == ("provision-1", "success", True)
    assert (result.server_handle, result.correlation_id) == ("localhost", "corr-1")
    assert result.facts["hostname"]
    assert not job_file.exists(), "the job file (references only, but still) does not outlive the run"

    # once it ran, any redelivery is a no-op
    assert launcher.launch(job) == "duplicate"
    assert drain(queue, PROVISIONER_RESULTS) == []
    assert drain(queue, ANSIBLE_DEPLOY_RESULTS) == []


def test_a_runner_that_refuses_the_job_is_answered_by_the_launcher_once(
    queue: LocalQueue, tmp_path: Path
) -> None:
    # a job the runner rejects (exit 2) without publishing anything itself: a ref with '..'
    job = RunnerJob.model_construct(
        request_id="deploy-bad",
        correlation_id="corr-2",
        kind="deploy",
        target=LOCALHOST,
        project_id="p-1",
        project_name="blog",
        repo_url="/srv/repo.git",
        ref="main..evil",
        port=8123,
        port_variable="PORT",
        run_command="python3 -m app.server",
        health_path="/health",
        env={},
        secret_refs={},
        github_token_ref=None,
        deploy_root=None,
        open_ports=[],
        force_reinstall=False,
        timeout_s=60,
    )
    launcher = LocalLauncher(queue, tmp_path / "runs", timeout_s=60)

    assert launcher.launch(job) == "ran"

    [result] = drain(queue, ANSIBLE_DEPLOY_RESULTS)
    assert isinstance(result, AnsibleDeployResult)
    assert (result.request_id, result.status, result.exit_code) == ("deploy-bad", "failed", 2)
    assert result.error is not None and result.error.startswith("the runner refused the job (exit 2):")
    assert "'ref'" in result.error, result.error
    assert (result.project_id, result.port, result.job_type) == ("p-1", 8123, "deploy")
    assert drain(queue, PROVISIONER_RESULTS) == []
    assert launcher.launch(job) == "duplicate"
    assert drain(queue, ANSIBLE_DEPLOY_RESULTS) == []


def test_a_runner_that_dies_without_publishing_is_answered_by_the_launcher(
    queue: LocalQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        LocalLauncher, "_run", lambda self, job, job_file: (3, "the runner crashed (exit 3): boom")
    )
    launcher = LocalLauncher(queue, tmp_path / "runs", timeout_s=60)

    assert launcher.launch(_provision("provision-dead")) == "ran"

    [result] = drain(queue, PROVISIONER_RESULTS)
    assert (result.request_id, result.status, result.exit_code) == ("provision-dead", "failed", 3)
    assert result.error == "the runner crashed (exit 3): boom" and result.errors == [result.error]
    assert (result.server_handle, result.correlation_id) == ("localhost", "corr-1")
    done = json.loads((tmp_path / "runs" / f"{job_key('provision-dead')}.done").read_text())
    assert done["exit_code"] == 3


def test_a_local_ping_is_answered_once_without_a_runner_process(
    queue: LocalQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a runner process that would fail the test if it were started
    def no_process(self: LocalLauncher, job: RunnerJob, job_file: Path) -> tuple[int, str]:
        raise AssertionError("a local ping started a runner process")

    monkeypatch.setattr(LocalLauncher, "_run", no_process)
    launcher = LocalLauncher(queue, tmp_path / "runs", timeout_s=60)

    # when: the scheduler's ping of the built-in server is delivered, then redelivered
    assert launcher.launch(_ping("ping-here")) == "ran"
    assert launcher.launch(_ping("ping-here")) == "duplicate"

    # then: one result, with this machine's facts; a ping naming a secret still goes to the runner
    [result] = drain(queue, PROVISIONER_RESULTS)
    assert isinstance(result, ProvisionerResult)
    assert (result.request_id, result.status, result.reachable) == ("ping-here", "success", True)
    assert result.facts["hostname"] and result.correlation_id == "corr-1"
    named = _ping("ping-secret").model_copy(update={"secret_refs": {"X": "secret://projects/p-1/X"}})
    with pytest.raises(AssertionError, match="started a runner process"):
        launcher.launch(named)


def test_a_crashing_runner_gives_exactly_one_failed_result(
    queue: LocalQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # build_secrets() inside the runner's try block raises: the runner's crash path
    monkeypatch.setenv("ORCH_SECRETS_BACKEND", "not-a-backend")
    launcher = LocalLauncher(queue, tmp_path / "runs", timeout_s=60)

    assert launcher.launch(_provision("provision-crash")) == "ran"

    results = drain(queue, PROVISIONER_RESULTS)
    assert [r.status for r in results] == ["failed"], [r.error for r in results]


# -- Infra.handle --------------------------------------------------------------------------


def _server(handle: str, host: str, **labels: str) -> Server:
    key_ref = None if labels.get("connection") == "local" else f"secret://servers/{handle}/ssh_key"
    return Server(
        id=f"id-{handle}",
        handle=handle,
        host=host,
        ssh_user="deploy",
        ssh_key_ref=key_ref,
        status="up",
        labels=labels,
        owner_id="u-1",
        created_at=datetime.now(UTC),
    )


class FakeApi:
    def __init__(self, *servers: Server) -> None:
        self.servers = {s.handle: s for s in servers}

    def get_server(self, handle: str) -> Server:
        if handle not in self.servers:
            raise NotFoundError(404, "not_found", f"server {handle!r} not found")
        return self.servers[handle]

    def list_servers(self) -> list[Server]:
        return list(self.servers.values())


class FakeLauncher:
    def __init__(self) -> None:
        self.jobs: list[RunnerJob] = []

    def launch(self, job: RunnerJob) -> str:
        self.jobs.append(job)
        return "started"


@dataclass
class World:
    infra: Infra
    launcher: FakeLauncher
    queue: LocalQueue


@pytest.fixture
def world(queue: LocalQueue) -> World:
    launcher = FakeLauncher()
    api = FakeApi(
        _server("localhost", "127.0.0.1", connection="local", builtin="true"),
        _server("prod-1", "203.0.113.7"),
    )
    return World(Infra(api, queue, launcher, timeout_s=600), launcher, queue)  # type: ignore[arg-type]


def _deploy_message(**overrides: Any) -> AnsibleDeployMessage:
    fields: dict[str, Any] = {
        "request_id": "d-1",
        "correlation_id": "corr-d",
        "project_id": "p-1",
        "project_name": "blog",
        "repo_full_name": "acme/blog",
        "server_ip": "127.0.0.1",
        "server_handle": "localhost",
        "port": 8123,
        "repo_url": "https://github.com/acme/blog.git",
        "ref": "0123abc",
        "task_id": "t-1",
        "github_token_ref": "secret://github/token",
        "env": {"LOG_LEVEL": "info"},
        "secret_refs": {"API_TOKEN": "secret://projects/p-1/API_TOKEN"},
    }
    return AnsibleDeployMessage.model_validate({**fields, **overrides})


def _consume(world: World, queue_name: str, message: Any) -> dict[str, Any]:
    """Through the infra Lambda entry point, as the SQS event source calls it."""
    world.queue.publish(queue_name, message)
    received = world.queue.receive(queue_name, 10, visibility_timeout=30)
    arn = ARN.format(queue_name.replace(":", "-"))
    return infra_handler(sqs_event(arn, received), None, infra=world.infra)


def test_a_deploy_message_becomes_a_runner_job_with_references_only(world: World) -> None:
    secrets = build_secrets()
    secrets.put("secret://projects/p-1/API_TOKEN", "canary-value-41b9")
    secrets.put("secret://github/token", "ghp_canary_token_77c1")

    reply = _consume(world, ANSIBLE_DEPLOY_QUEUE, _deploy_message())

    assert reply == {"batchItemFailures": []}
    [job] = world.launcher.jobs
    assert job.target == Target(handle="localhost", host="127.0.0.1", connection="local", ssh_user="deploy")
    assert (job.kind, job.request_id, job.correlation_id) == ("deploy", "d-1", "corr-d")
    assert (job.project_name, job.port, job.ref, job.timeout_s) == ("blog", 8123, "0123abc", 600)
    assert (job.repo_url, job.env) == ("https://github.com/acme/blog.git", {"LOG_LEVEL": "info"})
    assert job.secret_refs == {"API_TOKEN": "secret://projects/p-1/API_TOKEN"}
    assert job.github_token_ref == "secret://github/token"
    text = job.model_dump_json()
    assert "canary-value-41b9" not in text and "ghp_canary_token_77c1" not in text
    assert drain(world.queue, ANSIBLE_DEPLOY_RESULTS) == [], "the runner answers, not the consumer"


def test_an_ssh_server_is_found_by_address_and_keeps_its_key_reference(world: World) -> None:
    message = _deploy_message(
        request_id="d-2", server_handle=None, server_ip="203.0.113.7", job_type="undeploy"
    )

    assert world.infra.handle(message) == "started"

    [job] = world.launcher.jobs
    assert job.kind == "undeploy" and job.target.connection == "ssh"
    assert (job.target.handle, job.target.host, job.target.ssh_user) == ("prod-1", "203.0.113.7", "deploy")
    assert job.target.ssh_key_ref == "secret://servers/prod-1/ssh_key"


def test_a_provisioner_message_becomes_a_ping_or_provision_job(world: World) -> None:
    ping = ProvisionerMessage(request_id="p-1", server_handle="prod-1", job_type="ping")
    provision = ProvisionerMessage(
        request_id="p-2", server_handle="localhost", open_ports=[8080], force_reinstall=True
    )

    assert _consume(world, PROVISIONER_QUEUE, ping) == {"batchItemFailures": []}
    assert world.infra.handle(provision) == "started"

    first, second = world.launcher.jobs
    assert (first.kind, first.target.handle, first.target.connection) == ("ping", "prod-1", "ssh")
    assert (second.kind, second.open_ports, second.force_reinstall) == ("provision", [8080], True)
    assert second.target.connection == "local"


@pytest.mark.parametrize(
    ("message", "results", "reason"),
    [
        (_deploy_message(server_handle="gone"), ANSIBLE_DEPLOY_RESULTS, "server 'gone' not found"),
        (
            _deploy_message(server_handle=None, server_ip="10.9.9.9"),
            ANSIBLE_DEPLOY_RESULTS,
            "no server with address '10.9.9.9'",
        ),
        (_deploy_message(project_name="Blog-App"), ANSIBLE_DEPLOY_RESULTS, "project_name"),
        (
            ProvisionerMessage(request_id="d-1", server_handle="gone", job_type="ping"),
            PROVISIONER_RESULTS,
            "server 'gone' not found",
        ),
    ],
    ids=["unknown-handle", "unknown-address", "invalid-job", "unknown-provision-target"],
)
def test_a_job_that_cannot_be_built_is_answered_with_one_failed_result(
    world: World, message: Any, results: str, reason: str
) -> None:
    assert world.infra.handle(message) == "refused"

    assert world.launcher.jobs == [], "nothing launched"
    [result] = drain(world.queue, results)
    assert (result.request_id, result.status) == ("d-1", "failed")
    assert reason in (result.error or ""), result.error
    other = PROVISIONER_RESULTS if results == ANSIBLE_DEPLOY_RESULTS else ANSIBLE_DEPLOY_RESULTS
    assert drain(world.queue, other) == []
    if isinstance(result, AnsibleDeployResult):
        assert (result.project_id, result.port, result.correlation_id) == ("p-1", 8123, "corr-d")
    else:
        assert result.server_handle == "gone" and result.errors == [result.error]


# -- queue routing -------------------------------------------------------------------------


def test_the_ansible_deploy_queue_is_not_mistaken_for_the_deploy_queue(world: World) -> None:
    assert logical_from_arn(ARN.format("ansible-deploy-queue")) == ANSIBLE_DEPLOY_QUEUE
    assert logical_from_arn(ARN.format("deploy-queue")) == DEPLOY_QUEUE
    assert logical_from_arn(ARN.format("ansible-deploy-results")) == ANSIBLE_DEPLOY_RESULTS

    world.queue.publish(ANSIBLE_DEPLOY_QUEUE, _deploy_message())
    records = world.queue.receive(ANSIBLE_DEPLOY_QUEUE, 10, visibility_timeout=30)
    not_mine = sqs_event(ARN.format("ansible-deploy-queue"), records)

    with pytest.raises(ValueError, match="does not consume ansible:deploy:queue"):
        deploy_handler(not_mine, None, deploy=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not consume deploy:queue"):
        infra_handler(sqs_event(ARN.format("deploy-queue"), records), None, infra=world.infra)
    assert world.launcher.jobs == []


# -- FargateLauncher -----------------------------------------------------------------------

REGION = "us-east-1"
CLUSTER = "orchestrator-ansible"
CONTAINER = "ansible"


@dataclass
class Ecs:
    client: Any
    launcher: FargateLauncher
    subnet: str
    security_group: str
    sent: list[dict[str, Any]]


@pytest.fixture
def ecs() -> Iterator[Ecs]:
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    try:
        with mock_aws():
            ec2 = boto3.client("ec2", region_name=REGION)
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
            group = ec2.create_security_group(GroupName="ansible", Description="egress", VpcId=vpc)["GroupId"]
            client = boto3.client("ecs", region_name=REGION)
            client.create_cluster(clusterName=CLUSTER)
            definition = client.register_task_definition(
                family="orchestrator-ansible",
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="512",
                memory="1024",
                containerDefinitions=[
                    {"name": CONTAINER, "image": "ansible:test", "memory": 1024, "essential": True}
                ],
            )["taskDefinition"]["taskDefinitionArn"]
            sent: list[dict[str, Any]] = []
            client.meta.events.register(
                "provide-client-params.ecs.RunTask", lambda params, **_: sent.append(copy.deepcopy(params))
            )
            launcher = FargateLauncher(client, CLUSTER, definition, CONTAINER, [subnet], [group])
            yield Ecs(client, launcher, subnet, group, sent)
    finally:
        state_manager.unset_transition("ecs::task")


def _deploy_job(request_id: str = "d-9", **overrides: Any) -> RunnerJob:
    return RunnerJob.model_validate(
        {
            "request_id": request_id,
            "correlation_id": "corr-9",
            "kind": "deploy",
            "target": {
                "handle": "prod-1",
                "host": "203.0.113.7",
                "ssh_key_ref": "secret://servers/prod-1/ssh_key",
            },
            "project_id": "p-9",
            "project_name": "blog",
            "repo_url": "https://github.com/acme/blog.git",
            "ref": "0123abc",
            "port": 8123,
            "secret_refs": {"API_TOKEN": "secret://projects/p-9/API_TOKEN"},
            **overrides,
        }
    )


def test_fargate_runs_one_task_with_the_job_in_its_override(ecs: Ecs) -> None:
    job = _deploy_job()

    assert ecs.launcher.launch(job) == "started"

    [sent] = ecs.sent
    assert (sent["cluster"], sent["launchType"], sent["count"]) == (CLUSTER, "FARGATE", 1)
    assert sent["startedBy"] == STARTED_BY == "orchestrator-ansible"
    assert sent["clientToken"] == job_key("d-9")
    network = {"subnets": [ecs.subnet], "securityGroups": [ecs.security_group], "assignPublicIp": "DISABLED"}
    assert sent["networkConfiguration"]["awsvpcConfiguration"] == network
    [override] = sent["overrides"]["containerOverrides"]
    assert override["name"] == CONTAINER
    assert override["command"] == ["--job-env", JOB_ENV, "--publish"]
    [variable] = override["environment"]
    assert variable["name"] == JOB_ENV == "ORCH_ANSIBLE_JOB"
    assert RunnerJob.model_validate_json(variable["value"]) == job
    assert {"key": "orchestrator:request-id", "value": "d-9"} in sent["tags"]

    [task_arn] = ecs.client.list_tasks(cluster=CLUSTER)["taskArns"]
    [task] = ecs.client.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"]
    assert task["startedBy"] == STARTED_BY
    [running] = task["overrides"]["containerOverrides"]
    assert running["command"] == ["--job-env", JOB_ENV, "--publish"]
    assert {e["name"]: e["value"] for e in running["environment"]} == {JOB_ENV: variable["value"]}


def test_fargate_gives_a_redelivered_job_the_same_client_token(ecs: Ecs) -> None:
    ecs.launcher.launch(_deploy_job("d-1"))
    ecs.launcher.launch(_deploy_job("d-1"))
    ecs.launcher.launch(_deploy_job("d-2"))

    tokens = [s["clientToken"] for s in ecs.sent]
    assert tokens[0] == tokens[1] == job_key("d-1") and tokens[2] == job_key("d-2") != tokens[0]
    assert all(1 <= len(t) <= 64 for t in tokens), "ECS accepts client tokens of up to 64 characters"


def test_fargate_refuses_a_job_too_large_for_an_override_without_calling_ecs(ecs: Ecs) -> None:
    with pytest.raises(ValueError, match="too large for a RunTask override"):
        ecs.launcher.launch(_deploy_job(env={"BIG": "x" * 8000}))
    assert ecs.sent == []


def test_fargate_reports_capacity_failures_as_not_started() -> None:
    """What real ECS answers when it cannot place the task (moto never does): 200 with `failures`."""
    client = boto3.client("ecs", region_name=REGION)
    launcher = FargateLauncher(client, CLUSTER, "orchestrator-ansible:1", CONTAINER, ["subnet-1"], ["sg-1"])
    failure = {"arn": "arn:aws:ecs:us-east-1:1:container-instance/x", "reason": "RESOURCE:ENI"}
    names = (
        "cluster",
        "taskDefinition",
        "launchType",
        "count",
        "startedBy",
        "networkConfiguration",
        "overrides",
        "tags",
    )
    expected = {**dict.fromkeys(names, ANY), "clientToken": job_key("d-9")}
    with Stubber(client) as stub:
        stub.add_response("run_task", {"tasks": [], "failures": [failure]}, expected)
        with pytest.raises(RuntimeError, match=r"ECS did not start the ansible runner: .* RESOURCE:ENI"):
            launcher.launch(_deploy_job())
        stub.assert_no_pending_responses()


# -- ECS task-state events -----------------------------------------------------------------


def _stopped_runner_event(job: RunnerJob, exit_code: int | None, **detail: Any) -> dict[str, Any]:
    """The recorded worker event (tests/fixtures), made a runner task's: its startedBy, overrides and
    container as the launcher sets them."""
    event = json.loads((FIXTURES / "ecs_task_state_change_stopped.json").read_text())
    body = event["detail"]
    body["startedBy"] = STARTED_BY
    body["group"] = "family:orchestrator-ansible"
    body["overrides"]["containerOverrides"] = [
        {
            "name": CONTAINER,
            "command": ["--job-env", JOB_ENV, "--publish"],
            "environment": [{"name": JOB_ENV, "value": job.model_dump_json(exclude_defaults=True)}],
        }
    ]
    [container] = body["containers"]
    container["name"] = CONTAINER
    if exit_code is None:
        del container["exitCode"]
    else:
        container["exitCode"] = exit_code
    body.update(detail)
    return event  # type: ignore[no-any-return]


def test_a_runner_task_killed_without_a_word_is_answered_once(world: World) -> None:
    job = _deploy_job("d-oom")
    event = _stopped_runner_event(job, 137, stoppedReason="Essential container in task exited")
    event["detail"]["containers"][0]["reason"] = "OutOfMemoryError: Container killed due to memory usage"

    reply = ecs_event_handler(event, None, infra=world.infra)

    assert reply == {"handled": True, "request_id": "d-oom", "exit_code": 137}
    [result] = drain(world.queue, ANSIBLE_DEPLOY_RESULTS)
    assert isinstance(result, AnsibleDeployResult)
    assert (result.request_id, result.status, result.exit_code) == ("d-oom", "failed", 137)
    assert (
        result.error
        == "the ansible runner task stopped: OutOfMemoryError: Container killed due to memory usage"
    )
    assert (result.project_id, result.port, result.correlation_id) == ("p-9", 8123, "corr-9")
    assert drain(world.queue, PROVISIONER_RESULTS) == []


def test_a_ping_task_that_never_started_is_answered_on_the_provisioner_results(world: World) -> None:
    job = RunnerJob.model_validate(
        {"request_id": "ping-7", "kind": "ping", "target": {"handle": "prod-1", "host": "203.0.113.7"}}
    )
    event = _stopped_runner_event(job, None, stoppedReason="CannotPullContainerError: pull access denied")

    assert ecs_event_handler(event, None, infra=world.infra)["handled"] is True

    [result] = drain(world.queue, PROVISIONER_RESULTS)
    assert (result.request_id, result.server_handle, result.exit_code) == ("ping-7", "prod-1", None)
    assert result.error == "the ansible runner task stopped: CannotPullContainerError: pull access denied"


def test_task_events_that_need_no_answer_publish_nothing(world: World) -> None:
    job = _deploy_job()
    worker = json.loads((FIXTURES / "ecs_task_state_change_stopped.json").read_text())
    running = _stopped_runner_event(job, None, lastStatus="RUNNING", desiredStatus="RUNNING")
    no_job = _stopped_runner_event(job, 1)
    no_job["detail"]["overrides"]["containerOverrides"][0]["environment"] = []

    assert ecs_event_handler(_stopped_runner_event(job, 0), None, infra=world.infra) == {"handled": False}
    assert ecs_event_handler(worker, None, infra=world.infra) == {"handled": False}
    assert ecs_event_handler(running, None, infra=world.infra) == {"handled": False}
    assert ecs_event_handler(no_job, None, infra=world.infra) == {"handled": False}

    assert drain(world.queue, ANSIBLE_DEPLOY_RESULTS) == []
    assert drain(world.queue, PROVISIONER_RESULTS) == []


def test_the_override_the_launcher_sends_is_what_the_event_handler_reads(ecs: Ecs, world: World) -> None:
    job = _deploy_job("d-round")
    ecs.launcher.launch(job)
    [sent] = ecs.sent
    event = _stopped_runner_event(job, 1)
    event["detail"]["overrides"] = sent["overrides"]

    assert ecs_event_handler(event, None, infra=world.infra)["request_id"] == "d-round"
    [result] = drain(world.queue, ANSIBLE_DEPLOY_RESULTS)
    assert result.status == "failed" and result.exit_code == 1
