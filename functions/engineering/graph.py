"""The engineering graph: scaffold (if needed) -> developer -> tester -> (fix loop) -> finalize.

Durable: a node that needs outside work publishes a command and the *next* node calls
`interrupt()`; the consumer of worker:responses / scaffolder:results resumes the thread
(`thread_id = task_id`) with `Command(resume=...)`. Publishing nodes never re-run on resume
(only the waiting node does), and every command's request id is derived from the task, the
step and the round, so a replayed node re-sends the same command, which the receivers treat
as a duplicate: no second worker, no second scaffold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from functions.engineering import instructions
from functions.engineering.settings import EngineeringSettings
from shared.api_client import ApiClient
from shared.contracts import (
    SCAFFOLDER_QUEUE,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    DeleteWorkerCommand,
    EngineeringResult,
    ScaffolderMessage,
    SendMessageCommand,
    WorkerConfig,
    progress_stream,
)
from shared.contracts.workers import NO_AGENT
from shared.graphs.driver import event_sender, last_lines, request_id, route_ok
from shared.queues.port import QueuePort


class EngState(TypedDict, total=False):
    task_id: str
    project_id: str
    project_name: str
    correlation_id: str
    spec: str
    agent: str
    branch: str
    base_ref: str
    repo_url: str | None
    repo_full_name: str
    round: int
    last_failure: str | None
    worker_id: str | None
    tester_id: str | None
    commit_sha: str | None
    files_changed: list[str]
    developer_answer: str | None
    pr_url: str | None
    outcome: Literal["completed", "failed", "cancelled"] | None
    error: str | None


@dataclass
class Ports:
    api: ApiClient
    queue: QueuePort
    settings: EngineeringSettings
    repo_host: Any = None
    worker_env_refs: dict[str, str] = field(default_factory=dict)
    """Secret references a worker resolves itself (GITHUB_TOKEN for pushes to GitHub)."""


def build_graph(ports: Ports, checkpointer: Any) -> Any:
    api, queue, settings = ports.api, ports.queue, ports.settings

    event = event_sender(api)

    def cancelled(state: EngState) -> bool:
        """The task ended outside the graph (cancelled, or failed by the stuck-task reaper): stop quietly."""
        return api.get_task(state["task_id"]).status.is_final

    # -- prepare / scaffold ---------------------------------------------------------------

    def prepare(state: EngState) -> EngState:
        project = api.get_project(state["project_id"])
        event(state, "progress", f"engineering {project.name}: preparing", "prepare", 5)
        return {
            "project_name": project.name,
            "repo_url": project.repo_url,
            "repo_full_name": f"{settings.repo_owner}/{project.name}",
            # with no developer (agent "none") nothing is committed: the work is the base itself
            "branch": (state.get("base_ref") or "main")
            if no_developer(state)
            else f"orchestrator/{state['task_id'][:8]}",
            "round": 1,
            "files_changed": [],
        }

    def scaffold_request(state: EngState) -> EngState:
        project = api.get_project(state["project_id"])
        api.update_project(project.id, status="scaffolding")
        queue.publish(SCAFFOLDER_QUEUE, ScaffolderMessage(
            request_id=request_id(state["task_id"], "scaffold"), correlation_id=state["correlation_id"],
            callback_stream=progress_stream(state["task_id"]), project_id=project.id,
            repo_full_name=state["repo_full_name"], project_name=project.name, modules=project.modules,
            task_id=state["task_id"], description=project.description,
        ))  # fmt: skip
        event(state, "progress", "scaffolding the repository from the template", "scaffold", 10)
        return {}

    def scaffold_wait(state: EngState) -> EngState:
        result = interrupt({"wait_for": request_id(state["task_id"], "scaffold")})
        if result.get("status") != "success":
            return {
                "outcome": "failed",
                "error": f"scaffold failed: {result.get('error') or 'unknown reason'}",
            }
        event(state, "progress", f"repository ready: {result.get('repo_url')}", "scaffold", 15)
        return {"repo_url": result.get("repo_url"), "commit_sha": result.get("commit_sha")}

    # -- workers ----------------------------------------------------------------------------

    def create_worker(state: EngState, role: str) -> None:
        rnd = state["round"]
        is_dev = role == "developer"
        config = WorkerConfig(
            name=f"{role}-{state['project_name']}-{rnd}",
            agent=state["agent"] if is_dev else "command",
            capabilities=["git", "python"],
            instructions=instructions.DEVELOPER if is_dev else instructions.TESTER,
            agent_options={} if is_dev else {"command": settings.test_command},
            env_vars=dict(ports.worker_env_refs),
        )
        context = {"task_id": state["task_id"], "repo_url": state["repo_url"] or "", "branch": state["branch"],
                   "step": role, "base_branch": state.get("base_ref") or "main",
                   "commit": "true" if is_dev else "false"}  # fmt: skip
        queue.publish(WORKER_COMMANDS, CreateWorkerCommand(
            request_id=request_id(state["task_id"], role, rnd, "create"), correlation_id=state["correlation_id"],
            config=config, context=context,
        ))  # fmt: skip

    def wait_created(state: EngState, role: str) -> tuple[bool, str | None, str | None]:
        response = interrupt({"wait_for": request_id(state["task_id"], role, state["round"], "create")})
        if not response.get("success"):
            return False, None, f"could not start the {role} worker: {response.get('error')}"
        return True, response.get("worker_id"), None

    def send(state: EngState, role: str, worker_id: str, message: str, timeout: int) -> None:
        queue.publish(WORKER_COMMANDS, SendMessageCommand(
            request_id=request_id(state["task_id"], role, state["round"], "message"),
            correlation_id=state["correlation_id"], worker_id=worker_id, message=message, timeout=timeout,
        ))  # fmt: skip

    def delete(state: EngState, role: str, worker_id: str | None) -> None:
        if worker_id:
            queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(
                request_id=request_id(state["task_id"], role, state["round"], "delete"),
                correlation_id=state["correlation_id"], worker_id=worker_id,
            ))  # fmt: skip

    def developer_create(state: EngState) -> EngState:
        if cancelled(state):
            return {"outcome": "cancelled"}
        rnd = state["round"]
        note = f" (fix round {rnd})" if rnd > 1 else ""
        event(
            state,
            "progress",
            f"developer ({state['agent']}) starting{note}",
            "developer",
            min(20 + 15 * (rnd - 1), 70),
        )
        create_worker(state, "developer")
        return {}

    def developer_created(state: EngState) -> EngState:
        ok, worker_id, error = wait_created(state, "developer")
        return {"worker_id": worker_id} if ok else {"outcome": "failed", "error": error}

    def developer_send(state: EngState) -> EngState:
        prompt = instructions.developer_prompt(state["spec"], state.get("last_failure"), state["round"])
        send(state, "developer", state["worker_id"] or "", prompt, settings.developer_timeout_s)
        event(state, "progress", "developer at work", "developer", min(25 + 15 * (state["round"] - 1), 75))
        return {}

    def developer_wait(state: EngState) -> EngState:
        response = interrupt(
            {"wait_for": request_id(state["task_id"], "developer", state["round"], "message")}
        )
        delete(state, "developer", state.get("worker_id"))
        result = response.get("result") or {}
        if not response.get("success"):
            status = result.get("status") or "failed"
            return {
                "outcome": "failed",
                "error": f"developer {status}: {response.get('error') or 'no reason given'}",
            }
        files = sorted(set(state.get("files_changed") or []) | set(result.get("files_changed") or []))
        event(state, "progress", f"developer done: {len(result.get('files_changed') or [])} file(s) changed",
              "developer", min(40 + 15 * (state["round"] - 1), 80))  # fmt: skip
        return {"commit_sha": result.get("commit_sha") or state.get("commit_sha"), "files_changed": files,
                "developer_answer": response.get("response")}  # fmt: skip

    def tester_create(state: EngState) -> EngState:
        if cancelled(state):
            return {"outcome": "cancelled"}
        event(
            state,
            "progress",
            f"tester: running `{settings.test_command}`",
            "tester",
            min(50 + 15 * (state["round"] - 1), 85),
        )
        create_worker(state, "tester")
        return {}

    def tester_created(state: EngState) -> EngState:
        ok, worker_id, error = wait_created(state, "tester")
        return {"tester_id": worker_id} if ok else {"outcome": "failed", "error": error}

    def tester_send(state: EngState) -> EngState:
        send(
            state,
            "tester",
            state["tester_id"] or "",
            f"run {settings.test_command}",
            settings.tester_timeout_s,
        )
        return {}

    def tester_wait(state: EngState) -> EngState:
        response = interrupt({"wait_for": request_id(state["task_id"], "tester", state["round"], "message")})
        delete(state, "tester", state.get("tester_id"))
        if response.get("success"):
            event(state, "progress", "tests passed", "tester", 90)
            return {"last_failure": None}
        result = response.get("result") or {}
        failure = result.get("output_tail") or response.get("error") or "tests failed"
        rnd = state["round"]
        if no_developer(state):
            return {"outcome": "failed", "last_failure": failure,
                    "error": f"tests fail and there is no developer to fix them (agent none): {last_lines(failure)}"}  # fmt: skip
        if rnd >= settings.engineering_max_attempts:
            return {"outcome": "failed", "last_failure": failure,
                    "error": f"tests still fail after {rnd} developer round(s): {last_lines(failure)}"}  # fmt: skip
        event(state, "progress", f"tests failed; back to the developer (round {rnd + 1})", "tester", 60,
              error=last_lines(failure))  # fmt: skip
        return {"last_failure": failure, "round": rnd + 1}

    # -- end --------------------------------------------------------------------------------

    def finalize(state: EngState) -> EngState:
        pr_url = None
        host = ports.repo_host
        if no_developer(state) and host is not None:
            # the tested commit is the tip of the base (the scaffold's, or what a person pushed)
            head = host.branch_head(state["repo_full_name"], state["branch"])
            state = {**state, "commit_sha": head or state.get("commit_sha")}
        elif host is not None and host.branch_head(state["repo_full_name"], state["branch"]) is None:
            # the developer changed nothing, so its branch was never pushed: the work is the base
            base = state.get("base_ref") or "main"
            state = {**state, "branch": base,
                     "commit_sha": host.branch_head(state["repo_full_name"], base) or state.get("commit_sha")}  # fmt: skip
        if (host is not None and getattr(host, "supports_pull_requests", False) and state.get("commit_sha")
                and not no_developer(state)):  # fmt: skip
            pr = host.open_pull_request(state["repo_full_name"], state["branch"], "main",
                                        f"{state['project_name']}: {state['spec'].strip().splitlines()[0][:60]}",
                                        state.get("developer_answer") or state["spec"])  # fmt: skip
            pr_url = pr.url
        result = EngineeringResult(
            request_id=state["task_id"], status="success", files_changed=state.get("files_changed") or [],
            commit_sha=state.get("commit_sha"), branch=state["branch"], pr_url=pr_url,
        )  # fmt: skip
        result_json = result.model_dump(mode="json")
        result_json["repo_url"] = state.get("repo_url")
        api.update_project(state["project_id"], status="active")
        api.complete_task(state["task_id"], result_json)
        where = pr_url or f"branch {state['branch']} of {state.get('repo_url')}"
        event(
            state,
            "completed",
            f"done: commit {(state.get('commit_sha') or '')[:10]} on {where}",
            "finalize",
            100,
        )
        return {"outcome": "completed", "pr_url": pr_url}

    def fail(state: EngState) -> EngState:
        if state.get("outcome") == "cancelled" or cancelled(state):
            return {"outcome": "cancelled"}
        error = state.get("error") or "engineering failed"
        result = EngineeringResult(request_id=state["task_id"], status="failed", error=error,
                                   files_changed=state.get("files_changed") or [], commit_sha=state.get("commit_sha"),
                                   branch=state.get("branch"))  # fmt: skip
        try:
            api.fail_task(state["task_id"], error, result.model_dump(mode="json"))
        finally:
            event(state, "failed", "engineering failed", "finalize", 100, error=error)
        return {"outcome": "failed"}

    def first_worker(state: EngState) -> str:
        return "tester_create" if no_developer(state) else "developer_create"

    def after_prepare(state: EngState) -> str:
        return first_worker(state) if state.get("repo_url") else "scaffold_request"

    def after_scaffold(state: EngState) -> str:
        outcome = state.get("outcome")
        if outcome == "cancelled":
            return END
        return "fail" if outcome == "failed" else first_worker(state)

    def after_tests(state: EngState) -> str:
        if state.get("outcome") == "failed":
            return "fail"
        return "developer_create" if state.get("last_failure") else "finalize"

    graph = StateGraph(EngState)
    for name, fn in [("prepare", prepare), ("scaffold_request", scaffold_request), ("scaffold_wait", scaffold_wait),
                     ("developer_create", developer_create), ("developer_created", developer_created),
                     ("developer_send", developer_send), ("developer_wait", developer_wait),
                     ("tester_create", tester_create), ("tester_created", tester_created),
                     ("tester_send", tester_send), ("tester_wait", tester_wait),
                     ("finalize", finalize), ("fail", fail)]:  # fmt: skip
        graph.add_node(name, fn)
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges(
        "prepare", after_prepare, ["developer_create", "tester_create", "scaffold_request"]
    )
    graph.add_edge("scaffold_request", "scaffold_wait")
    graph.add_conditional_edges(
        "scaffold_wait", after_scaffold, ["developer_create", "tester_create", "fail", END]
    )
    graph.add_conditional_edges(
        "developer_create", route_ok("developer_created"), ["developer_created", "fail", END]
    )
    graph.add_conditional_edges(
        "developer_created", route_ok("developer_send"), ["developer_send", "fail", END]
    )
    graph.add_edge("developer_send", "developer_wait")
    graph.add_conditional_edges("developer_wait", route_ok("tester_create"), ["tester_create", "fail", END])
    graph.add_conditional_edges("tester_create", route_ok("tester_created"), ["tester_created", "fail", END])
    graph.add_conditional_edges("tester_created", route_ok("tester_send"), ["tester_send", "fail", END])
    graph.add_edge("tester_send", "tester_wait")
    graph.add_conditional_edges("tester_wait", after_tests, ["developer_create", "finalize", "fail"])
    graph.add_edge("finalize", END)
    graph.add_edge("fail", END)
    return graph.compile(checkpointer=checkpointer)


def no_developer(state: EngState) -> bool:
    """`--agent none`: skip the developer; the template (or the base ref) alone is tested and delivered."""
    return state.get("agent") == NO_AGENT
