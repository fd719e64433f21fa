"""What the deploy sends and reads back, built from its state: the Ansible and provisioner jobs, the
deployment it records, and the text of a failed job's answer."""

from __future__ import annotations

import re
from typing import Any, Literal

from functions.deploy.state import DeployState
from shared.contracts import AnsibleDeployMessage, ProvisionerMessage, progress_stream
from shared.contracts.api import DeploymentRecord
from shared.graphs.driver import last_lines, request_id

CAUSE_LOG_LINES = 8
SUPERVISOR_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d supervisor\[\d+\]: ")


def ansible_message(
    state: DeployState, job_type: Literal["deploy", "undeploy"], attempt: int, github_token_ref: str | None
) -> AnsibleDeployMessage:
    """The runner's job. A deploy ships `commit_sha` to its slot's port and switches the stable port to it
    once healthy; an undeploy names the serving slot (None: in place on `port`)."""
    rid = request_id(state.task_id, "ansible" if job_type == "deploy" else "undeploy", attempt)
    slotted = job_type == "deploy" and bool(state.slot)
    return AnsibleDeployMessage(
        request_id=rid,
        correlation_id=state.correlation_id,
        callback_stream=progress_stream(state.task_id),
        job_type=job_type,
        project_id=state.project_id,
        project_name=snake(state.project_name),
        repo_full_name=state.repo_full_name,
        server_ip=state.server_host,
        port=state.port,
        github_token_ref=github_token_ref,
        secrets_ref=f"secret://projects/{state.project_id}",
        task_id=state.task_id,
        server_handle=state.server_handle,
        repo_url=state.repo_url or None,
        ref=state.commit_sha or state.ref or "main",
        run_command=state.run_command,
        health_path=state.health_path,
        port_variable=state.port_variable,
        env=state.env,
        secret_refs=state.secret_refs,
        slot=state.slot or None,
        stable_port=state.stable_port or None if slotted else None,
        domain=state.domain or None if slotted else None,
        release=state.release_number or None,
    )


def provision_message(state: DeployState) -> ProvisionerMessage:
    """Prepare the state's server for the service: packages, the service user, its port open."""
    return ProvisionerMessage(
        request_id=request_id(state.task_id, "provision", state.attempt),
        correlation_id=state.correlation_id,
        callback_stream=progress_stream(state.task_id),
        server_handle=state.server_handle,
        job_type="provision",
        open_ports=open_ports(state),
    )


def open_ports(state: DeployState) -> list[int]:
    """What the firewall lets in: the project's address (a slot's port is reached on the server itself,
    by its forwarder or proxy), and 80/443 for the certificate and TLS of a domain."""
    if not state.slot:
        return [state.port]
    return [state.stable_port] + ([80, 443] if state.domain else [])


def deployment_record(
    state: DeployState, status: Literal["deployed", "stopped"], url: str, health_url: str, ref: str | None
) -> DeploymentRecord:
    return DeploymentRecord(
        server_handle=state.server_handle,
        port=state.stable_port or state.port,
        url=url,
        health_url=health_url,
        ref=ref,
        status=status,
        task_id=state.task_id,
        slot=state.slot,
    )


def snake(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def failure_text(result: dict[str, Any]) -> str:
    """Everything a fix round's agent may need: the cause, the service's log, Ansible's output."""
    parts = [cause_text(result)]
    if result.get("exit_code") is not None:
        parts.append(f"exit code {result['exit_code']}")
    for key in ("stdout", "stderr"):
        if result.get(key):
            parts.append(f"{key}:\n{result[key][-3000:]}")
    return "\n".join(parts)


def cause_text(result: dict[str, Any], log_lines: int = CAUSE_LOG_LINES) -> str:
    """What a person needs from a failed run, in the service's own words: its last log line (where the
    cause is, e.g. `ModuleNotFoundError: No module named ...`) first, the runner's one-line error, then
    the service's last lines and where the whole log is, ending with that line again (so a view showing
    only the first or only the last line shows the cause); never Ansible's output, which quotes the
    playbook."""
    error = str(result.get("error") or "failed")
    lines = service_lines(str(result.get("service_log") or ""))
    path = result.get("service_log_path")
    if not lines:
        return f"{error}\nservice log: {path}" if path else error
    where = f" of {path}" if path else ""
    shown = "\n".join(f"  {line[:300]}" for line in lines[-log_lines:])
    count = min(len(lines), log_lines)
    error = error.removesuffix(lines[-1]).rstrip(" :") or error  # the runner's error may end with it
    return f"{lines[-1][:300]}\n{error}\nservice log (last {count} line{'s' if count > 1 else ''}{where}):\n{shown}"


def service_lines(log: str) -> list[str]:
    """The service's own lines of its log: the supervisor's (`... supervisor[pid]: started service`) go
    when the service said anything, and a line repeated by each restart shows once."""
    lines = [line for line in log.splitlines() if line.strip()]
    own = [line for line in lines if not SUPERVISOR_LINE.search(line)] or lines
    return [line for i, line in enumerate(own) if i == 0 or line != own[i - 1]]


def tail(text: str) -> str:
    return last_lines(text, limit=600)
