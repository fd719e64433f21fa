"""Repository hosts: where project repositories live (local bare repositories, or GitHub).

The adapters themselves (`shared.repos.local`, `shared.repos.github`) are imported by
`build_repo_host` when chosen, so importing this package loads neither git helpers nor httpx.
"""

from shared.repos.factory import RepoHostSettings, build_repo_host
from shared.repos.names import InvalidRepoName, check_branch_name, check_owner, split_full_name
from shared.repos.port import PullRequest, RepoHost, RepoHostError, RepoInfo

__all__ = [
    "InvalidRepoName",
    "PullRequest",
    "RepoHost",
    "RepoHostError",
    "RepoHostSettings",
    "RepoInfo",
    "build_repo_host",
    "check_branch_name",
    "check_owner",
    "split_full_name",
]
