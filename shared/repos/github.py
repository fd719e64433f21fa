"""The GitHub repo host: REST API v3 for repositories and pull requests, git over HTTPS for code.

The token never travels through the system: the adapter holds a secret *reference* and reads
the value on first use (then keeps it for the object's life, re-reading once if GitHub answers
401, so a rotated token is picked up without a restart). Every error message is scrubbed of it.

For git, prefer `git_auth_env()` over `push_url()`: it hands git the credentials as an
`http.<url>.extraHeader` in environment variables (visible only to the same user in
`/proc/<pid>/environ`), whereas a URL with the token sits in the subprocess's argv (visible to
every user in `ps`) and in any error message git prints about that remote.

`clone_url` is taken from the API response as it is, so a GitHub Enterprise server, or the fake
server in the tests (which serves local bare repositories), work unchanged; only an https clone
URL gets the token spliced into `push_url`.

The calls themselves (token, retry, error messages) are `shared.repos.github_api.GitHubApi`.
"""

from __future__ import annotations

import base64
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from shared.observability import get_logger
from shared.repos.github_api import GitHubApi, mentions
from shared.repos.names import check_branch_name, check_owner, split_full_name
from shared.repos.port import MergeOutcome, PullRequest, RepoHostError, RepoInfo
from shared.secrets import SecretsPort

_PAGE_SIZE = 100
_MAX_PAGES = 100
_PULL_STATES = {"open", "closed", "merged", "all"}
_CHECK_PASSED = {"success", "neutral", "skipped"}


def _pull_request(data: dict[str, Any]) -> PullRequest:
    state = "merged" if data.get("merged_at") else str(data["state"])
    return PullRequest(
        number=int(data["number"]),
        url=str(data["html_url"]),
        state=state,
        head=str(data["head"]["ref"]),
        base=str(data["base"]["ref"]),
        title=str(data["title"]),
    )


