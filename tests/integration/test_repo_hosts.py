"""One contract, two repo hosts: local bare repositories, and GitHub against a fake API on 127.0.0.1.

Code moves with real git in both: clone, commit, push, then the host reports the pushed sha.
Then what only one host can show (pull requests, token handling, retries, git over HTTP with
the auth header; name rules and concurrency on disk) and the factory.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from shared.repos import (
    InvalidRepoName,
    RepoHost,
    RepoHostError,
    RepoHostSettings,
    build_repo_host,
)
from shared.repos.github import GitHubRepoHost
from shared.repos.github_api import API_VERSION
from shared.repos.local import LocalRepoHost
from shared.secrets import build_secrets
from shared.secrets.local import LocalSecrets
from tests.fakes.github_server import FakeGitHub

TOKEN = "ghp_Fake0123456789abcdefghijklmnopqrstuvwxyz"
TOKEN_REF = "secret://github/token"
LOGIN = "octo"


@dataclass
class Hosted:
    host: LocalRepoHost | GitHubRepoHost
    owner: str
    github: FakeGitHub | None = None


@pytest.fixture
def secrets(tmp_path: Path) -> LocalSecrets:
    store = LocalSecrets(tmp_path / "secrets" / "secrets.json")
    store.put(TOKEN_REF, TOKEN)
    return store


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(tmp_path / "github", token=TOKEN, login=LOGIN) as fake:
        yield fake


def _github_host(github: FakeGitHub, secrets: LocalSecrets, **kwargs: object) -> GitHubRepoHost:
    options: dict[str, object] = {"retry_delay": 0.0, **kwargs}
    return GitHubRepoHost(LOGIN, TOKEN_REF, secrets, api_url=github.url, **options)  # type: ignore[arg-type]


@pytest.fixture
def gh(github: FakeGitHub, secrets: LocalSecrets) -> Iterator[GitHubRepoHost]:
    with _github_host(github, secrets) as host:
        yield host


@pytest.fixture(params=["local", "github"])
def hosted(request: pytest.FixtureRequest, tmp_path: Path, secrets: LocalSecrets) -> Iterator[Hosted]:
    if request.param == "local":
        yield Hosted(LocalRepoHost(tmp_path / "repos"), owner="projects")
        return
    with (
        FakeGitHub(tmp_path / "github", token=TOKEN, login=LOGIN) as fake,
        _github_host(fake, secrets) as host,
    ):
        yield Hosted(host, owner=LOGIN, github=fake)


def git(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {args[0]} failed: {result.stderr}")
    return result.stdout


def clone_once(host: LocalRepoHost | GitHubRepoHost, full_name: str, workdir: Path) -> dict[str, str]:
    """Clone into `workdir` unless it is there already; the git environment that authenticates to `host`."""
    env = host.git_auth_env()
    if not workdir.exists():
        info = host.get_repo(full_name)
        assert info is not None
        git("clone", "--quiet", info.clone_url, workdir, env=env)
    return env


def push_commit(
    host: LocalRepoHost | GitHubRepoHost, full_name: str, workdir: Path, branch: str, content: str = "one"
) -> str:
    """What the engineering pipeline does: clone, commit, push with the host's URL and auth env."""
    env = clone_once(host, full_name, workdir)
    (workdir / "file.txt").write_text(content + "\n")
    git("-C", workdir, "add", "file.txt")
    git("-C", workdir, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", content)
    git(
        "-C",
        workdir,
        "push",
        "--quiet",
        "--force",
        host.push_url(full_name),
        f"HEAD:refs/heads/{branch}",
        env=env,
    )
    return git("-C", workdir, "rev-parse", "HEAD").strip()


# -- the contract ------------------------------------------------------------------------------


def test_create_is_idempotent(hosted: Hosted) -> None:
    assert isinstance(hosted.host, RepoHost)
    full_name = f"{hosted.owner}/blog"

    first = hosted.host.create_repo(full_name, description="A blog")
    second = hosted.host.create_repo(full_name, description="A blog")

    assert first == second
    assert first.full_name == full_name
    assert first.default_branch == "main"
    assert hosted.host.get_repo(full_name) == first


def test_get_missing_repo_is_none(hosted: Hosted) -> None:
    assert hosted.host.get_repo(f"{hosted.owner}/nothing-here") is None


def test_pushed_commit_is_the_branch_head(hosted: Hosted, tmp_path: Path) -> None:
    full_name = f"{hosted.owner}/blog"
    hosted.host.create_repo(full_name)
    assert hosted.host.branch_head(full_name, "main") is None  # empty repository

    main_sha = push_commit(hosted.host, full_name, tmp_path / "work", "main")
    feature_sha = push_commit(hosted.host, full_name, tmp_path / "work", "feature/login", content="two")

    assert hosted.host.branch_head(full_name, "main") == main_sha
    assert hosted.host.branch_head(full_name, "feature/login") == feature_sha
    assert hosted.host.branch_head(full_name, "no-such-branch") is None
    assert hosted.host.branch_head(f"{hosted.owner}/no-such-repo", "main") is None


def test_a_clone_shows_the_pushed_branch(hosted: Hosted, tmp_path: Path) -> None:
    full_name = f"{hosted.owner}/blog"
    info = hosted.host.create_repo(full_name)
    sha = push_commit(hosted.host, full_name, tmp_path / "work", "main")

    git("clone", "--quiet", info.clone_url, tmp_path / "person", env=hosted.host.git_auth_env())

    assert git("-C", tmp_path / "person", "rev-parse", "HEAD").strip() == sha
    assert (tmp_path / "person" / "file.txt").read_text() == "one\n"


def test_a_branch_can_be_rewritten(hosted: Hosted, tmp_path: Path) -> None:
    """A retried developer round force-pushes its branch, as an unprotected GitHub branch allows."""
    full_name = f"{hosted.owner}/blog"
    hosted.host.create_repo(full_name)
    push_commit(hosted.host, full_name, tmp_path / "a", "feature")
    rewritten = push_commit(hosted.host, full_name, tmp_path / "b", "feature", content="again")
    assert hosted.host.branch_head(full_name, "feature") == rewritten


def test_push_url_of_a_missing_repo_is_an_error(hosted: Hosted) -> None:
    with pytest.raises(RepoHostError, match="does not exist"):
        hosted.host.push_url(f"{hosted.owner}/nothing-here")


def test_a_new_repo_has_no_pull_requests(hosted: Hosted) -> None:
    hosted.host.create_repo(f"{hosted.owner}/blog")
    assert hosted.host.list_pull_requests(f"{hosted.owner}/blog") == []


@pytest.mark.parametrize(
    "full_name",
    [
        "blog",
        "a/b/c",
        "/etc/passwd",
        "../x",
        "a/..",
        "./b",
        "a/.",
        "o/",
        "/b",
        "o/n me",
        "o/n.git",
        "ö/n",
        "",
        "o/" + "n" * 101,
    ],
)
def test_bad_repository_names_are_refused(hosted: Hosted, full_name: str) -> None:
    with pytest.raises(InvalidRepoName, match="invalid repository name"):
        hosted.host.create_repo(full_name)
    with pytest.raises(InvalidRepoName):
        hosted.host.get_repo(full_name)


@pytest.mark.parametrize(
    "branch", ["", "-x", "a..b", "a b", "a:b", "a~1", "/a", "a/", "a.lock", ".hidden", "a//b", "@"]
)
def test_bad_branch_names_are_refused(hosted: Hosted, branch: str) -> None:
    full_name = f"{hosted.owner}/blog"
    hosted.host.create_repo(full_name)
    with pytest.raises(InvalidRepoName, match="invalid branch name"):
        hosted.host.branch_head(full_name, branch)


# -- local only ---------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalRepoHost:
    return LocalRepoHost(tmp_path / "repos")


def test_local_repos_are_bare_repositories_at_a_clonable_path(local: LocalRepoHost, tmp_path: Path) -> None:
    info = local.create_repo("projects/blog", description="A blog")

    path = tmp_path / "repos" / "projects" / "blog.git"
    assert info.clone_url == str(path.resolve()) == local.push_url("projects/blog")
    assert Path(info.clone_url).is_absolute()
    assert info.web_url is None
    assert git("--git-dir", path, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git("--git-dir", path, "config", "receive.denyNonFastForwards").strip() == "false"
    assert (path / "description").read_text() == "A blog\n"


def test_local_has_no_pull_requests(local: LocalRepoHost) -> None:
    local.create_repo("projects/blog")
    assert local.supports_pull_requests is False
    with pytest.raises(RepoHostError, match="local repositories have no pull requests"):
        local.open_pull_request("projects/blog", head="feature", base="main", title="t", body="b")


def test_concurrent_creates_make_one_repository(local: LocalRepoHost, tmp_path: Path) -> None:
    results: list[object] = []

    def create() -> None:
        try:
            results.append(local.create_repo("projects/blog"))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(map(repr, results))) == 1, results
    assert sorted(p.name for p in (tmp_path / "repos" / "projects").iterdir()) == ["blog.git"]


def test_a_directory_that_is_not_a_repository_is_reported(local: LocalRepoHost, tmp_path: Path) -> None:
    (tmp_path / "repos" / "projects" / "blog.git").mkdir(parents=True)
    with pytest.raises(RepoHostError, match="not a bare git repository"):
        local.create_repo("projects/blog")


def test_git_environment_pointing_elsewhere_is_ignored(
    local: LocalRepoHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As inside a git hook, where GIT_DIR names the hook's own repository."""
    other = tmp_path / "other.git"
    git("init", "--quiet", "--bare", other)
    monkeypatch.setenv("GIT_DIR", str(other))
    local.create_repo("projects/blog")
    monkeypatch.delenv("GIT_DIR")
    assert (tmp_path / "repos" / "projects" / "blog.git" / "HEAD").is_file()
    untouched = subprocess.run(
        ["git", "--git-dir", str(other), "config", "--get", "receive.denyNonFastForwards"], check=False
    )
    assert untouched.returncode == 1, "the other repository was not configured"


# -- GitHub only --------------------------------------------------------------------------------


def _push_branches(gh: GitHubRepoHost, full_name: str, workdir: Path, *branches: str) -> None:
    push_commit(gh, full_name, workdir, "main")
    for branch in branches:
        push_commit(gh, full_name, workdir, branch, content=branch)


def test_github_creates_under_the_user_or_the_org(github: FakeGitHub, secrets: LocalSecrets) -> None:
    with _github_host(github, secrets) as user_host:
        user_host.create_repo("octo/blog", description="A blog", private=True)
    with GitHubRepoHost("acme", TOKEN_REF, secrets, api_url=github.url, owner_is_org=True) as org_host:
        info = org_host.create_repo("acme/shop")

    posts = [(r.path, r.body) for r in github.api_requests() if r.method == "POST"]
    assert posts == [
        ("/user/repos", {"name": "blog", "description": "A blog", "private": True, "auto_init": False}),
        ("/orgs/acme/repos", {"name": "shop", "description": "", "private": True, "auto_init": False}),
    ]
    assert info.web_url == "https://github.example/acme/shop"
    assert info.clone_url == str(github.repo("acme/shop").path)


def test_github_create_of_an_existing_repo_reads_it(github: FakeGitHub, gh: GitHubRepoHost) -> None:
    first = gh.create_repo("octo/blog")
    second = gh.create_repo("octo/blog")

    assert first == second
    calls = [(r.method, r.path) for r in github.api_requests()]
    assert calls == [("POST", "/user/repos"), ("POST", "/user/repos"), ("GET", "/repos/octo/blog")]


def test_github_refuses_another_owner_and_a_misconfigured_org(
    github: FakeGitHub, secrets: LocalSecrets
) -> None:
    with _github_host(github, secrets) as gh, pytest.raises(RepoHostError, match="under octo, not acme"):
        gh.create_repo("acme/blog")
    with (
        GitHubRepoHost("acme", TOKEN_REF, secrets, api_url=github.url) as not_an_org,
        pytest.raises(RepoHostError, match="ORCH_GITHUB_OWNER_IS_ORG=true"),
    ):
        not_an_org.create_repo("acme/blog")


def test_every_api_call_carries_the_token_and_the_api_version(
    github: FakeGitHub, gh: GitHubRepoHost, tmp_path: Path
) -> None:
    gh.create_repo("octo/blog")
    _push_branches(gh, "octo/blog", tmp_path / "work", "feature")
    gh.branch_head("octo/blog", "feature")
    gh.open_pull_request("octo/blog", head="feature", base="main", title="Feature", body="Adds it")
    gh.list_pull_requests("octo/blog")

    requests = github.api_requests()
    assert len(requests) >= 6
    for request in requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-github-api-version"] == API_VERSION
        assert request.headers["accept"] == "application/vnd.github+json"
        assert TOKEN not in repr(request.body)


def test_github_pull_requests_open_idempotently(
    github: FakeGitHub, gh: GitHubRepoHost, tmp_path: Path
) -> None:
    gh.create_repo("octo/blog")
    _push_branches(gh, "octo/blog", tmp_path / "work", "feature/login")

    first = gh.open_pull_request(
        "octo/blog", head="feature/login", base="main", title="Login", body="Adds login"
    )
    again = gh.open_pull_request(
        "octo/blog", head="feature/login", base="main", title="Login", body="Adds login"
    )

    assert first == again
    assert (first.number, first.state, first.head, first.base, first.title) == (
        1,
        "open",
        "feature/login",
        "main",
        "Login",
    )
    assert first.url == "https://github.example/octo/blog/pull/1"
    assert len(github.repo("octo/blog").pulls) == 1
    lookup = github.api_requests()[-1]
    assert (lookup.method, lookup.path) == ("GET", "/repos/octo/blog/pulls")
    assert lookup.query == {"state": "open", "head": "octo:feature/login", "base": "main", "per_page": "100"}


def test_github_pull_request_for_an_unpushed_branch_fails_clearly(gh: GitHubRepoHost, tmp_path: Path) -> None:
    gh.create_repo("octo/blog")
    _push_branches(gh, "octo/blog", tmp_path / "work")
    with pytest.raises(RepoHostError, match="Validation Failed; PullRequest head invalid"):
        gh.open_pull_request("octo/blog", head="never-pushed", base="main", title="t", body="b")


def test_github_lists_pull_requests_across_pages(tmp_path: Path, secrets: LocalSecrets) -> None:
    with (
        FakeGitHub(tmp_path / "github", token=TOKEN, login=LOGIN, max_per_page=2) as github,
        _github_host(github, secrets) as gh,
    ):
        gh.create_repo("octo/blog")
        branches = [f"feature-{i}" for i in range(5)]
        _push_branches(gh, "octo/blog", tmp_path / "work", *branches)
        for branch in branches:
            gh.open_pull_request("octo/blog", head=branch, base="main", title=branch, body="")
        github.close_pull("octo/blog", 1, merged=True)
        github.close_pull("octo/blog", 2)
        github.requests.clear()

        open_pulls = gh.list_pull_requests("octo/blog")
        page_requests = len(github.api_requests())
        everything = gh.list_pull_requests("octo/blog", state="all")

        assert sorted(p.number for p in open_pulls) == [3, 4, 5]
        assert page_requests == 2
        assert sorted(p.number for p in everything) == [1, 2, 3, 4, 5]
        assert [p.number for p in gh.list_pull_requests("octo/blog", state="merged")] == [1]
        assert [p.number for p in gh.list_pull_requests("octo/blog", state="closed")] == [2]
        with pytest.raises(ValueError, match="state must be one of"):
            gh.list_pull_requests("octo/blog", state="draft")


def test_a_wrong_token_is_refused_without_showing_it(github: FakeGitHub, tmp_path: Path) -> None:
    wrong = "ghp_Wrong9876543210zyxwvutsrqponmlkjihgfedcba"
    store = LocalSecrets(tmp_path / "other" / "secrets.json")
    store.put(TOKEN_REF, wrong)

    with _github_host(github, store) as gh, pytest.raises(RepoHostError) as info:
        gh.get_repo("octo/blog")

    assert str(info.value).startswith(f"GitHub refused the token (check the secret at {TOKEN_REF})")
    assert "Bad credentials" in str(info.value)
    text = "".join(traceback.format_exception(info.value))
    assert wrong not in text and TOKEN not in text
    assert len(github.api_requests()) == 1, "an unchanged token is not retried"


def test_a_token_echoed_by_the_server_is_scrubbed(github: FakeGitHub, gh: GitHubRepoHost) -> None:
    """A proxy or a misbehaving server may quote the request back; the error must not carry it on."""
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    github.fail_next(400, message=f"bad request with Authorization: Bearer {TOKEN} / Basic {basic}")

    with pytest.raises(RepoHostError) as info:
        gh.get_repo("octo/blog")

    assert (
        str(info.value)
        == "GitHub failed reading octo/blog: 400 bad request with Authorization: Bearer *** / Basic ***"
    )


def test_a_rotated_token_is_picked_up(github: FakeGitHub, gh: GitHubRepoHost, secrets: LocalSecrets) -> None:
    gh.create_repo("octo/blog")
    rotated = "ghp_Rotated0123456789abcdefghijklmnopqrstuv"
    secrets.put(TOKEN_REF, rotated)
    github.token = rotated

    assert gh.get_repo("octo/blog") is not None
    assert github.api_requests()[-1].headers["authorization"] == f"Bearer {rotated}"


def test_a_missing_token_secret_is_named(github: FakeGitHub, tmp_path: Path) -> None:
    empty = LocalSecrets(tmp_path / "empty" / "secrets.json")
    with (
        _github_host(github, empty) as gh,
        pytest.raises(RepoHostError, match=f"no GitHub token is stored at {TOKEN_REF}"),
    ):
        gh.get_repo("octo/blog")


def test_no_log_line_or_error_contains_the_token(
    github: FakeGitHub, gh: GitHubRepoHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gh.create_repo("octo/blog")
    _push_branches(gh, "octo/blog", tmp_path / "work", "feature")
    gh.open_pull_request("octo/blog", head="feature", base="main", title="t", body="b")
    errors: list[str] = []
    github.fail_next(500, times=2)
    for call in (
        lambda: gh.get_repo("octo/blog"),
        lambda: gh.open_pull_request("octo/blog", head="nope", base="main", title="t", body="b"),
        lambda: gh.create_repo("octo/bad name"),
    ):
        with pytest.raises(RepoHostError) as info:
            call()
        errors.append("".join(traceback.format_exception(info.value)))

    logs = capsys.readouterr().err
    assert "repository created" in logs and "pull request opened" in logs
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    for text in [logs, *errors]:
        assert TOKEN not in text and basic not in text


def test_server_errors_and_rate_limits_are_retried_once(github: FakeGitHub, gh: GitHubRepoHost) -> None:
    gh.create_repo("octo/blog")

    github.fail_next(502)
    assert gh.get_repo("octo/blog") is not None
    github.fail_next(429, headers={"Retry-After": "0"})
    assert gh.get_repo("octo/blog") is not None
    github.fail_next(403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"})
    assert gh.get_repo("octo/blog") is not None

    github.fail_next(503, times=2)
    with pytest.raises(RepoHostError, match="503"):
        gh.get_repo("octo/blog")


def test_a_rate_limit_resetting_much_later_fails_at_once(github: FakeGitHub, gh: GitHubRepoHost) -> None:
    github.fail_next(403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999999999"})
    with pytest.raises(RepoHostError, match="rate limit"):
        gh.get_repo("octo/blog")
    assert len(github.api_requests()) == 1


def test_an_unreachable_api_is_reported(secrets: LocalSecrets, github: FakeGitHub) -> None:
    url = github.url
    github.stop()
    with (
        GitHubRepoHost(LOGIN, TOKEN_REF, secrets, api_url=url, retry_delay=0, timeout=2) as gh,
        pytest.raises(RepoHostError, match="GitHub GET /repos/octo/blog failed"),
    ):
        gh.get_repo("octo/blog")


def test_git_authenticates_with_the_header_env_over_http(tmp_path: Path, secrets: LocalSecrets) -> None:
    """Real git against `git http-backend` behind Basic auth: the token is in neither URL nor argv."""
    with (
        FakeGitHub(tmp_path / "github", token=TOKEN, login=LOGIN, git_over_http=True) as github,
        _github_host(github, secrets) as gh,
    ):
        info = gh.create_repo("octo/blog")
        assert info.clone_url == f"{github.url}/git/octo/blog.git"
        assert gh.push_url("octo/blog") == info.clone_url, "no token spliced into a non-https URL"
        env = gh.git_auth_env()
        assert env["GIT_CONFIG_KEY_0"] == f"http.{github.url}/.extraHeader"

        sha = push_commit(gh, "octo/blog", tmp_path / "work", "feature")

        assert gh.branch_head("octo/blog", "feature") == sha
        expected = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        git_calls = github.git_requests()
        assert git_calls and all(r.headers["authorization"] == f"Basic {expected}" for r in git_calls)
        assert any(r.path.endswith("/git-receive-pack") for r in git_calls)
        with pytest.raises(AssertionError, match=r"terminal prompts disabled|Authentication failed"):
            git("clone", "--quiet", info.clone_url, tmp_path / "anonymous")


def test_push_url_carries_the_token_for_https_clone_urls(secrets: LocalSecrets) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return httpx.Response(
            200,
            json={
                "full_name": "octo/blog",
                "clone_url": "https://github.com/octo/blog.git",
                "html_url": "https://github.com/octo/blog",
                "default_branch": "main",
            },
        )

    client = httpx.Client(transport=httpx.MockTransport(api))
    gh = GitHubRepoHost(LOGIN, TOKEN_REF, secrets, client=client)

    assert gh.push_url("octo/blog") == f"https://x-access-token:{TOKEN}@github.com/octo/blog.git"
    assert gh.git_auth_env()["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"
    gh.close()
    assert not client.is_closed, "an injected client belongs to the caller"


# -- the factory --------------------------------------------------------------------------------


def test_the_default_host_is_local_under_orch_home(tmp_path: Path) -> None:
    host = build_repo_host()
    assert isinstance(host, LocalRepoHost)
    assert host.root == (tmp_path / "orch-home" / "repos").resolve()


def test_repos_dir_can_be_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REPOS_DIR", str(tmp_path / "elsewhere"))
    host = build_repo_host()
    assert isinstance(host, LocalRepoHost) and host.root == (tmp_path / "elsewhere").resolve()


def test_github_from_env(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    build_secrets().put(TOKEN_REF, TOKEN)  # the default local store in $ORCH_HOME
    for key, value in {
        "ORCH_REPO_HOST": "github",
        "ORCH_GITHUB_OWNER": "acme",
        "ORCH_GITHUB_OWNER_IS_ORG": "true",
        "ORCH_GITHUB_TOKEN_REF": TOKEN_REF,
        "ORCH_GITHUB_API_URL": github.url,
    }.items():
        monkeypatch.setenv(key, value)

    host = build_repo_host()

    assert isinstance(host, GitHubRepoHost)
    assert host.create_repo("acme/blog").full_name == "acme/blog"
    assert [(r.method, r.path) for r in github.api_requests()] == [("POST", "/orgs/acme/repos")]
    host.close()


def test_github_without_owner_or_token_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REPO_HOST", "github")
    with pytest.raises(ValueError, match="ORCH_GITHUB_OWNER and ORCH_GITHUB_TOKEN_REF"):
        build_repo_host()
    monkeypatch.setenv("ORCH_GITHUB_OWNER", "acme")
    with pytest.raises(ValueError, match="needs ORCH_GITHUB_TOKEN_REF to be set"):
        build_repo_host()


@pytest.mark.parametrize(
    ("key", "value"), [("ORCH_GITHUB_TOKEN_REF", "ghp_not_a_reference"), ("ORCH_GITHUB_OWNER", "a/b")]
)
def test_invalid_github_settings_fail_validation(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=key.removeprefix("ORCH_").lower()):
        RepoHostSettings()


def test_the_worker_pushes_to_github_with_a_token_from_its_env(tmp_path: Path, secrets: LocalSecrets) -> None:
    """The wrapper's git side: clone and push over HTTP(S) with the token only in git's env."""
    from worker_image import git_ops

    with (
        FakeGitHub(tmp_path / "github", token=TOKEN, login=LOGIN, git_over_http=True) as github,
        _github_host(github, secrets) as gh,
    ):
        info = gh.create_repo("octo/blog")
        push_commit(gh, "octo/blog", tmp_path / "seed", "main")
        try:
            git_ops.use_token(info.clone_url, TOKEN)
            workspace = tmp_path / "worker"
            git_ops.checkout(info.clone_url, workspace, "orchestrator/task-1")
            (workspace / "feature.txt").write_text("feature\n")
            sha, changed = git_ops.commit_and_push(workspace, "orchestrator/task-1", "developer: feature")
        finally:
            git_ops.use_token(info.clone_url, None)
        assert changed == ["feature.txt"] and gh.branch_head("octo/blog", "orchestrator/task-1") == sha
        assert TOKEN not in (workspace / ".git" / "config").read_text(), (
            "the token is never stored in the clone"
        )
