"""The scheduler's sync jobs: server_sync (pings through the infra queue), github_sync (repository
picture on projects, a vanished repository flagged once), and the API's repo-sync compare-and-set."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from functions.scheduler.handler import build_ports
from functions.scheduler.jobs import github_sync, server_sync
from functions.scheduler.settings import SchedulerSettings
from shared.contracts import PROVISIONER_QUEUE
from shared.contracts.api import RepoSync
from shared.queues.local import LocalQueue
from shared.repos.local import LocalRepoHost
from shared.work_signal import WorkKind
from tests.factories import drain


class _Servers:
    def __init__(self, handles: list[str]) -> None:
        self.handles = handles

    def list_servers(self) -> list[Any]:
        return [type("S", (), {"handle": h})() for h in self.handles]


def test_server_sync_asks_for_one_ping_per_server_per_window(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db")
    settings = SchedulerSettings(home=tmp_path, server_sync_every_s=3600)
    ports = build_ports(settings, api=_Servers(["localhost", "web-1"]), queue=queue)  # type: ignore[arg-type]
    ports.signal.mark([WorkKind.SERVERS])  # the API registered them
    assert server_sync(ports) == {"servers": 2, "pings": 2}
    assert server_sync(ports) == {"servers": 2, "pings": 2}  # an overlapping tick in the same window
    sent = drain(queue, PROVISIONER_QUEUE)
    ids = sorted(m.request_id for m in sent)
    assert len(ids) == 4 and len(set(ids)) == 2, ids  # same request ids: the infra launcher runs each once
    assert all(m.job_type == "ping" for m in sent)
    assert {m.server_handle for m in sent} == {"localhost", "web-1"}


class _Projects:
    """The two API calls github_sync makes, recording what it reports."""

    def __init__(self, projects: list[dict[str, Any]]) -> None:
        self.projects = projects
        self.synced: dict[str, RepoSync] = {}
        self.missing: dict[str, bool] = {}

    def list_projects(self) -> list[Any]:
        return [type("P", (), p)() for p in self.projects]

    def record_repo_sync(self, project: str, sync: RepoSync) -> Any:
        changed = self.missing.get(project, False) != sync.missing
        self.missing[project] = sync.missing
        self.synced[project] = sync
        return type("R", (), {"changed": changed})()


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_github_sync_stores_heads_and_flags_a_vanished_repository(tmp_path: Path) -> None:
    host = LocalRepoHost(tmp_path / "repos")
    info = host.create_repo("orchestrator/blog")
    work = tmp_path / "work"
    _git("clone", "-q", info.clone_url, str(work), cwd=tmp_path)
    _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    _git("push", "-q", "origin", "HEAD:main", cwd=work)
    head = _git("rev-parse", "HEAD", cwd=work)

    api = _Projects(
        [
            {"id": "p1", "name": "blog", "repo_url": info.clone_url, "status": "active"},
            {"id": "p2", "name": "gone", "repo_url": "/nowhere", "status": "active"},
            {"id": "p3", "name": "draft", "repo_url": None, "status": "draft"},
            {"id": "p4", "name": "old", "repo_url": "/x", "status": "archived"},
        ]
    )
    ports = build_ports(SchedulerSettings(home=tmp_path), api=api)  # type: ignore[arg-type]
    ports.__dict__["repo_host"] = host
    ports.signal.mark([WorkKind.PROJECTS])  # the API wrote them
    counts = github_sync(ports)
    assert counts == {"projects": 2, "synced": 2, "missing": 1, "errors": 0, "changed": 1}
    assert (
        api.synced["p1"].head == head
        and api.synced["p1"].pull_requests == []
        and not api.synced["p1"].missing
    )
    assert api.synced["p2"].missing
    assert github_sync(ports)["changed"] == 0  # still gone: told once
