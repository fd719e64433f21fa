"""The Fargate worker runtime: one ECS task of the worker image per worker.

RunTask overrides carry ids, plain settings and one credential, the worker's own API token
(ORCH_WORKER_TOKEN; the limit is 8192 characters, and whatever is in them shows up in DescribeTasks,
CloudTrail and EventBridge events): the wrapper fetches its job from the API with that token and asks
the API for the secrets and the session its job names. The task role reads no secret.

Decisions:
- The token travels in the overrides although anyone allowed ecs:DescribeTasks, CloudTrail or the
  task-state events can read it: it acts only for this one worker (its job, its messages, the
  references its config names), stops working when the worker ends (STOPPED or FAILED) and expires
  its wall-time limit + 5 minutes after the start. Those readers operate the account; the other way
  (a Secrets Manager secret per task) would put secret reads back on the task role and add a write and
  a delete per worker, for a credential that is worth as little once the worker is gone.
- The override `command` is `["--worker-id", ID]`: ECS replaces the image's CMD, not its
  ENTRYPOINT, and the worker image's ENTRYPOINT is `orchestrator-worker`.
- `startedBy` is the constant `orchestrator-worker` (see `ecs_events.WORKER_STARTED_BY`); the
  worker id is in the tags and in ORCH_WORKER_ID.
- `clientToken` is derived from the worker id, so a redelivered `create` that starts the same
  worker again gets the same task back from ECS instead of a second one. A new attempt after a
  failed start therefore needs a new worker id.
- The task definition's tags are propagated; ECS execute-command stays off (no shell into a
  worker that holds resolved secrets).
- Task sizes per agent: a launch whose agent has a size (`DEFAULT_TASK_SIZES`, or the stack's
  ORCH_FARGATE_TASK_SIZES JSON `{"agent": {"cpu": 1024, "memory": 2048}}`) gets that task cpu/memory
  and the container's memory in its overrides; any other agent runs at the task definition's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
from shared.workers.local import WORKER_TOKEN_ENV
from shared.workers.runtime import RuntimeStatus, WorkerLaunch

MAX_OVERRIDES_BYTES = 8192
"""RunTask's limit for the overrides JSON (counted in characters there; bytes here are never fewer)."""
MAX_STOP_REASON_CHARS = 255
_DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Worker and task ids: safe as a tag value, a command argument and a client token."""
_SECRET_NAME = re.compile(r"(?:^|_)(?:TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_WORKER_TOKEN = re.compile(r"orchw_[A-Za-z0-9_-]{20,100}")
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


TASK_SIZES_ENV = "ORCH_FARGATE_TASK_SIZES"


@dataclass(frozen=True)
class TaskSize:
    """A Fargate task size: CPU units (1024 = 1 vCPU) and memory in MiB."""

    cpu: int
    memory: int


DEFAULT_TASK_SIZES: Mapping[str, TaskSize] = {
    "claude-code": TaskSize(1024, 2048),
    "codex": TaskSize(1024, 2048),
    "droid": TaskSize(1024, 2048),
    "command": TaskSize(512, 1024),
}
"""A Node agent CLI plus the project's tests: 1 vCPU / 2 GB; a `command` agent (a script): 0.5 vCPU / 1 GB."""

_FARGATE_MEMORY_MIB = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}
"""The CPU/memory pairs Fargate runs (Linux); RunTask refuses any other."""


def check_task_size(agent: str, size: TaskSize) -> None:
    """ValueError unless Fargate runs a task of this size."""
    allowed = _FARGATE_MEMORY_MIB.get(size.cpu)
    if allowed is None:
        raise ValueError(f"task size of {agent}: cpu {size.cpu} is not one of {sorted(_FARGATE_MEMORY_MIB)}")
    if size.memory not in allowed:
        raise ValueError(
            f"task size of {agent}: memory {size.memory} MiB does not go with cpu {size.cpu} "
            f"({allowed.start}-{allowed.stop - 1} MiB in steps of {allowed.step})"
        )


def parse_task_sizes(text: str) -> dict[str, TaskSize]:
    """`{"agent": {"cpu": 1024, "memory": 2048}, ...}` (ORCH_FARGATE_TASK_SIZES); ValueError naming the agent."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{TASK_SIZES_ENV} must be a JSON object of agent -> {{cpu, memory}}")
    sizes: dict[str, TaskSize] = {}
    for agent, value in raw.items():
        if not isinstance(value, dict) or set(value) != {"cpu", "memory"}:
            raise ValueError(f'{TASK_SIZES_ENV}: {agent} must be {{"cpu": N, "memory": MiB}}')
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            raise ValueError(f"{TASK_SIZES_ENV}: {agent}'s cpu and memory must be integers")
        sizes[str(agent)] = TaskSize(value["cpu"], value["memory"])
        check_task_size(str(agent), sizes[str(agent)])
    return sizes


def task_sizes_json(sizes: Mapping[str, TaskSize]) -> str:
    """The ORCH_FARGATE_TASK_SIZES value for `sizes` (what `parse_task_sizes` reads back)."""
    return json.dumps({a: {"cpu": s.cpu, "memory": s.memory} for a, s in sorted(sizes.items())})


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

    The one value allowed is the worker's own token in `WORKER_TOKEN_ENV` (it must look like one).
    Other secrets travel by reference only: a name that says it holds a credential (`*_TOKEN`, `*_KEY`,
    `*_SECRET`, `*_PASSWORD`...) must hold a `secret://` reference, and no value may have the
    shape of a well-known credential. Messages name the variable, never its value.
    """
    for name, value in env.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise ValueError(
                f"worker environment entries must be non-empty str names with str values: {name!r}"
            )
        if name == WORKER_TOKEN_ENV:
            if not _WORKER_TOKEN.fullmatch(value):
                raise ValueError(f"worker environment {name} must be a worker token (orchw_...)")
            continue
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
        task_sizes: Mapping[str, TaskSize] | None = None,
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
        if task_sizes is None:
            configured = os.environ.get(TASK_SIZES_ENV)
            task_sizes = parse_task_sizes(configured) if configured else DEFAULT_TASK_SIZES
        self.task_sizes = dict(task_sizes)

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
        container: dict[str, Any] = {
            "name": self.container_name,
            "command": ["--worker-id", launch.worker_id],
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        }
        overrides: dict[str, Any] = {"containerOverrides": [container]}
        # WorkerLaunch.agent: the worker's agent (claude-code, codex, ...), when the manager names it
        size = self.task_sizes.get(launch.agent or "")
        if size is not None:
            # the container's hard memory limit follows the task's, which may now be below the definition's
            overrides.update(cpu=str(size.cpu), memory=str(size.memory))
            container["memory"] = size.memory
        length = len(json.dumps(overrides, separators=(",", ":"), ensure_ascii=False).encode())
        if length > MAX_OVERRIDES_BYTES:
            raise ValueError(
                f"RunTask overrides for worker {launch.worker_id} are {length} bytes; ECS allows "
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
