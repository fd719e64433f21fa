"""A project's life after the first wish (issue 19), through the real CLI on the embedded stack, the fake
developer (`FAKE_DEV_MODE=feature`: each wish adds its own HTTP route and engineering merges it into
main) and real Ansible runs against the built-in localhost server.

Two wishes in a row: each deploy ships main's head as a numbered release into the slot not serving, and
the second one serves both features at the same address; `deploy history` shows the two releases with
main's commits. A release whose service cannot start then fails in its own words while release 2 keeps
answering, leaking no port. Last, `deploy rollback --to 1` ships release 1's commit again as release 4.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ansible_support import NEEDS_GIT_AND_ANSIBLE
from tests.e2e.conftest import CliRunner
from tests.e2e.test_deploy import _json, deploy_stack  # noqa: F401 - the fixture, shared
from tests.stable_poller import StablePoller

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),  # two engineering tasks, three deploys and a stop; ~5 min on a loaded machine
    *NEEDS_GIT_AND_ANSIBLE,
]

PROJECT = "notes"
BROKEN = "release 3 cannot start: on purpose"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _wish(cli: CliRunner, spec: str) -> dict[str, Any]:
    """An engineering task to its end: the completed task (its result names the merge commit)."""
    task = _json(cli("engineering", "start", PROJECT, "--spec", spec, "--json"))
    followed = cli("task", "logs", task["id"], "--follow", "--interval", "0.3", timeout=240)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    done = _json(cli("task", "show", task["id"], "--json"))
    assert done["status"] == "COMPLETED", done
    return done


def _main_head(cli: CliRunner) -> str:
    repo = _json(cli("project", "show", PROJECT, "--json"))["repo_url"]
    return subprocess.run(
        ["git", "--git-dir", repo, "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _deploy(cli: CliRunner, *args: str) -> dict[str, Any]:
    """`deploy start|rollback ... --follow` to its end: the completed deploy task."""
    ran = cli("deploy", *args, "--follow", timeout=240)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    deploys = _json(cli("task", "list", "--project", PROJECT, "--type", "deploy", "--json"))
    newest = deploys[0]
    assert newest["status"] == "COMPLETED", newest
    return newest  # type: ignore[no-any-return]


def _serves(url: str, name: str) -> bool:
    """`url` serves the feature the fake developer added for a wish whose spec ends with `name`."""
    status, body = _get(f"{url}/features/{name}")
    return status == 200 and json.loads(body) == {"feature": name}


def _push_broken(repo: str, tmp_path: Path) -> str:
    """Branch `broken` of the project: main plus a feature module that raises on import (the service
    cannot start, in its own words). Its commit."""
    work = tmp_path / "broken"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(work)]
    subprocess.run(["git", "clone", "-q", repo, str(work)], check=True)
    (work / "app" / "features" / "broken.py").write_text(f"raise RuntimeError({BROKEN!r})\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a release that cannot start"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:refs/heads/broken"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _project_ports(cli: CliRunner) -> int:
    """How many ports of the built-in server this test's only project holds."""
    shown = cli("server", "show", "localhost").stdout
    [line] = [line for line in shown.splitlines() if line.strip().startswith("ports:")]
    return len([p for p in line.split(":", 1)[1].split(",") if p.strip().isdigit()])


def _releases(cli: CliRunner) -> list[tuple[int, str, str, int | None]]:
    shown = _json(cli("deploy", "history", PROJECT, "--json"))
    return [(r["number"], r["status"], r["commit_sha"], r["rollback_of"]) for r in shown]


def test_two_wishes_serve_both_features_from_main_then_a_rollback_serves_the_first(
    deploy_stack: Callable[..., Any],  # noqa: F811
    cli: CliRunner,
    tmp_path: Path,
) -> None:
    # no fix round: a broken release must just fail (a fix would merge into main)
    deploy_stack("feature", {"ORCH_DEPLOY_MAX_FIX_ATTEMPTS": "0"})
    created = cli("project", "create", "--name", PROJECT, "--agent", "command")
    assert created.returncode == 0, created.stdout + created.stderr

    # wish 1, deployed: release 1 is main's head, from slot a
    first = _wish(cli, "add a notes list: feature one")
    head1 = _main_head(cli)
    assert first["result"]["merge_commit"] == head1
    deploy1 = _deploy(cli, "start", PROJECT, "--server", "localhost")
    url = deploy1["result"]["deployed_url"]
    assert (deploy1["result"]["release"], deploy1["result"]["slot"]) == (1, "a")
    assert _serves(url, "one")

    # wish 2 starts from main (it holds wish 1), is merged, and its deploy serves both at the same address
    second = _wish(cli, "add a notes search: feature two")
    head2 = _main_head(cli)
    assert second["result"]["merge_commit"] == head2 != head1
    repo = _json(cli("project", "show", PROJECT, "--json"))["repo_url"]
    holds = ["git", "--git-dir", repo, "merge-base", "--is-ancestor", head1, head2]
    assert subprocess.run(holds, check=False).returncode == 0, "main's second commit holds the first"
    deploy2 = _deploy(cli, "start", PROJECT, "--server", "localhost")
    assert deploy2["result"]["deployed_url"] == url
    assert (deploy2["result"]["release"], deploy2["result"]["slot"]) == (2, "b")
    assert _serves(url, "one") and _serves(url, "two")
    assert _releases(cli) == [(2, "serving", head2, None), (1, "superseded", head1, None)]

    # a release whose service cannot start: release 2 answers every poll through the attempt, release 3
    # is FAILED with the service's own words, and the project holds its three ports, no more
    broken = _push_broken(repo, tmp_path)
    with StablePoller(url + "/features/two") as poller:
        failed = cli("deploy", "start", PROJECT, "--server", "localhost", "--ref", "broken", "--follow")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert poller.failures == [] and len(poller.polls) > 5, poller.failures[:3]
    assert _releases(cli)[0] == (3, "failed", broken, None)
    [shown] = [r for r in _json(cli("deploy", "history", PROJECT, "--json")) if r["number"] == 3]
    assert shown["error"].splitlines()[0].endswith(f": RuntimeError: {BROKEN}"), shown["error"]
    assert shown["error"].splitlines()[-1].strip() == f"RuntimeError: {BROKEN}", shown["error"]
    assert _json(cli("deploy", "status", PROJECT, "--json"))[0]["task_id"] == deploy2["id"]
    assert _project_ports(cli) == 3, "the stable port and the two slots' ports"

    # rollback to release 1: its commit again, as release 4, into the slot not serving
    rolled = _deploy(cli, "rollback", PROJECT, "--to", "1")
    assert (rolled["result"]["release"], rolled["result"]["slot"], rolled["result"]["commit_sha"]) == (
        4,
        "a",
        head1,
    )
    assert _serves(url, "one")
    assert _get(f"{url}/features/two")[0] == 404
    assert _releases(cli) == [
        (4, "serving", head1, 1),
        (3, "failed", broken, None),
        (2, "superseded", head2, None),
        (1, "superseded", head1, None),
    ]
    assert _json(cli("deploy", "status", PROJECT, "--json"))[0]["url"] == url
    assert cli("deploy", "stop", PROJECT).returncode == 0
