"""A fake GitHub: the REST endpoints the GitHub repo host uses, on 127.0.0.1, backed by real bare repositories.

It records every request (method, path, query, headers, JSON body) so tests can check what the
adapter sent, answers with GitHub's real response and error shapes (201/404/422/401 bodies,
`Link` pagination), and checks `Authorization: Bearer <token>` on every API call.

Each created repository is a real `git init --bare` under `root`; its `clone_url` is that path,
so local git clones and pushes it. With `git_over_http=True` the clone URL is instead
`http://127.0.0.1:<port>/git/<owner>/<name>.git`, served by `git http-backend` behind HTTP Basic
auth (`x-access-token:<token>`, as github.com takes it), which proves the adapter's
`git_auth_env()` end to end.

    with FakeGitHub(tmp_path / "github", token="ghp_...") as github:
        host = GitHubRepoHost("octo", ref, secrets, api_url=github.url)
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from shared.repos.git_merge import merge_branch, merge_tree

DOCS = "https://docs.github.com/rest"
WEB_HOST = "https://github.example"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """Parsed JSON for API calls; None for git traffic and empty bodies."""


@dataclass
class FakeRepo:
    owner: str
    name: str
    path: Path
    private: bool
    description: str
    id: int
    pulls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> _Reply:
    body: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return _Reply(status, body)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False, timeout=60)


class FakeGitHub:
    """Start it (or use it as a context manager); `url` is the API root to give the adapter."""

    def __init__(
        self,
        root: Path,
        token: str,
        *,
        login: str = "octo",
        max_per_page: int = 100,
        git_over_http: bool = False,
        bind: str = "127.0.0.1",
    ) -> None:
        self.root = Path(root)
        self.token = token
        self.login = login
        self.max_per_page = max_per_page
        self.git_over_http = git_over_http
        self.bind = bind
        self.requests: list[RecordedRequest] = []
        self.repos: dict[str, FakeRepo] = {}
        self._failures: list[_Reply] = []
        self.statuses: dict[str, list[dict[str, str]]] = {}
        """Commit statuses by sha (`set_status`); none: GitHub's combined state with total_count 0."""
        self.check_runs: dict[str, list[dict[str, Any]]] = {}
        """Check runs by sha (`set_check_run`)."""
        self.merge_refusal: str | None = None
        """When set, merging any pull request answers 405 with this message (branch protection)."""
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake GitHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host!s}:{port}"  # noqa: S104

    def start(self) -> FakeGitHub:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer((self.bind, 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------

    def fail_next(
        self, status: int, times: int = 1, headers: dict[str, str] | None = None, message: str | None = None
    ) -> None:
        """The next `times` API calls get this status (with GitHub's error body) instead of an answer."""
        if message is None:
            message = "API rate limit exceeded" if status in (403, 429) else HTTPStatus(status).phrase
        with self._lock:
            for _ in range(times):
                reply = _error(status, message)
                reply.headers.update(headers or {})
                self._failures.append(reply)

    def api_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if not r.path.startswith("/git/")]

    def git_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/git/")]

    def repo(self, full_name: str) -> FakeRepo:
        return self.repos[full_name.lower()]

    def close_pull(self, full_name: str, number: int, merged: bool = False) -> None:
        with self._lock:
            for pull in self.repo(full_name).pulls:
                if pull["number"] == number:
                    pull["state"] = "closed"
                    pull["merged_at"] = "2024-01-01T00:00:00Z" if merged else None

    def set_status(self, sha: str, context: str, state: str) -> None:
        """A commit status (success | pending | failure | error), replacing one of the same context."""
        with self._lock:
            entries = [s for s in self.statuses.get(sha, []) if s["context"] != context]
            self.statuses[sha] = [*entries, {"context": context, "state": state}]

    def set_check_run(self, sha: str, name: str, status: str, conclusion: str | None = None) -> None:
        """A check run (status queued | in_progress | completed; conclusion success | failure | ...)."""
        with self._lock:
            runs = [r for r in self.check_runs.get(sha, []) if r["name"] != name]
            self.check_runs[sha] = [*runs, {"name": name, "status": status, "conclusion": conclusion}]

    # -- the API ---------------------------------------------------------------------------

    def handle_api(self, method: str, path: str, query: dict[str, str], body: Any) -> _Reply:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        for pattern, route_method, action in self._routes():
            match = pattern.fullmatch(path)
            if match and route_method == method:
                with self._lock:
                    return action(*[unquote(g) for g in match.groups()], query=query, body=body)
        return _error(404, "Not Found")

    def _routes(self) -> list[tuple[re.Pattern[str], str, Callable[..., _Reply]]]:
        return [
            (re.compile(r"/user/repos"), "POST", self._create_user_repo),
            (re.compile(r"/orgs/([^/]+)/repos"), "POST", self._create_org_repo),
            (re.compile(r"/repos/([^/]+)/([^/]+)"), "GET", self._get_repo),
            (re.compile(r"/repos/([^/]+)/([^/]+)/branches/(.+)"), "GET", self._get_branch),
            (re.compile(r"/repos/([^/]+)/([^/]+)/contents/(.+)"), "GET", self._get_contents),
            (re.compile(r"/repos/([^/]+)/([^/]+)/pulls"), "POST", self._create_pull),
            (re.compile(r"/repos/([^/]+)/([^/]+)/pulls"), "GET", self._list_pulls),
            (re.compile(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)"), "GET", self._get_pull),
            (re.compile(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)/merge"), "PUT", self._merge_pull),
            (re.compile(r"/repos/([^/]+)/([^/]+)/commits/([^/]+)/status"), "GET", self._combined_status),
            (re.compile(r"/repos/([^/]+)/([^/]+)/commits/([^/]+)/check-runs"), "GET", self._check_runs),
            (re.compile(r"/repos/([^/]+)/([^/]+)/compare/(.+)\.\.\.(.+)"), "GET", self._compare),
        ]

    def _create_user_repo(self, *, query: dict[str, str], body: Any) -> _Reply:
        return self._create(self.login, body, "create-a-repository-for-the-authenticated-user")

    def _create_org_repo(self, org: str, *, query: dict[str, str], body: Any) -> _Reply:
        return self._create(org, body, "create-an-organization-repository")

    def _create(self, owner: str, body: Any, doc_anchor: str) -> _Reply:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name):
            return _error(
                422,
                "Repository creation failed.",
                [{"resource": "Repository", "code": "missing_field", "field": "name"}],
            )
        key = f"{owner}/{name}".lower()
        if key in self.repos:
            reply = _error(
                422,
                "Repository creation failed.",
                [
                    {
                        "resource": "Repository",
                        "code": "custom",
                        "field": "name",
                        "message": "name already exists on this account",
                    }
                ],
            )
            reply.body["documentation_url"] = f"https://docs.github.com/rest/repos/repos#{doc_anchor}"
            return reply
        path = self.root / owner / f"{name}.git"
        result = _git("init", "--quiet", "--bare", "-b", "main", str(path))
        if result.returncode != 0:
            return _error(500, f"git init failed: {result.stderr}")
        repo = FakeRepo(
            owner=owner,
            name=name,
            path=path,
            private=bool(body.get("private", False)),
            description=str(body.get("description") or ""),
            id=len(self.repos) + 1,
        )
        self.repos[key] = repo
        return _Reply(201, self._repo_json(repo))

    def _get_repo(self, owner: str, name: str, *, query: dict[str, str], body: Any) -> _Reply:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            return _error(404, "Not Found")
        return _Reply(200, self._repo_json(repo))

    def _get_branch(self, owner: str, name: str, branch: str, *, query: dict[str, str], body: Any) -> _Reply:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            return _error(404, "Not Found")
        sha = self._head(repo, branch)
        if sha is None:
            return _error(404, "Branch not found")
        return _Reply(200, {"name": branch, "commit": {"sha": sha}, "protected": False})

    def _get_contents(self, owner: str, name: str, path: str, *, query: dict[str, str], body: Any) -> _Reply:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            return _error(404, "Not Found")
        ref = query.get("ref") or "main"
        shown = subprocess.run(
            ["git", "--git-dir", str(repo.path), "show", f"{ref}:{path}"], capture_output=True, check=False
        )
        if shown.returncode != 0:
            return _error(404, "Not Found")
        content = base64.b64encode(shown.stdout).decode()
        return _Reply(200, {"type": "file", "encoding": "base64", "path": path, "content": content})

    def _create_pull(self, owner: str, name: str, *, query: dict[str, str], body: Any) -> _Reply:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            return _error(404, "Not Found")
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("head", "base", "title")
        ):
            return _error(422, "Validation Failed", [{"resource": "PullRequest", "code": "missing_field"}])
        head = str(body["head"]).rpartition(":")[2]
        base = str(body["base"])
        for label, branch in (("head", head), ("base", base)):
            if self._head(repo, branch) is None:
                return _error(
                    422, "Validation Failed", [{"resource": "PullRequest", "field": label, "code": "invalid"}]
                )
        for pull in repo.pulls:
            if pull["state"] == "open" and pull["head"]["ref"] == head and pull["base"]["ref"] == base:
                return _error(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {repo.owner}:{head}.",
                        }
                    ],
                )
        number = len(repo.pulls) + 1
        pull = {
            "number": number,
            "html_url": f"{WEB_HOST}/{repo.full_name}/pull/{number}",
            "state": "open",
            "title": body["title"],
            "body": body.get("body"),
            "head": {"ref": head, "label": f"{repo.owner}:{head}", "sha": self._head(repo, head)},
            "base": {"ref": base, "label": f"{repo.owner}:{base}"},
            "merged_at": None,
        }
        repo.pulls.append(pull)
        return _Reply(201, pull)

    def _list_pulls(self, owner: str, name: str, *, query: dict[str, str], body: Any) -> _Reply:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            return _error(404, "Not Found")
        state = query.get("state", "open")
        pulls = [p for p in reversed(repo.pulls) if state == "all" or p["state"] == state]
        if "head" in query:
            pulls = [p for p in pulls if p["head"]["label"].lower() == query["head"].lower()]
        if "base" in query:
            pulls = [p for p in pulls if p["base"]["ref"] == query["base"]]
        per_page = min(int(query.get("per_page", "30")), self.max_per_page)
        page = int(query.get("page", "1"))
        last = max(1, -(-len(pulls) // per_page))
        reply = _Reply(200, pulls[(page - 1) * per_page : page * per_page])
        links = []
        base_url = f"{self.url}/repos/{owner}/{name}/pulls"
        if page < last:
            links.append(f'<{base_url}?{urlencode({**query, "page": page + 1})}>; rel="next"')
            links.append(f'<{base_url}?{urlencode({**query, "page": last})}>; rel="last"')
        if page > 1:
            links.append(f'<{base_url}?{urlencode({**query, "page": 1})}>; rel="first"')
        if links:
            reply.headers["Link"] = ", ".join(links)
        return reply

    def _get_pull(self, owner: str, name: str, number: str, *, query: dict[str, str], body: Any) -> _Reply:
        """With `mergeable` / `mergeable_state` computed now by a real merge-tree (GitHub computes them
        in the background; "dirty" means a conflict)."""
        repo = self.repos.get(f"{owner}/{name}".lower())
        pull = next((p for p in repo.pulls if p["number"] == int(number)), None) if repo else None
        if repo is None or pull is None:
            return _error(404, "Not Found")
        if pull["state"] != "open":
            return _Reply(200, {**pull, "mergeable": None, "mergeable_state": "unknown"})
        base, head = self._head(repo, pull["base"]["ref"]), self._head(repo, pull["head"]["ref"])
        tree, _conflicts = merge_tree(repo.path, base or "", head or "")
        state = "clean" if tree is not None else "dirty"
        return _Reply(200, {**pull, "mergeable": tree is not None, "mergeable_state": state})

    def _merge_pull(self, owner: str, name: str, number: str, *, query: dict[str, str], body: Any) -> _Reply:
        """A real merge in the bare repository (`shared.repos.git_merge`, as the local host does it)."""
        repo = self.repos.get(f"{owner}/{name}".lower())
        pull = next((p for p in repo.pulls if p["number"] == int(number)), None) if repo else None
        if repo is None or pull is None:
            return _error(404, "Not Found")
        if pull["state"] != "open":
            return _error(405, "Pull Request is not mergeable")
        if self.merge_refusal:
            return _error(405, self.merge_refusal)
        head = self._head(repo, pull["head"]["ref"])
        if isinstance(body, dict) and body.get("sha") and body["sha"] != head:
            return _error(409, "Head branch was modified. Review and try the merge again.")
        title = (body or {}).get("commit_title") or f"Merge pull request #{number}"
        outcome = merge_branch(repo.path, pull["head"]["ref"], pull["base"]["ref"], str(title))
        if outcome.status != "merged":
            return _error(405, "Pull Request is not mergeable")
        pull.update(state="closed", merged_at="2024-01-01T00:00:00Z", merge_commit_sha=outcome.sha)
        pull["head"]["sha"] = head
        return _Reply(
            200, {"sha": outcome.sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    def _combined_status(
        self, owner: str, name: str, sha: str, *, query: dict[str, str], body: Any
    ) -> _Reply:
        statuses = self.statuses.get(sha, [])
        states = {s["state"] for s in statuses}
        state = next((s for s in ("failure", "error", "pending") if s in states), "success")
        combined = "pending" if not statuses else state
        return _Reply(
            200, {"state": combined, "sha": sha, "total_count": len(statuses), "statuses": statuses}
        )

    def _check_runs(self, owner: str, name: str, sha: str, *, query: dict[str, str], body: Any) -> _Reply:
        runs = self.check_runs.get(sha, [])
        return _Reply(200, {"total_count": len(runs), "check_runs": runs})

    def _compare(
        self, owner: str, name: str, base: str, head: str, *, query: dict[str, str], body: Any
    ) -> _Reply:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            return _error(404, "Not Found")
        merge_base = _git("--git-dir", str(repo.path), "merge-base", base, head)
        if merge_base.returncode != 0:
            return _error(404, "Not Found")
        base_sha = merge_base.stdout.strip()
        diff = _git("--git-dir", str(repo.path), "diff", "--name-only", base_sha, head)
        files = [{"filename": line} for line in diff.stdout.splitlines() if line]
        return _Reply(200, {"merge_base_commit": {"sha": base_sha}, "files": files})

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        clone_url = f"{self.url}/git/{repo.full_name}.git" if self.git_over_http else str(repo.path)
        return {
            "id": repo.id,
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {"login": repo.owner, "type": "User" if repo.owner == self.login else "Organization"},
            "private": repo.private,
            "description": repo.description or None,
            "html_url": f"{WEB_HOST}/{repo.full_name}",
            "url": f"{self.url}/repos/{repo.full_name}",
            "clone_url": clone_url,
            "default_branch": "main",
        }

    @staticmethod
    def _head(repo: FakeRepo, branch: str) -> str | None:
        result = _git("--git-dir", str(repo.path), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        return result.stdout.strip() if result.returncode == 0 else None

    # -- git smart HTTP ------------------------------------------------------------------------

    def git_authorized(self, headers: dict[str, str]) -> bool:
        expected = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"

    def handle_git(
        self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes
    ) -> _Reply:
        """Runs `git http-backend` as CGI for /git/<owner>/<name>.git/..."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path.removeprefix("/git"),
            "REQUEST_METHOD": method,
            "QUERY_STRING": raw_query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if "content-encoding" in headers:
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        if "git-protocol" in headers:
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False, timeout=60
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        reply = _Reply(200, payload)
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                reply.status = int(value.strip().split()[0])
            elif key:
                reply.headers[key.strip()] = value.strip()
        return reply


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class _GitHubHandler(BaseHTTPRequestHandler):
    github: FakeGitHub
    """The fake this handler serves; `_handler_for` binds it in a subclass."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""

    def _serve(self) -> None:
        github = self.github
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = _read_body(self)
        is_git = parts.path.startswith("/git/")
        body: Any = None
        if raw and not is_git:
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(_error(400, "Problems parsing JSON"))
                return
        query = dict(parse_qsl(parts.query))
        with github._lock:
            github.requests.append(RecordedRequest(self.command, parts.path, query, headers, body))
        if is_git:
            if not github.git_authorized(headers):
                self._send(_Reply(401, b"", {"WWW-Authenticate": 'Basic realm="GitHub"'}))
                return
            self._send(github.handle_git(self.command, parts.path, parts.query, headers, raw))
            return
        if headers.get("authorization") != f"Bearer {github.token}":
            self._send(_error(401, "Bad credentials"))
            return
        self._send(github.handle_api(self.command, parts.path, query, body))

    def _send(self, reply: _Reply) -> None:
        if isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = json.dumps(reply.body).encode() if reply.body is not None else b""
            reply.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _handler_for(github: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_GitHubHandler,), {"github": github})
