"""Helpers for the Ansible runner tests: a rendered app in a local bare git repo, free ports, and the
processes a local deploy leaves running (found through /proc, killed in teardown)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.scaffolder.render import render_project

NEEDS_GIT_AND_ANSIBLE = [
    pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for the app repository"),
    pytest.mark.skipif(
        shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None,
        reason="ansible-core is not installed in this environment",
    ),
]
"""pytestmark entries of tests that deploy a rendered app with the real runner."""

GIT_IDENTITY = ["-c", "user.name=Runner Tests", "-c", "user.email=runner-tests@example.invalid"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class AppRepo:
    """A rendered project (`work`) pushed to a local bare repository (`bare`, the deploy's repo_url)."""

    work: Path
    bare: Path

    def commit(self, message: str) -> str:
        """Commit everything in `work`, push it to the bare repo's main, return the sha."""
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.work / relative
        text = path.read_text()
        assert old in text, f"{old!r} is not in {relative}"
        path.write_text(text.replace(old, new))


def make_app_repo(root: Path, project_name: str = "demo-app", port: int = 8080) -> AppRepo:
    work, bare = root / "work", root / "repo.git"
    render_project(work, project_name, modules=[], port=port)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    git("init", "-q", "-b", "main", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    repo = AppRepo(work, bare)
    repo.commit("Render the template")
    return repo


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"{}")


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- processes --------------------------------------------------------------------------------------


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def supervisor_pids(app_dir: Path) -> list[int]:
    """Live `supervise.py` processes whose command line names `app_dir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if (
            any(a.endswith("supervise.py") for a in argv)
            and str(app_dir) in argv
            and not _is_zombie(int(proc.name))
        ):
            found.append(int(proc.name))
    return sorted(found)


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is inside `directory` (a deployed service runs in src/)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if (cwd == directory or directory in cwd.parents) and not _is_zombie(int(proc.name)):
            found.append(int(proc.name))
    return sorted(found)


def processes_named(fragment: str) -> list[int]:
    """Live processes whose command line contains `fragment`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if fragment.encode() in cmdline and not _is_zombie(int(proc.name)):
            found.append(int(proc.name))
    return sorted(found)


def kill_deployment(app_dir: Path) -> None:
    """Teardown: SIGKILL the supervisor (by pidfile and by scan) and whatever runs in the app's src."""
    pids = set(supervisor_pids(app_dir)) | set(processes_in(app_dir))
    with contextlib.suppress(OSError, ValueError):
        pids.add(int((app_dir / "supervisor.pid").read_text()))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in processes_in(app_dir):  # a service's own children, reparented after its parent died
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def kill_project(app_dir: Path) -> None:
    """Teardown of a project deployed into slots: its forwarder, both slots and an in-place service."""
    for directory in (app_dir / "forwarder", app_dir / "slots" / "a", app_dir / "slots" / "b", app_dir):
        kill_deployment(directory)


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every regular file under `root` whose bytes contain `needle`."""
    hits = []
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes():
                hits.append(path)
    return hits
