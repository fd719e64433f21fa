"""What a deploy asks of the machine and the network: a port nothing else holds, a health URL that
answers 200."""

from __future__ import annotations

import socket
import time

import httpx

from functions.deploy.settings import DeploySettings
from functions.deploy.state import DeployState
from shared.api_client import ApiClient, ConflictError, NotFoundError
from shared.retry import Sleep, poll_until


def smoke_test(url: str, settings: DeploySettings, sleep: Sleep = time.sleep) -> tuple[bool, str]:
    """GET `url` until it answers 200, with exponential backoff. (ok, what the last try saw)."""
    tries: list[str | None] = []  # what each try saw; None is a 200

    def get(client: httpx.Client) -> str | None:
        try:
            response = client.get(url)
        except httpx.HTTPError as exc:
            seen: str | None = f"{type(exc).__name__}: {exc}"[:300]
        else:
            seen = (
                None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}"
            )
        tries.append(seen)
        return seen

    policy = poll_until(
        lambda seen: seen is None,
        attempts=settings.smoke_attempts,
        initial_delay_s=settings.smoke_initial_delay_s,
        max_delay_s=settings.smoke_max_delay_s,
        sleep=sleep,
    )
    with httpx.Client(timeout=settings.smoke_request_timeout_s, follow_redirects=False) as client:
        last = policy(get, client)
    if last is None:
        return True, f"200 after {len(tries)} attempt(s)"
    return False, f"GET {url} did not answer 200 after {len(tries)} attempts; last: {last}"


def free_local_port(api: ApiClient, state: DeployState, port: int, tries: int = 50, slot: str = "") -> int:
    """On the built-in server the API's allocation may collide with a program it does not know (a dev
    server on 8000): that program would answer the health check for us. Move the allocation of `slot`
    ("" the stable port) to a port nothing holds, unless the holder is this project's own running
    deployment (its stable address)."""
    if (not slot and _ours(api, state, port)) or bindable(port):
        return port
    api.free_port(state.server_handle, port)
    candidate = port
    for _ in range(tries):
        candidate += 1
        if candidate > 65535 or not bindable(candidate):
            continue
        try:
            return api.allocate_port(state.server_handle, state.project_id, candidate, slot=slot).port
        except ConflictError:
            continue  # allocated to another project
    raise RuntimeError(f"no free port on this machine near {port} (tried {tries})")


def _ours(api: ApiClient, state: DeployState, port: int) -> bool:
    """`port` is where this project's deployment on this server runs now."""
    try:
        current = api.get_deployment(state.project_id)
    except NotFoundError:
        return False
    return (
        current.status == "deployed" and current.port == port and current.server_handle == state.server_handle
    )


def bindable(port: int) -> bool:
    """Nothing on this machine listens on 127.0.0.1:`port` now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
