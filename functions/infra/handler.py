"""Lambda entry points: `lambda_handler` for ansible:deploy:queue and provisioner:queue, and
`ecs_event_handler` for the Ansible runner's ECS task-state events (AWS only)."""

from __future__ import annotations

from typing import Any

from functions.infra.logic import Infra
from functions.infra.settings import InfraSettings
from shared.contracts import ANSIBLE_DEPLOY_QUEUE, PROVISIONER_QUEUE
from shared.handler_shell import PerContainer, lambda_entry
from shared.queues.consume import process_queue_event, source_queue


def build_infra(settings: InfraSettings | None = None) -> Infra:
    from shared.queues import build_queue
    from shared.service_client import build_service_client

    settings = settings or InfraSettings()
    queue = build_queue(settings, settings)
    launcher: Any
    if settings.ansible_runtime == "fargate":
        import boto3

        from functions.infra.launch import FargateLauncher

        if not (settings.fargate_cluster and settings.ansible_task_definition):
            raise ValueError("ORCH_FARGATE_CLUSTER and ORCH_ANSIBLE_TASK_DEFINITION are required for fargate")
        ecs = boto3.client("ecs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
        launcher = FargateLauncher(
            ecs,
            settings.fargate_cluster,
            settings.ansible_task_definition,
            settings.ansible_container_name,
            [s for s in settings.fargate_subnets.split(",") if s],
            [s for s in settings.fargate_security_groups.split(",") if s],
            assign_public_ip=settings.ansible_assign_public_ip,
        )
    else:
        from functions.infra.launch import LocalLauncher

        launcher = LocalLauncher(queue, settings.home / "ansible-runs", settings.ansible_timeout_s)
    return Infra(build_service_client(settings), queue, launcher, settings.ansible_timeout_s)


container = PerContainer(build_infra)
reset = container.reset


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, infra: Infra | None = None) -> dict[str, Any]:
    active = infra or container.get()
    queue = source_queue(event, (ANSIBLE_DEPLOY_QUEUE, PROVISIONER_QUEUE), "infra")

    def handle(message: Any, _record: Any) -> None:
        active.handle(message)

    return process_queue_event(event, queue, handle, context)


@lambda_entry
def ecs_event_handler(event: dict[str, Any], context: Any, infra: Infra | None = None) -> dict[str, Any]:
    """A runner task that stopped without publishing its outcome (crash, OOM, killed) still answers."""
    from functions.infra.launch import job_from_stopped_task, publish_failure

    found = job_from_stopped_task(event.get("detail") or {})
    if found is None:
        return {"handled": False}
    job, exit_code, reason = found
    publish_failure((infra or container.get()).queue, job, reason, exit_code)
    return {"handled": True, "request_id": job.request_id, "exit_code": exit_code}
