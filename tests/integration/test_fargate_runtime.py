"""The Fargate runtime against moto's ECS (and botocore's Stubber where moto cannot say what ECS says).

moto quirks met here: RunTask with FARGATE needs `memory` on every container definition, a
security group, and a subnet in a VPC with DNS hostnames enabled (moto names the task's ENI after
its DNS name); moto walks a task from RUNNING to STOPPED by itself, one state per DescribeTasks,
so these tests hold the state still through moto's state manager; moto reports exit code 0 for
every container, answers DescribeTasks for an unknown task with neither task nor failure,
ignores ListTasks pagination, and raises a bare Exception for StopTask on an unknown task.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.moto_api import state_manager

from shared.workers.ecs_events import MISSING_REASON, TASK_ID_TAG, WORKER_ID_TAG, WORKER_STARTED_BY
from shared.workers.fargate import DEFAULT_TASK_SIZES, MAX_OVERRIDES_BYTES, FargateRuntime, RuntimeStartError
from shared.workers.runtime import WorkerLaunch, WorkerRuntime

REGION = "us-east-1"
CLUSTER = "orchestrator-workers"
CONTAINER = "worker"
WORKER_ID = "0b6f2c1e-9d3a-4e5b-8c7f-1a2d3e4f5a6b"
TASK_ID = "7c1d9e2a-4b6f-4a3c-9e8d-2f1a0b3c4d5e"
FAKE_TASK_ARN = f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/5e0c4a8b2f7d4b1c9e3a6f8d0b2c4e6a"


@dataclass
class EcsWorld:
    ecs: Any
    runtime: FargateRuntime
    subnet: str
    security_group: str
    sent: list[dict[str, Any]]
    """The parameters of every RunTask call, as botocore sends them."""


@pytest.fixture
def world() -> Iterator[EcsWorld]:
    """A cluster, a FARGATE task definition and a VPC/subnet/security group, in moto."""
    # Hold tasks at RUNNING: by default moto advances one lifecycle state per DescribeTasks.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    try:
        with mock_aws():
            ec2 = boto3.client("ec2", region_name=REGION)
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
            group = ec2.create_security_group(
                GroupName="workers", Description="workers: egress only", VpcId=vpc
            )
            ecs = boto3.client("ecs", region_name=REGION)
            ecs.create_cluster(clusterName=CLUSTER)
            task_definition = ecs.register_task_definition(
                family="orchestrator-worker",
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="1024",
                memory="2048",
                containerDefinitions=[
                    {
                        "name": CONTAINER,
                        "image": "orchestrator-worker:test",
                        "memory": 2048,
                        "essential": True,
                    }
                ],
            )["taskDefinition"]["taskDefinitionArn"]
            runtime = FargateRuntime(
                cluster=CLUSTER,
                task_definition=task_definition,
                container_name=CONTAINER,
                subnets=[subnet],
                security_groups=[group["GroupId"]],
                assign_public_ip=False,
                client=ecs,
            )
            sent: list[dict[str, Any]] = []
            ecs.meta.events.register(
                "provide-client-params.ecs.RunTask", lambda params, **_: sent.append(dict(params))
            )
            yield EcsWorld(ecs, runtime, subnet, group["GroupId"], sent)
    finally:
        state_manager.unset_transition("ecs::task")


def _launch(worker_id: str = WORKER_ID, task_id: str | None = TASK_ID, **env: str) -> WorkerLaunch:
    base = {
        "ORCH_API_URL": "https://api.example.test",
        "ORCH_SERVICE_API_KEY_REF": "secret://service/api-key",
    }
    return WorkerLaunch(worker_id=worker_id, task_id=task_id, env={**base, **env})


def _describe(world: EcsWorld, handle: str) -> dict[str, Any]:
    task: dict[str, Any] = world.ecs.describe_tasks(cluster=CLUSTER, tasks=[handle], include=["TAGS"])[
        "tasks"
    ][0]
    return task


def test_it_implements_the_port(world: EcsWorld) -> None:
    assert isinstance(world.runtime, WorkerRuntime)
    assert world.runtime.backend == "fargate"


def test_start_runs_a_tagged_fargate_task_whose_overrides_carry_only_ids_and_references(
    world: EcsWorld,
) -> None:
    handle = world.runtime.start(_launch())

    assert handle.startswith(f"arn:aws:ecs:{REGION}:") and f":task/{CLUSTER}/" in handle
    task = _describe(world, handle)
    assert task["launchType"] == "FARGATE"
    assert task["startedBy"] == WORKER_STARTED_BY
    assert {t["key"]: t["value"] for t in task["tags"]} == {WORKER_ID_TAG: WORKER_ID, TASK_ID_TAG: TASK_ID}
    eni_details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert eni_details["subnetId"] == world.subnet
    (sent,) = world.sent
    assert sent["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": [world.subnet],
        "securityGroups": [world.security_group],
        "assignPublicIp": "DISABLED",
    }
    assert (sent["enableExecuteCommand"], sent["propagateTags"]) == (False, "TASK_DEFINITION")
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == CONTAINER
    assert override["command"] == ["--worker-id", WORKER_ID]
    assert {e["name"]: e["value"] for e in override["environment"]} == {
        "ORCH_API_URL": "https://api.example.test",
        "ORCH_SERVICE_API_KEY_REF": "secret://service/api-key",
        "ORCH_WORKER_ID": WORKER_ID,
        "ORCH_TASK_ID": TASK_ID,
    }
    assert world.ecs.list_tasks(cluster=CLUSTER, startedBy=WORKER_STARTED_BY)["taskArns"] == [handle]


def test_a_worker_without_a_task_gets_no_task_tag_or_env(world: EcsWorld) -> None:
    handle = world.runtime.start(_launch(task_id=None))

    task = _describe(world, handle)
    assert [t["key"] for t in task["tags"]] == [WORKER_ID_TAG]
    names = {e["name"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert "ORCH_TASK_ID" not in names


def test_status_stop_and_status_after_stop(world: EcsWorld) -> None:
    handle = world.runtime.start(_launch())

    running = world.runtime.status(handle)
    world.runtime.stop(handle, "worker deleted by request r-1")
    world.runtime.stop(handle, "worker deleted by request r-1 (redelivered)")  # idempotent
    stopped = world.runtime.status(handle)

    assert (running.handle, running.state, running.exit_code, running.reason) == (
        handle,
        "RUNNING",
        None,
        None,
    )
    assert stopped.state == "STOPPED"
    assert stopped.reason is not None and stopped.reason.startswith("worker deleted by request r-1")
    assert world.runtime.running_handles() == []


def test_stop_reason_is_cut_to_what_ecs_accepts(world: EcsWorld) -> None:
    handle = world.runtime.start(_launch())

    world.runtime.stop(handle, "x" * 1000)

    assert _describe(world, handle)["stoppedReason"] == "x" * 255


def test_a_task_ecs_no_longer_knows_counts_as_stopped(world: EcsWorld) -> None:
    world.runtime.start(_launch())  # the cluster has tasks, just not this one

    status = world.runtime.status(FAKE_TASK_ARN)

    assert (status.state, status.exit_code, status.reason) == ("STOPPED", None, MISSING_REASON)


def test_running_handles_and_workers_list_only_running_worker_tasks(world: EcsWorld) -> None:
    first = world.runtime.start(_launch(worker_id="w-1"))
    second = world.runtime.start(_launch(worker_id="w-2"))
    stopped = world.runtime.start(_launch(worker_id="w-3"))
    world.runtime.stop(stopped, "done")
    # a task some other caller started in the same cluster
    world.ecs.run_task(
        cluster=CLUSTER,
        taskDefinition=world.runtime.task_definition,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [world.subnet], "securityGroups": [world.security_group]}
        },
        startedBy="someone-else",
    )

    assert sorted(world.runtime.running_handles()) == sorted([first, second])
    assert world.runtime.running_workers() == {first: "w-1", second: "w-2"}


def test_secret_references_are_accepted_under_secret_looking_names(world: EcsWorld) -> None:
    handle = world.runtime.start(_launch(GITHUB_TOKEN="secret://projects/p1/GITHUB_TOKEN"))

    env = _describe(world, handle)["overrides"]["containerOverrides"][0]["environment"]
    assert {"name": "GITHUB_TOKEN", "value": "secret://projects/p1/GITHUB_TOKEN"} in env


# -- what moto does not model: botocore's Stubber speaks for ECS --------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[FargateRuntime, Stubber]]:
    client = boto3.client("ecs", region_name=REGION)
    runtime = FargateRuntime(
        CLUSTER, "orchestrator-worker:1", CONTAINER, ["subnet-1"], ["sg-1"], client=client
    )
    with Stubber(client) as stubber:
        yield runtime, stubber
        stubber.assert_no_pending_responses()


def test_run_task_failures_raise_runtime_start_error_naming_the_reason(
    stubbed: tuple[FargateRuntime, Stubber],
) -> None:
    runtime, stubber = stubbed
    stubber.add_response(
        "run_task",
        {
            "tasks": [],
            "failures": [
                {
                    "arn": "arn:aws:ecs:us-east-1:123456789012:cluster/orchestrator-workers",
                    "reason": "Capacity is unavailable at this time.",
                    "detail": "Please try again later or in a different availability zone",
                }
            ],
        },
        {
            "cluster": CLUSTER,
            "taskDefinition": "orchestrator-worker:1",
            "launchType": "FARGATE",
            "count": 1,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-1"],
                    "securityGroups": ["sg-1"],
                    "assignPublicIp": "ENABLED",
                }
            },
            "overrides": ANY,
            "startedBy": WORKER_STARTED_BY,
            "tags": ANY,
            "propagateTags": "TASK_DEFINITION",
            "enableExecuteCommand": False,
            "clientToken": ANY,
        },
    )

    with pytest.raises(RuntimeStartError, match="Capacity is unavailable") as caught:
        runtime.start(_launch())

    assert isinstance(caught.value, RuntimeError)
    assert caught.value.worker_id == WORKER_ID


def test_run_task_client_errors_raise_runtime_start_error(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    runtime, stubber = stubbed
    stubber.add_client_error(
        "run_task", service_error_code="AccessDeniedException", service_message="not allowed to ecs:RunTask"
    )

    with pytest.raises(RuntimeStartError, match="AccessDeniedException: not allowed"):
        runtime.start(_launch())


def test_the_same_worker_gets_the_same_client_token(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    runtime, stubber = stubbed
    tokens: list[str] = []
    runtime.client.meta.events.register(
        "provide-client-params.ecs.RunTask", lambda params, **_: tokens.append(params["clientToken"])
    )
    for _ in range(3):
        stubber.add_response("run_task", {"tasks": [{"taskArn": FAKE_TASK_ARN}], "failures": []})

    handles = [
        runtime.start(_launch()),
        runtime.start(_launch()),
        runtime.start(_launch(worker_id="w-other")),
    ]

    assert handles[0] == handles[1] == FAKE_TASK_ARN
    assert tokens[0] == tokens[1] != tokens[2]
    assert all(len(token) <= 64 for token in tokens)


def test_stopping_a_task_ecs_forgot_is_fine(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    runtime, stubber = stubbed
    stubber.add_client_error(
        "stop_task",
        service_error_code="InvalidParameterException",
        service_message="The referenced task was not found.",
        expected_params={"cluster": CLUSTER, "task": FAKE_TASK_ARN, "reason": "deleted"},
    )

    runtime.stop(FAKE_TASK_ARN, "deleted")


def test_other_stop_errors_are_raised(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    runtime, stubber = stubbed
    stubber.add_client_error(
        "stop_task", service_error_code="ClusterNotFoundException", service_message="nope"
    )

    with pytest.raises(RuntimeError, match=r"StopTask failed .* ClusterNotFoundException"):
        runtime.stop(FAKE_TASK_ARN, "deleted")


def test_describe_failure_missing_counts_as_stopped(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    runtime, stubber = stubbed
    stubber.add_response(
        "describe_tasks",
        {"tasks": [], "failures": [{"arn": FAKE_TASK_ARN, "reason": "MISSING"}]},
        {"cluster": CLUSTER, "tasks": [FAKE_TASK_ARN]},
    )

    status = runtime.status(FAKE_TASK_ARN)

    assert (status.handle, status.state, status.reason) == (FAKE_TASK_ARN, "STOPPED", MISSING_REASON)


def test_status_of_a_stopped_task_reports_exit_code_and_reasons(
    stubbed: tuple[FargateRuntime, Stubber],
) -> None:
    runtime, stubber = stubbed
    stubber.add_response(
        "describe_tasks",
        {
            "tasks": [
                {
                    "taskArn": FAKE_TASK_ARN,
                    "lastStatus": "STOPPED",
                    "desiredStatus": "STOPPED",
                    "stopCode": "EssentialContainerExited",
                    "stoppedReason": "Essential container in task exited",
                    "containers": [
                        {"name": "log-router", "exitCode": 0},
                        {"name": CONTAINER, "exitCode": 137, "reason": "OutOfMemoryError: Container killed"},
                    ],
                }
            ],
            "failures": [],
        },
    )

    status = runtime.status(FAKE_TASK_ARN)

    assert status.exit_code == 137
    assert status.reason == (
        "Essential container in task exited (EssentialContainerExited); "
        "container worker: OutOfMemoryError: Container killed"
    )


def test_running_handles_follows_every_page(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    runtime, stubber = stubbed
    pages = [[f"{FAKE_TASK_ARN[:-4]}{i:04d}" for i in range(start, start + 100)] for start in (0, 100)]
    expected = {"cluster": CLUSTER, "startedBy": WORKER_STARTED_BY, "desiredStatus": "RUNNING"}
    stubber.add_response("list_tasks", {"taskArns": pages[0], "nextToken": "page-2"}, expected)
    stubber.add_response(
        "list_tasks", {"taskArns": pages[1], "nextToken": "page-3"}, {**expected, "nextToken": "page-2"}
    )
    stubber.add_response("list_tasks", {"taskArns": [FAKE_TASK_ARN]}, {**expected, "nextToken": "page-3"})

    handles = runtime.running_handles()

    assert handles == [*pages[0], *pages[1], FAKE_TASK_ARN]


def test_constructor_refuses_a_network_without_subnets_or_security_groups() -> None:
    client = boto3.client("ecs", region_name=REGION)
    with pytest.raises(ValueError, match="subnet"):
        FargateRuntime(CLUSTER, "td", CONTAINER, [], ["sg-1"], client=client)
    with pytest.raises(ValueError, match="security group"):
        FargateRuntime(CLUSTER, "td", CONTAINER, ["subnet-1"], [], client=client)


# -- refused before ECS is called: the Stubber fails any call that was not queued ------------------


def test_oversized_overrides_are_refused_before_ecs_is_called(
    stubbed: tuple[FargateRuntime, Stubber],
) -> None:
    env = {f"ORCH_SETTING_{i:03d}": "v" * 60 for i in range(MAX_OVERRIDES_BYTES // 80)}

    with pytest.raises(ValueError, match=r"overrides for worker .* bytes; ECS allows 8192"):
        stubbed[0].start(_launch(**env))


def test_the_worker_s_agent_picks_its_task_size_and_an_unsized_one_keeps_the_definition_s(
    stubbed: tuple[FargateRuntime, Stubber],
) -> None:
    runtime = stubbed[0]
    sized = runtime.overrides_for(replace(_launch(), agent="command"))
    unsized = runtime.overrides_for(replace(_launch(), agent="some-new-cli"))

    expected = DEFAULT_TASK_SIZES["command"]
    assert (sized["cpu"], sized["memory"]) == (str(expected.cpu), str(expected.memory))
    assert sized["containerOverrides"][0]["memory"] == expected.memory
    assert "cpu" not in unsized and "memory" not in unsized["containerOverrides"][0]


def test_overrides_just_under_the_limit_are_sent(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    launch = _launch(ORCH_PADDING="")
    size = len(json.dumps(stubbed[0].overrides_for(launch), separators=(",", ":")))
    launch = _launch(ORCH_PADDING="p" * (MAX_OVERRIDES_BYTES - size))

    assert len(json.dumps(stubbed[0].overrides_for(launch), separators=(",", ":"))) == MAX_OVERRIDES_BYTES
    stubbed[1].add_response("run_task", {"tasks": [{"taskArn": FAKE_TASK_ARN}], "failures": []})
    assert stubbed[0].start(launch) == FAKE_TASK_ARN


@pytest.mark.parametrize(
    "env",
    [
        {"GITHUB_TOKEN": "ghp_0123456789abcdefghijklmnopqrstuvwxyz"},
        {"ANTHROPIC_API_KEY": "not-a-reference"},
        {"DB_PASSWORD": "hunter2"},
        {"WEBHOOK_SECRET": "s3cr3t"},
        {"ORCH_REPO": "https://x-access-token:abc123@github.com/acme/app.git"},
        {"SOME_SETTING": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"},
        {"GITHUB_TOKEN": "secret://bad path"},
    ],
)
def test_secret_values_in_the_environment_are_refused(
    stubbed: tuple[FargateRuntime, Stubber], env: dict[str, str]
) -> None:
    with pytest.raises(ValueError) as caught:
        stubbed[0].start(_launch(**env))

    (name,) = env
    value = env[name]
    assert name in str(caught.value) or "secret reference" in str(caught.value)
    if not value.startswith("secret://"):
        assert value not in str(caught.value), "the error must not echo the secret"


@pytest.mark.parametrize("worker_id", ["", "has space", "x" * 65, "../etc"])
def test_unusable_worker_ids_are_refused(stubbed: tuple[FargateRuntime, Stubber], worker_id: str) -> None:
    with pytest.raises(ValueError, match="worker id"):
        stubbed[0].start(_launch(worker_id=worker_id))


def test_env_may_not_contradict_the_launch_ids(stubbed: tuple[FargateRuntime, Stubber]) -> None:
    with pytest.raises(ValueError, match="ORCH_WORKER_ID"):
        stubbed[0].start(_launch(ORCH_WORKER_ID="someone-else"))
