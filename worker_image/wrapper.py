"""The worker wrapper (`orchestrator-worker --worker-id ID`): the process inside a worker.

It fetches its job from the API (only the id travels in RunTask overrides), resolves secret
references with its own credentials at the last moment, takes messages one at a time, runs
the coding agent on a real git checkout with a hard timeout, streams what the agent does as
ProgressEvents, commits and pushes, and answers each message once. Every resolved secret
value is redacted from anything it sends. With nothing to do for the idle timeout, it exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from shared.api_client import ApiClient, ApiUnreachable, GoneError
from shared.contracts.api import WorkerDetail, WorkerMessage
from shared.observability import get_logger
from shared.secrets.redact import Redactor
from shared.service_client import ServiceApiSettings, build_service_client
from worker_image.git_ops import GitError, checkout, commit_and_push, use_token

EVENT_FLUSH_S = 1.0
RESULT_RETRY_S = 900.0
SERVICE_CREDENTIAL_VARS = ("ORCH_SERVICE_API_KEY_REF", "ORCH_API_KEY")
"""The wrapper's own API credentials: never inherited by the agent, which gets only its job's `env_vars`
(e.g. a Product Owner's user-scope ORCH_API_KEY, resolved from its reference)."""


class WrapperSettings(ServiceApiSettings):
    worker_idle_timeout_s: int = Field(default=600, gt=0)
    worker_workspace_root: Path | None = None
    agent_command: str | None = None


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
        self.agent_env: dict[str, str] = {}

    # -- job ---------------------------------------------------------------------------

    @property
    def context(self) -> dict[str, str]:
        assert self.detail is not None
        return {k: str(v) for k, v in (self.detail.config.get("context") or {}).items()}

    def _until_reachable(self, call: Any, what: str) -> Any:
        """A worker may start while its stack restarts (workers outlive it): wait for the API rather
        than die with the job untouched."""
        deadline = time.monotonic() + RESULT_RETRY_S
        delay = 0.5
        while True:
            try:
                return call()
            except ApiUnreachable:
                if time.monotonic() > deadline:
                    raise
                self.logger.warning(f"API unreachable while {what}; retrying", extra={"delay_s": delay})
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def load_job(self) -> None:
        self.detail = self._until_reachable(lambda: self.api.get_worker(self.worker_id), "loading the job")
        env_vars: dict[str, str] = dict(self.detail.config.get("env_vars") or {})
        if any(str(v).startswith("secret://") for v in env_vars.values()):
            from shared.secrets import build_secrets

            secrets = build_secrets(self.settings, self.settings)
            for name, value in env_vars.items():
                if str(value).startswith("secret://"):
                    resolved = secrets.get(str(value))
                    self.redactor.add(resolved)
                    env_vars[name] = resolved
        self.agent_env = env_vars
        self._checkout()
        self._until_reachable(lambda: self.api.update_worker(self.worker_id, "RUNNING"), "reporting RUNNING")

    def _checkout(self) -> None:
        """Clone before any message: files sent to the worker land inside the checkout."""
        repo_url = self.context.get("repo_url")
        if repo_url:
            use_token(repo_url, self.agent_env.get("GITHUB_TOKEN"))
            checkout(repo_url, self.workspace, self.context.get("branch") or f"orchestrator/{self.worker_id}",
                     self.context.get("base_branch") or "main")  # fmt: skip
        else:
            self.workspace.mkdir(parents=True, exist_ok=True)

    # -- loop --------------------------------------------------------------------------

    def serve(self) -> int:
        self.load_job()
        idle_since = time.monotonic()
        delay = 0.1
        while True:
            try:
                message = self.api.next_worker_message(self.worker_id)
            except GoneError:
                self.logger.info("worker ended by the manager; exiting")
                return 0
            except ApiUnreachable:
                message = None
            if message is None:
                if time.monotonic() - idle_since > self.settings.worker_idle_timeout_s:
                    self.logger.info(
                        "idle timeout; exiting", extra={"idle_s": self.settings.worker_idle_timeout_s}
                    )
                    return 0
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.1
            self.logger.info("message taken", extra={"message_id": message.id, "kind": message.kind})
            self.handle(message)
            self.logger.info("message answered", extra={"message_id": message.id})
            idle_since = time.monotonic()

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

    def _report(self, message_id: int, success: bool, answer: str | None, error: str | None,
                result: dict[str, Any]) -> None:  # fmt: skip
        """The answer must arrive: retry while the API is unreachable (e.g. the stack restarts)."""
        deadline = time.monotonic() + RESULT_RETRY_S
        delay = 0.5
        while True:
            try:
                self.api.worker_message_result(
                    message_id, success, response=answer, error=error, result=result
                )
                return
            except ApiUnreachable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _write_file(self, message: WorkerMessage) -> None:
        target = (self.workspace / (message.path or "")).resolve()
        if not str(target).startswith(str(self.workspace.resolve()) + os.sep):
            raise ValueError(f"path {message.path!r} leaves the workspace")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(message.body, encoding="utf-8")

    # -- one message -------------------------------------------------------------------

    def _prepare_workspace(self, prompt: str) -> None:
        self._checkout()
        assert self.detail is not None
        from worker_image.agents import get_adapter

        adapter = get_adapter(self.detail.agent, self._agent_settings())
        instructions = self.detail.config.get("instructions") or ""
        if instructions:
            (self.workspace / adapter.instructions_file).write_text(instructions, encoding="utf-8")
        (self.workspace / "TASK.md").write_text(prompt, encoding="utf-8")

    def _agent_settings(self) -> dict[str, Any]:
        """Per-job agent options (model, command, ...) from the worker's config; the machine's
        ORCH_AGENT_COMMAND applies when the job names no command."""
        assert self.detail is not None
        settings: dict[str, Any] = dict(self.detail.config.get("agent_options") or {})
        if self.detail.agent == "command" and not settings.get("command") and self.settings.agent_command:
            settings["command"] = self.settings.agent_command
        if self.detail.agent != "command":
            settings.pop("command", None)
        return settings

    def run_message(self, message: WorkerMessage) -> tuple[bool, str | None, str | None, dict[str, Any]]:
        from worker_image.agents import get_adapter, run_agent

        assert self.detail is not None
        self._prepare_workspace(message.body)
        adapter = get_adapter(self.detail.agent, self._agent_settings())
        task_id = self.detail.task_id
        step = self.context.get("step") or "worker"
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
                pending.append({"type": "progress", "message": (label + event.text.strip())[:2000],
                                "current_step": step, "correlation_id": message.correlation_id})  # fmt: skip
            if time.monotonic() - last_flush[0] > EVENT_FLUSH_S or len(pending) >= 50:
                flush()

        inherited = {k: v for k, v in os.environ.items() if k not in SERVICE_CREDENTIAL_VARS}
        env = {**inherited, **self.agent_env, "ORCH_TASK_FILE": str(self.workspace / "TASK.md")}
        outcome = run_agent(adapter, message.body, self.workspace, float(message.timeout_s), on_event,
                            session_id=self.session_id, env=env, redact=self.redactor.redact)  # fmt: skip
        flush()
        self.session_id = outcome.session_id or self.session_id
        result: dict[str, Any] = {
            "status": outcome.status,
            "session_id": outcome.session_id,
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
            "cost_usd": outcome.cost_usd,
            "duration_ms": outcome.duration_ms,
            "exit_code": outcome.exit_code,
            "reason": outcome.reason,
            "commit_sha": None,
            "branch": None,
            "files_changed": [],
        }
        if outcome.status != "success":
            result["output_tail"] = outcome.output_tail
        if (
            self.context.get("repo_url")
            and outcome.status == "success"
            and self.context.get("commit") != "false"
        ):
            branch = self.context.get("branch") or f"orchestrator/{self.worker_id}"
            title = (message.body.strip().splitlines() or ["work"])[0][:72]
            try:
                sha, changed = commit_and_push(self.workspace, branch, f"{step}: {title}")
            except GitError as exc:
                result.update(status="failed", reason=str(exc))
                return False, outcome.final_answer, str(exc), result
            result.update(commit_sha=sha, branch=branch, files_changed=changed)
        success = outcome.status == "success"
        return success, outcome.final_answer, None if success else (outcome.reason or outcome.status), result

    def cleanup(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator-worker", description=__doc__)
    parser.add_argument("--worker-id", default=os.environ.get("ORCH_WORKER_ID"), required=False)
    args = parser.parse_args(argv)
    if not args.worker_id:
        parser.error("--worker-id (or ORCH_WORKER_ID) is required")
    settings = WrapperSettings()
    api = build_service_client(settings)
    wrapper = Wrapper(api, args.worker_id, settings)
    try:
        return wrapper.serve()
    finally:
        wrapper.cleanup()
        api.close()


if __name__ == "__main__":
    sys.exit(main())