def _repo_info(data: dict[str, Any]) -> RepoInfo:
    return RepoInfo(
        full_name=str(data["full_name"]),
        clone_url=str(data["clone_url"]),
        web_url=str(data["html_url"]) if data.get("html_url") else None,
        default_branch=str(data.get("default_branch") or "main"),
    )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class GitHubRepoHost:
    """Repositories of one owner (a user, or an organisation with `owner_is_org`); thread-safe."""

    backend = "github"
    supports_pull_requests = True

    def __init__(
        self,
        owner: str,
        token_ref: str,
        secrets: SecretsPort,
        api_url: str = "https://api.github.com",
        owner_is_org: bool = False,
        client: httpx.Client | None = None,
        *,
        git_url: str | None = None,
        timeout: float = 15.0,
        retry_delay: float = 1.0,
    ) -> None:
        check_owner(owner)
        self.owner = owner
        self.token_ref = token_ref
        self.api_url = api_url.rstrip("/")
        self.owner_is_org = owner_is_org
        self.git_url = (git_url or self._git_url_for(self.api_url)).rstrip("/")
        """Where git talks to this host (https://github.com for api.github.com); scopes the auth header."""
        self._api = GitHubApi(api_url, token_ref, secrets, client, timeout=timeout, retry_delay=retry_delay)

    @staticmethod
    def _git_url_for(api_url: str) -> str:
        """github.com serves its API from api.github.com; Enterprise serves both from one host (/api/v3)."""
        scheme, netloc = _origin(api_url)
        if netloc.lower() == "api.github.com":
            netloc = "github.com"
        return f"{scheme}://{netloc}"

    def close(self) -> None:
        """Closes the HTTP client if this object made it."""
        self._api.close()

    def __enter__(self) -> GitHubRepoHost:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the port ------------------------------------------------------------------------

    def create_repo(self, full_name: str, description: str = "", private: bool = True) -> RepoInfo:
        owner, name = split_full_name(full_name)
        if owner.lower() != self.owner.lower():
            raise RepoHostError(f"this GitHub host creates repositories under {self.owner}, not {owner}")
        path = f"/orgs/{self.owner}/repos" if self.owner_is_org else "/user/repos"
        body = {"name": name, "description": description, "private": private, "auto_init": False}
        response = self._api.request("POST", path, json=body)
        if response.status_code == 422 and mentions(response, "already exists"):
            existing = self.get_repo(full_name)
            if existing is not None:
                return existing
        if response.status_code != 201:
            raise self._api.error(response, f"creating {full_name}")
        info = _repo_info(response.json())
        if info.full_name.lower() != full_name.lower():
            # POST /user/repos creates under the token's user, whatever `owner` says.
            raise RepoHostError(
                f"GitHub created {info.full_name} instead of {full_name}: the token belongs to another "
                "account; for an organisation set ORCH_GITHUB_OWNER_IS_ORG=true"
            )
        get_logger().info(
            "repository created", extra={"repository": info.full_name, "repo_host": self.backend}
        )
        return info

    def get_repo(self, full_name: str) -> RepoInfo | None:
        split_full_name(full_name)
        response = self._api.request("GET", f"/repos/{full_name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._api.error(response, f"reading {full_name}")
        return _repo_info(response.json())

    def push_url(self, full_name: str) -> str:
        """The clone URL with the token as the password (https only; other URLs are returned as they are).

        Prefer `git_auth_env()`: this URL ends up in git's argv and in git's own error messages.
        """
        info = self.get_repo(full_name)
        if info is None:
            raise RepoHostError(
                f"repository {full_name} does not exist on GitHub (or the token cannot see it)"
            )
        parts = urlsplit(info.clone_url)
        if parts.scheme != "https":
            return info.clone_url
        host = parts.hostname or ""
        netloc = f"x-access-token:{quote(self._api.token(), safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def git_auth_env(self) -> dict[str, str]:
        """Environment variables that make git authenticate to this host without the token in a URL.

        Merge them into a copy of `os.environ` for the git subprocess only (they replace any
        `GIT_CONFIG_COUNT` already there). The header is scoped to `git_url`, so git never sends it
        to another remote (a submodule elsewhere, a redirect). Prompting is disabled: a missing or
        wrong token fails the command instead of hanging it.
        """
        credentials = base64.b64encode(f"x-access-token:{self._api.token()}".encode()).decode()
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{self.git_url}/.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
            "GIT_TERMINAL_PROMPT": "0",
        }

    def branch_head(self, full_name: str, branch: str) -> str | None:
        split_full_name(full_name)
        check_branch_name(branch)
        response = self._api.request("GET", f"/repos/{full_name}/branches/{quote(branch, safe='/')}")
        if response.status_code == 404:
            return None  # no such branch, an empty repository, or no such repository
        if response.status_code != 200:
            raise self._api.error(response, f"reading branch {branch} of {full_name}")
        return str(response.json()["commit"]["sha"])

    def read_file(self, full_name: str, ref: str, path: str) -> bytes | None:
        split_full_name(full_name)
        response = self._api.request(
            "GET", f"/repos/{full_name}/contents/{quote(path.lstrip('/'), safe='/')}", params={"ref": ref}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._api.error(response, f"reading {path} at {ref} of {full_name}")
        data = response.json()
        if not isinstance(data, dict) or data.get("type") != "file":
            return None  # a directory listing, a symlink or a submodule
        if data.get("encoding") != "base64":
            raise RepoHostError(f"{path} in {full_name} is too large to read through the contents API")
        return base64.b64decode(data.get("content") or "")

    def open_pull_request(self, full_name: str, head: str, base: str, title: str, body: str) -> PullRequest:
        owner, _ = split_full_name(full_name)
        head_owner, _, head_branch = head.rpartition(":")
        check_branch_name(head_branch)
        check_branch_name(base)
        response = self._api.request(
            "POST",
            f"/repos/{full_name}/pulls",
            json={"title": title, "head": head, "base": base, "body": body},
        )
        if response.status_code == 422 and mentions(response, "a pull request already exists"):
            existing = self._open_pull_requests(full_name, f"{head_owner or owner}:{head_branch}", base)
            if existing:
                return existing[0]
        if response.status_code != 201:
            raise self._api.error(response, f"opening a pull request {head} -> {base} on {full_name}")
        pull = _pull_request(response.json())
        get_logger().info(
            "pull request opened",
            extra={"repository": full_name, "pull_request": pull.number, "repo_host": self.backend},
        )
        return pull

    def list_pull_requests(self, full_name: str, state: str = "open") -> list[PullRequest]:
        """Those whose `state` is `state` (open, closed = closed unmerged, merged), or `all`."""
        split_full_name(full_name)
        if state not in _PULL_STATES:
            raise ValueError(f"state must be one of {sorted(_PULL_STATES)}, not {state!r}")
        api_state = "closed" if state == "merged" else state
        pulls = self._paginate(
            f"/repos/{full_name}/pulls", {"state": api_state}, f"listing pulls of {full_name}"
        )
        return [p for p in pulls if state == "all" or p.state == state]

    def merge(self, full_name: str, branch: str, into: str, message: str) -> MergeOutcome:
        """Through the branch's pull request (opened if there is none), merged with a merge commit
        when every commit status and check run on its head passed (none configured: passed). The
        merge names the head sha it saw, so a branch pushed meanwhile is not merged unchecked
        (GitHub answers 409: `pending`, look again). GitHub does not name conflicting files: those
        both sides changed since their merge base are named instead."""
        owner, _ = split_full_name(full_name)
        check_branch_name(branch)
        check_branch_name(into)
        head = self.branch_head(full_name, branch)
        if head is None:
            raise RepoHostError(f"branch {branch} does not exist in {full_name}")
        done = self._merged_pull(full_name, f"{owner}:{branch}", into, head)
        if done is not None:
            return done
        title = message.splitlines()[0] if message else f"Merge {branch}"
        pull = self.open_pull_request(full_name, branch, into, title, message)
        checks, detail = self._checks(full_name, head)
        if checks != "passed":
            return MergeOutcome(checks, detail=detail, pull_request=pull)
        body = {"merge_method": "merge", "sha": head, "commit_title": title}
        response = self._api.request("PUT", f"/repos/{full_name}/pulls/{pull.number}/merge", json=body)
        if response.status_code == 200:
            return MergeOutcome("merged", sha=str(response.json()["sha"]), pull_request=pull)
        if response.status_code == 409:  # the head moved since we looked: its checks are not known yet
            return MergeOutcome(
                "pending", detail="the branch moved; its checks start again", pull_request=pull
            )
        if response.status_code == 405 and self._conflicted(full_name, pull.number):
            files = self._changed_on_both_sides(full_name, into, branch)
            return MergeOutcome(
                "conflict", conflicts=files, detail="GitHub: not mergeable", pull_request=pull
            )
        # 405 for another reason (a required review, a required check not reported yet): GitHub says which
        raise self._api.error(response, f"merging pull request #{pull.number} of {full_name}")

    # -- helpers ---------------------------------------------------------------------------

    def _merged_pull(self, full_name: str, head_label: str, base: str, head_sha: str) -> MergeOutcome | None:
        """The merged pull request of exactly this head commit, if any (a replayed merge)."""
        params = {"state": "closed", "head": head_label, "base": base, "per_page": str(_PAGE_SIZE)}
        response = self._api.request("GET", f"/repos/{full_name}/pulls", params=params)
        if response.status_code != 200:
            raise self._api.error(response, f"finding the merged pull request for {head_label}")
        for data in response.json():
            if data.get("merged_at") and data["head"].get("sha") == head_sha and data.get("merge_commit_sha"):
                sha = str(data["merge_commit_sha"])
                return MergeOutcome("merged", sha=sha, already=True, pull_request=_pull_request(data))
        return None

    def _checks(self, full_name: str, sha: str) -> tuple[Literal["passed", "pending", "checks_failed"], str]:
        """Commit statuses and check runs on `sha` together: any failed -> checks_failed, else any not
        finished -> pending, else passed; the detail names the ones that decided it."""
        results: list[tuple[str, str]] = []  # (name, success | pending | failure)
        response = self._api.request("GET", f"/repos/{full_name}/commits/{sha}/status")
        if response.status_code == 200:
            for status in response.json().get("statuses") or []:
                state = str(status.get("state"))
                results.append((str(status.get("context")), "success" if state == "success" else state))
        elif response.status_code != 404:
            raise self._api.error(response, f"reading the statuses of {sha[:10]} in {full_name}")
        response = self._api.request("GET", f"/repos/{full_name}/commits/{sha}/check-runs")
        if response.status_code == 200:
            for run in response.json().get("check_runs") or []:
                conclusion = run.get("conclusion")
                verdict = (
                    "pending"
                    if run.get("status") != "completed"
                    else "success"
                    if conclusion in _CHECK_PASSED
                    else "failure"
                )
                results.append((str(run.get("name")), verdict))
        elif response.status_code != 404:
            raise self._api.error(response, f"reading the check runs of {sha[:10]} in {full_name}")
        failing = [name for name, verdict in results if verdict in ("failure", "error")]
        if failing:
            return "checks_failed", "failed: " + ", ".join(failing)
        running = [name for name, verdict in results if verdict == "pending"]
        if running:
            return "pending", "running: " + ", ".join(running)
        return "passed", f"{len(results)} check(s) passed"

    def _conflicted(self, full_name: str, number: int) -> bool:
        """Whether GitHub says the pull request conflicts with its base (mergeable_state "dirty")."""
        response = self._api.request("GET", f"/repos/{full_name}/pulls/{number}")
        if response.status_code != 200:
            raise self._api.error(response, f"reading pull request #{number} of {full_name}")
        data = response.json()
        return data.get("mergeable") is False and data.get("mergeable_state") == "dirty"

    def _changed_on_both_sides(self, full_name: str, into: str, branch: str) -> tuple[str, ...]:
        """Paths changed on `branch` and on `into` since their merge base (a superset of the conflicts)."""
        ours = self._compare(full_name, into, branch)
        if ours is None:
            return ()
        base_sha, branch_files = ours
        theirs = self._compare(full_name, base_sha, into)
        return tuple(sorted(branch_files & theirs[1])) if theirs is not None else ()

    def _compare(self, full_name: str, base: str, head: str) -> tuple[str, set[str]] | None:
        path = f"/repos/{full_name}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        response = self._api.request("GET", path)
        if response.status_code != 200:
            return None
        data = response.json()
        files = {str(item["filename"]) for item in data.get("files") or []}
        return str(data["merge_base_commit"]["sha"]), files

    def _open_pull_requests(self, full_name: str, head_label: str, base: str) -> list[PullRequest]:
        params = {"state": "open", "head": head_label, "base": base}
        return self._paginate(
            f"/repos/{full_name}/pulls", params, f"finding the pull request for {head_label}"
        )

    def _paginate(self, path: str, params: dict[str, str], what: str) -> list[PullRequest]:
        pulls: list[PullRequest] = []
        url: str | None = path
        query: dict[str, str] | None = {**params, "per_page": str(_PAGE_SIZE)}
        for _page in range(_MAX_PAGES):
            if url is None:
                return pulls
            response = self._api.request("GET", url, params=query)
            if response.status_code != 200:
                raise self._api.error(response, what)
            pulls.extend(_pull_request(item) for item in response.json())
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries the whole query
            if url is not None and _origin(url) != _origin(self.api_url):
                raise RepoHostError(f"GitHub {what}: refusing to follow a page link to another host")
        raise RepoHostError(f"GitHub {what}: more than {_MAX_PAGES} pages")
