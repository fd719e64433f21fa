"""The deploy graph: prepare -> env analyzer -> secret resolver (may park in WAITING_INPUT) ->
readiness (server answers, port allocated) -> deployer (Ansible) -> smoke test -> done; a failed
deploy or smoke test opens an engineering fix task (at most `deploy_max_fix_attempts`) and deploys
its result. Undeploy tasks take the short path: playbook, free the port, record it stopped.

Durable the same way as engineering: a node that needs outside work publishes a message and the
*next* node waits with `interrupt({"wait_for": request_id})`; request ids come from the task, the
step and the attempt, so a replayed node re-sends the same message and receivers drop it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import httpx
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from functions.deploy.settings import DeploySettings
from functions.scaffolder.contract import CONTRACT_FILE, EnvContractError, parse_env_contract
from shared.api_client import ApiClient, ConflictError, LimitExceededError, NotFoundError
from shared.contracts import (
    ANSIBLE_DEPLOY_QUEUE,
    PROVISIONER_QUEUE,
    AnsibleDeployMessage,
    DeployResult,
    ProvisionerMessage,
    progress_stream,
)
from shared.contracts.api import DeploymentRecord, TaskStatus, TaskType
from shared.contracts.workers import NO_AGENT
from shared.graphs.driver import event_sender, last_lines, request_id, route_ok
from shared.queues.port import QueuePort


class DeployState(TypedDict, total=False):
    task_id: str
    project_id: str
    project_name: str
    correlation_id: str
    kind: Literal["deploy", "undeploy"]
    server_handle: str
    server_host: str
    connection: Literal["local", "ssh"]
    ref: str
    repo_url: str
    repo_full_name: str
    agent: str
    port: int
    port_variable: str
    health_path: str
    run_command: str
    env: dict[str, str]
    secret_names: list[str]
    required_secrets: list[str]
    secret_refs: dict[str, str]
    missing: list[str]
    attempt: int
    fix_task_id: str | None
    last_failure: str | None
    deployed_url: str
    health_url: str
    outcome: Literal["completed", "failed", "cancelled"] | None
    error: str | None


@dataclass
class Ports:
    api: ApiClient
    queue: QueuePort
    settings: DeploySettings
    repo_host: Any
    github_token_ref: str | None = None


def snake(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def smoke_test(url: str, settings: DeploySettings, sleep: Any = time.sleep) -> tuple[bool, str]:
    """GET `url` until it answers 200, with exponential backoff. (ok, what the last try saw)."""
    delay = settings.smoke_initial_delay_s
    seen = "no attempt"
    with httpx.Client(timeout=settings.smoke_request_timeout_s, follow_redirects=False) as client:
        for attempt in range(1, settings.smoke_attempts + 1):
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return True, f"200 after {attempt} attempt(s)"
                seen = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                seen = f"{type(exc).__name__}: {exc}"[:300]
            if attempt < settings.smoke_attempts:
                sleep(delay)
                delay = min(delay * 2, settings.smoke_max_delay_s)
    return False, f"GET {url} did not answer 200 after {settings.smoke_attempts} attempts; last: {seen}"


def build_graph(ports: Ports, checkpointer: Any) -> Any:
    api, queue, settings = ports.api, ports.queue, ports.settings

    event = event_sender(api)

    def ended(state: DeployState) -> bool:
        return api.get_task(state["task_id"]).status.is_final

    def failed(error: str) -> DeployState:
        return {"outcome": "failed", "error": error}

    # -- prepare ------------------------------------------------------------------------------

    def prepare(state: DeployState) -> DeployState:
        task = api.get_task(state["task_id"])
        project = api.get_project(task.project_id)
        handle = str(task.params.get("server") or "")
        try:
            server = api.get_server(handle)
        except NotFoundError:
            return failed(f"server {handle!r} not found (add it with `orchestrator server add`)")
        kind: Literal["deploy", "undeploy"] = "undeploy" if task.type == TaskType.UNDEPLOY else "deploy"
        base: DeployState = {
            "kind": kind, "project_name": project.name, "server_handle": server.handle,
            "server_host": server.host, "connection": server.connection,
            "repo_full_name": f"{settings.repo_owner}/{project.name}", "attempt": state.get("attempt") or 0,
            "agent": project.agent or settings.default_agent,
        }  # fmt: skip
        if kind == "undeploy":
            try:
                current = api.get_deployment(project.id)
            except NotFoundError:
                return failed(f"{project.name} has never been deployed")
            event(
                state,
                "progress",
                f"undeploying {project.name} from {server.handle}:{current.port}",
                "undeploy",
                10,
            )
            return {
                **base,
                "port": current.port,
                "ref": current.ref or "main",
                "repo_url": project.repo_url or "",
            }
        if not project.repo_url:
            return failed(
                f"{project.name} has no repository yet: run engineering first (`orchestrator engineering start`)"
            )
        ref, agent = _ref_and_agent(api, project.id, task.params.get("ref"))
        base["agent"] = agent or base["agent"]
        event(state, "progress", f"deploying {project.name} ({ref}) to {server.handle}", "prepare", 5)
        return {**base, "ref": ref, "repo_url": project.repo_url}

    # -- env analyzer -------------------------------------------------------------------------

    def analyze_env(state: DeployState) -> DeployState:
        raw = ports.repo_host.read_file(state["repo_full_name"], state["ref"], CONTRACT_FILE)
        if raw is None:
            return failed(
                f"{CONTRACT_FILE} not found at {state['ref']} of {state['repo_full_name']}: the deploy needs it "
                "to know how to run the service (the default template ships one)"
            )
        try:
            contract = parse_env_contract(raw)
        except EnvContractError as exc:
            return failed(str(exc))
        env = {v.name: str(v.default) for v in contract.variables if v.default is not None}
        if "HOST" in env:
            env["HOST"] = "127.0.0.1" if state["connection"] == "local" else "0.0.0.0"  # noqa: S104 - the service must answer other machines
        env.pop(contract.port_variable, None)  # the runner sets the allocated port
        # required variables with no default are provided like secrets (`orchestrator secret set`)
        needed = [s.name for s in contract.secrets] + [
            v.name for v in contract.variables if v.required and v.default is None
        ]
        required = set(contract.required_secrets) | {
            v.name for v in contract.variables if v.required and v.default is None
        }
        event(state, "progress", f"env contract: port variable {contract.port_variable}, health {contract.health_path}, "
              f"{len(required)} required secret(s)", "env", 15)  # fmt: skip
        return {"port_variable": contract.port_variable, "health_path": contract.health_path,
                "run_command": contract.run, "env": env, "secret_names": needed,
                "required_secrets": sorted(required)}  # fmt: skip

    # -- secrets ------------------------------------------------------------------------------

    def resolve_secrets(state: DeployState) -> DeployState:
        if ended(state):
            return {"outcome": "cancelled"}
        known = {s.name: s.reference for s in api.list_secrets(state["project_id"])}
        refs = {name: known[name] for name in state.get("secret_names") or [] if name in known}
        missing = sorted(name for name in state.get("required_secrets") or [] if name not in known)
        if not missing:
            if refs:
                event(
                    state,
                    "progress",
                    f"secrets resolved by reference: {', '.join(sorted(refs))}",
                    "secrets",
                    20,
                )
            return {"secret_refs": refs, "missing": []}
        names = ", ".join(missing)
        reason = (f"waiting for secret(s) {names}: set them with "
                  f"`orchestrator secret set {state['project_name']} NAME`")  # fmt: skip
        try:
            api.wait_for_input(state["task_id"], reason)
        except ConflictError:
            pass  # a replay: already waiting
        return {"secret_refs": refs, "missing": missing}

    def secrets_wait(state: DeployState) -> DeployState:
        interrupt({"wait_for": request_id(state["task_id"], "secrets", "*")})
        try:
            api.resume_task(state["task_id"])
        except ConflictError:
            pass  # already RUNNING (a replay)
        return {}

    # -- readiness ----------------------------------------------------------------------------

    def readiness(state: DeployState) -> DeployState:
        """The server answers and is ready for this service: for an ssh server an idempotent provision
        run (base packages, the service user, the firewall open for the allocated port), which also
        proves it answers and reports its facts; the built-in local server answers by definition."""
        if ended(state):
            return {"outcome": "cancelled"}
        server = api.get_server(state["server_handle"])
        if server.connection == "local":
            api.record_server_check(server.handle, "up")
            return {}
        event(state, "progress", f"preparing {server.handle} ({server.host}): packages, service user, "
              f"firewall for port {state['port']}", "readiness", 30)  # fmt: skip
        queue.publish(PROVISIONER_QUEUE, ProvisionerMessage(
            request_id=request_id(state["task_id"], "provision", state.get("attempt") or 0),
            correlation_id=state["correlation_id"], callback_stream=progress_stream(state["task_id"]),
            server_handle=server.handle, job_type="provision", open_ports=[state["port"]],
        ))  # fmt: skip
        return {"error": "provision"}  # marker: route to provision_wait

    def provision_wait(state: DeployState) -> DeployState:
        result = interrupt({"wait_for": request_id(state["task_id"], "provision", state.get("attempt") or 0)})
        if result.get("status") != "success" or result.get("reachable") is False:
            why = result.get("error") or "; ".join(result.get("errors") or []) or "no answer"
            return failed(f"server {state['server_handle']} ({state['server_host']}) is not ready: {why}")
        return {"error": None}

    def allocate(state: DeployState) -> DeployState:
        return allocate_port(api, state)

    # -- deployer -----------------------------------------------------------------------------

    def deploy_request(state: DeployState) -> DeployState:
        if ended(state):
            return {"outcome": "cancelled"}
        attempt = state.get("attempt") or 0
        note = f" (after fix round {attempt})" if attempt else ""
        ref = state["ref"][:12] if len(state["ref"]) == 40 else state["ref"]
        event(state, "progress", f"ansible: deploying {ref} to {state['server_handle']}:{state['port']}{note}",
              "deploy", 40 + 15 * attempt)  # fmt: skip
        queue.publish(
            ANSIBLE_DEPLOY_QUEUE, _ansible_message(state, "deploy", attempt, ports.github_token_ref)
        )
        return {}

    def deploy_wait(state: DeployState) -> DeployState:
        attempt = state.get("attempt") or 0
        result = interrupt({"wait_for": request_id(state["task_id"], "ansible", attempt)})
        if result.get("status") == "success":
            return {"last_failure": None}
        failure = _failure_text(result)
        event(state, "progress", f"ansible deploy failed: {result.get('error') or 'see output'}", "deploy",
              50 + 15 * attempt, error=_tail(failure))  # fmt: skip
        return {"last_failure": failure}

    def smoke(state: DeployState) -> DeployState:
        ok, detail = smoke_test(state["health_url"], settings)
        if ok:
            event(state, "progress", f"smoke test passed: {state['health_url']} ({detail})", "smoke", 90)
            return {"last_failure": None}
        event(state, "progress", "smoke test failed", "smoke", 80, error=detail)
        return {"last_failure": f"smoke test failed: {detail}"}

    # -- fix loop -----------------------------------------------------------------------------

    def fix_request(state: DeployState) -> DeployState:
        attempt = state.get("attempt") or 0
        failure = state.get("last_failure") or "the deploy failed"
        if attempt >= settings.deploy_max_fix_attempts:
            rounds = f"after {attempt} fix round(s)" if attempt else "and no fix round is allowed"
            return failed(f"deploy failed {rounds}: {_tail(failure)}")
        if state.get("agent") == NO_AGENT:
            return failed(
                f"deploy failed and there is no coding agent to fix it (agent none): {_tail(failure)}"
            )
        next_attempt = attempt + 1
        child = _existing_fix(api, state, next_attempt)
        if child is None:
            spec = (f"The deploy of {state['project_name']} ({state['ref']}) to {state['server_handle']} failed. "
                    f"Fix the service so it starts and answers {state['health_path']} with 200.\n\n"
                    f"What the deploy saw:\n\n```\n{failure[-6000:]}\n```\n")  # fmt: skip
            child = api.start_engineering(
                state["project_id"], spec, agent=state.get("agent"), base_ref=state["ref"],
                parent_task_id=state["task_id"], deploy_fix_attempt=next_attempt,
            ).id  # fmt: skip
        event(state, "progress", f"deploy failed: engineering fix round {next_attempt} (task {child[:8]})", "fix",
              60 + 10 * attempt, error=_tail(failure))  # fmt: skip
        return {"fix_task_id": child}

    def fix_wait(state: DeployState) -> DeployState:
        next_attempt = (state.get("attempt") or 0) + 1
        interrupt({"wait_for": request_id(state["task_id"], "fix", next_attempt)})
        child = api.get_task(state.get("fix_task_id") or "")
        if child.status is not TaskStatus.COMPLETED:
            return failed(
                f"fix round {next_attempt} ended {child.status.value}: {child.error or 'no reason given'}"
            )
        branch = (child.result or {}).get("branch") or state["ref"]
        event(
            state,
            "progress",
            f"fix round {next_attempt} done: redeploying {branch}",
            "fix",
            65 + 10 * next_attempt,
        )
        return {"ref": branch, "attempt": next_attempt, "last_failure": None}

    # -- undeploy -----------------------------------------------------------------------------

    def undeploy_request(state: DeployState) -> DeployState:
        queue.publish(ANSIBLE_DEPLOY_QUEUE, _ansible_message(state, "undeploy", 0, ports.github_token_ref))
        return {}

    def undeploy_wait(state: DeployState) -> DeployState:
        result = interrupt({"wait_for": request_id(state["task_id"], "undeploy", 0)})
        if result.get("status") != "success":
            return failed(f"undeploy failed: {_tail(_failure_text(result))}")
        current = api.get_deployment(state["project_id"])
        try:
            api.free_port(state["server_handle"], state["port"])
        except NotFoundError:
            pass  # freed already (a replay)
        api.record_deployment(state["project_id"], DeploymentRecord(
            server_handle=state["server_handle"], port=state["port"], url=current.url,
            health_url=current.health_url, ref=current.ref, status="stopped", task_id=state["task_id"],
        ))  # fmt: skip
        result_json = DeployResult(request_id=state["task_id"], status="success", server_ip=state["server_host"],
                                   port=state["port"]).model_dump(mode="json")  # fmt: skip
        api.complete_task(state["task_id"], result_json | {"stopped_url": current.url})
        event(
            state,
            "completed",
            f"stopped {state['project_name']}; port {state['port']} freed",
            "undeploy",
            100,
        )
        return {"outcome": "completed"}

    # -- end ----------------------------------------------------------------------------------

    def finalize(state: DeployState) -> DeployState:
        api.record_deployment(state["project_id"], DeploymentRecord(
            server_handle=state["server_handle"], port=state["port"], url=state["deployed_url"],
            health_url=state["health_url"], ref=state["ref"], status="deployed", task_id=state["task_id"],
        ))  # fmt: skip
        result = DeployResult(request_id=state["task_id"], status="success", deployed_url=state["deployed_url"],
                              server_ip=state["server_host"], port=state["port"])  # fmt: skip
        api.complete_task(state["task_id"], result.model_dump(mode="json") | {
            "health_url": state["health_url"], "ref": state["ref"], "deploy_fix_attempt": state.get("attempt") or 0,
        })  # fmt: skip
        event(state, "completed", f"live at {state['deployed_url']}", "done", 100)
        return {"outcome": "completed"}

    def fail(state: DeployState) -> DeployState:
        if state.get("outcome") == "cancelled" or ended(state):
            return {"outcome": "cancelled"}
        error = state.get("error") or "deploy failed"
        result = DeployResult(request_id=state["task_id"], status="failed", error=error,
                              server_ip=state.get("server_host"), port=state.get("port"))  # fmt: skip
        try:
            api.fail_task(state["task_id"], error, result.model_dump(mode="json"))
        finally:
            event(state, "failed", f"{state.get('kind') or 'deploy'} failed", "done", 100, error=error)
        return {"outcome": "failed"}

    # -- wiring -------------------------------------------------------------------------------

    ok = route_ok

    def after_prepare(state: DeployState) -> str:
        if state.get("outcome") == "failed":
            return "fail"
        return "undeploy_request" if state.get("kind") == "undeploy" else "analyze_env"

    def after_secrets(state: DeployState) -> str:
        if state.get("outcome"):
            return ok("")(state)
        return "secrets_wait" if state.get("missing") else "allocate"

    def after_readiness(state: DeployState) -> str:
        if state.get("outcome"):
            return ok("")(state)
        return "provision_wait" if state.get("error") == "provision" else "deploy_request"

    def after_deploy(state: DeployState) -> str:
        return "fix_request" if state.get("last_failure") else "smoke"

    def after_smoke(state: DeployState) -> str:
        return "fix_request" if state.get("last_failure") else "finalize"

    graph = StateGraph(DeployState)
    for name, fn in [("prepare", prepare), ("analyze_env", analyze_env), ("resolve_secrets", resolve_secrets),
                     ("secrets_wait", secrets_wait), ("readiness", readiness), ("provision_wait", provision_wait),
                     ("allocate", allocate), ("deploy_request", deploy_request), ("deploy_wait", deploy_wait),
                     ("smoke", smoke), ("fix_request", fix_request), ("fix_wait", fix_wait),
                     ("undeploy_request", undeploy_request), ("undeploy_wait", undeploy_wait),
                     ("finalize", finalize), ("fail", fail)]:  # fmt: skip
        graph.add_node(name, fn)
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", after_prepare, ["analyze_env", "undeploy_request", "fail"])
    graph.add_conditional_edges("analyze_env", ok("resolve_secrets"), ["resolve_secrets", "fail", END])
    graph.add_conditional_edges("resolve_secrets", after_secrets, ["secrets_wait", "allocate", "fail", END])
    graph.add_edge("secrets_wait", "resolve_secrets")
    graph.add_conditional_edges("allocate", ok("readiness"), ["readiness", "fail", END])
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


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_port(api: ApiClient, state: DeployState) -> DeployState:
    """The deploy's port on its server, or a failed outcome saying why there is none (the person's limit of
    ports on a shared server, no free port left, a race lost): the task fails at once with that reason
    instead of the error escaping the node and leaving it RUNNING."""
    project, server = state["project_id"], state["server_handle"]
    try:
        port = api.allocate_port(server, project).port
        if state["connection"] == "local":
            port = _free_local_port(api, state, port)
    except (LimitExceededError, ConflictError, RuntimeError) as exc:
        return {"outcome": "failed", "error": f"no port for this deploy on {server}: {exc}"}
    host = "127.0.0.1" if state["connection"] == "local" else state["server_host"]
    url = f"http://{host}:{port}"
    return {"port": port, "deployed_url": url, "health_url": url + state["health_path"]}


def _free_local_port(api: ApiClient, state: DeployState, port: int, tries: int = 50) -> int:
    """On the built-in server the API's allocation may collide with a program it does not know (a dev
    server on 8000): that program would answer the health check for us. Move to a port nothing holds,
    unless the holder is this project's own running deployment (a redeploy)."""
    try:
        current = api.get_deployment(state["project_id"])
        ours = (
            current.status == "deployed"
            and current.port == port
            and current.server_handle == state["server_handle"]
        )
    except NotFoundError:
        ours = False
    if ours or _bindable(port):
        return port
    api.free_port(state["server_handle"], port)
    candidate = port
    for _ in range(tries):
        candidate += 1
        if candidate > 65535 or not _bindable(candidate):
            continue
        try:
            return api.allocate_port(state["server_handle"], state["project_id"], candidate).port
        except ConflictError:
            continue  # allocated to another project
    raise RuntimeError(f"no free port on this machine near {port} (tried {tries})")


