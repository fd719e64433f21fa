"""Where an Ansible job runs: a local subprocess of the runner (embedded) or a Fargate task of the
Ansible runner image (AWS). Both run `python -m worker_image.ansible_runner ... --publish`: the runner
publishes its own result, so the launcher only has to make sure that a job runs once and that a
runner which dies without a word still produces a failed result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from shared.constants import ANSIBLE_STARTED_BY as STARTED_BY
from shared.observability import get_logger
from shared.queues.port import QueuePort
from worker_image.ansible_runner.job import RunnerJob, RunnerOutcome
from worker_image.ansible_runner.results import result_for, result_queue
from worker_image.ansible_runner.runner import answered_without_a_run

JOB_ENV = "ORCH_ANSIBLE_JOB"


def job_key(request_id: str) -> str:
    return hashlib.sha256(request_id.encode()).hexdigest()[:32]


def publish_failure(queue: QueuePort, job: RunnerJob, error: str, exit_code: int | None = None) -> None:
    outcome = RunnerOutcome(
        request_id=job.request_id,
        kind=job.kind,
        status="failed",
        error=error,
        exit_code=exit_code,
        duration_ms=0,
    )
    queue.publish(result_queue(job), result_for(job, outcome))


class RunInProgress(RuntimeError):
    """The same job runs right now; the message is retried after its visibility timeout."""


class Launcher(Protocol):
    def launch(self, job: RunnerJob) -> str:
        """Start (or, locally, run) the job once: "started", "ran", or "duplicate"."""
        ...


class LocalLauncher:
    """Runs the runner as a child process and waits (the consumer's visibility timeout covers it).

    A per-job lock file makes a redelivered message a no-op, whether the first run still goes on
    (the lock is held) or has finished (the marker says so)."""

    def __init__(self, queue: QueuePort, runs_dir: Path, timeout_s: int) -> None:
        self.queue = queue
        self.runs_dir = runs_dir
        self.timeout_s = timeout_s
        self.logger = get_logger()

    def launch(self, job: RunnerJob) -> str:
        self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = job_key(job.request_id)
        done = self.runs_dir / f"{key}.done"
        with open(self.runs_dir / f"{key}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # the first delivery runs it right now: come back later (then it is done, or that
                # process died and this delivery runs it), never drop it
                raise RunInProgress(f"ansible job {job.request_id} is running in another process") from None
            if done.exists():
                return "duplicate"
            started = time.monotonic()
            answered = answered_without_a_run(job)
            if answered is not None:  # a local ping: no runner process (~0.3 s of CPU at every stack start)
                self.queue.publish(result_queue(job), result_for(job, answered))
                exit_code = 0
            else:
                exit_code = self._run_once(job, key)
            done.write_text(
                json.dumps({"exit_code": exit_code, "seconds": round(time.monotonic() - started, 3)})
            )
        return "ran"

    def _run_once(self, job: RunnerJob, key: str) -> int:
        job_file = self.runs_dir / f"{key}.json"
        job_file.write_text(job.model_dump_json())
        job_file.chmod(0o600)
        exit_code, error = self._run(job, job_file)
        if exit_code != 0:
            # 0 means the runner published an outcome (success or failure); anything else means
            # it could not, so the graph waiting for it hears it from here
            publish_failure(self.queue, job, error, exit_code)
        job_file.unlink(missing_ok=True)
        return exit_code

    def _run(self, job: RunnerJob, job_file: Path) -> tuple[int, str]:
        command = [sys.executable, "-m", "worker_image.ansible_runner", "--job", str(job_file), "--publish"]
        log = self.runs_dir / f"{job_key(job.request_id)}.log"
        try:
            with open(log, "ab") as stderr:
                completed = subprocess.run(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    stdin=subprocess.DEVNULL,
                    timeout=self.timeout_s + 60,
                    check=False,
                    env=dict(os.environ),
                )
        except subprocess.TimeoutExpired:
            return 124, f"the ansible runner did not finish within {self.timeout_s + 60} s"
        if completed.returncode == 0:
            return 0, ""
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        what = {2: "the runner refused the job", 3: "the runner crashed"}.get(
            completed.returncode, "the runner died"
        )
        return completed.returncode, f"{what} (exit {completed.returncode}): {_last_line(tail)}"


class FargateLauncher:
    """RunTask of the Ansible runner image with the job in an env override. The client token is
    derived from the request id, so a redelivered message gets the same task back from ECS."""

    def __init__(
        self,
        ecs: Any,
        cluster: str,
        task_definition: str,
        container_name: str,
        subnets: list[str],
        security_groups: list[str],
        assign_public_ip: bool = False,
    ) -> None:
        self.ecs, self.cluster, self.task_definition = ecs, cluster, task_definition
        self.container_name, self.subnets, self.security_groups = container_name, subnets, security_groups
        self.assign_public_ip = assign_public_ip

    def launch(self, job: RunnerJob) -> str:
        payload = job.model_dump_json(exclude_defaults=True)
        if len(payload) > 7000:
            raise ValueError(f"the job is {len(payload)} characters: too large for a RunTask override")
        response = self.ecs.run_task(
            cluster=self.cluster,
            taskDefinition=self.task_definition,
            launchType="FARGATE",
            count=1,
            startedBy=STARTED_BY,
            clientToken=job_key(job.request_id),
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": self.subnets,
                    "securityGroups": self.security_groups,
                    "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                }
            },
            overrides={
                "containerOverrides": [
                    {
                        "name": self.container_name,
                        "command": ["--job-env", JOB_ENV, "--publish"],
                        "environment": [{"name": JOB_ENV, "value": payload}],
                    }
                ]
            },
            tags=[{"key": "orchestrator:request-id", "value": job.request_id[:256]}],
        )
        failures = response.get("failures") or []
        if failures or not response.get("tasks"):
            reasons = (
                "; ".join(f"{f.get('arn', '')} {f.get('reason', '')}".strip() for f in failures) or "no task"
            )
            raise RuntimeError(f"ECS did not start the ansible runner: {reasons}")
        return "started"


def job_from_stopped_task(detail: dict[str, Any]) -> tuple[RunnerJob, int | None, str] | None:
    """An 'ECS Task State Change' detail of a runner task that STOPPED without publishing (exit != 0):
    (its job, exit code, reason). None for anything else."""
    if detail.get("startedBy") != STARTED_BY or detail.get("lastStatus") != "STOPPED":
        return None
    raw = None
    for override in (detail.get("overrides") or {}).get("containerOverrides") or []:
        for pair in override.get("environment") or []:
            if pair.get("name") == JOB_ENV:
                raw = pair.get("value")
    if not raw:
        return None
    job = RunnerJob.model_validate_json(raw)
    exit_code = next((c.get("exitCode") for c in detail.get("containers") or [] if "exitCode" in c), None)
    if exit_code == 0:
        return None  # it published its outcome
    reason = detail.get("stoppedReason") or "stopped"
    container_reason = next(
        (c.get("reason") for c in detail.get("containers") or [] if c.get("reason")), None
    )
    return job, exit_code, f"the ansible runner task stopped: {container_reason or reason}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
