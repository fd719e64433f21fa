"""The worker wrapper (`orchestrator-worker --worker-id ID`): the process inside a worker.

It holds one credential, its own short-lived token (ORCH_WORKER_TOKEN, minted by the worker manager for
this worker only), and reaches everything through the API with it: it fetches its job, has the API
resolve the secret references its job names at the last moment, takes messages one at a time, runs
the coding agent on a real git checkout with a hard timeout, streams what the agent does as
ProgressEvents, commits and pushes, and answers each message once. Every resolved secret
value is redacted from anything it sends. With nothing to do for the idle timeout, it exits.

Every answer says what the run cost (agent, model, tokens, USD: `run_result`, the API's ledger reads it),
and a message's `budget_usd` is a hard limit: the agent is stopped once its running cost passes it, and
not started at all with nothing left (docs/agent-usage.md).

A worker whose context names a `session_key` (a person's Product Owner) belongs to a conversation that
outlives it: it works in a stable workspace path (the CLIs key sessions by working directory), puts the
conversation's saved session back before its first message, resumes it, and saves it after every
message (see `worker_image.sessions`; the archive travels through the API, or a URL it presigns for
exactly that object). A worker whose config sets `activity_every_s` reports that its
agent is still working that often (a chat's typing indicator).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.api_client import ApiClient, ApiError, ApiUnreachable, AuthError, GoneError
from shared.contracts.api import WorkerDetail, WorkerMessage
from shared.contracts.payloads import WorkerContext
from shared.observability import get_logger
from shared.secrets.redact import Redactor
from worker_image.agents.base import AgentResult
from worker_image.agents.process import not_started_at_budget
from worker_image.git_ops import GitError, checkout, commit_and_push, git, use_token

if TYPE_CHECKING:
    from shared.workers.wake import WakeListener

EVENT_FLUSH_S = 1.0
RESULT_RETRY_S = 900.0
WITHHELD_PREFIXES = ("AWS_", "ECS_", "ORCH_")
"""Never inherited by the agent: the task role's credentials and where to fetch them (AWS_ACCESS_KEY_ID,
AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE),
AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN, AWS_PROFILE...), the task metadata endpoints
(ECS_CONTAINER_METADATA_URI(_V4)) and the stack's settings, the wrapper's own token among them
(ORCH_WORKER_TOKEN). Compared case-insensitively."""
GIT_TOKEN_VAR = "GITHUB_TOKEN"  # noqa: S105 - the variable's name, not a token
"""The job's push token (`env_vars`, by reference): the wrapper clones and pushes with it; its agent never
gets it, since the agent commits nothing itself."""
WITHHELD_NAMES = frozenset({"SSH_AUTH_SOCK"})
"""A developer's ssh agent (embedded runs): the wrapper pushes with the job's token, the agent never does."""
_SECRETISH = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.IGNORECASE)
"""Secret-looking names (GITHUB_TOKEN, ANTHROPIC_API_KEY...): an agent's credentials reach it by reference,
through its job's `env_vars`, never by inheritance (the embedded runtime drops them from the wrapper too)."""
GRANTED_ORCH_VARS = ("ORCH_WORKER_ID",)
"""The only ORCH_ variable inherited: the agent's own worker id (not a credential; a Product Owner names its
worker with it). The others an agent legitimately gets are set for it: the job's `env_vars` (a Product
Owner's ORCH_API_URL and user-scope ORCH_API_KEY, resolved from its reference; the agents' own credentials
from ORCH_AGENT_SECRET_REFS), ORCH_TASK_FILE, and the `command` adapter's ORCH_AGENT_SESSION_DIR."""


def agent_environment(inherited: Mapping[str, str], granted: Mapping[str, str]) -> dict[str, str]:
    """The agent's whole environment: what it inherits minus every withheld variable, plus what its job
    grants (which wins). A deny-list, not an allow-list: the agent CLIs read many variables of their own
    (CLAUDE_*, CODEX_*, NODE_*, proxies, CA bundles, locale, XDG_*) whose names change between versions,
    while everything sensitive in a worker's container comes under the three withheld prefixes (ECS adds
    AWS_* and ECS_*, the stack sets ORCH_*) or has a secret-looking name."""

    def withheld(name: str) -> bool:
        upper = name.upper()
        if upper in GRANTED_ORCH_VARS:
            return False
        return upper.startswith(WITHHELD_PREFIXES) or upper in WITHHELD_NAMES or bool(_SECRETISH.search(name))

    return {**{k: v for k, v in inherited.items() if not withheld(k)}, **granted}


