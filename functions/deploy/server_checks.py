"""What a provisioner result says about its server, recorded through the API: every ping and provisioning,
whoever asked for it. Apart from the deploy graph: a scheduled ping's result (server_sync, every few
minutes for every server) or a recovery's needs only this, not LangGraph and the graph's checkpointer."""

from __future__ import annotations

from typing import Any

from shared.contracts import ProvisionerResult
from shared.observability import get_logger


def record_server_check(api: Any, result: ProvisionerResult) -> None:
    """The server's status from `result`: up, or unreachable. A failed provisioning that did not say
    whether the server answered changes nothing. An API failure is logged, not raised: the result's other
    reader (a graph waiting for it) must still get it."""
    if result.reachable is None and result.status != "success":
        return  # a provisioning failure says nothing certain about reachability
    status = "up" if result.status == "success" and result.reachable is not False else "unreachable"
    try:
        api.record_server_check(result.server_handle, status, dict(result.facts))
    except Exception:
        get_logger().exception("could not record the server check", extra={"server": result.server_handle})
