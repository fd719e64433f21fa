"""The scaffolder commits and pushes with dulwich: no `git` binary, as on the Lambda python3.12 runtime.

With PATH stripped of git, the scaffold is pushed to a local bare repository and, through the GitHub
repo host, to a fake GitHub serving `git http-backend` behind Basic auth; then real git (back on
PATH) clones the result and checks the files, the author and the branch. A wrong token fails the
push with a `ScaffoldError` that does not contain it.

The fake GitHub is the server side, which has git: its own git runs by absolute path, so only the
scaffolder's side loses it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from functions.scaffolder.logic import IDENTITY, ScaffoldError, render_and_push, scaffold
from infra_cdk import constants
from shared.contracts import SCAFFOLDER_RESULTS, ScaffolderMessage, ScaffolderResult
from shared.contracts.api import Project
from shared.contracts.registry import parse_message
from shared.queues.local import LocalQueue
from shared.repos.github import GitHubRepoHost
from shared.repos.local import LocalRepoHost
from shared.secrets.local import LocalSecrets
from tests.fakes import github_server
from tests.fakes.github_server import FakeGitHub

GIT = shutil.which("git")
TOKEN = "ghp_Fake0123456789abcdefghijklmnopqrstuvwxyz"
WRONG_TOKEN = "ghp_Wrong9876543210zyxwvutsrqponmlkjihgfedcba"
TOKEN_REF = "secret://github/token"
LOGIN = "octo"
AUTHOR = IDENTITY.decode()
MESSAGE = "Scaffold blog from the project template"

pytestmark = pytest.mark.skipif(GIT is None, reason="git is needed to create and check the repositories")


# -- fakes and helpers ---------------------------------------------------------------------------


@dataclass
class FakeApi:
    """The two calls `scaffold()` makes; records the updates."""

    project: Project
    updates: list[dict[str, Any]] = field(default_factory=list)

    def get_project(self, project: str) -> Project:
        assert project == self.project.id
        return self.project

    def update_project(self, project: str, **changes: Any) -> Project:
        assert project == self.project.id
        self.updates.append(changes)
        self.project = self.project.model_copy(update=changes)
        return self.project


class _GitByAbsolutePath:
    """Stands in for the fake GitHub's `subprocess` module: runs its `git` by absolute path."""

    def run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        assert GIT is not None
        if args and args[0] == "git":
            args = [GIT, *args[1:]]
        return subprocess.run(args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


def _project() -> Project:
    now = datetime.now(UTC)
    return Project(
        id="p-1",
        name="blog",
        description="A blog",
        modules=["backend"],
        agent=None,
        repo_url=None,
        status="scaffolding",
        owner_id="u-1",
        created_at=now,
        updated_at=now,
    )


def _message(repo_full_name: str) -> ScaffolderMessage:
    return ScaffolderMessage(
        project_id="p-1",
        repo_full_name=repo_full_name,
        project_name="blog",
        modules=["backend"],
        task_id="t-1",
        description="A blog",
    )


def _secrets(tmp_path: Path, token: str, name: str = "secrets") -> LocalSecrets:
    store = LocalSecrets(tmp_path / name / "secrets.json")
    store.put(TOKEN_REF, token)
    return store


@contextmanager
def _without_git(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """PATH holds only this interpreter's bin directory (or an empty one, should git live there)."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="no-git-") as empty, monkeypatch.context() as patch:
        patch.setenv("PATH", empty if (bin_dir / "git").exists() else str(bin_dir))
        assert shutil.which("git") is None
        yield
    assert shutil.which("git") is not None


def git(*args: str | Path, env: dict[str, str] | None = None) -> str:
    assert GIT is not None
    result = subprocess.run(
        [GIT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
    )
    assert result.returncode == 0, f"git {args[0]} failed: {result.stderr}"
    return result.stdout


def _check_clone(clone_url: str, destination: Path, head: str, files: list[str], env: dict[str, str]) -> None:
    """Real git clones what was pushed: one commit on main, by the scaffolder, with every rendered file."""
    git("clone", "--quiet", clone_url, destination, env=env)
    assert git("-C", destination, "rev-parse", "HEAD").strip() == head
    assert git("-C", destination, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git("-C", destination, "rev-list", "--count", "HEAD").strip() == "1"
    log = git("-C", destination, "log", "-1", "--format=%an <%ae>%n%cn <%ce>%n%s").splitlines()
    assert log == [AUTHOR, AUTHOR, MESSAGE]
    assert sorted(git("-C", destination, "ls-files").splitlines()) == files
    assert {"orchestrator.env.json", "Makefile", "app/server.py", ".copier-answers.yml"} <= set(files)
    assert "project_name: blog" in (destination / ".copier-answers.yml").read_text()
    assert git("-C", destination, "status", "--porcelain") == ""  # the checkout is exactly the commit
    git("-C", destination, "fsck", "--strict", "--no-dangling")


def _secret_forms(token: str) -> list[str]:
    return [token, quote(token, safe=""), base64.b64encode(f"x-access-token:{token}".encode()).decode()]


@pytest.fixture
def fake_github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    monkeypatch.setattr(github_server, "subprocess", _GitByAbsolutePath())
    with FakeGitHub(tmp_path / "github", token=TOKEN, login=LOGIN, git_over_http=True) as fake:
        yield fake


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[LocalQueue]:
    local = LocalQueue(tmp_path / "queue.db", visibility_timeout=0)
    yield local
    local.close()


def _published(queue: LocalQueue) -> list[ScaffolderResult]:
    return [parse_message(SCAFFOLDER_RESULTS, m.body) for m in queue.receive(SCAFFOLDER_RESULTS)]


# -- a local bare repository -----------------------------------------------------------------------


def test_pushes_to_a_local_bare_repository_without_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = LocalRepoHost(tmp_path / "repos")
    info = host.create_repo("projects/blog", description="A blog")  # the local host itself runs git

    with _without_git(monkeypatch):
        head, files = render_and_push(_message("projects/blog"), host, info.clone_url, None, None)

    assert len(head) == 40 and files == sorted(files)
    assert host.branch_head("projects/blog", "main") == head
    _check_clone(info.clone_url, tmp_path / "clone", head, files, env={})


def test_an_existing_main_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = LocalRepoHost(tmp_path / "repos")
    info = host.create_repo("projects/blog")
    with _without_git(monkeypatch):
        first, _ = render_and_push(_message("projects/blog"), host, info.clone_url, None, None)

        other = _message("projects/blog").model_copy(update={"modules": ["backend", "telegram"]})
        with pytest.raises(ScaffoldError, match=r"^git push failed: .*already has a main branch"):
            render_and_push(other, host, info.clone_url, None, None)

    assert host.branch_head("projects/blog", "main") == first


def test_a_missing_repository_is_a_scaffold_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _without_git(monkeypatch), pytest.raises(ScaffoldError, match=r"^git push failed: "):
        render_and_push(
            _message("projects/blog"), LocalRepoHost(tmp_path), str(tmp_path / "nope.git"), None, None
        )


# -- GitHub, git over smart HTTP ---------------------------------------------------------------------


def test_scaffold_pushes_to_github_over_http_without_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub, queue: LocalQueue
) -> None:
    api = FakeApi(_project())
    with (
        GitHubRepoHost(
            LOGIN, TOKEN_REF, _secrets(tmp_path, TOKEN), api_url=fake_github.url, retry_delay=0.0
        ) as host,
        _without_git(monkeypatch),
    ):
        result = scaffold(_message(f"{LOGIN}/blog"), api, host, queue)  # type: ignore[arg-type]

    assert result.status == "success", result.error
    clone_url = f"{fake_github.url}/git/{LOGIN}/blog.git"
    assert result.repo_url == clone_url and result.commit_sha and result.files
    assert api.updates == [{"repo_url": clone_url, "status": "scaffolded"}]
    [published] = _published(queue)
    fields = {"request_id", "status", "task_id", "project_id", "repo_url", "commit_sha", "files"}
    assert published.model_dump(include=fields) == result.model_dump(include=fields)
    # git traffic carried the token only as the Basic header git_auth_env() would send; never in a URL
    pushes = [r for r in fake_github.git_requests() if r.path.endswith("/git-receive-pack")]
    assert pushes, fake_github.git_requests()
    basic = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert all(r.headers.get("authorization") == basic for r in fake_github.git_requests())
    assert not any(TOKEN in r.path or TOKEN in str(r.query) for r in fake_github.requests)

    with GitHubRepoHost(LOGIN, TOKEN_REF, _secrets(tmp_path, TOKEN), api_url=fake_github.url) as host:
        assert host.branch_head(f"{LOGIN}/blog", "main") == result.commit_sha
        _check_clone(clone_url, tmp_path / "clone", result.commit_sha, result.files, env=host.git_auth_env())


def test_a_wrong_token_fails_the_push_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub
) -> None:
    with GitHubRepoHost(LOGIN, TOKEN_REF, _secrets(tmp_path, TOKEN), api_url=fake_github.url) as good:
        info = good.create_repo(f"{LOGIN}/blog")
    wrong = GitHubRepoHost(
        LOGIN, TOKEN_REF, _secrets(tmp_path, WRONG_TOKEN, "wrong"), api_url=fake_github.url
    )

    with _without_git(monkeypatch), wrong, pytest.raises(ScaffoldError) as raised:
        render_and_push(_message(f"{LOGIN}/blog"), wrong, info.clone_url, None, None)

    error = str(raised.value)
    assert error.startswith("git push failed: ") and info.clone_url in error
    assert "refused the credentials (HTTP 401)" in error, error
    assert not any(form in error for form in _secret_forms(WRONG_TOKEN) + _secret_forms(TOKEN)), error
    assert raised.value.__cause__ is None and raised.value.__context__ is not None  # cause suppressed
    assert fake_github.repo(f"{LOGIN}/blog") and not any(
        r.path.endswith("/git-receive-pack") and r.method == "POST" for r in fake_github.git_requests()
    )


def test_a_refused_push_marks_the_project_failed_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub, queue: LocalQueue
) -> None:
    # the API accepts the token, git over HTTP refuses it (a token without contents:write)
    monkeypatch.setattr(fake_github, "git_authorized", lambda headers: False)
    api = FakeApi(_project())
    with (
        GitHubRepoHost(
            LOGIN, TOKEN_REF, _secrets(tmp_path, TOKEN), api_url=fake_github.url, retry_delay=0.0
        ) as host,
        _without_git(monkeypatch),
    ):
        result = scaffold(_message(f"{LOGIN}/blog"), api, host, queue)  # type: ignore[arg-type]

    assert result.status == "failed" and (result.error or "").startswith("git push failed: ")
    assert api.updates == [{"status": "scaffold_failed"}]
    [published] = queue.receive(SCAFFOLDER_RESULTS)
    assert not any(form in published.body for form in _secret_forms(TOKEN)), published.body


def test_credentials_in_a_push_url_are_used_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub
) -> None:
    # a host without git_auth_env() that hands over push_url()'s https://x-access-token:<token>@... form
    with GitHubRepoHost(LOGIN, TOKEN_REF, _secrets(tmp_path, TOKEN), api_url=fake_github.url) as good:
        info = good.create_repo(f"{LOGIN}/blog")
        host_part = info.clone_url.removeprefix("http://")
        with _without_git(monkeypatch):
            with pytest.raises(ScaffoldError) as raised:
                render_and_push(
                    _message(f"{LOGIN}/blog"),
                    object(),
                    f"http://x-access-token:{quote(WRONG_TOKEN)}@{host_part}",
                    None,
                    None,
                )
            head, _ = render_and_push(
                _message(f"{LOGIN}/blog"), object(), f"http://x-access-token:{TOKEN}@{host_part}", None, None
            )

        assert not any(form in str(raised.value) for form in _secret_forms(WRONG_TOKEN)), raised.value
        assert good.branch_head(f"{LOGIN}/blog", "main") == head


# -- the Lambda layer ---------------------------------------------------------------------------------


def test_dulwich_imports_with_only_the_scaffolder_layer() -> None:
    from tests.unit.test_layers import _import_with_only, _layer_requirements

    modules = ("functions.scaffolder.logic", "dulwich.porcelain", "dulwich.client", "dulwich.repo")
    result = _import_with_only(_layer_requirements(constants.SCAFFOLDER_FUNCTION), modules)
    assert result.returncode == 0, result.stderr[-2000:]
