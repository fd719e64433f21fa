"""A world for the deploy graph's tests: the real API in-process on SQLite, a local queue, a local
repository host holding the project's env contract, and the settings and ports the deploy function
builds from them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

from functions.api.db import dispose_all
from functions.api.deps import set_deps
from functions.api.handler import lambda_handler as api_handler
from functions.deploy.graph import Ports
from functions.deploy.nodes import DeployNodes
from functions.deploy.probes import bindable
from functions.deploy.settings import DeploySettings
from functions.deploy.state import DeployState
from shared.api_client import ApiClient
from shared.apigw import LambdaTransport
from shared.contracts.api import Task
from shared.env_contract import CONTRACT_FILE
from shared.queues.local import LocalQueue
from shared.repos.local import LocalRepoHost
from tests.api_support import ADMIN_KEY, ApiHarness, build_deps, install, migrated_sqlite

PROJECT = "blog"
CONTRACT: dict[str, Any] = {
    "port_variable": "PORT",
    "default_port": 8000,
    "health_path": "/health",
    "run": "python3 -m app.server",
    "test": "pytest -q",
    "variables": [{"name": "HOST", "default": "0.0.0.0"}, {"name": "LOG_LEVEL", "default": "info"}],  # noqa: S104
    "secrets": [{"name": "API_TOKEN"}, {"name": "SENTRY_DSN", "required": False}],
}


@dataclass
class DeployWorld:
    harness: ApiHarness
    admin: ApiClient  # the person who deploys (an admin, so the built-in server is theirs to add)
    service: ApiClient  # the deploy function's key
    queue: LocalQueue
    repos: LocalRepoHost
    settings: DeploySettings

    @property
    def ports(self) -> Ports:
        return Ports(self.service, self.queue, self.settings, self.repos)

    @property
    def nodes(self) -> DeployNodes:
        return DeployNodes(self.service, self.queue, self.settings, self.repos, "secret://github-token")

    def push(self, contract: dict[str, Any] | None = CONTRACT, branch: str = "main") -> str:
        """A commit on `branch` of the project's repository, with `contract` as its env contract."""
        work = self.settings.home / f"work-{branch}"
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(work)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        subprocess.run(["git", "init", "-q", "-b", branch, str(work)], check=True, env=env)
        (work / CONTRACT_FILE).write_text(json.dumps(contract) if contract else "")
        (work / "README.md").write_text(branch)
        subprocess.run([*git, "add", "-A"], check=True, env=env)
        subprocess.run([*git, "commit", "-q", "-m", branch], check=True, env=env)
        remote = str(self.repos.path_for(self.full_name))
        subprocess.run([*git, "push", "-q", "--force", remote, f"HEAD:{branch}"], check=True, env=env)
        return branch

    @property
    def full_name(self) -> str:
        return f"{self.settings.repo_owner}/{PROJECT}"

    def deploy_task(self, server: str = "localhost", ref: str | None = None) -> Task:
        """A deploy task the deploy function has claimed."""
        task = self.admin.start_deploy(PROJECT, server, ref)
        return self.service.claim_task(task.id, worker="test")

    def state(self, task: Task, **values: Any) -> DeployState:
        """The state the graph holds for `task` once prepare and the env analyzer ran (to the local server)."""
        project = self.service.get_project(PROJECT)
        known: dict[str, Any] = {
            "task_id": task.id,
            "project_id": project.id,
            "correlation_id": task.correlation_id,
            "project_name": PROJECT,
            "server_handle": "localhost",
            "server_host": "127.0.0.1",
            "connection": "local",
            "repo_full_name": self.full_name,
            "repo_url": project.repo_url or "",
            "ref": "main",
            "commit_sha": self.head(values.get("ref", "main")),
            "agent": "claude-code",
            "secret_names": ["API_TOKEN", "SENTRY_DSN"],
            "required_secrets": ["API_TOKEN"],
        }
        return DeployState.model_validate(known | values)

    def head(self, branch: str) -> str:
        """The commit at the tip of `branch` ("" when there is none: the ref is read as it is)."""
        try:
            return self.repos.branch_head(self.full_name, branch) or ""
        except ValueError:
            return ""

    def steps(self, task_id: str) -> list[tuple[str | None, str]]:
        """(step, message) of the task's events, in order (those the nodes still hold sent first, as the
        driver's end of a step would)."""
        self.service.flush_before_change()
        return [(e.current_step, e.message) for e in self.admin.task_events(task_id)]


@contextmanager
def deploy_world(tmp_path: Path, port_range: tuple[int, int]) -> Iterator[DeployWorld]:
    """The API (a one-admin database with a service key), the built-in `localhost` server, and project
    `blog` with its repository on the local host."""
    home = tmp_path / "home"
    deps = build_deps(migrated_sqlite(tmp_path / "api.db"), home)
    deps.settings = deps.settings.model_copy(
        update={"port_range_start": port_range[0], "port_range_end": port_range[1]}
    )
    harness = install(deps)
    _, service_key = harness.new_user("deployer", scopes=["service"])
    transport = LambdaTransport(api_handler)
    admin = ApiClient("http://api.local", ADMIN_KEY, transport=transport)
    service = ApiClient("http://api.local", service_key, transport=transport)
    settings = DeploySettings(home=home, checkpointer="sqlite", smoke_attempts=1, smoke_request_timeout_s=2)
    repos = LocalRepoHost(home / "repos")
    world = DeployWorld(harness, admin, service, LocalQueue(home / "queue.db"), repos, settings)
    admin.add_server("localhost", "127.0.0.1", labels={"builtin": "true", "connection": "local"})
    admin.create_project(PROJECT, "a blog", ["backend"])
    repos.create_repo(world.full_name)
    admin.update_project(PROJECT, repo_url=str(repos.path_for(world.full_name)))
    try:
        yield world
    finally:
        admin.close()
        service.close()
        set_deps(None)
        dispose_all()


@contextmanager
def health_server(port: int = 0, status: int = 200) -> Iterator[str]:
    """A service on 127.0.0.1:`port` whose /health answers `status`; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            """Silent: no access log in the test output."""

    server = HTTPServer(("127.0.0.1", port), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port_block(size: int = 10) -> tuple[int, int]:
    """`size` consecutive ports nothing on this machine holds now (first, last)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            start = probe.getsockname()[1]
        if start + size < 65000 and all(bindable(p) for p in range(start, start + size)):
            return start, start + size - 1
    raise RuntimeError("no free port block")
