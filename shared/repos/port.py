"""The repo host port. Two adapters: local bare repositories in the data dir (embedded default)
and GitHub (REST API + git over HTTPS with a token resolved from a secret reference)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


class RepoHostError(RuntimeError):
    """The host refused or failed; the message says what and never contains a token."""


@dataclass(frozen=True)
class RepoInfo:
    full_name: str
    """owner/name"""
    clone_url: str
    """What `git clone` takes, without credentials (a path for local repos, https for GitHub)."""
    web_url: str | None
    default_branch: str


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str
    """open | closed | merged"""
    head: str
    base: str
    title: str


MergeStatus = Literal["merged", "conflict", "pending", "checks_failed"]


@dataclass(frozen=True)
class MergeOutcome:
    """What `RepoHost.merge` did.

    merged: `sha` is the target's tip that now holds the branch (a merge commit, the branch's own
    tip after a fast-forward, or the tip already containing it: `already`). conflict: nothing
    changed; `conflicts` names the paths both sides changed. pending / checks_failed (GitHub): the
    pull request's checks are still running / did not pass; `detail` names them.
    """

    status: MergeStatus
    sha: str | None = None
    conflicts: tuple[str, ...] = ()
    fast_forward: bool = False
    already: bool = False
    detail: str = ""
    pull_request: PullRequest | None = None


@runtime_checkable
class RepoHost(Protocol):
    backend: str
    supports_pull_requests: bool

    def create_repo(self, full_name: str, description: str = "", private: bool = True) -> RepoInfo:
        """Create it, or return the existing one (idempotent)."""
        ...

    def get_repo(self, full_name: str) -> RepoInfo | None:
        """None when it does not exist (e.g. deleted on the host)."""
        ...

    def push_url(self, full_name: str) -> str:
        """A URL `git push` can use. For GitHub it carries a token resolved just now: use it only in a
        subprocess's config/env, never log it."""
        ...

    def branch_head(self, full_name: str, branch: str) -> str | None:
        """The commit sha at the tip of `branch`, or None if the branch (or repo) does not exist."""
        ...

    def open_pull_request(self, full_name: str, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a PR (or return the open one for the same head/base). Raises RepoHostError if unsupported."""
        ...

    def list_pull_requests(self, full_name: str, state: str = "open") -> list[PullRequest]: ...

    def read_file(self, full_name: str, ref: str, path: str) -> bytes | None:
        """A file's content at `ref` (branch or commit), or None when the file (or ref) is absent."""
        ...

    def merge(self, full_name: str, branch: str, into: str, message: str) -> MergeOutcome:
        """Merge `branch` into `into` if it can be done safely now; idempotent (a merged branch
        answers `merged` again). Local: at once, atomically. GitHub: through the branch's pull
        request (opened if needed), only once its checks pass; otherwise `pending`/`checks_failed`."""
        ...
