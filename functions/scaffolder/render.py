"""Render a project from a Copier template: the bundled default (`DEFAULT_TEMPLATE`) or any other one
by path or git URL, version-pinned with `vcs_ref`.

The default template is a small HTTP service on the Python standard library (`GET /health`,
`GET /api/hello`, unittest suites, a Makefile with `test`, `run` and `help`) with an optional
`telegram` module (a long-polling bot over the Bot API with urllib). It asks four questions:
`project_name` (slug), `description`, `modules` (a subset of `KNOWN_MODULES`; `backend`, the HTTP
service, is always included) and `port` (default 8080). It writes `.copier-answers.yml`, so a
project can later follow template updates with `copier update`.

The env contract
----------------
Every rendered project carries `orchestrator.env.json` at its root; the deploy reads it to learn how
to run the service and what it needs (`shared.env_contract.EnvContract` validates it)::

    {
      "schema_version": 1,                  # optional, the only version so far
      "port_variable": "PORT",              # env var that sets the listening port
      "default_port": 8080,                 # port used when that variable is unset (1-65535)
      "health_path": "/health",             # answers 200 when the service is healthy
      "run": "python3 -m app.server",       # starts the service, from the repository root
      "test": "make test",                  # runs its tests, from the repository root
      "variables": [                        # plain settings
        {"name": "HOST", "required": false, "description": "...", "default": "127.0.0.1"}
      ],
      "secrets": [                          # values from the secret store, never in the repo
        {"name": "TELEGRAM_BOT_TOKEN", "required": true, "description": "..."}
      ]
    }

Names are environment variable names (`^[A-Z_][A-Z0-9_]*$`), unique across variables and secrets;
`required` defaults to false for a variable and true for a secret; unknown keys are refused. The
default template lists `TELEGRAM_BOT_TOKEN` only when the telegram module is chosen, and no secrets
otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.env_contract import load_env_contract

DEFAULT_TEMPLATE: Path = Path(__file__).resolve().parent / "template"
KNOWN_MODULES: tuple[str, ...] = ("backend", "telegram")
"""Modules of the default template, in the order they are recorded; `backend` is always included."""

_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")  # as shared.contracts.api.Slug


class TemplateRenderError(RuntimeError):
    """Copier (or git, for a template URL) failed; the message says why, without URL credentials."""


def render_project(
    destination: Path,
    project_name: str,
    modules: list[str],
    description: str = "",
    template: str | Path | None = None,
    vcs_ref: str | None = None,
    port: int = 8080,
) -> list[str]:
    """Render `template` (default: `DEFAULT_TEMPLATE`) into `destination` and return the relative
    POSIX paths of the files written, sorted.

    `destination` must be absent or empty (a `.git` directory is allowed, e.g. a fresh clone).
    `template` is a folder or a git URL/path; with git, `vcs_ref` pins a tag or commit (without it
    Copier takes the latest PEP 440 tag, or HEAD when there is none) and the answers file records it.
    Raises ValueError for a bad name, module, port or destination, TemplateRenderError when
    rendering fails.
    """
    if not _SLUG.fullmatch(project_name):
        raise ValueError(
            f"project_name {project_name!r} is not a slug: 2-63 lowercase letters, digits or '-', "
            "starting with a letter and not ending with '-'"
        )
    unknown = sorted(set(modules) - set(KNOWN_MODULES))
    if unknown:
        raise ValueError(
            f"unknown module(s): {', '.join(unknown)}; known modules: {', '.join(KNOWN_MODULES)}"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer between 1 and 65535, got {port!r}")
    destination = Path(destination)
    if destination.exists():
        if not destination.is_dir():
            raise ValueError(f"destination {destination} exists and is not a directory")
        leftovers = sorted(entry.name for entry in destination.iterdir() if entry.name != ".git")
        if leftovers:
            raise ValueError(f"destination {destination} is not empty: {', '.join(leftovers[:5])}")

    data: dict[str, Any] = {
        "project_name": project_name,
        "modules": [module for module in KNOWN_MODULES if module == "backend" or module in modules],
        "port": port,
    }
    if description.strip():
        data["description"] = description.strip()
    source = str(template) if template is not None else str(DEFAULT_TEMPLATE)

    import copier  # ~240 ms: only when a project is actually rendered

    try:
        copier.run_copy(
            source, destination, data=data, defaults=True, unsafe=False, vcs_ref=vcs_ref, quiet=True
        )
    except Exception as error:
        raise TemplateRenderError(
            f"copier could not render {_without_credentials(source)}"
            f"{f' at {vcs_ref}' if vcs_ref else ''}: {type(error).__name__}: "
            f"{_without_credentials(str(error))}"
        ) from error
    return sorted(
        path.relative_to(destination).as_posix()
        for path in destination.rglob("*")
        if path.is_file() and path.relative_to(destination).parts[0] != ".git"
    )


def read_env_contract(repo_dir: Path) -> dict[str, Any]:
    """The validated env contract of a project checkout as a JSON-ready dict (defaults filled in).
    Raises `EnvContractMissingError` / `EnvContractError` (both ValueError) naming the problem."""
    return load_env_contract(repo_dir).model_dump(mode="json")


def _without_credentials(text: str) -> str:
    """Drop `user:token@` from any URL in `text` (a private template's git URL may carry a token)."""

    def scrub(match: re.Match[str]) -> str:
        parts = urlsplit(match.group(0))
        if "@" not in parts.netloc:
            return match.group(0)
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))

    return re.sub(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", scrub, text, flags=re.IGNORECASE)
