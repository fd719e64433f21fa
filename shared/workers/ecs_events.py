"""ECS task descriptions and "ECS Task State Change" events → `RuntimeStatus`.

A worker task that stops without having reported a result must still end in one failed
`worker:responses` message; the EventBridge event for its STOPPED state is what tells us. The
same task shape comes back from `DescribeTasks`, so the Fargate runtime maps its status here too:
one place decides what an ECS state means.

Status mapping (`lastStatus` → `RuntimeState`):

- PROVISIONING, PENDING, ACTIVATING → STARTING
- RUNNING → RUNNING
- DEACTIVATING, STOPPING, DEPROVISIONING, STOPPED → STOPPED. A task past RUNNING never runs
  again, so it is reported as stopped at once (the worker manager must not send it work); only
  lastStatus STOPPED is final in ECS terms, and until then the reason says "stopping" and the
  exit code may still be unknown. The state-change event is emitted for STOPPED only.
- anything ECS adds later → STOPPED if the task is meant to stop (desiredStatus STOPPED), else
  RUNNING: an unknown state is treated as alive, never as silently finished.

Pure functions on dicts: no boto3 here, so the event handler's cold start stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.workers.runtime import RuntimeState, RuntimeStatus

EVENT_SOURCE = "aws.ecs"
EVENT_DETAIL_TYPE = "ECS Task State Change"

WORKER_ID_TAG = "orchestrator:worker-id"
TASK_ID_TAG = "orchestrator:task-id"
WORKER_ID_ENV = "ORCH_WORKER_ID"
TASK_ID_ENV = "ORCH_TASK_ID"
WORKER_STARTED_BY = "orchestrator-worker"
"""The `startedBy` of every worker task. A constant rather than `worker:<id>`: ECS allows only
36 characters of [A-Za-z0-9_/-] there (no ':', and a UUID worker id alone is 36), and ListTasks
filters on the exact value, so one constant lists every worker in one paginated call. The worker
id travels in the `orchestrator:worker-id` tag and the ORCH_WORKER_ID override."""

MISSING_REASON = "task no longer known to ECS"

_STARTING = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
_STOPPING = frozenset({"DEACTIVATING", "STOPPING", "DEPROVISIONING"})
_FINAL = "STOPPED"


def runtime_state(last_status: str, desired_status: str | None = None) -> RuntimeState:
    """What an ECS task's `lastStatus` means for a worker (see the module docstring)."""
    if last_status in _STARTING:
        return "STARTING"
    if last_status == "RUNNING":
        return "RUNNING"
    if last_status in _STOPPING or last_status == _FINAL:
        return "STOPPED"
    return "STOPPED" if desired_status == _FINAL else "RUNNING"


def status_from_task(task: Mapping[str, Any], container_name: str | None = None) -> RuntimeStatus:
    """A `RuntimeStatus` from one task as DescribeTasks or an event's `detail` shows it.

    The exit code is that of `container_name` (or, when not given, of the container the worker
    overrides were addressed to, or the only container); it is reported only once the task is
    past RUNNING, since a running container has none.
    """
    handle = _required_str(task, "taskArn", "task")
    last_status = _required_str(task, "lastStatus", "task")
    desired = task.get("desiredStatus")
    state = runtime_state(last_status, desired if isinstance(desired, str) else None)
    if state != "STOPPED":
        return RuntimeStatus(handle=handle, state=state)
    container = _pick_container(task, container_name)
    exit_code = container.get("exitCode") if container is not None else None
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        exit_code = None
    return RuntimeStatus(
        handle=handle, state=state, exit_code=exit_code, reason=_stop_reason(task, container, last_status)
    )


def worker_id_of(task: Mapping[str, Any]) -> str | None:
    """The worker a task runs, from its tag or its ORCH_WORKER_ID override; None if it is not a worker.

    Raises ValueError when the two disagree, or when a task started as a worker carries no id:
    either means something other than this runtime started it.
    """
    from_tag = _tag_value(task, WORKER_ID_TAG)
    from_env = _override_env(task, WORKER_ID_ENV)
    if from_tag and from_env and from_tag != from_env:
        raise ValueError(
            f"task {task.get('taskArn')!r} names two workers: tag {from_tag!r}, {WORKER_ID_ENV} {from_env!r}"
        )
    worker_id = from_tag or from_env
    if worker_id is None and task.get("startedBy") == WORKER_STARTED_BY:
        raise ValueError(
            f"task {task.get('taskArn')!r} was started as a worker ({WORKER_STARTED_BY!r}) but carries "
            f"no worker id (no {WORKER_ID_TAG!r} tag, no {WORKER_ID_ENV} override)"
        )
    return worker_id


