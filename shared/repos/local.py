"""The embedded repo host: bare git repositories at `<root>/<owner>/<name>.git`.

The project's `repo_url` is the absolute path, so a person can `git clone` it and every git
command that pushes there needs no credentials. There is no pull-request concept: the engineering
pipeline pushes its branch and `merge` brings it into `main`.

- a repository is initialised in a temporary directory beside its final place and renamed into
  it, so a concurrent creator or reader never sees half a repository, and two creators race
  harmlessly (the loser's rename fails and it returns the winner's repository);
- `receive.denyNonFastForwards` is set to false explicitly, as on an unprotected GitHub branch:
  a retried developer round may rewrite its own branch with `git push --force`;
- a merge into `main` is a compare-and-swap of the ref (`merge`), so concurrent merges never lose one;
- git runs with the variables that would point it at another repository removed from its
  environment, so an orchestrator started from a git hook cannot touch the wrong one.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from shared.observability import get_logger
from shared.repos.git_merge import git_env as _git_env
from shared.repos.git_merge import merge_branch, run_git
from shared.repos.names import check_branch_name, split_full_name
from shared.repos.port import MergeOutcome, PullRequest, RepoHostError, RepoInfo

DEFAULT_BRANCH = "main"
_GIT_TIMEOUT_S = 60


class LocalRepoHost:
    """Bare repositories under one directory; safe to share between threads and processes."""

    backend = "local"
    supports_pull_requests = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def path_for(self, full_name: str) -> Path:
        """Where `owner/name` lives (validated first: the name becomes a path)."""
        owner, name = split_full_name(full_name)
        path = self.root / owner / f"{name}.git"
        # The name rules already exclude escapes; this guards the rules themselves.
        if not path.is_relative_to(self.root):
            raise RepoHostError(f"repository {full_name!r} would live outside {self.root}")
        return path

    # -- the port ------------------------------------------------------------------------

    def create_repo(self, full_name: str, description: str = "", private: bool = True) -> RepoInfo:
        """`private` has no meaning here: access is whatever the data directory's permissions allow."""
        path = self.path_for(full_name)
        existing = self._info(full_name, path)
        if existing is not None:
            return existing
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".creating-{path.name}-{uuid.uuid4().hex}"
        try:
            self._git("init", "--quiet", "--bare", "-b", DEFAULT_BRANCH, str(staging))
            self._git("--git-dir", str(staging), "config", "receive.denyNonFastForwards", "false")
            if description:
                (staging / "description").write_text(description.strip() + "\n", encoding="utf-8")
            try:
                staging.rename(path)
            except OSError:
                # Someone else created it meanwhile (rename never replaces a non-empty directory).
                info = self._info(full_name, path)
                if info is None:
                    raise
                return info
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        get_logger().info("repository created", extra={"repository": full_name, "repo_host": self.backend})
        return self._as_info(full_name, path)

    def get_repo(self, full_name: str) -> RepoInfo | None:
        return self._info(full_name, self.path_for(full_name))

    def push_url(self, full_name: str) -> str:
        """The path itself: pushing to a local repository needs no credentials."""
        path = self.path_for(full_name)
        if self._info(full_name, path) is None:
            raise RepoHostError(f"repository {full_name} does not exist under {self.root}")
        return str(path)

    def git_auth_env(self) -> dict[str, str]:
        """Nothing to add: kept so callers can treat every host alike."""
        return {}

    def branch_head(self, full_name: str, branch: str) -> str | None:
        path = self.path_for(full_name)
        check_branch_name(branch)
        if self._info(full_name, path) is None:
            return None
        result = self._run_git(
            "--git-dir", str(path), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"
        )
        if result.returncode != 0:
            return None  # no such branch, or an empty repository
        return result.stdout.strip()

    def read_file(self, full_name: str, ref: str, path: str) -> bytes | None:
        repo = self.path_for(full_name)
        if self._info(full_name, repo) is None or ref.startswith("-") or ".." in path:
            return None
        try:
            result = subprocess.run(
                ["git", "--git-dir", str(repo), "show", f"{ref}:{path.lstrip('/')}"],
                capture_output=True,
                env=_git_env(),
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise RepoHostError(f"git show failed: {type(exc).__name__}") from None
        return result.stdout if result.returncode == 0 else None

    def merge(self, full_name: str, branch: str, into: str, message: str) -> MergeOutcome:
        """At once and atomically, without a worktree (`shared.repos.git_merge`): a fast-forward, a
        merge commit, or a conflict naming the paths; never `pending`: there are no checks here."""
        path = self.path_for(full_name)
        check_branch_name(branch)
        check_branch_name(into)
        if self._info(full_name, path) is None:
            raise RepoHostError(f"repository {full_name} does not exist under {self.root}")
        outcome = merge_branch(path, branch, into, message)
        get_logger().info(
            "branch merged" if outcome.status == "merged" else "merge conflict",
            extra={"repository": full_name, "branch": branch, "into": into, "sha": outcome.sha},
        )
        return outcome

    def open_pull_request(self, full_name: str, head: str, base: str, title: str, body: str) -> PullRequest:
        raise RepoHostError("local repositories have no pull requests")

    def list_pull_requests(self, full_name: str, state: str = "open") -> list[PullRequest]:
        """Always empty, so listing works the same whatever the host."""
        self.path_for(full_name)
        return []

    # -- helpers ---------------------------------------------------------------------------

    def _info(self, full_name: str, path: Path) -> RepoInfo | None:
        if not path.exists():
            return None
        if not ((path / "HEAD").is_file() and (path / "objects").is_dir()):
            raise RepoHostError(f"{path} exists but is not a bare git repository; move it away")
        return self._as_info(full_name, path)

    def _as_info(self, full_name: str, path: Path) -> RepoInfo:
        head = self._run_git("--git-dir", str(path), "symbolic-ref", "--quiet", "--short", "HEAD")
        default_branch = (
            head.stdout.strip() if head.returncode == 0 and head.stdout.strip() else DEFAULT_BRANCH
        )
        return RepoInfo(full_name=full_name, clone_url=str(path), web_url=None, default_branch=default_branch)

    def _git(self, *args: str) -> str:
        result = self._run_git(*args)
        if result.returncode != 0:
            output = result.stderr.strip() or result.stdout.strip()
            raise RepoHostError(f"git {' '.join(args)} failed (exit {result.returncode}): {output}")
        return result.stdout

    @staticmethod
    def _run_git(*args: str) -> subprocess.CompletedProcess[str]:
        return run_git(*args)
