"""Builds the configured repo host from settings: the only place that chooses between them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from shared.repos.names import check_owner
from shared.repos.port import RepoHost
from shared.secrets import build_secrets, parse_reference
from shared.settings import AwsSettings, SecretsSettings


class RepoHostSettings(SecretsSettings, AwsSettings):
    """Where project repositories live. GitHub needs the secrets settings too, to read its token."""

    repo_host: Annotated[
        Literal["local", "github"],
        Field(description="local (bare repositories in the data dir) or github (REST API + HTTPS git)."),
    ] = "local"
    repos_dir: Annotated[
        Path | None, Field(description="Local bare repositories; default $ORCH_HOME/repos.")
    ] = None
    github_owner: Annotated[
        str | None, Field(description="The GitHub user or organisation that owns the projects' repositories.")
    ] = None
    github_owner_is_org: Annotated[
        bool, Field(description="Create repositories under the organisation (POST /orgs/<owner>/repos).")
    ] = False
    github_token_ref: Annotated[
        str | None,
        Field(description="Secret reference (secret://...) of a token that may create repos and open PRs."),
    ] = None
    github_api_url: Annotated[
        str, Field(description="REST API root; https://<host>/api/v3 for GitHub Enterprise Server.")
    ] = "https://api.github.com"

    @field_validator("github_owner")
    @classmethod
    def _valid_owner(cls, value: str | None) -> str | None:
        if value is not None:
            check_owner(value)
        return value

    @field_validator("github_token_ref")
    @classmethod
    def _valid_reference(cls, value: str | None) -> str | None:
        if value is not None:
            parse_reference(value)
        return value

    @property
    def effective_repos_dir(self) -> Path:
        return (self.repos_dir or self.home / "repos").expanduser()


def build_repo_host(settings: RepoHostSettings | None = None) -> RepoHost:
    """Adapters are imported here, so the embedded stack never loads httpx for a local host."""
    settings = settings or RepoHostSettings()
    if settings.repo_host == "github":
        missing = [
            env
            for env, value in (
                ("ORCH_GITHUB_OWNER", settings.github_owner),
                ("ORCH_GITHUB_TOKEN_REF", settings.github_token_ref),
            )
            if not value
        ]
        if missing or settings.github_owner is None or settings.github_token_ref is None:
            raise ValueError(f"ORCH_REPO_HOST=github needs {' and '.join(missing)} to be set")
        from shared.repos.github import GitHubRepoHost

        return GitHubRepoHost(
            owner=settings.github_owner,
            token_ref=settings.github_token_ref,
            secrets=build_secrets(settings, settings),
            api_url=settings.github_api_url,
            owner_is_org=settings.github_owner_is_org,
        )
    from shared.repos.local import LocalRepoHost

    return LocalRepoHost(settings.effective_repos_dir)