def parse_task_state_change(
    event: Mapping[str, Any], container_name: str | None = None
) -> tuple[str, RuntimeStatus] | None:
    """`(worker_id, final status)` for a worker task's STOPPED event; None for any other event.

    Other sources and detail types, tasks still on their way, and tasks that are not workers all
    give None, so the handler can subscribe broadly. An event that claims to be an ECS task state
    change but lacks what that event always carries raises ValueError naming the field.
    """
    if not isinstance(event, Mapping):
        raise ValueError(f"an EventBridge event is a JSON object, not {type(event).__name__}")
    source = _required_str(event, "source", "event")
    detail_type = _required_str(event, "detail-type", "event")
    if source != EVENT_SOURCE or detail_type != EVENT_DETAIL_TYPE:
        return None
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise ValueError(f"{EVENT_DETAIL_TYPE!r} event has no 'detail' object")
    last_status = _required_str(detail, "lastStatus", "event detail")
    _required_str(detail, "taskArn", "event detail")
    if last_status != _FINAL:
        return None
    _check_shapes(detail)
    worker_id = worker_id_of(detail)
    if worker_id is None:
        return None
    return worker_id, status_from_task(detail, container_name)


# -- helpers ---------------------------------------------------------------------------------


def _required_str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} has no {key!r} string (got {type(value).__name__})")
    return value


def _check_shapes(detail: Mapping[str, Any]) -> None:
    for key in ("containers", "tags"):
        value = detail.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
            raise ValueError(f"event detail {key!r} must be a list of objects")
    overrides = detail.get("overrides", {})
    if not isinstance(overrides, Mapping):
        raise ValueError("event detail 'overrides' must be an object")
    container_overrides = overrides.get("containerOverrides", [])
    if not isinstance(container_overrides, list) or not all(
        isinstance(item, Mapping) and isinstance(item.get("environment", []), list)
        for item in container_overrides
    ):
        raise ValueError("event detail 'overrides.containerOverrides' must be a list of objects")
    for container in detail.get("containers", []):
        code = container.get("exitCode")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            raise ValueError(f"container {container.get('name')!r} has a non-integer exitCode {code!r}")


def _container_overrides(task: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    overrides = task.get("overrides")
    if not isinstance(overrides, Mapping):
        return []
    items = overrides.get("containerOverrides")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _env_of(override: Mapping[str, Any]) -> dict[str, str]:
    env = override.get("environment")
    if not isinstance(env, list):
        return {}
    return {
        str(pair["name"]): str(pair.get("value", ""))
        for pair in env
        if isinstance(pair, Mapping) and isinstance(pair.get("name"), str)
    }


def _override_env(task: Mapping[str, Any], name: str) -> str | None:
    for override in _container_overrides(task):
        value = _env_of(override).get(name)
        if value:
            return value
    return None


def _tag_value(task: Mapping[str, Any], key: str) -> str | None:
    tags = task.get("tags")
    if not isinstance(tags, list):
        return None
    for tag in tags:
        if isinstance(tag, Mapping) and tag.get("key") == key and isinstance(tag.get("value"), str):
            return str(tag["value"]) or None
    return None


def _pick_container(task: Mapping[str, Any], container_name: str | None) -> Mapping[str, Any] | None:
    containers = [c for c in task.get("containers") or [] if isinstance(c, Mapping)]
    if container_name is None:
        # The worker container is the one our overrides (with ORCH_WORKER_ID) were addressed to.
        container_name = next(
            (str(o.get("name")) for o in _container_overrides(task) if WORKER_ID_ENV in _env_of(o)), None
        )
    if container_name is not None:
        return next((c for c in containers if c.get("name") == container_name), None)
    return containers[0] if len(containers) == 1 else None


def _stop_reason(
    task: Mapping[str, Any], container: Mapping[str, Any] | None, last_status: str
) -> str | None:
    parts: list[str] = []
    if last_status != _FINAL:
        parts.append(f"stopping (ECS lastStatus {last_status})")
    stopped_reason, stop_code = task.get("stoppedReason"), task.get("stopCode")
    if stopped_reason and stop_code:
        parts.append(f"{stopped_reason} ({stop_code})")
    elif stopped_reason or stop_code:
        parts.append(str(stopped_reason or stop_code))
    if container is not None and container.get("reason"):
        parts.append(f"container {container.get('name')}: {container['reason']}")
    return "; ".join(parts) or None
