"""`python -m worker_image.ansible_runner (--job PATH|- | --job-env VAR) [--publish]`

Runs one job's playbook and prints the outcome as JSON on the last line of stdout. With `--publish` it
also puts the matching result (`AnsibleDeployResult` / `ProvisionerResult`) on its results queue.
Locally the infra consumer runs it as a subprocess; in AWS it is a Fargate task's entrypoint with the
job in an env var. Settings (secrets backend, queue backend, ORCH_HOME) come from `ORCH_*` variables.

Exit codes: 0 an outcome was produced (and published when asked), even a failed one; 2 the job is
invalid (one line on stderr); 3 the runner crashed or could not publish.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from shared.observability import correlation, get_logger
from worker_image.ansible_runner.job import JobError, RunnerJob, RunnerOutcome

EXIT_OK = 0
EXIT_INVALID_JOB = 2
EXIT_CRASHED = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker_image.ansible_runner", description="Run one Ansible job and report it."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job", metavar="PATH", help="job JSON file, or - for stdin")
    source.add_argument("--job-env", metavar="VAR", help="environment variable holding the job JSON")
    parser.add_argument("--publish", action="store_true", help="put the result on its results queue")
    return parser


def load_job(job_path: str | None, job_env: str | None) -> RunnerJob:
    """Read and validate the job; `JobError` (one readable line) for anything wrong with it."""
    if job_env is not None:
        text = os.environ.get(job_env)
        if text is None:
            raise JobError(f"invalid job: environment variable {job_env} is not set")
    elif job_path == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(str(job_path)).read_text()
        except OSError as error:
            raise JobError(f"invalid job: cannot read {job_path}: {error.strerror or error}") from None
    return RunnerJob.from_json(text)


def _publish(job: RunnerJob, outcome: RunnerOutcome) -> str:
    from shared.queues.factory import build_queue
    from worker_image.ansible_runner.results import result_for, result_queue

    queue = build_queue()
    try:
        return queue.publish(result_queue(job), result_for(job, outcome))
    finally:
        close = getattr(queue, "close", None)
        if callable(close):
            close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        job = load_job(args.job, args.job_env)
    except JobError as error:
        print(str(error), file=sys.stderr)
        return EXIT_INVALID_JOB
    logger = get_logger()
    started = time.monotonic()
    with correlation(job.correlation_id or job.request_id):
        try:
            from shared.repos.factory import RepoHostSettings
            from shared.secrets.factory import build_secrets
            from worker_image.ansible_runner.runner import run_job

            outcome = run_job(job, build_secrets(), github_token_ref=RepoHostSettings().github_token_ref)
        except Exception as error:
            logger.exception("ansible runner crashed", extra={"request_id": job.request_id})
            print(f"ansible runner crashed: {type(error).__name__}", file=sys.stderr)
            outcome = RunnerOutcome(
                request_id=job.request_id,
                kind=job.kind,
                status="failed",
                error=f"the ansible runner crashed ({type(error).__name__}); see its log",
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            print(outcome.model_dump_json(), flush=True)
            if args.publish:  # whoever waits for the result must not be left hanging
                try:
                    _publish(job, outcome)
                except Exception:
                    logger.exception("could not publish the crash result")
                    return EXIT_CRASHED
                # the failure is published: exit 0, or the launcher would publish a second one
                return EXIT_OK
            return EXIT_CRASHED
        print(outcome.model_dump_json(), flush=True)
        if args.publish:
            try:
                message_id = _publish(job, outcome)
            except Exception as error:
                logger.exception("could not publish the result", extra={"request_id": job.request_id})
                print(f"could not publish the result: {type(error).__name__}: {error}", file=sys.stderr)
                return EXIT_CRASHED
            logger.info("result published", extra={"message_id": message_id, "status": outcome.status})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
