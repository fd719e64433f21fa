"""A deploy's release: which commit ships, which of the project's two slots and ports it goes to, and
how the release ends.

- What ships: the ref asked for (a branch resolved to its head now, a 40-hex sha as is), else the head of
  `main`, where engineering merges every change. The release records the sha, so a rollback ships
  exactly that commit again.
- Where: the slot that is not serving ("a" first, then "b", "a"...), listening on that slot's port; the
  project's stable port (slot "") stays its address and is switched to the new slot only once it is
  healthy (the runner's job). Only two slots exist, so their ports are kept between releases.
- How it ends: `serving` (the deployment row switches to the new slot), or `failed` with the cause a
  person reads; then the previous release keeps serving and its row is left alone.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from functions.deploy.probes import free_local_port
from functions.deploy.state import DeployState
from shared.api_client import ApiClient, ConflictError, LimitExceededError, NotFoundError
from shared.contracts.api import Deployment
from shared.repos.port import RepoHost, RepoHostError

SHA = re.compile(r"^[0-9a-f]{40}$")
RELEASE_ERROR_CHARS = 8000
"""The longest cause a release keeps (the task's error keeps it all)."""


class UnknownRef(ValueError):
    """The ref asked for names no commit of the repository; the message says which and why."""


def short(sha: str) -> str:
    """A commit as people read it (12 hex); anything else as is."""
    return sha[:12] if SHA.fullmatch(sha) else sha


def shipped_commit(repos: RepoHost, full_name: str, ref: str) -> str:
    """The commit `ref` names: a full sha as is, a branch its head now."""
    if SHA.fullmatch(ref):
        return ref
    try:
        head = repos.branch_head(full_name, ref)
    except RepoHostError as exc:
        if isinstance(exc, ValueError):  # not a branch name git would take
            raise UnknownRef(f"cannot deploy {ref!r}: {exc}") from None
        raise
    if head is None and ref == "main":
        raise UnknownRef(f"{full_name} has no commit on main yet: run engineering first")
    if head is None:
        raise UnknownRef(
            f"cannot deploy {ref!r}: it is neither a branch of {full_name} nor a full commit sha"
        )
    return head


def serving_here(api: ApiClient, state: DeployState) -> Deployment | None:
    """The project's deployment running on this deploy's server now, if any."""
    try:
        current = api.get_deployment(state.project_id)
    except NotFoundError:
        return None
    if current.status == "deployed" and current.server_handle == state.server_handle:
        return current
    return None


def other_slot(current: Deployment | None) -> Literal["a", "b"]:
    """The slot a new release takes: the one not serving ("a" first; after an in-place deploy, "a")."""
    return "b" if current is not None and current.slot == "a" else "a"


def stable_url(state: DeployState, stable_port: int) -> str:
    """The project's stable port on its server: what the smoke test and the health checker ask (an ssh
    server's proxy serves it beside a domain, which needs no DNS to be checked this way)."""
    host = "127.0.0.1" if state.connection == "local" else state.server_host
    return f"http://{host}:{stable_port}"


def project_url(state: DeployState, stable_port: int) -> str:
    """Where people reach the project: its domain behind an ssh server's proxy, else the stable port."""
    if state.domain and state.connection == "ssh":
        return f"https://{state.domain}"
    return stable_url(state, stable_port)


def allocate_release(api: ApiClient, state: DeployState) -> dict[str, Any]:
    """The stable port and the new slot's port on the deploy's server, and the release recording them
    (started once per task; a fix round or a replay gets the same release back, updated). A failed
    outcome says why when there is no port."""
    slot = state.slot or other_slot(serving_here(api, state))
    handle = state.server_handle
    try:
        stable = api.allocate_port(handle, state.project_id).port
        port = api.allocate_port(handle, state.project_id, slot=slot).port
        if state.connection == "local":
            stable = free_local_port(api, state, stable)
            port = free_local_port(api, state, port, slot=slot)
    except (LimitExceededError, ConflictError, RuntimeError) as exc:
        return {"outcome": "failed", "error": f"no port for this deploy on {handle}: {exc}"}
    release = api.start_release(
        state.project_id,
        state.task_id,
        state.commit_sha,
        state.ref or None,
        handle,
        slot,
        port,
        rollback_of=state.rollback_of,
    )
    return {
        "slot": slot,
        "port": port,
        "stable_port": stable,
        "release_id": release.id,
        "release_number": release.number,
        "deployed_url": project_url(state, stable),
        "health_url": stable_url(state, stable) + state.health_path,
    }


def finish_failed(api: ApiClient, state: DeployState, error: str) -> None:
    """Record the release FAILED with the cause (the previous release keeps serving)."""
    if not state.release_id:
        return  # failed before it had a release (no server, no port, an unknown ref)
    try:
        api.finish_release(state.release_id, "failed", error=error[-RELEASE_ERROR_CHARS:])
    except ConflictError:
        pass  # it ended already (a replay after it was recorded)


def free_after_failure(api: ApiClient, state: DeployState) -> str:
    """What a failed deploy gives back: when nothing of the project serves on this server (a first
    deploy, or a move to another server), every port it holds there; after a failed redeploy nothing:
    the stable port serves the previous release and the failed slot's port is the next release's (only
    two slots exist; the runner stopped the failed slot's process). Says what it freed, or nothing."""
    if state.kind != "deploy" or not state.port or not state.server_handle:
        return ""
    if serving_here(api, state) is not None:
        return ""
    freed = free_all_ports(api, state)
    return f"{ports_text(freed)} on {state.server_handle} freed" if freed else ""


def ports_text(ports: list[int]) -> str:
    return f"port{'s' if len(ports) > 1 else ''} {', '.join(map(str, ports))}"


def free_all_ports(api: ApiClient, state: DeployState) -> list[int]:
    """Undeploy: every port the project holds on the server (the stable one and both slots')."""
    freed = []
    for held in api.list_ports(state.server_handle):
        if held.project_id == state.project_id:
            try:
                api.free_port(state.server_handle, held.port)
            except NotFoundError:
                continue
            freed.append(held.port)
    return freed
