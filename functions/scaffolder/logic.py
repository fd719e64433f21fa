"""Render the template into a new repository, push it, record it on the project, and answer.

Idempotent: a project that already has its repository answers success again; a repository
that already has a main branch is recorded, not rendered twice; of concurrent scaffolds of one new
project, the first push of `main` wins and the others record it.

Git is done with dulwich (pure Python): the Lambda runtime has no `git` binary. The push goes to
the repository's clone URL (a bare repository's path, or an HTTP(S) URL); for HTTP(S) the
credentials are those the repo host's `git_auth_env()` gives git (`http.<url>.extraHeader:
Authorization: Basic ...`), handed to dulwich as a username and password, which it attaches
only to requests for that URL's origin. They never appear in a URL or a message.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from shared.api_client import ApiClient
from shared.contracts import SCAFFOLDER_RESULTS, ScaffolderMessage, ScaffolderResult
from shared.observability import get_logger
from shared.queues.port import QueuePort

IDENTITY = b"orchestrator-scaffolder <scaffolder@codegen-orchestrator.local>"
"""Author and committer of the scaffold commit."""
BRANCH = b"main"
BRANCH_REF = b"refs/heads/" + BRANCH
_HTTP_TIMEOUT_S = 120.0
"""Per network operation (connect, each read) of an HTTP(S) push."""
_RACE_RECHECK_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
"""After a failed first push: how long to wait for a concurrent scaffold's `main` to appear."""


class ScaffoldError(RuntimeError):
    """The template or git refused: the project becomes scaffold_failed with this reason."""


class _Scrubber:
    """Removes credentials (as they are, URL-quoted and base64-encoded) from text bound for a message."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        for secret in secrets:
            if secret and len(secret) >= 4:
                self._secrets |= {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without user info, and the user info's username and password if there was any."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), (unquote(username), unquote(password))


def _header_credentials(auth_env: Mapping[str, str], url: str, scrub: _Scrubber) -> tuple[str, str] | None:
    """The Basic credentials that `auth_env` (GIT_CONFIG_* variables, as `git_auth_env()` returns them)
    makes git send to `url`: an `http.<prefix>.extraHeader` whose prefix starts `url`, as git scopes it."""
    try:
        count = int(auth_env.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        count = 0
    for index in range(count):
        key = auth_env.get(f"GIT_CONFIG_KEY_{index}", "")
        value = auth_env.get(f"GIT_CONFIG_VALUE_{index}", "")
        section, _, name = key.rpartition(".")
        if name.lower() != "extraheader" or not section.lower().startswith("http."):
            continue
        if not url.startswith(section[len("http.") :]):
            continue
        header, _, field = value.partition(":")
        scheme, _, encoded = field.strip().partition(" ")
        scrub.add(value, field.strip(), encoded)
        if header.strip().lower() != "authorization" or scheme.lower() != "basic":
            raise ScaffoldError(
                f"git push failed: the repo host's {header.strip() or 'header'} for {url} is not "
                "HTTP Basic authorization, which is all the scaffolder can send"
            )
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            raise ScaffoldError(
                f"git push failed: the repo host's authorization for {url} is malformed"
            ) from None
        scrub.add(password)
        return username, password
    return None


def _commit_all(work: Path, message: str) -> bytes:
    """`git init -b main && git add -A && git commit`: returns the commit's sha (hex, as bytes)."""
    from dulwich import porcelain
    from dulwich.repo import Repo

    with Repo.init(str(work), default_branch=BRANCH) as repo:
        porcelain.add(repo)
        return porcelain.commit(
            repo,
            message=message.encode(),
            author=IDENTITY,
            committer=IDENTITY,
            no_verify=True,
            signoff=False,
            sign=False,
        )


def _push(work: Path, url: str, credentials: tuple[str, str] | None, commit: bytes) -> None:
    """`git push <url> main:refs/heads/main`, refusing (as git does without --force) to replace a main
    that is not this commit. Raises ScaffoldError with dulwich's reason (unscrubbed: the caller scrubs)."""
    from dulwich.client import HttpGitClient, LocalGitClient
    from dulwich.repo import Repo

    client: Any
    if urlsplit(url).scheme in ("http", "https"):
        username, password = credentials if credentials else (None, None)
        # No config: neither a developer's ~/.gitconfig nor the rendered tree can add headers or rewrite URLs.
        client = HttpGitClient(
            url, config=None, username=username, password=password, timeout=_HTTP_TIMEOUT_S, quiet=True
        )
        path = ""
    elif "://" in url and not url.startswith("file://"):
        raise ScaffoldError(
            f"git push failed: cannot push to {urlsplit(url).scheme} URLs, only http(s) and paths"
        )
    else:
        client, path = LocalGitClient(quiet=True), url.removeprefix("file://")
    found: dict[str, bytes] = {}

    def update_refs(refs: dict[Any, Any]) -> dict[Any, Any]:
        current = refs.get(BRANCH_REF)
        if current is not None and current != commit:
            found["main"] = current
            return {}  # nothing to send: reported below
        return {BRANCH_REF: commit}

    with Repo(str(work)) as repo:
        result = client.send_pack(
            path.encode() if path else b"", update_refs, generate_pack_data=repo.generate_pack_data
        )
    if "main" in found:
        raise ScaffoldError(
            f"git push failed: {url} already has a main branch (at {found['main'].decode()[:12]}); "
            "it was not overwritten"
        )
    status = (result.ref_status or {}).get(BRANCH_REF)
    if status is not None:
        raise ScaffoldError(f"git push failed: the remote refused {BRANCH_REF.decode()}: {status}")


