"""The deploy graph driven through its compiled form across invocations: each step is a fresh `Deploy`
(a new Lambda invocation) over the same checkpointer, SQLite embedded and DynamoDB (moto) in AWS, fed
by the messages the real API (in-process) and the deploy publish."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from functions.deploy.logic import Deploy
from shared.contracts import (
    ANSIBLE_DEPLOY_QUEUE,
    DEPLOY_QUEUE,
    PROVISIONER_QUEUE,
    AnsibleDeployMessage,
    DeployMessage,
    ProvisionerMessage,
)
from shared.contracts.api import DeploymentRecord, TaskStatus
from shared.graphs.checkpoint import build_checkpointer, reset
from tests.deploy_support import PROJECT, DeployWorld, deploy_world, free_port_block, health_server
from tests.factories import drain


@pytest.fixture(params=["sqlite", "dynamodb"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeployWorld]:
    reset()
    with deploy_world(tmp_path, free_port_block()) as w:
        w.push()
        if request.param == "sqlite":
            yield w
        else:
            with mock_aws():
                keys = {"PK": "HASH", "SK": "RANGE"}  # the table DynamoDBSaver expects
                boto3.client("dynamodb", region_name="us-east-1").create_table(
                    TableName="checkpoints",
                    BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys.items()],
                    AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
                )
                w.settings = w.settings.model_copy(
                    update={
                        "checkpointer": "dynamodb",
                        "checkpoint_table": "checkpoints",
                        "aws_region": "us-east-1",
                    }
                )
                yield w
    reset()


def _deploy(world: DeployWorld) -> Deploy:
    """A fresh driver per call: nothing survives between invocations but the checkpoint."""
    reset()
    return Deploy(world.ports, build_checkpointer(world.settings))


def _one(world: DeployWorld, queue: str) -> object:
    [message] = drain(world.queue, queue)
    return message


def test_a_deploy_waits_for_its_secret_then_deploys_and_passes_its_smoke_test(world: DeployWorld) -> None:
    # given a deploy of a project whose required secret is not set
    world.admin.start_deploy(PROJECT, "localhost")
    start = _one(world, DEPLOY_QUEUE)
    assert isinstance(start, DeployMessage)
    # when it starts, it parks for the secret; a redelivered start is a no-op
    assert _deploy(world).start(start) == "started"
    assert _deploy(world).start(start) == "duplicate"
    assert world.service.get_task(start.task_id).status is TaskStatus.WAITING_INPUT
    # when the person sets it, the API wakes the deploy, which runs to the Ansible job
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    wake = _one(world, DEPLOY_QUEUE)
    assert isinstance(wake, DeployMessage) and wake.request_id.startswith(f"{start.task_id}:secrets")
    assert _deploy(world).handle(wake) == "resumed"
    job = _one(world, ANSIBLE_DEPLOY_QUEUE)
    assert isinstance(job, AnsibleDeployMessage) and list(job.secret_refs) == ["API_TOKEN"]
    assert _deploy(world).resume(f"{start.task_id}:ansible:9", {"status": "success"}) == "ignored"
    # when the runner answers with the service up, the smoke test passes and the deploy completes
    assert job.slot == "a" and job.stable_port and job.ref == world.head("main")
    with health_server(job.stable_port):  # the runner switched the stable port to the new slot
        assert _deploy(world).resume(job.request_id, {"status": "success"}) == "resumed"
    assert _deploy(world).resume(job.request_id, {"status": "success"}) == "ignored"
    done = world.service.get_task(start.task_id)
    assert done.status is TaskStatus.COMPLETED, done.error
    url = f"http://127.0.0.1:{job.stable_port}"
    assert world.service.get_release(PROJECT, 1).status == "serving"
    assert done.result and done.result["deployed_url"] == url
    assert world.service.get_deployment(done.project_id).status == "deployed"
    steps = [step for step, _ in world.steps(start.task_id) if step]
    assert steps[0] == "prepare" and steps[-2:] == ["smoke", "done"]
    assert {"env", "secrets", "deploy"} <= set(steps)


def test_a_failed_deploy_is_fixed_once_then_fails_at_the_limit(world: DeployWorld) -> None:
    # given one fix round is allowed and every secret is set
    world.settings = world.settings.model_copy(update={"deploy_max_fix_attempts": 1})
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    task = world.admin.start_deploy(PROJECT, "localhost")
    assert _deploy(world).start(_one(world, DEPLOY_QUEUE)) == "started"  # type: ignore[arg-type]
    # when the Ansible run fails, a fix round opens
    job = _one(world, ANSIBLE_DEPLOY_QUEUE)
    assert isinstance(job, AnsibleDeployMessage)
    failed = {"status": "failed", "error": "service did not start", "stderr": "ImportError: app"}
    assert _deploy(world).resume(job.request_id, failed) == "resumed"
    [fix] = world.service.list_tasks(project=task.project_id, type="engineering").items
    assert fix.params["parent_task_id"] == task.id and fix.spec and "ImportError: app" in fix.spec
    # when the fix round completes on its branch, the API wakes the deploy, which redeploys that branch
    world.push(branch="fix/deploy-1")
    world.service.claim_task(fix.id, worker="test")
    world.service.complete_task(fix.id, {"branch": "fix/deploy-1"})
    wake = _one(world, DEPLOY_QUEUE)
    assert isinstance(wake, DeployMessage) and wake.request_id == f"{task.id}:fix:1"
    assert _deploy(world).handle(wake) == "resumed"
    again = _one(world, ANSIBLE_DEPLOY_QUEUE)
    assert isinstance(again, AnsibleDeployMessage)
    assert (again.request_id, again.ref) == (f"{task.id}:ansible:1", world.head("fix/deploy-1"))
    assert again.slot == job.slot and again.port == job.port  # the same release, the same slot
    # when the service still does not answer, the deploy fails: no second fix round
    assert _deploy(world).resume(again.request_id, {"status": "success"}) == "resumed"
    ended = world.service.get_task(task.id)
    assert ended.status is TaskStatus.FAILED and ended.error
    assert ended.error.startswith("deploy failed after 1 fix round(s): smoke test failed")
    assert len(world.service.list_tasks(project=task.project_id, type="engineering").items) == 1
    [release] = world.service.list_releases(PROJECT).items
    assert (release.status, release.commit_sha, release.ref) == ("failed", again.ref, "fix/deploy-1")
    assert release.error and release.error.startswith("deploy failed after 1 fix round(s): smoke test failed")


def test_a_deploy_cancelled_while_it_waits_is_not_resumed(world: DeployWorld) -> None:
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    world.admin.start_deploy(PROJECT, "localhost")
    start = _one(world, DEPLOY_QUEUE)
    assert isinstance(start, DeployMessage) and _deploy(world).start(start) == "started"
    job = _one(world, ANSIBLE_DEPLOY_QUEUE)
    assert isinstance(job, AnsibleDeployMessage)
    world.admin.cancel_task(start.task_id)
    assert _deploy(world).resume(job.request_id, {"status": "success"}) == "ended"
    assert world.service.get_task(start.task_id).status is TaskStatus.CANCELLED
    assert world.service.get_release(PROJECT, 1).status == "failed"  # its release ended with it


def test_an_ssh_server_that_cannot_be_provisioned_fails_the_deploy(world: DeployWorld) -> None:
    world.admin.add_server("web-1", "203.0.113.7")
    world.admin.update_project(PROJECT, approval="none")  # about provisioning, not approvals
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    world.admin.start_deploy(PROJECT, "web-1")
    start = _one(world, DEPLOY_QUEUE)
    assert isinstance(start, DeployMessage) and _deploy(world).start(start) == "started"
    job = _one(world, PROVISIONER_QUEUE)
    assert isinstance(job, ProvisionerMessage) and job.open_ports and job.server_handle == "web-1"
    answer = {"status": "failed", "error": "ssh: connection timed out", "server_handle": "web-1"}
    assert _deploy(world).resume(job.request_id, answer) == "resumed"
    ended = world.service.get_task(start.task_id)
    assert ended.status is TaskStatus.FAILED
    # the reason, and the port the deploy had allocated is given back
    port = ended.result["port"] if ended.result else None
    release = world.service.get_release(PROJECT, 1)
    assert ended.error == (
        "server web-1 (203.0.113.7) is not ready: ssh: connection timed out\n"
        f"ports {port}, {release.port} on web-1 freed"
    )
    assert world.service.list_ports("web-1") == []
    assert drain(world.queue, ANSIBLE_DEPLOY_QUEUE) == []


def test_a_deploy_to_an_ssh_server_waits_for_the_owner_s_approval_across_invocations(
    world: DeployWorld,
) -> None:
    # given the default policy ("deploy") and a deploy to a server other than the built-in one
    world.admin.add_server("web-1", "203.0.113.7")
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    world.admin.start_deploy(PROJECT, "web-1")
    start = _one(world, DEPLOY_QUEUE)
    assert isinstance(start, DeployMessage) and _deploy(world).start(start) == "started"
    # then it parks before anything touches the server, naming the release and the server
    assert world.service.get_task(start.task_id).status is TaskStatus.WAITING_APPROVAL
    assert drain(world.queue, PROVISIONER_QUEUE) == []
    [gate] = world.admin.task_gates(start.task_id)
    assert (gate.kind, gate.status) == ("deploy", "pending")
    assert "release 1" in gate.summary and "web-1 (203.0.113.7)" in gate.summary
    # when the owner approves, the API's wake-up resumes a fresh driver (a restart loses nothing)
    world.admin.approve_task(start.task_id, comment="ship it")
    wake = _one(world, DEPLOY_QUEUE)
    assert isinstance(wake, DeployMessage) and wake.request_id == f"{start.task_id}:gate:deploy:0"
    assert _deploy(world).handle(wake) == "resumed"
    assert _deploy(world).handle(wake) == "ignored", "a redelivered wake-up is a no-op"
    # then the server is prepared: the deploy goes on
    job = _one(world, PROVISIONER_QUEUE)
    assert isinstance(job, ProvisionerMessage) and job.server_handle == "web-1"
    assert world.service.get_task(start.task_id).status is TaskStatus.RUNNING


def test_a_rejected_deploy_ends_its_release_and_frees_its_ports(world: DeployWorld) -> None:
    world.admin.add_server("web-1", "203.0.113.7")
    world.admin.set_secret(PROJECT, "API_TOKEN", "s3cret")
    world.admin.start_deploy(PROJECT, "web-1")
    start = _one(world, DEPLOY_QUEUE)
    assert isinstance(start, DeployMessage) and _deploy(world).start(start) == "started"

    world.admin.reject_task(start.task_id, comment="not on a Friday")
    wake = _one(world, DEPLOY_QUEUE)
    assert isinstance(wake, DeployMessage) and _deploy(world).handle(wake) == "ended"

    task = world.service.get_task(start.task_id)
    assert (task.status, task.failure_reason) == (TaskStatus.FAILED, "rejected")
    assert world.service.get_release(PROJECT, 1).status == "failed"
    assert world.service.list_ports("web-1") == []
    assert drain(world.queue, PROVISIONER_QUEUE) == []


def test_an_undeploy_stops_the_service_and_frees_its_port(world: DeployWorld) -> None:
    project = world.service.get_project(PROJECT)
    port = world.service.allocate_port("localhost", project.id).port
    url = f"http://127.0.0.1:{port}"
    record = DeploymentRecord(server_handle="localhost", port=port, url=url, health_url=url + "/health")
    world.service.record_deployment(project.id, record)
    world.admin.start_undeploy(PROJECT)
    start = _one(world, DEPLOY_QUEUE)
    assert isinstance(start, DeployMessage) and _deploy(world).start(start) == "started"
    job = _one(world, ANSIBLE_DEPLOY_QUEUE)
    assert isinstance(job, AnsibleDeployMessage) and job.job_type == "undeploy" and job.port == port
    assert _deploy(world).resume(job.request_id, {"status": "success"}) == "resumed"
    assert world.service.get_task(start.task_id).status is TaskStatus.COMPLETED
    assert world.service.get_deployment(project.id).status == "stopped"
    assert world.service.list_ports("localhost") == []