ORCHESTRATOR_SCRIPTS = Path(sys.executable).parent
"""Where this interpreter's console scripts are, `orchestrator` among them (the CLI a Product Owner agent
runs): a venv's bin/, which is not on PATH when the stack is started as `.venv/bin/orchestrator local up`."""


def with_orchestrator_on_path(env: Mapping[str, str]) -> dict[str, str]:
    """`env` whose PATH also finds the `orchestrator` console script; appended, so a project's own tools
    (python, pip) earlier on PATH still win."""
    path = env.get("PATH") or os.defpath
    if str(ORCHESTRATOR_SCRIPTS) in path.split(os.pathsep):
        return dict(env)
    return {**env, "PATH": f"{path}{os.pathsep}{ORCHESTRATOR_SCRIPTS}"}


COMMAND_STEP = "tester"
"""The step a `command` message's progress events name: commands are how the tester checks the work."""

SESSION_LOCK_WAIT_S = 120.0
"""How long a conversation's next worker waits for the one before to leave the shared workspace."""


EXIT_NO_CREDENTIALS = 78
"""The wrapper's exit code when it is started without ORCH_API_URL or ORCH_WORKER_TOKEN (EX_CONFIG)."""


class WrapperSettings(BaseSettings):
    """A worker's whole configuration: where the API is, its own token, and plain settings. Nothing here
    reaches the stack's secrets, database or session store; the token reaches only this worker's job."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore", validate_default=True)

    api_url: str | None = Field(default=None, description="Base URL of the API (ORCH_API_URL).")
    worker_token: SecretStr | None = Field(
        default=None, description="This worker's own API token (ORCH_WORKER_TOKEN), minted at its launch."
    )
    worker_idle_timeout_s: int = Field(default=600, gt=0)
    worker_wake: bool = Field(
        default=False,
        description="The API can wake this worker when a message is stored (ORCH_WORKER_WAKE, set by the "
        "embedded runtime): an idle wrapper then waits up to 5 s for the wake-up between empty asks, instead "
        "of asking after 0.1 s doubling to 1 s.",
    )
    worker_workspace_root: Path | None = None
    agent_command: str | None = None

    def missing(self) -> list[str]:
        """The variables a worker cannot start without, of those not set."""
        return [
            name
            for name, value in (("ORCH_API_URL", self.api_url), ("ORCH_WORKER_TOKEN", self.worker_token))
            if not value or (isinstance(value, SecretStr) and not value.get_secret_value())
        ]


def _transient(exc: Exception) -> bool:
    """Worth asking again: the API is unreachable, or it answered 5xx (an overloaded or restarting stack,
    a database busy for a moment); a 4xx is an answer. Under 50 workers at once a 5xx on a poll used to end
    the worker with exit 1 and its task with it."""
    return isinstance(exc, ApiUnreachable) or (isinstance(exc, ApiError) and exc.status >= 500)


MODEL_CHARS = 128
"""The longest model name a result carries (the ledger's column)."""


def run_result(agent: str, outcome: AgentResult, budget_note: str | None) -> dict[str, Any]:
    """The result dict a message's answer carries (SendMessageResponse.result; the API records the cost
    ledger from it): the run's verdict, usage and cost, the agent and model; the git fields are filled in
    once the work is pushed. A stop at the budget names the budget (`budget_note`) in its reason."""
    reason = outcome.reason
    if outcome.status == "budget" and budget_note:
        reason = f"{reason} ({budget_note})"
    return {
        "status": outcome.status,
        "session_id": outcome.session_id,
        "agent": agent,
        "model": outcome.model[:MODEL_CHARS] if outcome.model else None,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "cache_tokens": outcome.cache_tokens,
        "cost_usd": outcome.cost_usd,
        "duration_ms": outcome.duration_ms,
        "cpu_s": None if outcome.cpu_s is None else round(outcome.cpu_s, 3),
        "exit_code": outcome.exit_code,
        "reason": reason,
        "commit_sha": None,
        "branch": None,
        "files_changed": [],
    }


class Wrapper:
    def __init__(self, api: ApiClient, worker_id: str, settings: WrapperSettings) -> None:
        self.api = api
        self.worker_id = worker_id
        self.settings = settings
        self.logger = get_logger()
        self.redactor = Redactor()
        self.session_id: str | None = None
        root = Path(settings.worker_workspace_root or tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        self.workspace = Path(tempfile.mkdtemp(prefix=f"orchestrator-{worker_id}-", dir=root))
        self.detail: WorkerDetail | None = None
        from worker_image.agents.sandbox import AgentSandbox

        self.sandbox = AgentSandbox.from_settings()
        self.agent_env: dict[str, str] = {}
        self.git_token: str | None = None
        self.session_key: str | None = None
        self._session_lock: IO[bytes] | None = None
        self._unsaved: tuple[Any, dict[str, str]] | None = None
        self._fresh_checkout = False
        """The workspace is the clone `load_job` just made, which no message has run on yet."""

    # -- job ---------------------------------------------------------------------------

    @property
    def context(self) -> WorkerContext:
        assert self.detail is not None
        return self.detail.typed_context()

    def _until_reachable(self, call: Any, what: str) -> Any:
        """A worker may start while its stack restarts (workers outlive it): wait for the API rather
        than die with the job untouched."""
        deadline = time.monotonic() + RESULT_RETRY_S
        delay = 0.5
        while True:
            try:
                return call()
            except (ApiUnreachable, ApiError) as exc:
                if not _transient(exc) or time.monotonic() > deadline:
                    raise
                self.logger.warning(f"API unreachable while {what}; retrying", extra={"delay_s": delay})
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def load_job(self) -> None:
        self.detail = self._until_reachable(lambda: self.api.get_worker(self.worker_id), "loading the job")
        env_vars: dict[str, str] = dict(self.detail.config.get("env_vars") or {})
        env_vars.update(self._resolve_secrets(env_vars))
        self.git_token = env_vars.pop(GIT_TOKEN_VAR, None)
        self.agent_env = env_vars
        self.session_key = self.context.session_key
        if self.session_key:
            self._enter_session_workspace(self.session_key)
        self._checkout()
        self._fresh_checkout = True
        if self.session_key:
            self._restore_session(self.session_key)
        if self.detail.status != "RUNNING":  # the manager may have said so already, having launched it
            self._until_reachable(
                lambda: self.api.update_worker(self.worker_id, "RUNNING"), "reporting RUNNING"
            )

    def _resolve_secrets(self, env_vars: Mapping[str, str]) -> dict[str, str]:
        """The values of the job's `secret://` references, resolved by the API (which lets a worker token
        resolve exactly the references its own job names) and redacted from everything the worker sends.
        A reference outside the worker rule is refused here first, with the variable it was meant for."""
        from shared.secrets.scope import worker_reference_allowed

        refs = {name: str(value) for name, value in env_vars.items() if str(value).startswith("secret://")}
        if not refs:
            return {}
        context = self.context
        po_user = context.user_id if context.role == "product_owner" else None
        for name, ref in refs.items():
            if not worker_reference_allowed(ref, po_user):
                raise PermissionError(f"secret reference for {name} is missing or not this worker's to use")
        try:
            values = self._until_reachable(
                lambda: self.api.resolve_worker_secrets(self.worker_id, sorted(set(refs.values()))),
                "resolving secrets",
            )
        except AuthError as exc:
            raise PermissionError(f"the API refused this worker's secret references: {exc}") from exc
        resolved: dict[str, str] = {}
        for name, ref in refs.items():
            if ref not in values:
                raise PermissionError(f"secret reference for {name} was not resolved")
            self.redactor.add(values[ref])
            resolved[name] = values[ref]
        return resolved

    def _checkout(self) -> None:
        """Clone before any message: files sent to the worker land inside the checkout."""
        context = self.context
        if context.repo_url:
            use_token(context.repo_url, self.git_token)
            checkout(
                context.repo_url,
                self.workspace,
                context.branch or f"orchestrator/{self.worker_id}",
                context.base_branch or "main",
            )
        else:
            self.workspace.mkdir(parents=True, exist_ok=True)

    # -- a conversation's session ------------------------------------------------------

    def _enter_session_workspace(self, key: str) -> None:
        """The same path for every worker of a conversation, held under a lock: a worker still leaving
        (saving, cleaning up) must not share it with the next one."""
        root = self.workspace.parent
        name = "orchestrator-session-" + re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")
        lock = open(root / f"{name}.lock", "ab")
        deadline = time.monotonic() + SESSION_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    self.logger.warning("session workspace busy; working without the saved session")
                    self.session_key = None
                    return
                time.sleep(0.2)
        self._session_lock = lock
        shutil.rmtree(self.workspace, ignore_errors=True)
        self.workspace = root / name
        self.workspace.mkdir(parents=True, exist_ok=True)

    def _adapter(self) -> Any:
        from worker_image.agents import get_adapter

        assert self.detail is not None
        return get_adapter(self.detail.agent, self._agent_settings(), env=self._machine_agents)

    @functools.cached_property
    def _machine_agents(self) -> Any:
        """Where this machine's agent CLIs are (`AgentEnvironment`), read once: the worker's environment is
        fixed at its start, and every read of a settings class costs a few milliseconds of pydantic-settings."""
        from worker_image.agents.config import AgentEnvironment

        return AgentEnvironment()

    def _agent_process_env(self) -> dict[str, str]:
        """See `agent_environment`: no cloud credentials, no orchestrator key but the job's own; and the
        `orchestrator` CLI on PATH (see `with_orchestrator_on_path`)."""
        env = with_orchestrator_on_path(
            agent_environment(
                os.environ, {**self.agent_env, "ORCH_TASK_FILE": str(self.workspace / "TASK.md")}
            )
        )
        return self.sandbox.environment(env, self.workspace)

    def _restore_session(self, key: str) -> None:
        """The conversation's saved session, put back; without one (or with a bad one) a new session
        starts, which loses memory but never the message."""
        from worker_image.sessions import SessionArchiveError, unpack

        try:
            data = self.api.load_worker_session(self.worker_id)
            if data is None:
                self.logger.info("no saved session; starting a new one", extra={"session_key": key})
                return
            adapter = self._adapter()
            env = self._agent_process_env()
            restored = unpack(data, adapter.name, lambda sid: adapter.session_files(self.workspace, env, sid))
        except SessionArchiveError as exc:
            self.logger.warning(f"saved session not usable: {exc}", extra={"session_key": key})
            return
        except Exception as exc:
            self.logger.warning(
                f"saved session not loaded: {type(exc).__name__}: {exc}", extra={"session_key": key}
            )
            return
        self.session_id = restored.session_id
        self.logger.info(
            "session restored",
            extra={"session_key": key, "files": restored.files, "session_id": restored.session_id},
        )

    def _save_session(self) -> None:
        """The session of the last run, once its answer is out and before the next message: a worker may
        end (idle, stopped) after any answer. Nothing to do when it is saved already."""
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is None or not self.session_key:
            return
        adapter, env = unsaved
        from worker_image.sessions import pack

        try:
            data = pack(
                adapter.name, self.session_id, adapter.session_files(self.workspace, env, self.session_id)
            )
            if data is not None:
                self.api.save_worker_session(self.worker_id, data)
                self.logger.info("session saved", extra={"session_key": self.session_key, "bytes": len(data)})
        except Exception as exc:
            self.logger.warning(
                f"session not saved: {type(exc).__name__}: {exc}", extra={"session_key": self.session_key}
            )

    def _leave_session(self) -> None:
        """The local copy of the session goes (the store has it), and the workspace with its lock."""
        if self._session_lock is None:
            return
        from worker_image.sessions import clear

        self._save_session()  # stopped between an answer and its save
        try:
            if self.detail is not None:
                clear(
                    self._adapter().session_files(self.workspace, self._agent_process_env(), self.session_id)
                )
        except Exception as exc:
            self.logger.warning(f"local session copy not removed: {type(exc).__name__}: {exc}")
        self._remove_workspace()
        self._session_lock.close()
        self._session_lock = None

    @contextlib.contextmanager
    def _activity(self, message_id: int) -> Iterator[None]:
        """While the agent works: an activity report now and every `activity_every_s` (config), so a
        chat shows "typing…" for as long as the work lasts. A lost report costs nothing."""
        assert self.detail is not None
        every = self.detail.config.get("activity_every_s")
        if not every:
            yield
            return
        stop = threading.Event()

        def report() -> None:
            while True:
                try:
                    self.api.worker_message_activity(message_id)
                except Exception as exc:
                    self.logger.debug(f"activity not reported: {type(exc).__name__}")
                if stop.wait(float(every)):
                    return

        thread = threading.Thread(target=report, name=f"activity-{message_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # -- loop --------------------------------------------------------------------------

    def serve(self) -> int:
        from shared.workers.wake import WOKEN_PAUSE_S, WakeListener

        # listening before the job loads: a message stored meanwhile ends the first wait
        wakes = WakeListener(self.worker_id) if self.settings.worker_wake else None
        try:
            if wakes is not None and wakes.listening:
                return self._serve(wakes, WOKEN_PAUSE_S, WOKEN_PAUSE_S)
            return self._serve(None, 0.1, 1.0)
        finally:
            if wakes is not None:
                wakes.close()

    def _serve(self, wakes: WakeListener | None, first_pause_s: float, longest_pause_s: float) -> int:
        """Ask for the next message and handle it; between empty asks pause `first_pause_s`, doubling up to
        `longest_pause_s`. A wrapper the API can wake waits the longest pause at once: the wake-up ends
        the wait when a message is stored, and the timed ask is only the fallback.

        Once one of its asks has come back empty, every message stored after it announces itself (one
        wake-up each), so after an answer such a wrapper asks at once only for announced messages it has
        not taken yet, and otherwise waits for the next wake-up (one that came while it worked ends the
        wait at once) rather than asking for nothing. Until then, messages stored before it listened may
        be waiting unannounced, and it asks."""
        self.load_job()
        idle_since = time.monotonic()
        delay = first_pause_s
        caught_up = False
        announced = 0
        """Messages announced since the last empty ask and not taken since (while caught up)."""
        while True:
            if wakes is not None:
                announced += wakes.drain()
            try:
                message = self.api.next_worker_message(self.worker_id)
            except GoneError:
                self.logger.info("worker ended by the manager; exiting")
                return 0
            except (ApiUnreachable, ApiError) as exc:
                if not _transient(exc):
                    raise
                message = None  # asked again after the idle wait
            else:
                if message is None and wakes is not None:
                    # nothing waits: from now on, each message announces itself
                    caught_up, announced = True, 0
            if message is None:
                if time.monotonic() - idle_since > self.settings.worker_idle_timeout_s:
                    self.logger.info(
                        "idle timeout; exiting", extra={"idle_s": self.settings.worker_idle_timeout_s}
                    )
                    return 0
                if wakes is not None:
                    wakes.wait(delay)
                else:
                    time.sleep(delay)
                delay = min(delay * 2, longest_pause_s)
                continue
            delay = first_pause_s
            self.logger.info("message taken", extra={"message_id": message.id, "kind": message.kind})
            self.handle(message)
            self.logger.info("message answered", extra={"message_id": message.id})
            idle_since = time.monotonic()
            announced = max(0, announced - 1)
            if wakes is not None and caught_up and not announced:
                wakes.wait(first_pause_s)

    def handle(self, message: WorkerMessage) -> None:
        try:
            if message.kind == "file":
                self._write_file(message)
                self._report(message.id, True, f"wrote {message.path}", None, {"status": "success"})
                return
            success, answer, error, result = self.run_message(message)
        except Exception as exc:
            self.logger.exception("message failed", extra={"message_id": message.id})
            success, answer, error = False, None, self.redactor.redact(f"{type(exc).__name__}: {exc}")
            result = {"status": "failed", "reason": error}
        self._report(message.id, success, answer, error, self.redactor.redact_obj(result))
        self._save_session()

    def _report(
        self, message_id: int, success: bool, answer: str | None, error: str | None, result: dict[str, Any]
    ) -> None:
        """The answer must arrive: retry while the API is unreachable (e.g. the stack restarts)."""
        self._until_reachable(
            lambda: self.api.worker_message_result(
                message_id, success, response=answer, error=error, result=result
            ),
            "reporting an answer",
        )

    def _write_file(self, message: WorkerMessage) -> None:
        target = (self.workspace / (message.path or "")).resolve()
        if not str(target).startswith(str(self.workspace.resolve()) + os.sep):
            raise ValueError(f"path {message.path!r} leaves the workspace")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(message.body, encoding="utf-8")

    # -- one message -------------------------------------------------------------------

    def _prepare_workspace(self, message: WorkerMessage, adapter: Any) -> None:
        """The checkout a message runs on. The clone `load_job` just made is current: the first message
        takes it as it is (no fetch). A later prompt refreshes it from the remote (a fix round continues
        the pushed branch). A command runs on the work as the previous round left it, which is what that
        round pushed (everything changed is committed), minus what git ignores (`clean -fdx`): the same
        tree a fresh clone of the branch would give."""
        fresh, self._fresh_checkout = self._fresh_checkout, False
        if message.kind == "command":
            if self.context.repo_url and not fresh:
                git(self.workspace, "clean", "-qfdx")
            return
        if not fresh:
            self._checkout()
        assert self.detail is not None
        instructions = self.detail.config.get("instructions") or ""
        if instructions:
            (self.workspace / adapter.instructions_file).write_text(instructions, encoding="utf-8")
        (self.workspace / "TASK.md").write_text(message.body, encoding="utf-8")

    def _agent_settings(self) -> dict[str, Any]:
        """Per-job agent options (model, command, ...) from the worker's config; the machine's
        ORCH_AGENT_COMMAND applies when the job names no command."""
        assert self.detail is not None
        settings: dict[str, Any] = dict(self.detail.config.get("agent_options") or {})
        if self.detail.agent == "command" and not settings.get("command") and self.settings.agent_command:
            settings["command"] = self.settings.agent_command
        if self.detail.agent != "command":
            settings.pop("command", None)
        settings["allowed_commands"] = list(self.detail.config.get("allowed_commands") or [])
        return settings

    def run_message(self, message: WorkerMessage) -> tuple[bool, str | None, str | None, dict[str, Any]]:
        assert self.detail is not None
        is_command = message.kind == "command"
        adapter = self._command_adapter(message.body) if is_command else self._adapter()
        if message.budget_usd is not None and message.budget_usd <= 0:
            # nothing left to spend: the agent is not started (nor the checkout refreshed for it)
            refused = run_result(adapter.name, not_started_at_budget(message.budget_usd), message.budget_note)
            return False, None, refused["reason"], refused
        self._prepare_workspace(message, adapter)
        on_event, flush = self._event_sink(message, COMMAND_STEP if is_command else None)
        env = self._agent_process_env()
        budget = message.budget_usd
        if is_command:
            return self._run_command(message, adapter, env, on_event, flush)
        with self._activity(message.id):
            outcome = self._run_agent(adapter, message, env, on_event, self.session_id, budget)
            if self.session_id and adapter.session_lost(outcome):
                # the saved session is gone or unreadable: answer from a new session rather than fail
                self.logger.warning(
                    "session to resume not found; starting a new one", extra={"session_id": self.session_id}
                )
                self.session_id = None
                left = None if budget is None else budget - (outcome.cost_usd or 0.0)
                outcome = self._run_agent(adapter, message, env, on_event, None, left)
        flush()
        self.session_id = outcome.session_id or self.session_id
        self._unsaved = (adapter, env)  # saved once the answer is out: the person does not wait for it
        result = run_result(adapter.name, outcome, message.budget_note)
        if outcome.status != "success":
            result["output_tail"] = outcome.output_tail
        context = self.context
        if context.repo_url and outcome.status == "success" and context.commit:
            branch = context.branch or f"orchestrator/{self.worker_id}"
            title = (message.body.strip().splitlines() or ["work"])[0][:72]
            try:
                sha, changed = commit_and_push(self.workspace, branch, f"{context.step or 'worker'}: {title}")
            except GitError as exc:
                result.update(status="failed", reason=str(exc))
                return False, outcome.final_answer, str(exc), result
            result.update(commit_sha=sha, branch=branch, files_changed=changed)
        success = outcome.status == "success"
        return (
            success,
            outcome.final_answer,
            None if success else (result["reason"] or outcome.status),
            result,
        )

    def _event_sink(self, message: WorkerMessage, step: str | None) -> tuple[Any, Any]:
        """What the agent's events go through: (on_event, flush). Text, tool and error events become the
        task's progress events, sent in batches (every EVENT_FLUSH_S, or 50 at a time)."""
        task_id = self.detail.task_id if self.detail is not None else None
        step = step or self.context.step or "worker"
        pending: list[dict[str, Any]] = []
        last_flush = [time.monotonic()]

        def flush() -> None:
            if pending and task_id:
                try:
                    self.api.append_events(task_id, list(pending))
                except Exception:
                    self.logger.exception("could not send progress events")
            pending.clear()
            last_flush[0] = time.monotonic()

        def on_event(event: Any) -> None:
            if event.kind in ("text", "tool", "error") and event.text.strip():
                label = {"tool": "tool: ", "error": "error: "}.get(event.kind, "")
                pending.append(
                    {
                        "type": "progress",
                        "message": (label + event.text.strip())[:2000],
                        "current_step": step,
                        "correlation_id": message.correlation_id,
                    }
                )
            if time.monotonic() - last_flush[0] > EVENT_FLUSH_S or len(pending) >= 50:
                flush()

        return on_event, flush

    def _run_agent(
        self,
        adapter: Any,
        message: WorkerMessage,
        env: dict[str, str],
        on_event: Any,
        session_id: str | None,
        budget_usd: float | None,
    ) -> AgentResult:
        from worker_image.agents import run_agent

        return run_agent(
            adapter,
            message.body,
            self.workspace,
            float(message.timeout_s),
            on_event,
            session_id=session_id,
            env=env,
            redact=self.redactor.redact,
            sandbox=self.sandbox,
            budget_usd=budget_usd,
        )

    def _command_adapter(self, command: str) -> Any:
        """A `command` message's runner: the command line through the `command` adapter (its stdin is the
        command itself), whatever agent the worker has; no commands cut from its PATH."""
        from worker_image.agents import get_adapter

        return get_adapter("command", {"command": command}, env=self._machine_agents)

    def _run_command(
        self, message: WorkerMessage, adapter: Any, env: dict[str, str], on_event: Any, flush: Any
    ) -> tuple[bool, str | None, str | None, dict[str, Any]]:
        """Run a `command` message: no session (the conversation's agent is not involved), nothing
        committed (a command checks the work, it does not make it)."""
        with self._activity(message.id):
            outcome = self._run_agent(adapter, message, env, on_event, None, message.budget_usd)
        flush()
        result = run_result(adapter.name, outcome, message.budget_note)
        success = outcome.status == "success"
        if not success:
            result["output_tail"] = outcome.output_tail
        return (
            success,
            outcome.final_answer,
            None if success else (result["reason"] or outcome.status),
            result,
        )

    def _remove_workspace(self) -> None:
        """The work tree and, when the agent ran as another user, the HOME made for it beside it."""
        shutil.rmtree(self.workspace, ignore_errors=True)
        shutil.rmtree(self.workspace.parent / f"{self.workspace.name}.home", ignore_errors=True)

    def cleanup(self) -> None:
        self._leave_session()
        self._remove_workspace()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator-worker", description=__doc__)
    parser.add_argument("--worker-id", default=os.environ.get("ORCH_WORKER_ID"), required=False)
    args = parser.parse_args(argv)
    if not args.worker_id:
        parser.error("--worker-id (or ORCH_WORKER_ID) is required")
    settings = WrapperSettings()
    missing = settings.missing()
    if missing or settings.api_url is None or settings.worker_token is None:
        print(
            f"orchestrator-worker: {' and '.join(missing)} not set: a worker acts only with the token its "
            "worker manager minted for it (it is started by the stack, not by hand)",
            file=sys.stderr,
        )
        return EXIT_NO_CREDENTIALS
    token = settings.worker_token.get_secret_value()
    os.environ.pop("ORCH_WORKER_TOKEN", None)  # no child process (git, the agent) inherits it
    api = ApiClient(settings.api_url, token)
    wrapper = Wrapper(api, args.worker_id, settings)
    wrapper.redactor.add(token)
    # A stop (local SIGTERM to the group, ECS StopTask) still cleans up: the agent's process group, the
    # workspace, a conversation's local session copy and its lock. Its session was saved after the last answer.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(128 + signal.SIGTERM))
    try:
        return wrapper.serve()
    finally:
        wrapper.cleanup()
        api.close()


if __name__ == "__main__":
    sys.exit(main())
