"""Merging one branch into another inside a bare repository, without a worktree, atomically.

`git merge-tree --write-tree` (git >= 2.38) computes the merged tree from the object store alone,
`git commit-tree` makes the merge commit, and `git update-ref refs/heads/<into> NEW OLD` moves the
target only if it still points where the merge started (compare-and-swap). A concurrent merge that
won the race makes the swap fail; the merge is then computed again on the new tip, a few times.
So two tasks merging into one `main` at once both end on it, and a reader never sees a half merge.

Used by the local repo host and by the fake GitHub server (which merges pull requests the same way).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from shared.repos.port import MergeOutcome, RepoHostError

MERGE_ATTEMPTS = 10
"""Compare-and-swap rounds before giving up on a target that keeps moving (each loser waits a little
longer, with jitter, so a crowd of merges spreads out instead of colliding again)."""
MERGER = ("orchestrator", "orchestrator@codegen-orchestrator.local")
_GIT_TIMEOUT_S = 60
_REPO_LOCATING_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)


def git_env() -> dict[str, str]:
    """The environment git runs with: nothing that would point it at another repository."""
    return {k: v for k, v in os.environ.items() if k not in _REPO_LOCATING_VARS}


def run_git(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`git *args` (text output, never raising on its exit status); RepoHostError if git is missing or hangs."""
    try:
        return subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            env=env or git_env(),
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise RepoHostError("git is not installed (the repo host needs it)") from None
    except subprocess.TimeoutExpired:
        raise RepoHostError(f"git {' '.join(args)} did not finish within {_GIT_TIMEOUT_S}s") from None


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_git("--git-dir", str(repo), *args, env=env)


def _checked(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = _run(repo, *args, env=env)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise RepoHostError(f"git {args[0]} failed (exit {result.returncode}): {output[-500:]}")
    return result.stdout.strip()


def ref_head(repo: Path, branch: str) -> str | None:
    result = _run(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return _run(repo, "merge-base", "--is-ancestor", older, newer).returncode == 0


def merge_tree(repo: Path, base: str, head: str) -> tuple[str | None, list[str]]:
    """(the merged tree, []) or (None, the conflicting paths)."""
    result = _run(repo, "merge-tree", "--write-tree", "--name-only", "--no-messages", base, head)
    lines = [line for line in result.stdout.splitlines() if line]
    if result.returncode == 0 and lines:
        return lines[0], []
    if result.returncode == 1 and lines:
        return None, sorted(set(lines[1:]))
    raise RepoHostError(f"git merge-tree failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


def _commit(repo: Path, tree: str, parents: Sequence[str], message: str) -> str:
    env = git_env() | {
        "GIT_AUTHOR_NAME": MERGER[0],
        "GIT_AUTHOR_EMAIL": MERGER[1],
        "GIT_COMMITTER_NAME": MERGER[0],
        "GIT_COMMITTER_EMAIL": MERGER[1],
    }
    args = [arg for parent in parents for arg in ("-p", parent)]
    return _checked(repo, "commit-tree", tree, *args, "-m", message, env=env)


def merge_branch(repo: Path, branch: str, into: str, message: str) -> MergeOutcome:
    """Merge `branch` into `into` in the bare repository `repo` (see the module's docstring).

    Already contained: `merged` with the target's tip. Target is an ancestor: a fast-forward. Else a
    merge commit (first parent: the target). A real conflict changes nothing and names the paths.
    """
    for attempt in range(MERGE_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0.02, 0.1) * attempt)  # noqa: S311 (jitter, not a secret)
        head = ref_head(repo, branch)
        if head is None:
            raise RepoHostError(f"branch {branch} does not exist in {repo.name}")
        base = ref_head(repo, into)
        if base is not None and is_ancestor(repo, head, base):
            return MergeOutcome("merged", sha=base, fast_forward=False, already=True)
        if base is None or is_ancestor(repo, base, head):
            new, fast_forward = head, True
        else:
            tree, conflicts = merge_tree(repo, base, head)
            if tree is None:
                return MergeOutcome("conflict", conflicts=tuple(conflicts))
            new, fast_forward = _commit(repo, tree, (base, head), message), False
        # the empty old value makes git require that the ref does not exist yet
        swapped = _run(repo, "update-ref", "-m", message, f"refs/heads/{into}", new, base or "")
        if swapped.returncode == 0:
            return MergeOutcome("merged", sha=new, fast_forward=fast_forward)
    raise RepoHostError(f"{into} kept moving: {MERGE_ATTEMPTS} merges of {branch} lost the race; try again")
