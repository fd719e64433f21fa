"""The git side of a worker: clone the repo, work on a branch, commit and push what the agent did."""

from __future__ import annotations

import subprocess
from pathlib import Path

AUTHOR = ("orchestrator-worker", "worker@codegen-orchestrator.local")
NOT_COMMITTED = ("CLAUDE.md", "AGENTS.md", "TASK.md")
"""Files the wrapper writes for the agent; kept out of the project's history."""


class GitError(RuntimeError):
    """A git command failed; the message carries the tail of its stderr."""


_auth_env: dict[str, str] = {}


def token_may_travel_to(repo_url: str) -> bool:
    """A token goes only over https, or over plain http to this machine's loopback (a local git server)."""
    from urllib.parse import urlsplit

    parts = urlsplit(repo_url)
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
    )


def use_token(repo_url: str, token: str | None) -> None:
    """Authenticate git to an https host with `token` through env (never in a URL or argv)."""
    import base64
    from urllib.parse import urlsplit

    _auth_env.clear()
    parts = urlsplit(repo_url)
    if not token or not token_may_travel_to(repo_url):
        return
    credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    _auth_env.update(
        {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
            "GIT_TERMINAL_PROMPT": "0",
        }
    )


def git(workspace: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    import os

    full_env = {**os.environ, **(env or {}), **_auth_env} if (_auth_env or env) else None
    result = subprocess.run(
        ["git", *args], cwd=workspace, capture_output=True, text=True, env=full_env, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout.strip()


def checkout(repo_url: str, workspace: Path, branch: str, base_branch: str = "main") -> None:
    """Clone `repo_url` into `workspace` and stand on `branch` (continuing it if the remote has it)."""
    workspace.mkdir(parents=True, exist_ok=True)
    if not (workspace / ".git").exists():
        import os

        # the author goes into the clone's config with the clone itself: two git runs fewer per worker
        author = ["-c", f"user.name={AUTHOR[0]}", "-c", f"user.email={AUTHOR[1]}"]
        cloned = subprocess.run(
            ["git", "clone", "--quiet", *author, repo_url, str(workspace)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, **_auth_env},
        )
        if not (workspace / ".git").exists():
            raise GitError(f"git clone {repo_url} failed: {cloned.stderr.strip()[-500:]}")
    else:
        git(workspace, "fetch", "-q", "origin")
        config = workspace / ".git" / "config"
        if not config.is_file() or AUTHOR[1] not in config.read_text(errors="replace"):
            git(workspace, "config", "user.name", AUTHOR[0])
            git(workspace, "config", "user.email", AUTHOR[1])
    exclude = workspace / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    present = exclude.read_text() if exclude.exists() else ""
    missing = [name for name in NOT_COMMITTED if name not in present.splitlines()]
    if missing:
        exclude.write_text(
            present + ("\n" if present and not present.endswith("\n") else "") + "\n".join(missing) + "\n"
        )
    remote_branches = git(workspace, "branch", "-r", check=False)
    if f"origin/{branch}" in remote_branches.split():
        git(workspace, "checkout", "-q", "-B", branch, f"origin/{branch}")
    elif f"origin/{base_branch}" in remote_branches.split():
        git(workspace, "checkout", "-q", "-B", branch, f"origin/{base_branch}")
    elif git(workspace, "rev-parse", "--verify", "-q", f"{base_branch}^{{commit}}", check=False):
        # a commit (`engineering start --base-ref <sha>`) the clone holds
        git(workspace, "checkout", "-q", "-B", branch, base_branch)
    else:
        git(workspace, "checkout", "-q", "-B", branch)


def commit_and_push(workspace: Path, branch: str, message: str) -> tuple[str | None, list[str]]:
    """Commit everything the agent changed; push the branch. Returns (commit sha or None, files changed)."""
    git(workspace, "add", "-A")
    changed = [line for line in git(workspace, "diff", "--cached", "--name-only").splitlines() if line]
    if not changed:
        head = git(workspace, "rev-parse", "--verify", "-q", "HEAD", check=False)
        return (head or None), []
    git(workspace, "commit", "-q", "-m", message)
    sha = git(workspace, "rev-parse", "HEAD")
    git(workspace, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return sha, changed
