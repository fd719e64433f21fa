"""From a queue message to one Ansible run: look the server up, build the runner job (references
only), launch it. A job that cannot be built still answers, with a failed result, so no graph waits
forever."""

from __future__ import annotations

from functions.infra.launch import Launcher, publish_failure
from shared.api_client import ApiClient, NotFoundError
from shared.contracts import PROVISIONER_RESULTS, AnsibleDeployMessage, ProvisionerMessage, ProvisionerResult
from shared.contracts.api import Server
from shared.observability import count, get_logger
from shared.queues.port import QueuePort
from worker_image.ansible_runner.job import RunnerJob, Target


class UnknownServer(LookupError):
    """The message names a server the API does not know: answered with a failed result, never retried."""


def target_of(server: Server) -> Target:
    return Target(
        handle=server.handle,
        host=server.host,
        connection=server.connection,
        ssh_user=server.ssh_user,
        ssh_key_ref=server.ssh_key_ref,
    )


class Infra:
    def __init__(self, api: ApiClient, queue: QueuePort, launcher: Launcher, timeout_s: int) -> None:
        self.api, self.queue, self.launcher, self.timeout_s = api, queue, launcher, timeout_s
        self.logger = get_logger()

    def _server(self, handle: str | None, ip: str | None) -> Server:
        if handle:
            try:
                return self.api.get_server(handle)
            except NotFoundError:
                raise UnknownServer(f"server {handle!r} not found") from None
        for server in self.api.list_servers():
            if server.host == ip:
                return server
        raise UnknownServer(f"no server with address {ip!r}")

    def deploy_job(self, message: AnsibleDeployMessage) -> RunnerJob:
        server = self._server(message.server_handle, message.server_ip)
        return RunnerJob(
            request_id=message.request_id,
            correlation_id=message.correlation_id,
            kind=message.job_type,
            target=target_of(server),
            project_id=message.project_id,
            project_name=message.project_name,
            repo_url=message.repo_url,
            ref=message.ref,
            github_token_ref=message.github_token_ref,
            port=message.port,
            port_variable=message.port_variable,
            run_command=message.run_command,
            health_path=message.health_path,
            env=message.env,
            secret_refs=message.secret_refs,
            slot=message.slot,
            stable_port=message.stable_port,
            domain=message.domain,
            release=message.release,
            timeout_s=self.timeout_s,
        )

    def provision_job(self, message: ProvisionerMessage) -> RunnerJob:
        server = self._server(message.server_handle, None)
        return RunnerJob(
            request_id=message.request_id,
            correlation_id=message.correlation_id,
            kind=message.job_type,
            target=target_of(server),
            open_ports=message.open_ports,
            force_reinstall=message.force_reinstall,
            timeout_s=self.timeout_s,
        )

    def handle(self, message: AnsibleDeployMessage | ProvisionerMessage) -> str:
        if isinstance(message, ProvisionerMessage) and message.is_recovery:
            return self.recover(message)
        try:
            if isinstance(message, AnsibleDeployMessage):
                job = self.deploy_job(message)
            else:
                job = self.provision_job(message)
        except (UnknownServer, ValueError) as exc:
            self._answer_failed(message, str(exc))
            return "refused"
        outcome = self.launcher.launch(job)
        count("AnsibleJobs" if outcome != "duplicate" else "AnsibleJobDuplicates")
        self.logger.info(
            "ansible job", extra={"request_id": job.request_id, "kind": job.kind, "outcome": outcome}
        )
        return outcome

    def recover(self, message: ProvisionerMessage) -> str:
        """A server back after being lost (or replaced): provision it again, then redeploy every project
        whose current release lives there, and answer with what was redeployed.

        Each step is safe to repeat: the provision run has its own request id (`<id>:provision`, a
        launched job is not launched twice) and the API starts one redeploy per project and recovery
        id. Each redeploy is a deploy task whose readiness step provisions the server again for its
        own port, so on Fargate (where the provision run is only started here) a redeploy never
        relies on this run having finished."""
        provision = message.model_copy(update={"request_id": f"{message.request_id}:provision"})
        try:
            job = self.provision_job(provision)
        except (UnknownServer, ValueError) as exc:
            self._answer_failed(message, str(exc))
            return "refused"
        outcome = self.launcher.launch(job)
        try:
            recovery = self.api.recover_server(message.server_handle, message.request_id)
        except NotFoundError:
            self._answer_failed(message, f"server {message.server_handle!r} not found")
            return "refused"
        redeployed = [p.project_name for p in recovery.redeployed]
        skipped = [f"{p.project_name}: {p.skipped}" for p in recovery.projects if p.skipped]
        result = ProvisionerResult(
            request_id=message.request_id,
            correlation_id=message.correlation_id,
            status="success",
            server_handle=recovery.server.handle,
            server_ip=recovery.server.host,
            services_redeployed=redeployed,
            errors=skipped,
        )
        self.queue.publish(PROVISIONER_RESULTS, result)
        count("ServerRecoveries")
        self.logger.info(
            "server recovered",
            extra={
                "request_id": message.request_id,
                "server": recovery.server.handle,
                "provision": outcome,
                "redeployed": redeployed,
                "skipped": skipped,
            },
        )
        return "recovered"

    def _answer_failed(self, message: AnsibleDeployMessage | ProvisionerMessage, error: str) -> None:
        """The job cannot even be built: answer with a failed result (built from a minimal local job)."""
        if isinstance(message, AnsibleDeployMessage):
            job = RunnerJob.model_construct(
                request_id=message.request_id,
                correlation_id=message.correlation_id,
                kind=message.job_type,
                project_id=message.project_id,
                target=Target.model_construct(handle=message.server_handle or "?", host=message.server_ip),
                port=message.port,
                ref=message.ref,
            )
        else:
            job = RunnerJob.model_construct(
                request_id=message.request_id,
                correlation_id=message.correlation_id,
                kind=message.job_type,
                target=Target.model_construct(handle=message.server_handle, host=""),
            )
        self.logger.warning("ansible job refused", extra={"request_id": message.request_id, "error": error})
        publish_failure(self.queue, job, error)
