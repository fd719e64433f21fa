"""Runs one playbook for one job with ansible-runner and turns what happened into a `RunnerOutcome`.

Each run gets a fresh private data dir (mode 0700, deleted afterwards, even on failure), laid out by
`worker_image.ansible_runner.private_data`. Secret values never reach the command line, the
inventory or env/extravars; tasks that use them are `no_log`, and every string of the outcome goes
through a `Redactor` that knows the values.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.observability import get_logger
from shared.secrets.port import SecretsPort
from shared.secrets.redact import Redactor
from worker_image.ansible_runner.job import RunnerJob, RunnerOutcome
from worker_image.ansible_runner.private_data import (
    PLAYBOOKS_DIR,
    ResolvedSecrets,
    SecretProblem,
    prepare_private_data_dir,
    resolve_secrets,
)

TAIL_CHARS = 4000
ERROR_CHARS = 500
SERVICE_LOG_CHARS = 4000
SERVICE_LOG_TASK = "Read the end of the service log"  # the deploy playbook's rescue registers it


# -- reading the run ----------------------------------------------------------------------------------


def _one_line(text: str, limit: int = ERROR_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def redacted_tails(stdout: str, stderr: str, redactor: Redactor) -> dict[str, str | None]:
    """The last `TAIL_CHARS` of each stream, redacted first (a tail could otherwise start halfway
    through a secret and keep its second half)."""
    return {
        "stdout_tail": redactor.redact(stdout)[-TAIL_CHARS:] or None,
        "stderr_tail": redactor.redact(stderr)[-TAIL_CHARS:] or None,
    }


@dataclass
class RunReport:
    """What the events of a run say: the failure that ended it, the facts the playbook reported."""

    error: str | None = None
    reachable: bool | None = None
    facts: dict[str, str] = field(default_factory=dict)
    service_log: str | None = None
    """The last lines of the service's own log, when a deploy's health check failed."""


def read_events(events: Iterable[Mapping[str, Any]]) -> RunReport:
    report = RunReport()
    for event in events:
        name = event.get("event")
        data = event.get("event_data") or {}
        raw = data.get("res")
        res: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        if name == "runner_on_unreachable":
            report.reachable = False
            report.error = _one_line(f"{data.get('host', 'the target')} is unreachable: {res.get('msg', '')}")
            continue
        if name in ("runner_on_ok", "runner_on_failed") and report.reachable is None:
            report.reachable = True  # a task ran there
        if name == "runner_on_ok":
            _read_ok(report, str(data.get("task", "")), res)
        elif name == "runner_on_failed" and not data.get("ignore_errors"):
            report.error = _failure_message(str(data.get("task", "")), res)
    return report


def _read_ok(report: RunReport, task: str, res: Mapping[str, Any]) -> None:
    facts = (res.get("ansible_facts") or {}).get("orch_facts")
    if isinstance(facts, dict):
        report.facts = {str(k): str(v) for k, v in facts.items() if v not in (None, "")}
    if task == SERVICE_LOG_TASK and str(res.get("stdout") or "").strip():
        report.service_log = str(res["stdout"]).rstrip()[-SERVICE_LOG_CHARS:]


def _failure_message(task: str, res: Mapping[str, Any]) -> str:
    message = str(res.get("msg") or "").strip()
    detail = str(res.get("stderr") or "").strip().splitlines()
    if detail and message in ("", "non-zero return code"):
        message = detail[-1]
    if task.startswith("Report "):  # the playbook's own, already readable, failure
        return _one_line(message or task)
    return _one_line(f"task '{task}' failed: {message or 'no message'}")


def _error_from_output(stdout: str) -> str | None:
    for line in reversed(stdout.splitlines()):
        if re.search(r"\bERROR\b", line):
            return _one_line(line)
    lines = [line for line in stdout.splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else None


# -- the run ---------------------------------------------------------------------------------------------


def _failed(job: RunnerJob, started: float, error: str, redactor: Redactor, **fields: Any) -> RunnerOutcome:
    return RunnerOutcome(
        request_id=job.request_id,
        kind=job.kind,
        status="failed",
        error=redactor.redact(_one_line(error)),
        duration_ms=int((time.monotonic() - started) * 1000),
        health_url=job.health_url if job.kind == "deploy" else None,
        **fields,
    )


def run_job(
    job: RunnerJob,
    secrets: SecretsPort,
    *,
    playbooks_dir: Path | None = None,
    github_token_ref: str | None = None,
) -> RunnerOutcome:
    """Run the job's playbook against its target. Never raises for a failed run: the outcome says why.
    `github_token_ref` is the stack's configured token reference, the only one a job may use."""
    started = time.monotonic()
    logger = get_logger()
    redactor = Redactor()
    try:
        resolved = resolve_secrets(job, secrets, github_token_ref=github_token_ref)
    except SecretProblem as problem:
        return _failed(job, started, str(problem), redactor)
    if job.kind == "ping" and job.is_local:  # after the references: a job naming a missing one still fails
        return _ping_here(job, started)
    redactor.add(*resolved.values())
    root = Path(tempfile.mkdtemp(prefix="orch-ansible-"))  # mkdtemp makes it 0700
    try:
        return _run(job, resolved, root, playbooks_dir or PLAYBOOKS_DIR, redactor, started)
    except Exception as error:  # a bug or an environment problem: still an outcome, never a secret
        logger.error(
            "ansible run crashed",
            extra={"kind": job.kind, "traceback": redactor.redact(traceback.format_exc())},
        )
        return _failed(job, started, f"runner error: {type(error).__name__}: {error}", redactor)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def local_facts() -> dict[str, str]:
    """What ping.yml reports, read from this machine directly."""
    import platform
    import socket

    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    family = (release.get("ID_LIKE") or release.get("ID") or platform.system()).split()[0]
    facts = {
        "hostname": socket.gethostname().split(".")[0],
        "fqdn": socket.getfqdn(),
        "os": f"{release.get('NAME', platform.system())} {release.get('VERSION_ID', '')}".strip(),
        "os_family": family.capitalize(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "python": platform.python_version(),
    }
    return {name: value for name, value in facts.items() if value}


def answered_without_a_run(job: RunnerJob) -> RunnerOutcome | None:
    """The outcome of a job that needs neither a playbook, nor a secret, nor a process of its own: a ping
    of connection local naming no secret reference (the scheduler's, at every stack start), answered by
    whoever holds the job. None for every other job: it runs (`run_job`)."""
    if job.kind != "ping" or not job.is_local or job.secret_refs:
        return None
    return _ping_here(job, time.monotonic())


def _ping_here(job: RunnerJob, started: float) -> RunnerOutcome:
    """A ping of connection local runs no playbook: the machine that answers is the one running this
    (at every stack start the scheduler pings the built-in server; Ansible would spend seconds of CPU)."""
    return RunnerOutcome(
        request_id=job.request_id,
        kind=job.kind,
        status="success",
        duration_ms=int((time.monotonic() - started) * 1000),
        facts=local_facts(),
        reachable=True,
    )


def _run(
    job: RunnerJob,
    resolved: ResolvedSecrets,
    root: Path,
    playbooks_dir: Path,
    redactor: Redactor,
    started: float,
) -> RunnerOutcome:
    import ansible_runner

    logger = get_logger()
    prepared = prepare_private_data_dir(root, job, resolved, playbooks_dir)
    playbook_cmd = shutil.which("ansible-playbook", path=prepared.envvars["PATH"])
    if playbook_cmd is None:
        return _failed(
            job,
            started,
            f"ansible-playbook is not on PATH ({prepared.envvars['PATH']}): install ansible-core",
            redactor,
        )
    if resolved.ssh_key and shutil.which("ssh-agent", path=prepared.envvars["PATH"]) is None:
        return _failed(job, started, "ssh-agent is not on PATH: install openssh-client", redactor)
    logger.info(
        "ansible run starting",
        extra={"kind": job.kind, "target": job.target.handle, "connection": job.target.connection},
    )
    result = ansible_runner.run(
        private_data_dir=str(root),
        playbook=prepared.playbook,
        envvars=prepared.envvars,
        cmdline=prepared.cmdline,
        ident="run",
        quiet=True,
        timeout=job.timeout_s,
        suppress_env_files=True,
    )
    _stop_leftovers(root)
    report = read_events(result.events)
    stdout = _read_artifact(result, "stdout")
    stderr = _read_artifact(result, "stderr")
    status, rc = result.status, result.rc
    duration_ms = int((time.monotonic() - started) * 1000)
    tails: dict[str, Any] = {
        "exit_code": rc,
        **redacted_tails(stdout, stderr, redactor),
        "facts": redactor.redact_obj(report.facts),
        "reachable": report.reachable,
        "service_log": redactor.redact(report.service_log) if report.service_log else None,
        "service_log_path": job.service_log_path(),
    }
    logger.info(
        "ansible run finished",
        extra={"kind": job.kind, "status": status, "rc": rc, "duration_ms": duration_ms},
    )
    sloted = job.kind == "deploy" and job.slot is not None
    if status == "successful":
        deployed = job.kind == "deploy"
        return RunnerOutcome(
            request_id=job.request_id,
            kind=job.kind,
            status="success",
            duration_ms=duration_ms,
            deployed_url=job.deployed_url if deployed else None,
            health_url=job.health_url if deployed else None,
            switched=True if sloted else None,  # the switch is a step of the playbook: success includes it
            **tails,
        )
    if status == "timeout":
        error = f"the {job.kind} playbook did not finish within {job.timeout_s} s and was stopped"
    elif report.error:
        error = report.error
    elif rc == 127:
        error = f"ansible-playbook could not be started (exit code 127; {playbook_cmd})"
    else:
        error = _error_from_output(stdout + "\n" + stderr) or f"ansible-playbook failed with exit code {rc}"
    cause = service_cause(report.service_log)
    if cause and cause not in error:
        error = f"{_one_line(error, 280)} — the service's log ends: {_one_line(cause, 200)}"
    return _failed(job, started, error, redactor, switched=False if sloted else None, **tails)


_SUPERVISOR_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d supervisor\[\d+\]: ")


def service_cause(service_log: str | None, lines: int = 3) -> str | None:
    """The service's own last lines (the supervisor's are left out), joined into one: what a person
    needs to see of why it did not start, e.g. a traceback's last line."""
    if not service_log:
        return None
    own = [
        line.strip() for line in service_log.splitlines() if line.strip() and not _SUPERVISOR_LINE.match(line)
    ]
    return " | ".join(own[-lines:]) or None


def _stop_leftovers(root: Path) -> None:
    """ansible-runner wraps an ssh run in `ssh-agent sh -c ...`; the agent (holding the key) notices only
    up to 10 s later that the run ended. Stop every process whose command line names this run's private
    dir (Linux /proc; elsewhere the agent exits on its own)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    marker = str(root).encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGTERM)


def _read_artifact(result: Any, name: str) -> str:
    with contextlib.suppress(Exception):
        with getattr(result, name) as handle:
            return str(handle.read())
    return ""