def _ref_and_agent(api: ApiClient, project_id: str, explicit: Any) -> tuple[str, str | None]:
    """What to deploy: the task's ref, else the branch of the last completed engineering task, else main;
    and the agent that engineering used (fix rounds use the same)."""
    last = next(iter(api.list_tasks(project=project_id, type=TaskType.ENGINEERING.value,
                                    status=TaskStatus.COMPLETED.value, limit=1).items), None)  # fmt: skip
    agent = (last.params.get("agent") if last else None) or None
    if explicit:
        return str(explicit), agent
    branch = (last.result or {}).get("branch") if last else None
    return (branch or "main"), agent


def _existing_fix(api: ApiClient, state: DeployState, attempt: int) -> str | None:
    """The fix task this deploy already opened for `attempt` (a replayed node must not open two)."""
    for task in api.iter_tasks(project=state["project_id"], type=TaskType.ENGINEERING.value):
        if (
            task.params.get("parent_task_id") == state["task_id"]
            and task.params.get("deploy_fix_attempt") == attempt
        ):
            return task.id
    return None


def _ansible_message(state: DeployState, job_type: Literal["deploy", "undeploy"], attempt: int,
                     github_token_ref: str | None) -> AnsibleDeployMessage:  # fmt: skip
    rid = request_id(state["task_id"], "ansible" if job_type == "deploy" else "undeploy", attempt)
    return AnsibleDeployMessage(
        request_id=rid, correlation_id=state["correlation_id"], callback_stream=progress_stream(state["task_id"]),
        job_type=job_type, project_id=state["project_id"], project_name=snake(state["project_name"]),
        repo_full_name=state["repo_full_name"], server_ip=state["server_host"], port=state["port"],
        github_token_ref=github_token_ref, secrets_ref=f"secret://projects/{state['project_id']}",
        task_id=state["task_id"], server_handle=state["server_handle"], repo_url=state.get("repo_url") or None,
        ref=state.get("ref") or "main", run_command=state.get("run_command") or "python3 -m app.server",
        health_path=state.get("health_path") or "/health", port_variable=state.get("port_variable") or "PORT",
        env=state.get("env") or {}, secret_refs=state.get("secret_refs") or {},
    )  # fmt: skip


def _failure_text(result: dict[str, Any]) -> str:
    parts = [result.get("error") or "failed"]
    if result.get("exit_code") is not None:
        parts.append(f"exit code {result['exit_code']}")
    for key in ("stdout", "stderr"):
        if result.get(key):
            parts.append(f"{key}:\n{result[key][-3000:]}")
    return "\n".join(parts)


def _tail(text: str) -> str:
    return last_lines(text, limit=600)
