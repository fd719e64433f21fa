"""Render the template into a new repository, push it, record it on the project, and answer.

Idempotent: a project that already has its repository answers success again; a repository
that already has a main branch is recorded, not rendered twice.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from shared.api_client import ApiClient
from shared.contracts import SCAFFOLDER_RESULTS, ScaffolderMessage, ScaffolderResult
from shared.observability import get_logger
from shared.queues.port import QueuePort

AUTHOR = ["-c", "user.name=orchestrator-scaffolder", "-c", "user.email=scaffolder@codegen-orchestrator.local"]


class ScaffoldError(RuntimeError):
    """The template or git refused: the project becomes scaffold_failed with this reason."""


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, **(env or {})})  # fmt: skip
    if result.returncode != 0:
        raise ScaffoldError(
            f"git {args[0] if args[0] != '-c' else args[4]} failed: {result.stderr.strip()[-400:]}"
        )
    return result.stdout.strip()


def render_and_push(message: ScaffolderMessage, repo_host: Any, push_url: str, template: str | None,
                    template_ref: str | None) -> tuple[str, list[str]]:  # fmt: skip
    from functions.scaffolder.render import TemplateRenderError, render_project

    auth_env = repo_host.git_auth_env() if hasattr(repo_host, "git_auth_env") else {}
    with tempfile.TemporaryDirectory(prefix="scaffold-") as tmp:
        work = Path(tmp) / "repo"
        try:
            files = render_project(work, message.project_name, list(message.modules), message.description,
                                   template=template, vcs_ref=template_ref)  # fmt: skip
        except (ValueError, TemplateRenderError) as exc:
            raise ScaffoldError(str(exc)) from exc
        _git(work, "init", "-q", "-b", "main")
        _git(work, "add", "-A")
        _git(
            work, *AUTHOR, "commit", "-q", "-m", f"Scaffold {message.project_name} from the project template"
        )
        _git(work, "push", "-q", push_url, "HEAD:refs/heads/main", env=auth_env)
        return _git(work, "rev-parse", "HEAD"), files


def scaffold(message: ScaffolderMessage, api: ApiClient, repo_host: Any, queue: QueuePort,
             template: str | None = None, template_ref: str | None = None) -> ScaffolderResult:  # fmt: skip
    logger = get_logger()
    project = api.get_project(message.project_id)
    base = {"request_id": message.request_id, "correlation_id": message.correlation_id,
            "project_id": project.id, "task_id": message.task_id, "repo_full_name": message.repo_full_name}  # fmt: skip
    if project.repo_url and project.status in ("scaffolded", "active"):
        result = ScaffolderResult(**base, status="success", repo_url=project.repo_url)
    else:
        try:
            info = repo_host.create_repo(message.repo_full_name, project.description or message.description)
            head = repo_host.branch_head(message.repo_full_name, info.default_branch)
            files: list[str] = []
            if head is None:
                head, files = render_and_push(message, repo_host, repo_host.push_url(message.repo_full_name),
                                              template, template_ref)  # fmt: skip
            api.update_project(project.id, repo_url=info.clone_url, status="scaffolded")
            result = ScaffolderResult(
                **base, status="success", repo_url=info.clone_url, commit_sha=head, files=files
            )
            logger.info(
                "scaffolded", extra={"project": project.name, "repo": info.clone_url, "files": len(files)}
            )
        except ScaffoldError as exc:
            api.update_project(project.id, status="scaffold_failed")
            result = ScaffolderResult(**base, status="failed", error=str(exc))
            logger.error("scaffold failed", extra={"project": project.name, "reason": str(exc)})
    queue.publish(SCAFFOLDER_RESULTS, result)
    return result
