"""The engineering graph's steps, one method per node; `graph.py` wires them.

Each node reads the `EngState` and returns the keys it changes. A node that needs outside work
publishes a command and the *next* node waits with `interrupt({"wait_for": request_id})`; what the
answer means is decided by a plain method (`*_answered`) that tests call without a graph. Request ids
come from the task, the step and the round, so a replayed node re-sends the same command and the
receivers drop it: no second worker, no second scaffold.
"""

from __future__ import annotations

import time

from functions.engineering import instructions
from functions.engineering.base import Update, failed, pct
from functions.engineering.gates import GateNodes
from functions.engineering.state import (
    AgentRun,
    EngState,
    Role,
    ScaffoldAnswer,
    WorkerCreated,
    WorkerReply,
)
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
from shared.contracts.payloads import EngineeringTaskResult, WorkerContext
from shared.contracts.spend import BUDGET
from shared.contracts.workers import SendKind
from shared.graphs.driver import last_lines, request_id
from shared.graphs.gates import over_budget, spent_update
from shared.repos.port import MergeOutcome, RepoHostError

MERGE_INTO = "main"
WORKER_START_MARGIN_S = 300
"""What a worker's life spends outside its rounds (a Fargate start, the clone, queue hops), kept free when
deciding whether its next round still fits in it."""
"""Where tested work goes: deploys ship main's tip."""


