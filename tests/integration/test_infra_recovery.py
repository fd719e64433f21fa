"""The provisioner's recovery path against the real API (in-process, SQLite): a server seen unreachable
and then up again is provisioned again, its deployed projects are redeployed from what they serve, the
result lists them, and a redelivered recovery message starts nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.infra.logic import Infra
from shared.contracts import (
    DEPLOY_QUEUE,
    PROVISIONER_QUEUE,
    PROVISIONER_RESULTS,
    DeployMessage,
    ProvisionerMessage,
    ProvisionerResult,
)
from shared.contracts.api import DeploymentRecord
from tests.deploy_support import DeployWorld, deploy_world
from tests.factories import drain
from worker_image.ansible_runner.job import RunnerJob


class RecordingLauncher:
    def __init__(self) -> None:
        self.jobs: list[RunnerJob] = []

    def launch(self, job: RunnerJob) -> str:
        self.jobs.append(job)
        return "ran"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DeployWorld]:
    with deploy_world(tmp_path, (18600, 18609)) as built:
        yield built


def _deployed(world: DeployWorld, name: str, port: int) -> None:
    if name != "blog":
        world.admin.create_project(name, name, ["backend"])
    world.service.allocate_port("localhost", name, port)
    url = f"http://127.0.0.1:{port}"
    record = DeploymentRecord(
        server_handle="localhost", port=port, url=url, health_url=url + "/health", ref="main"
    )
    world.service.record_deployment(name, record)


def _lost_and_back(world: DeployWorld) -> ProvisionerMessage:
    """What the health job's pings report through the deploy function: up, unreachable, up again."""
    for status in ("up", "unreachable"):
        world.service.record_server_check("localhost", status)
    assert drain(world.queue, PROVISIONER_QUEUE) == []
    assert world.service.record_server_check("localhost", "up").changed
    [message] = drain(world.queue, PROVISIONER_QUEUE)
    assert isinstance(message, ProvisionerMessage) and message.is_recovery
    return message


def test_a_recovered_server_is_provisioned_again_and_its_projects_redeployed_once(
    world: DeployWorld,
) -> None:
    _deployed(world, "blog", 18600)
    _deployed(world, "shop", 18601)
    drain(world.queue, DEPLOY_QUEUE)
    launcher = RecordingLauncher()
    infra = Infra(world.service, world.queue, launcher, timeout_s=600)
    message = _lost_and_back(world)

    assert infra.handle(message) == "recovered"

    [job] = launcher.jobs
    assert (job.kind, job.request_id, job.target.handle) == (
        "provision",
        f"{message.request_id}:provision",
        "localhost",
    )
    assert sorted(job.open_ports) == [18600, 18601]
    [result] = drain(world.queue, PROVISIONER_RESULTS)
    assert isinstance(result, ProvisionerResult)
    assert (result.request_id, result.status) == (message.request_id, "success")
    assert sorted(result.services_redeployed) == ["blog", "shop"] and result.services_redeployed_count == 2
    deploys: list[DeployMessage] = drain(world.queue, DEPLOY_QUEUE)
    tasks = [world.admin.get_task(m.task_id) for m in deploys]
    assert sorted(world.admin.get_project(t.project_id).name for t in tasks) == ["blog", "shop"]
    assert all(t.params == {"server": "localhost", "ref": "main", "recovery": True} for t in tasks)
    told = [i for i in world.admin.list_incidents() if i.kind == "service_redeployed"]
    assert len(told) == 2

    # the message delivered again (a consumer that died before deleting it): no second redeploy
    assert infra.handle(message) == "recovered"
    assert drain(world.queue, DEPLOY_QUEUE) == []
    [again] = drain(world.queue, PROVISIONER_RESULTS)
    assert sorted(again.services_redeployed) == ["blog", "shop"], "the same recovery, the same tasks"
    assert len([i for i in world.admin.list_incidents() if i.kind == "service_redeployed"]) == 2


def test_a_recovery_for_a_server_that_is_gone_is_answered_failed(world: DeployWorld) -> None:
    infra = Infra(world.service, world.queue, RecordingLauncher(), timeout_s=600)
    message = ProvisionerMessage(request_id="recovery:nowhere:1", server_handle="nowhere", is_recovery=True)

    assert infra.handle(message) == "refused"

    [result] = drain(world.queue, PROVISIONER_RESULTS)
    assert result.status == "failed" and "nowhere" in (result.error or "")
    assert drain(world.queue, DEPLOY_QUEUE) == []
