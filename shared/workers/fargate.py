"""The Fargate worker runtime: one ECS task of the worker image per worker.

RunTask overrides carry only ids and secret *references* (the limit is 8192 characters, and
whatever is in them shows up in DescribeTasks, CloudTrail and EventBridge events): the wrapper
fetches its job from the API and resolves references with its own task role.

Decisions:
- The override `command` is `["--worker-id", ID]`: ECS replaces the image's CMD, not its
  ENTRYPOINT, and the worker image's ENTRYPOINT is `orchestrator-worker`.
- `startedBy` is the constant `orchestrator-worker` (see `ecs_events.WORKER_STARTED_BY`); the
  worker id is in the tags and in ORCH_WORKER_ID.
- `clientToken` is derived from the worker id, so a redelivered `create` that starts the same
  worker again gets the same task back from ECS instead of a second one. A new attempt after a
  failed start therefore needs a new worker id.
- The task definition's tags are propagated; ECS execute-command stays off (no shell into a
  worker that holds resolved secrets).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from shared.observability import get_logger
from shared.secrets.refs import SCHEME, parse_reference
from shared.workers.ecs_events import (
    MISSING_REASON,
    TASK_ID_ENV,
    TASK_ID_TAG,
    WORKER_ID_ENV,
    WORKER_ID_TAG,
    WORKER_STARTED_BY,
    status_from_task,
    worker_id_of,
)
from shared.workers.runtime import RuntimeStatus, WorkerLaunch

MAX_OVERRIDES_BYTES = 8192
"""RunTask's limit for the overrides JSON (counted in characters there; bytes here are never fewer)."""
MAX_STOP_REASON_CHARS = 255
_DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Worker and task ids: safe as a tag value, a command argument and a client token."""
_SECRET_NAME = re.compile(r"(?:^|_)(?:TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_SECRET_VALUE_SHAPES = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),  # OpenAI, Anthropic (sk-ant-...)
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),  # Telegram bot token
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),  # credentials inside a URL
)


class FargateRuntimeError(RuntimeError):
    """ECS refused or failed an operation on a worker task."""


class RuntimeStartError(FargateRuntimeError):
    """RunTask did not start the worker (capacity, a bad parameter, missing permissions...)."""

    def __init__(self, worker_id: str, reasons: list[str]) -> None:
        self.worker_id = worker_id
        self.reasons = reasons
        super().__init__(f"ECS did not start worker {worker_id}: {'; '.join(reasons)}")


def check_worker_env(env: Mapping[str, str]) -> None:
    """Refuse anything in a worker's environment that looks like a secret value (ValueError).

    Secrets travel by reference only: a name that says it holds a credential (`*_TOKEN`, `*_KEY`,
    `*_SECRET`, `*_PASSWORD`...) must hold a `secret://` reference, and no value may have the
    shape of a well-known credential. Messages name the variable, never its value.
    """
    for name, value in env.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise ValueError(
                f"worker environment entries must be non-empty str names with str values: {name!r}"
            )
        if value.startswith(SCHEME):
            parse_reference(value)  # InvalidSecretReference is a ValueError
            continue
        if _SECRET_NAME.search(name):
            raise ValueError(
                f"worker environment {name} looks like a secret: pass a {SCHEME}... reference, not a value"
            )
        if any(shape.search(value) for shape in _SECRET_VALUE_SHAPES):
            raise ValueError(
                f"worker environment {name} holds what looks like a credential: pass a {SCHEME}... reference"
            )


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of [A-Za-z0-9._-], starting alphanumeric")


def _client_token(worker_id: str) -> str:
    # Namespaced so another caller's token can never collide with a worker's; at most 64 characters.
    return "worker-" + hashlib.sha256(worker_id.encode()).hexdigest()[:57]


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _message(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Message", exc))


class FargateRuntime:
    """`WorkerRuntime` on ECS Fargate. The client is injected (moto in tests); boto3 loads lazily."""

    backend = "fargate"

    def __init__(
        self,
        cluster: str,
        task_definition: str,
        container_name: str,
        subnets: list[str],
        security_groups: list[str],
        assign_public_ip: bool = True,
        client: Any = None,
    ) -> None:
        if not subnets:
            raise ValueError("FargateRuntime needs at least one subnet for the awsvpc network")
        if not security_groups:
            raise ValueError("FargateRuntime needs at least one security group (workers get no default one)")
        if client is None:
            import boto3

            client = boto3.client("ecs")
        self.client = client
        self.cluster = cluster
        self.task_definition = task_definition
        self.container_name = container_name
        self.subnets = list(subnets)
        self.security_groups = list(security_groups)
        self.assign_public_ip = assign_public_ip

    # -- the port --------------------------------------------------------------------------

    def overrides_for(self, launch: WorkerLaunch) -> dict[str, Any]:
        """The RunTask overrides for a launch, after the checks; ValueError if they may not be sent."""
        _check_id("worker id", launch.worker_id)
        if launch.task_id is not None:
            _check_id("task id", launch.task_id)
        check_worker_env(launch.env)
        ids = {WORKER_ID_ENV: launch.worker_id}
        if launch.task_id is not None:
            ids[TASK_ID_ENV] = launch.task_id
        for name, value in ids.items():
            if name in launch.env and launch.env[name] != value:
                raise ValueError(f"worker environment sets {name} to another value than the launch's id")
        env = {**launch.env, **ids}
        overrides = {
            "containerOverrides": [
                {
                    "name": self.container_name,
                    "command": ["--worker-id", launch.worker_id],
                    "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
                }
            ]
        }
        size = len(json.dumps(overrides, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_OVERRIDES_BYTES:
            raise ValueError(
                f"RunTask overrides for worker {launch.worker_id} are {size} bytes; ECS allows "
                f"{MAX_OVERRIDES_BYTES}. Pass ids and references; the wrapper fetches the rest from the API"
            )
        return overrides

    def start(self, launch: WorkerLaunch) -> str:
        """Run one task for the worker; returns its task ARN. RuntimeStartError if ECS starts none."""
        overrides = self.overrides_for(launch)
        tags = [{"key": WORKER_ID_TAG, "value": launch.worker_id}]
        if launch.task_id is not None:
            tags.append({"key": TASK_ID_TAG, "value": launch.task_id})
        try:
            response = self.client.run_task(
                cluster=self.cluster,
                taskDefinition=self.task_definition,
                launchType="FARGATE",
                count=1,
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": self.subnets,
                        "securityGroups": self.security_groups,
                        "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                    }
                },
                overrides=overrides,
                startedBy=WORKER_STARTED_BY,
                tags=tags,
                propagateTags="TASK_DEFINITION",
                enableExecuteCommand=False,
                clientToken=_client_token(launch.worker_id),
            )
        except self.client.exceptions.ClientError as exc:
            raise RuntimeStartError(launch.worker_id, [f"{_code(exc)}: {_message(exc)}"]) from exc
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            reasons = [
                " ".join(str(part) for part in (f.get("reason"), f.get("detail")) if part) or "unknown"
                for f in failures
            ] or ["RunTask returned no task and no failure"]
            raise RuntimeStartError(launch.worker_id, reasons)
        handle = str(tasks[0]["taskArn"])
        get_logger().info(
            "worker task started",
            extra={"worker_id": launch.worker_id, "task_id": launch.task_id, "runtime_handle": handle},
        )
        return handle

    def stop(self, handle: str, reason: str) -> None:
        """Ask ECS to stop the task. Stopping a stopped or forgotten task is not an error."""
        try:
            self.client.stop_task(
                cluster=self.cluster,
                task=handle,
                reason=(reason or "stopped by the orchestrator")[:MAX_STOP_REASON_CHARS],
            )
        except self.client.exceptions.ClientError as exc:
            # ECS answers InvalidParameterException "The referenced task was not found" for a task it forgot.
            if _code(exc) == "InvalidParameterException" and "not found" in _message(exc).lower():
                get_logger().info("worker task already gone", extra={"runtime_handle": handle})
                return
            raise FargateRuntimeError(
                f"ECS StopTask failed for {handle}: {_code(exc)}: {_message(exc)}"
            ) from exc
        get_logger().info("worker task stop requested", extra={"runtime_handle": handle})

    def status(self, handle: str) -> RuntimeStatus:
        """The task's state by DescribeTasks; a task ECS no longer knows counts as STOPPED."""
        tasks, failures = self._describe([handle])
        if tasks:  # one handle asked, so at most one task (ECS may spell its ARN in the long form)
            return status_from_task(tasks[0], self.container_name)
        other = [f for f in failures if f.get("reason") != "MISSING"]
        if other:
            reasons = "; ".join(f"{f.get('reason')} {f.get('detail') or ''}".strip() for f in other)
            raise FargateRuntimeError(f"ECS DescribeTasks failed for {handle}: {reasons}")
        # MISSING, or (as moto does) simply absent: ECS forgets stopped tasks after about an hour.
        return RuntimeStatus(handle=handle, state="STOPPED", reason=MISSING_REASON)

    # -- for the orphan collector ----------------------------------------------------------

    def running_handles(self) -> list[str]:
        """Task ARNs of every worker task that ECS is not (yet) stopping, across all result pages."""
        return list(self._iter_running_arns())

    def running_workers(self) -> dict[str, str | None]:
        """`{task ARN: worker id}` for every running worker task (None where no id can be found)."""
        arns = self.running_handles()
        workers: dict[str, str | None] = {}
        for start in range(0, len(arns), _DESCRIBE_BATCH):
            tasks, _failures = self._describe(arns[start : start + _DESCRIBE_BATCH], include_tags=True)
            for task in tasks:
                try:
                    workers[str(task["taskArn"])] = worker_id_of(task)
                except ValueError:
                    workers[str(task["taskArn"])] = None
        return workers

    # -- helpers ---------------------------------------------------------------------------

    def _iter_running_arns(self) -> Iterator[str]:
        try:
            pages = self.client.get_paginator("list_tasks").paginate(
                cluster=self.cluster, startedBy=WORKER_STARTED_BY, desiredStatus="RUNNING"
            )
            for page in pages:
                yield from (str(arn) for arn in page.get("taskArns", []))
        except self.client.exceptions.ClientError as exc:
            raise FargateRuntimeError(
                f"ECS ListTasks failed on {self.cluster}: {_code(exc)}: {_message(exc)}"
            ) from exc

    def _describe(
        self, handles: list[str], include_tags: bool = False
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {"cluster": self.cluster, "tasks": handles}
        if include_tags:
            kwargs["include"] = ["TAGS"]
        try:
            response = self.client.describe_tasks(**kwargs)
        except self.client.exceptions.ClientError as exc:
            raise FargateRuntimeError(
                f"ECS DescribeTasks failed for {', '.join(handles)}: {_code(exc)}: {_message(exc)}"
            ) from exc
        return list(response.get("tasks") or []), list(response.get("failures") or [])