class EngineeringNodes(GateNodes):
    """The engineering graph's nodes over their ports: the API, the queue, the repository host."""

    # -- prepare / scaffold -------------------------------------------------------------------------

    def prepare(self, state: EngState) -> Update:
        project = self.api.get_project(state.project_id)
        self.event(state, "progress", f"engineering {project.name}: preparing", "prepare", 5)
        return {
            "project_name": project.name,
            "project_status": str(project.status),
            "repo_url": project.repo_url,
            "repo_full_name": f"{self.settings.repo_owner}/{project.name}",
            # with no developer (agent "none") nothing is committed: the work is the base itself
            "branch": state.base if state.no_developer else f"orchestrator/{state.task_id[:8]}",
            "round": 1,
            "files_changed": [],
        }

    def scaffold_request(self, state: EngState) -> Update:
        project = self.api.get_project(state.project_id)
        self.api.update_project(project.id, status="scaffolding")
        message = ScaffolderMessage(
            request_id=request_id(state.task_id, "scaffold"),
            correlation_id=state.correlation_id,
            callback_stream=progress_stream(state.task_id),
            project_id=project.id,
            repo_full_name=state.repo_full_name,
            project_name=project.name,
            modules=project.modules,
            task_id=state.task_id,
            description=project.description,
        )
        self.queue.publish(SCAFFOLDER_QUEUE, message)
        self.event(state, "progress", "scaffolding the repository from the template", "scaffold", 10)
        return {"project_status": "scaffolding"}

    def scaffold_wait(self, state: EngState) -> Update:
        return self.scaffold_answered(state, ScaffoldAnswer.model_validate(self.wait_for(state, "scaffold")))

    def scaffold_answered(self, state: EngState, answer: ScaffoldAnswer) -> Update:
        if answer.status != "success":
            return failed(f"scaffold failed: {answer.error or 'unknown reason'}")
        self.event(state, "progress", f"repository ready: {answer.repo_url}", "scaffold", 15)
        return {"repo_url": answer.repo_url, "commit_sha": answer.commit_sha}

    # -- the task's worker --------------------------------------------------------------------------
    #
    # One worker serves a task's developer round and the tester's command after it (and a fix round
    # when its timeout still fits in the worker's life): one spawn, one clone. It is released (deleted)
    # when the next step is not its round: tests passed (the merge may wait minutes for checks), a gate
    # parks the task (no worker sits idle for a person's answer; the next round starts a new one), the
    # budget stopped it, the task failed or ended.

    def _create_worker(self, state: EngState, role: Role) -> None:
        is_dev = role == "developer"
        config = WorkerConfig(
            name=f"{role}-{state.project_name}-{state.round}",
            agent=state.agent if is_dev else "command",
            capabilities=["git", "python"],
            instructions=instructions.DEVELOPER if is_dev else instructions.TESTER,
            agent_options={} if is_dev else {"command": self.settings.test_command},
            env_vars=dict(self.worker_env_refs),
        )
        context = WorkerContext(
            task_id=state.task_id,
            repo_url=state.repo_url,
            branch=state.branch,
            step=role,
            base_branch=state.base,
            commit=is_dev,  # the developer's work is committed and pushed; the tester's run is not
        )
        command = CreateWorkerCommand(
            request_id=request_id(state.task_id, role, state.round, "create"),
            correlation_id=state.correlation_id,
            config=config,
            context=context.to_wire(),
        )
        self.queue.publish(WORKER_COMMANDS, command)

    def _created(self, state: EngState, role: Role, id_key: str) -> Update:
        answer = WorkerCreated.model_validate(self.wait_for(state, role, state.round, "create"))
        return self.worker_created(role, id_key, answer)

    @staticmethod
    def worker_created(role: Role, id_key: str, answer: WorkerCreated) -> Update:
        if not answer.success:
            return failed(f"could not start the {role} worker: {answer.error}")
        if id_key == "worker_id":  # the task's worker: open for its rounds until released
            return {id_key: answer.worker_id, "worker_open": True, "worker_busy_s": 0.0}
        return {id_key: answer.worker_id}

    def _send(
        self,
        state: EngState,
        role: Role,
        worker_id: str | None,
        message: str,
        timeout: int,
        kind: SendKind = "message",
    ) -> None:
        command = SendMessageCommand(
            request_id=request_id(state.task_id, role, state.round, "message"),
            correlation_id=state.correlation_id,
            worker_id=worker_id or "",
            message=message,
            timeout=timeout,
            kind=kind,
        )
        self.queue.publish(WORKER_COMMANDS, command)

    def _delete(self, state: EngState, role: Role, worker_id: str) -> None:
        """Stop a worker (a replay re-sends the same delete, which finds it stopped)."""
        command = DeleteWorkerCommand(
            request_id=request_id(state.task_id, role, state.round, "delete"),
            correlation_id=state.correlation_id,
            worker_id=worker_id,
        )
        self.queue.publish(WORKER_COMMANDS, command)

    def release(self, state: EngState, role: Role = "developer") -> Update:
        """The task's worker is stopped, if it is still open: the next round (if any) starts a new one."""
        if not (state.worker_open and state.worker_id):
            return {}
        self._delete(state, role, state.worker_id)
        return {"worker_open": False}

    def keeps_worker(self, state: EngState, busy_s: float, next_timeout_s: int) -> bool:
        """Whether the open worker can take a round of `next_timeout_s` after `busy_s` of rounds: its life
        (`worker_max_lifetime_s`, counted from its start) must hold the round and `WORKER_START_MARGIN_S`.
        Decided from the answers only, so a replayed step decides the same."""
        room = self.settings.worker_max_lifetime_s - WORKER_START_MARGIN_S
        return state.worker_open and bool(state.worker_id) and busy_s + next_timeout_s <= room

    def round_over(
        self, state: EngState, role: Role, reply: WorkerReply, next_timeout_s: int | None
    ) -> Update:
        """After a round's answer: keep the task's worker for the next round (`next_timeout_s`, None: no
        round of it comes next), or release it. A tester worker of its own ends here (as before issue 24,
        so does a developer worker of a checkpoint written then: `worker_open` False)."""
        if not state.worker_open:
            ended = state.tester_id if role == "tester" else state.worker_id
            if ended:
                self._delete(state, role, ended)
            return {}
        busy = state.worker_busy_s + (reply.result.duration_ms or 0) / 1000
        if next_timeout_s is not None and self.keeps_worker(state, busy, next_timeout_s):
            return {"worker_busy_s": busy}
        return self.release(state, role)

    def stopped_before_round(self, state: EngState) -> Update | None:
        """Before a round: the task ended outside the graph (cancelled) or the budget is spent; the open
        worker is released either way. None: the round goes on. One request answers both (the budget
        check carries the task's status; an older API without it is asked for the task as well)."""
        check = self.api.task_budget(state.task_id)
        if self.ended(state, said=check.task_status):
            return {"outcome": "cancelled", **self.release(state)}
        spent = spent_update(check)
        if spent:
            return {**spent, **self.release(state)}
        return None

    # -- developer ----------------------------------------------------------------------------------

    def developer_create(self, state: EngState) -> Update:
        """Start the round: on the task's open worker (its message goes at once), or on a new worker."""
        stop = self.stopped_before_round(state)
        if stop is not None:
            return stop
        note = f" (fix round {state.round})" if state.round > 1 else ""
        message = f"developer ({state.agent}) starting{note}"
        self.event(state, "progress", message, "developer", pct(20, state, 70))
        if state.worker_open:
            return self.developer_send(state)
        self._create_worker(state, "developer")
        return {}

    def developer_created(self, state: EngState) -> Update:
        """The worker is up: its message goes at once, in this step (a replay re-sends it under the same
        request id, which the API keeps once)."""
        update = self._created(state, "developer", "worker_id")
        if "outcome" not in update:
            self.developer_send(state.model_copy(update=update))
        return update

    def developer_send(self, state: EngState) -> Update:
        prompt = instructions.developer_prompt(
            state.spec, state.last_failure, state.round, state.merge_conflicts, state.guidance
        )
        self._send(state, "developer", state.worker_id, prompt, self.settings.developer_timeout_s)
        self.event(state, "progress", "developer at work", "developer", pct(25, state, 75))
        return {}

    def developer_wait(self, state: EngState) -> Update:
        """The developer's answer; the worker stays for the tester's command when the work is done."""
        reply = WorkerReply.model_validate(self.wait_for(state, "developer", state.round, "message"))
        update = self.developer_answered(state, reply)
        goes_on = "outcome" not in update and not update.get("review")
        worker = self.round_over(
            state, "developer", reply, self.settings.tester_timeout_s if goes_on else None
        )
        return {**update, **worker}

    def developer_answered(self, state: EngState, reply: WorkerReply) -> Update:
        """Done: on to the tester. Stopped at the budget: FAILED (reason budget). Blocked: a person
        reviews (human review). Any other failure: FAILED."""
        run: AgentRun = reply.result
        if not reply.success:
            why = reply.error or run.reason or "no reason given"
            if run.status == BUDGET:
                return over_budget(why)
            if run.status == "blocked":
                self.event(
                    state, "progress", "developer blocked: waiting for a person's review", "developer", 60
                )
                return {"review": f"The developer is blocked (round {state.round}): {why}"}
            return failed(f"developer {run.status or 'failed'}: {why}")
        message = f"developer done: {len(run.files_changed)} file(s) changed"
        self.event(state, "progress", message, "developer", pct(40, state, 80))
        return {
            "commit_sha": run.commit_sha or state.commit_sha,
            "files_changed": sorted(set(state.files_changed) | set(run.files_changed)),
            "developer_answer": reply.response,
            "merge_conflicts": [],  # a rebase round's conflicts are its own; a fix round after it has none
        }

    # -- tester -------------------------------------------------------------------------------------

    def tester_create(self, state: EngState) -> Update:
        """The tests run as a `command` message: on the developer's open worker, in the workspace it
        pushed from (no second worker, no second clone); without one (no developer), on a worker of its own."""
        stop = self.stopped_before_round(state)
        if stop is not None:
            return stop
        message = f"tester: running `{self.settings.test_command}`"
        self.event(state, "progress", message, "tester", pct(50, state, 85))
        if state.worker_open:
            self._send_tests(state, state.worker_id)
            return {}
        self._create_worker(state, "tester")
        return {}

    def tester_created(self, state: EngState) -> Update:
        update = self._created(state, "tester", "tester_id")
        if "outcome" not in update:
            self._send_tests(state, update["tester_id"])
        return update

    def _send_tests(self, state: EngState, worker_id: str | None) -> None:
        command, timeout = self.settings.test_command, self.settings.tester_timeout_s
        self._send(state, "tester", worker_id, command, timeout, kind="command")

    def tester_send(self, state: EngState) -> Update:
        """Only for a checkpoint written between a tester worker's creation and its message before the
        `*_created` steps sent it themselves: the old prompt to the old command worker."""
        command = f"run {self.settings.test_command}"
        self._send(state, "tester", state.tester_id, command, self.settings.tester_timeout_s)
        return {}

    def tester_wait(self, state: EngState) -> Update:
        """The tests' answer; the worker stays for a fix round (if its timeout fits), else it is released."""
        reply = WorkerReply.model_validate(self.wait_for(state, "tester", state.round, "message"))
        update = self.tester_answered(state, reply)
        fix_round = "outcome" not in update and not update.get("review") and bool(update.get("last_failure"))
        next_timeout = self.settings.developer_timeout_s if fix_round else None
        return {**update, **self.round_over(state, "tester", reply, next_timeout)}

    def tester_answered(self, state: EngState, reply: WorkerReply) -> Update:
        """Passed: on to finalize. Failed: another developer round, unless there is no developer
        (FAILED) or the rounds are used up (a person reviews). Stopped at the budget: FAILED."""
        if reply.success:
            self.event(state, "progress", "tests passed", "tester", 90)
            return {"last_failure": None}
        if reply.result.status == BUDGET:
            return over_budget(reply.error or reply.result.reason or "the tester's run was stopped")
        failure = reply.result.output_tail or reply.error or "tests failed"
        rnd = state.round
        if state.no_developer:
            error = f"tests fail and there is no developer to fix them (agent none): {last_lines(failure)}"
            return {**failed(error), "last_failure": failure}
        if rnd >= self.settings.engineering_max_attempts:
            # the fix rounds are used up: a person looks (and may guide another round) instead of FAILED
            review = (
                f"Tests still fail after {rnd} developer round(s). The last test output:\n\n{failure[-4000:]}"
            )
            message = f"tests still fail after {rnd} developer round(s): waiting for a person's review"
            self.event(state, "progress", message, "tester", 60, error=last_lines(failure))
            return {"last_failure": failure, "review": review}
        message = f"tests failed; back to the developer (round {rnd + 1})"
        self.event(state, "progress", message, "tester", 60, error=last_lines(failure))
        return {"last_failure": failure, "round": rnd + 1}

    # -- into main ----------------------------------------------------------------------------------

    def merge(self, state: EngState) -> Update:
        """The tested work goes into main: at once and atomically on the local host; on GitHub through
        its pull request, merged when its checks pass (looked at every `merge_poll_s` for at most
        `merge_checks_wait_s`). Nothing to merge without a developer, with `--no-merge`, or when the
        developer changed nothing. A replay merges nothing twice: a merged branch answers `merged`."""
        if self.ended(state):
            return {"outcome": "cancelled"}
        host = self.repo_host
        if host is None or state.no_developer or state.no_merge:
            return {}
        branch, commit_sha = self._delivered(state)
        if branch != state.branch or not commit_sha:
            return {}
        self.event(state, "progress", f"merging {branch} into {MERGE_INTO}", "merge", 93)
        message, pr_url = f"Merge {branch}: {_title(state.spec)}", None
        try:
            pr_url = self._pull_request(state, branch, commit_sha)
            outcome = host.merge(state.repo_full_name, branch, MERGE_INTO, message)
            deadline = time.monotonic() + self.settings.merge_checks_wait_s
            while outcome.status == "pending" and time.monotonic() < deadline:
                time.sleep(self.settings.merge_poll_s)
                outcome = host.merge(state.repo_full_name, branch, MERGE_INTO, message)
        except RepoHostError as exc:  # e.g. a review the branch's protection requires: a person's call
            left_open = f"; the pull request stays open: {pr_url}" if pr_url else ""
            return {
                "pr_url": pr_url,
                **failed(f"could not merge {branch} into {MERGE_INTO}: {exc}{left_open}"),
            }
        return {"pr_url": pr_url, **self.merge_answered(state, outcome, pr_url)}

    def merge_answered(self, state: EngState, outcome: MergeOutcome, pr_url: str | None = None) -> Update:
        """Merged: on to finalize. A conflict: one rebase round (a developer round told that main moved
        and where), then FAILED naming the files. Checks failed or still running: FAILED, PR left open."""
        if outcome.status == "merged":
            how = "fast-forward" if outcome.fast_forward else "already there" if outcome.already else "merge"
            message = f"merged into {MERGE_INTO} ({how}): {(outcome.sha or '')[:10]}"
            self.event(state, "progress", message, "merge", 95)
            return {"merge_commit": outcome.sha, "merge_conflicts": []}
        left_open = f"; the pull request stays open: {pr_url}" if pr_url else ""
        if outcome.status == "pending":
            wait = f"{self.settings.merge_checks_wait_s:g}"
            return failed(f"the pull request's checks still run after {wait}s ({outcome.detail}){left_open}")
        if outcome.status == "checks_failed":
            return failed(f"the pull request's checks failed ({outcome.detail}){left_open}")
        files = ", ".join(outcome.conflicts) or outcome.detail or "the host did not say which files"
        if state.merge_rounds >= 1:
            return failed(f"the work still conflicts with {MERGE_INTO} after a rebase round, in: {files}")
        message = f"{MERGE_INTO} moved and conflicts with the work in {files}: back to the developer"
        self.event(state, "progress", message, "merge", 60)
        return {
            "merge_conflicts": list(outcome.conflicts) or [files],
            "merge_rounds": state.merge_rounds + 1,
            "round": state.round + 1,
            "last_failure": None,
        }

    # -- the end ------------------------------------------------------------------------------------

    def _delivered(self, state: EngState) -> tuple[str, str | None]:
        """The branch and commit that hold the work, as the repository host sees them now."""
        host, repo = self.repo_host, state.repo_full_name
        if host is None:
            return state.branch, state.commit_sha
        if state.no_developer:
            # the tested commit is the tip of the base (the scaffold's, or what a person pushed)
            return state.branch, host.branch_head(repo, state.branch) or state.commit_sha
        if host.branch_head(repo, state.branch) is None:
            # the developer changed nothing, so its branch was never pushed: the work is the base
            return state.base, host.branch_head(repo, state.base) or state.commit_sha
        return state.branch, state.commit_sha

    def _pull_request(self, state: EngState, branch: str, commit_sha: str | None) -> str | None:
        host = self.repo_host
        if host is None or not host.supports_pull_requests or not commit_sha or state.no_developer:
            return None
        title = f"{state.project_name}: {_title(state.spec)}"
        pr = host.open_pull_request(
            state.repo_full_name, branch, "main", title, state.developer_answer or state.spec
        )
        return pr.url

    def finalize(self, state: EngState) -> Update:
        branch, commit_sha = self._delivered(state)
        # a merged pull request is closed: asking for it again would open none
        pr_url = state.pr_url or self._pull_request(state, branch, commit_sha)
        result = EngineeringTaskResult(
            request_id=state.task_id,
            status="success",
            files_changed=state.files_changed,
            commit_sha=commit_sha,
            branch=branch,
            pr_url=pr_url,
            repo_url=state.repo_url,
            merge_commit=state.merge_commit,
        )
        if state.project_status != "active":  # a request per task saved where it is active already
            self.api.update_project(state.project_id, status="active")
        self.api.complete_task(state.task_id, result.model_dump(mode="json"))
        where = pr_url or f"branch {branch} of {state.repo_url}"
        merged = f"; merged into {MERGE_INTO} at {state.merge_commit[:10]}" if state.merge_commit else ""
        if state.no_merge and not state.no_developer:
            merged = "; not merged (--no-merge)"
        done = f"done: commit {(commit_sha or '')[:10]} on {where}{merged}"
        self.event(state, "completed", done, "finalize", 100)
        return {"outcome": "completed", "pr_url": pr_url}

    def fail(self, state: EngState) -> Update:
        released = self.release(state)
        if state.outcome == "cancelled" or self.ended(state):
            return {"outcome": "cancelled", **released}
        error = state.error or "engineering failed"
        result = EngineeringResult(
            request_id=state.task_id,
            status="failed",
            error=error,
            files_changed=state.files_changed,
            commit_sha=state.commit_sha,
            branch=state.branch or None,
        )
        try:
            self.api.fail_task(
                state.task_id, error, result.model_dump(mode="json"), reason=state.failure_reason
            )
        finally:
            self.event(state, "failed", "engineering failed", "finalize", 100, error=error)
        return {"outcome": "failed", **released}


def _title(spec: str) -> str:
    lines = spec.strip().splitlines()
    return lines[0][:60] if lines else ""
