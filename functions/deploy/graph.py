"""The deploy graph: prepare (which commit ships: the ref asked for, else main's head) -> env analyzer
-> secret resolver (may park in WAITING_INPUT) -> allocate (the stable port, the free slot's port, the
release) -> deploy gate (a server other than the built-in one: the owner approves the release, parked in
WAITING_APPROVAL) -> readiness (the server answers) -> deployer (Ansible: the new slot starts beside the serving
one and takes the stable address once healthy) -> smoke test -> done (the release serves); a failed
deploy or smoke test opens an engineering fix task (at most `deploy_max_fix_attempts`; none for a
rollback) and deploys the commit it merged. Undeploy tasks take the short path: playbook, free the
project's ports, record it stopped.

Durable the same way as engineering: the nodes (`nodes.py`) wait for outside work with `interrupt`,
and every step is checkpointed. Node names are part of the checkpoints of tasks in flight: renaming
one strands the tasks waiting in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph

from functions.deploy.nodes import DeployNodes
from functions.deploy.settings import DeploySettings
from functions.deploy.state import DeployState
from shared.api_client import ApiClient
from shared.graphs.driver import route_ok
from shared.queues.port import QueuePort
from shared.repos.port import RepoHost

__all__ = ["DeployState", "Ports", "build_graph"]


@dataclass
class Ports:
    api: ApiClient
    queue: QueuePort
    settings: DeploySettings
    repo_host: RepoHost
    github_token_ref: str | None = None


def ok(next_node: str) -> Callable[[DeployState], str]:
    """On to `next_node`, unless the state says failed or cancelled (-> "fail", which ends the task's
    release either way)."""
    route = route_ok(next_node, end="fail")
    return lambda state: route({"outcome": state.outcome})


def after_prepare(state: DeployState) -> str:
    if state.outcome == "failed":
        return "fail"
    return "undeploy_request" if state.kind == "undeploy" else "analyze_env"


def after_secrets(state: DeployState) -> str:
    return ok("secrets_wait" if state.missing else "allocate")(state)


def after_gate(state: DeployState) -> str:
    """Wait while the deploy gate is pending; approved (or not needed): on to the server."""
    return ok("deploy_gate_wait" if state.gate == "deploy" else "readiness")(state)


def after_readiness(state: DeployState) -> str:
    return ok("provision_wait" if state.error == "provision" else "deploy_request")(state)


def after_deploy(state: DeployState) -> str:
    """A failed deploy or smoke test goes to a fix round."""
    return "fix_request" if state.last_failure else "smoke"


def after_smoke(state: DeployState) -> str:
    return "fix_request" if state.last_failure else "finalize"


def build_graph(ports: Ports, checkpointer: Any) -> Any:
    nodes = DeployNodes(ports.api, ports.queue, ports.settings, ports.repo_host, ports.github_token_ref)
    graph = StateGraph(DeployState)
    for name in (
        "prepare",
        "analyze_env",
        "resolve_secrets",
        "secrets_wait",
        "readiness",
        "provision_wait",
        "allocate",
        "deploy_request",
        "deploy_wait",
        "smoke",
        "fix_request",
        "fix_wait",
        "undeploy_request",
        "undeploy_wait",
        "finalize",
        "fail",
        "deploy_gate",
        "deploy_gate_wait",
    ):
        graph.add_node(name, getattr(nodes, name))
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", after_prepare, ["analyze_env", "undeploy_request", "fail"])
    graph.add_conditional_edges("analyze_env", ok("resolve_secrets"), ["resolve_secrets", "fail", END])
    graph.add_conditional_edges("resolve_secrets", after_secrets, ["secrets_wait", "allocate", "fail", END])
    graph.add_edge("secrets_wait", "resolve_secrets")
    graph.add_conditional_edges("allocate", ok("deploy_gate"), ["deploy_gate", "fail", END])
    for step in ("deploy_gate", "deploy_gate_wait"):
        graph.add_conditional_edges(step, after_gate, ["deploy_gate_wait", "readiness", "fail", END])
    graph.add_conditional_edges(
        "readiness", after_readiness, ["provision_wait", "deploy_request", "fail", END]
    )
    graph.add_conditional_edges("provision_wait", ok("deploy_request"), ["deploy_request", "fail", END])
    graph.add_conditional_edges("deploy_request", ok("deploy_wait"), ["deploy_wait", "fail", END])
    graph.add_conditional_edges("deploy_wait", after_deploy, ["fix_request", "smoke"])
    graph.add_conditional_edges("smoke", after_smoke, ["fix_request", "finalize"])
    graph.add_conditional_edges("fix_request", ok("fix_wait"), ["fix_wait", "fail", END])
    # the fix may have changed the env contract (run command, port variable, secrets): analyze again
    graph.add_conditional_edges("fix_wait", ok("analyze_env"), ["analyze_env", "fail", END])
    graph.add_edge("undeploy_request", "undeploy_wait")
    graph.add_conditional_edges("undeploy_wait", ok(END), ["fail", END])
    graph.add_edge("finalize", END)
    graph.add_edge("fail", END)
    return graph.compile(checkpointer=checkpointer)
