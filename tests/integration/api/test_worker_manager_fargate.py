"""The worker manager on the AWS side: Fargate RunTask (moto) and the ECS task-state-change handler."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import boto3
from moto import mock_aws
from moto.moto_api import state_manager

from functions.api.handler import lambda_handler as api_handler
from functions.worker_manager.handler import ecs_event_handler, lambda_handler
from functions.worker_manager.logic import WorkerManager
from shared.api_client import ApiClient
from shared.apigw import LambdaTransport
from shared.contracts import (
    CreateWorkerCommand,
    CreateWorkerResponse,
    SendMessageCommand,
    SendMessageResponse,
    WorkerConfig,
)
from shared.queues.local_runner import sqs_event
from shared.workers.fargate import FargateRuntime
from tests.api_support import ApiHarness
from tests.factories import drain as _messages

FIXTURE = Path(__file__).parents[2] / "fixtures" / "ecs_task_state_change_stopped.json"


def _fargate() -> FargateRuntime:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="workers", Description="workers", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", region_name="us-east-1")
    ecs.create_cluster(clusterName="workers")
    ecs.register_task_definition(
        family="worker",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {"name": "worker", "image": "worker:latest", "memory": 2048, "essential": True}
        ],
    )
    return FargateRuntime("workers", "worker", "worker", [subnet], [sg], client=ecs)


def test_create_on_fargate_then_the_task_dies(api: ApiHarness) -> None:
    _, service_key = api.new_user("svc", scopes=["service"])
    api.new_project("blog")
    task_id = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]
    queue = api.deps.queue
    with mock_aws():
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 1000})
        try:
            client = ApiClient("http://api.local", service_key, transport=LambdaTransport(api_handler))
            manager = WorkerManager(
                client,
                _fargate(),
                queue,
                {"ORCH_API_URL": "https://api.example", "ORCH_WORKER_IDLE_TIMEOUT_S": "600"},
            )
            create = CreateWorkerCommand(
                config=WorkerConfig(name="dev", agent="claude-code"),
                context={"task_id": task_id, "repo_url": "https://example/r.git"},
            )
            for _ in range(2):  # the same create twice: one RunTask
                event = sqs_event("arn:aws:sqs:us-east-1:0:x", [_received(create)])
                assert lambda_handler(event, None, manager=manager) == {"batchItemFailures": []}
            created = [r for r in _messages(queue, "worker:responses") if isinstance(r, CreateWorkerResponse)]
            assert len(created) == 2 and all(r.success for r in created)
            worker = client.get_worker(created[0].worker_id)  # type: ignore[arg-type]
            assert worker.runtime_handle and worker.runtime_handle.startswith("arn:aws:ecs:")
            ecs = boto3.client("ecs", region_name="us-east-1")
            assert len(ecs.list_tasks(cluster="workers")["taskArns"]) == 1
            # the worker's only credential is its own token, in the task's overrides
            [task] = ecs.describe_tasks(cluster="workers", tasks=[worker.runtime_handle])["tasks"]
            [container] = task["overrides"]["containerOverrides"]
            env = {e["name"]: e["value"] for e in container["environment"]}
            assert env["ORCH_WORKER_TOKEN"].startswith("orchw_") and service_key not in env.values()
            assert (
                ApiClient(
                    "http://api.local", env["ORCH_WORKER_TOKEN"], transport=LambdaTransport(api_handler)
                )
                .get_worker(worker.id)
                .id
                == worker.id
            )

            send = SendMessageCommand(worker_id=worker.id, message="implement", timeout=600)
            lambda_handler(sqs_event("arn:aws:sqs:us-east-1:0:x", [_received(send)]), None, manager=manager)

            stopped = copy.deepcopy(json.loads(FIXTURE.read_text()))
            detail = stopped["detail"]
            detail["taskArn"] = worker.runtime_handle
            detail["tags"] = [{"key": "orchestrator:worker-id", "value": worker.id}]
            for override in detail.get("overrides", {}).get("containerOverrides", []):
                override["environment"] = [
                    e
                    for e in override.get("environment", [])
                    if e["name"] not in ("ORCH_WORKER_ID", "ORCH_TASK_ID")
                ]
            outcome = ecs_event_handler(stopped, None, manager=manager)
            assert outcome["handled"] and outcome["worker_id"] == worker.id and outcome["exit_code"] == 1
            assert client.get_worker(worker.id).status == "FAILED"
            [reply] = _messages(queue, "worker:responses")
            assert isinstance(reply, SendMessageResponse) and not reply.success
            assert reply.request_id == send.request_id and "exit code 1" in (reply.error or "")
            assert ecs_event_handler(stopped, None, manager=manager)["handled"]
            assert _messages(queue, "worker:responses") == [], "a repeated event answers nothing twice"
        finally:
            state_manager.unset_transition("ecs::task")


def _received(message):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from shared.queues.port import ReceivedMessage

    return ReceivedMessage(
        message.request_id,
        message.model_dump_json(),
        "r",
        1,
        datetime.now(UTC),
        {"correlation_id": message.correlation_id},
    )
