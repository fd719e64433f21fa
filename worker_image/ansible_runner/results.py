"""Maps a run's outcome onto the queue contracts the orchestrator consumes."""

from __future__ import annotations

from shared.contracts import ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS
from shared.contracts.jobs import AnsibleDeployResult, ProvisionerResult
from worker_image.ansible_runner.job import RunnerJob, RunnerOutcome


def result_queue(job: RunnerJob) -> str:
    """deploy/undeploy answer on `ansible:deploy:results`; provision/ping on `provisioner:results`."""
    return ANSIBLE_DEPLOY_RESULTS if job.kind in ("deploy", "undeploy") else PROVISIONER_RESULTS


def _meta(job: RunnerJob) -> dict[str, str]:
    return {"correlation_id": job.correlation_id} if job.correlation_id else {}


def result_for(job: RunnerJob, outcome: RunnerOutcome) -> AnsibleDeployResult | ProvisionerResult:
    """The result message for `result_queue(job)`. Output tails travel only when the run failed."""
    failed = outcome.status == "failed"
    if job.kind == "deploy" or job.kind == "undeploy":
        return AnsibleDeployResult(
            request_id=job.request_id,
            status=outcome.status,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            job_type=job.kind,
            project_id=job.project_id,
            deployed_url=outcome.deployed_url,
            health_url=outcome.health_url,
            server_ip=job.target.host,
            port=job.port,
            ref=job.ref if job.kind == "deploy" else None,
            stdout=outcome.stdout_tail if failed else None,
            stderr=outcome.stderr_tail if failed else None,
            exit_code=outcome.exit_code if failed else None,
            service_log=outcome.service_log if failed else None,
            service_log_path=outcome.service_log_path,
            slot=job.slot,
            stable_port=job.stable_port,
            release=job.release,
            switched=outcome.switched,
            **_meta(job),
        )
    return ProvisionerResult(
        request_id=job.request_id,
        status=outcome.status,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        server_handle=job.target.handle,
        server_ip=job.target.host,
        reachable=outcome.reachable,
        facts=dict(outcome.facts),
        errors=[outcome.error] if outcome.error else [],
        stdout=outcome.stdout_tail if failed else None,
        stderr=outcome.stderr_tail if failed else None,
        exit_code=outcome.exit_code if failed else None,
        **_meta(job),
    )