def render_and_push(
    message: ScaffolderMessage, repo_host: Any, push_url: str, template: str | None, template_ref: str | None
) -> tuple[str, list[str]]:
    """Render into a temporary directory, commit it as the first commit of `main` and push it to
    `push_url`. Returns the commit's sha (hex) and the rendered files."""
    from functions.scaffolder.render import TemplateRenderError, render_project

    scrub = _Scrubber()
    url, url_credentials = _split_credentials(push_url)
    if url_credentials is not None:
        scrub.add(*url_credentials)
    auth_env = repo_host.git_auth_env() if hasattr(repo_host, "git_auth_env") else {}
    credentials = _header_credentials(auth_env, url, scrub) or url_credentials
    with tempfile.TemporaryDirectory(prefix="scaffold-") as tmp:
        work = Path(tmp) / "repo"
        try:
            files = render_project(
                work,
                message.project_name,
                list(message.modules),
                message.description,
                template=template,
                vcs_ref=template_ref,
            )
        except (ValueError, TemplateRenderError) as exc:
            raise ScaffoldError(str(exc)) from exc
        try:
            commit = _commit_all(work, f"Scaffold {message.project_name} from the project template")
        except Exception as exc:  # dulwich raises many types; all mean the same here
            raise ScaffoldError(scrub(f"git commit failed: {type(exc).__name__}: {exc}")[:600]) from None
        try:
            _push(work, url, credentials, commit)
        except ScaffoldError as exc:
            raise ScaffoldError(scrub(str(exc))) from None
        except Exception as exc:  # network, protocol, authentication: dulwich's own exception types
            from dulwich.client import HTTPUnauthorized

            if isinstance(exc, HTTPUnauthorized):
                detail = "the server refused the credentials (HTTP 401); check the repo host's token"
            else:
                detail = scrub(f"{type(exc).__name__}: {exc}".strip().removesuffix(":"))
            # `from None`: the dulwich exception (and any credentials in it) is not chained into logs.
            raise ScaffoldError(f"git push failed: pushing to {url}: {detail}"[:600]) from None
        return commit.decode("ascii"), files


def _render_and_push_once(
    message: ScaffolderMessage, repo_host: Any, info: Any, template: str | None, template_ref: str | None
) -> tuple[str, list[str]]:
    """The first commit of `main`: ours, or the one a concurrent scaffold of the same project pushed.

    Two engineering tasks on a new project scaffold at once; both find no `main` and push. The loser's
    push fails (the ref is locked, already there, or refused as a non-fast-forward): if `main` then
    exists, or appears while the winner's push completes, it is the scaffold and this one answers with
    it. Any other failure stands."""
    try:
        # The clone URL, not push_url(): credentials go by git_auth_env(), never in a URL.
        return render_and_push(message, repo_host, info.clone_url, template, template_ref)
    except ScaffoldError:
        for delay in (0.0, *_RACE_RECHECK_DELAYS_S):
            time.sleep(delay)
            head = repo_host.branch_head(message.repo_full_name, info.default_branch)
            if head is not None:
                get_logger().info(
                    "a concurrent scaffold pushed main first; using its commit",
                    extra={"repo": message.repo_full_name, "commit_sha": head},
                )
                return head, []
        raise


def scaffold(
    message: ScaffolderMessage,
    api: ApiClient,
    repo_host: Any,
    queue: QueuePort,
    template: str | None = None,
    template_ref: str | None = None,
) -> ScaffolderResult:
    logger = get_logger()
    project = api.get_project(message.project_id)
    base = {
        "request_id": message.request_id,
        "correlation_id": message.correlation_id,
        "project_id": project.id,
        "task_id": message.task_id,
        "repo_full_name": message.repo_full_name,
    }
    if project.repo_url and project.status in ("scaffolded", "active"):
        result = ScaffolderResult(**base, status="success", repo_url=project.repo_url)
    else:
        try:
            info = repo_host.create_repo(message.repo_full_name, project.description or message.description)
            head = repo_host.branch_head(message.repo_full_name, info.default_branch)
            files: list[str] = []
            if head is None:
                head, files = _render_and_push_once(message, repo_host, info, template, template_ref)
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
