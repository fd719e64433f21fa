"""A project's life after the first wish (issue 19), through the real CLI on the embedded stack, the fake
developer (`FAKE_DEV_MODE=feature`: each wish adds its own HTTP route and engineering merges it into
main) and real Ansible runs against the built-in localhost server.

Two wishes in a row: each deploy ships main's head as a numbered release into the slot not serving, and
the second one serves both features at the same address; `deploy history` shows the two releases with
main's commits. Then `deploy rollback --to 1` ships release 1's commit again as release 3.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.ansible_support import NEEDS_GIT_AND_ANSIBLE
from tests.e2e.conftest import CliRunner
from tests.e2e.test_deploy import _json, deploy_stack  # noqa: F401 - the fixture, shared

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),  # two engineering tasks, three deploys and a stop; ~5 min on a loaded machine
    *NEEDS_GIT_AND_ANSIBLE,
]

PROJECT = "notes"


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


def _releases(cli: CliRunner) -> list[tuple[int, str, str, int | None]]:
    shown = _json(cli("deploy", "history", PROJECT, "--json"))
    return [(r["number"], r["status"], r["commit_sha"], r["rollback_of"]) for r in shown]


def test_two_wishes_serve_both_features_from_main_then_a_rollback_serves_the_first(
    deploy_stack: Callable[[str], Any],  # noqa: F811
    cli: CliRunner,
) -> None:
    deploy_stack("feature")
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

    # rollback to release 1: its commit again, as release 3, into the slot not serving
    rolled = _deploy(cli, "rollback", PROJECT, "--to", "1")
    assert (rolled["result"]["release"], rolled["result"]["slot"], rolled["result"]["commit_sha"]) == (
        3,
        "a",
        head1,
    )
    assert _serves(url, "one")
    assert _get(f"{url}/features/two")[0] == 404
    assert _releases(cli) == [
        (3, "serving", head1, 1),
        (2, "superseded", head2, None),
        (1, "superseded", head1, None),
    ]
    assert _json(cli("deploy", "status", PROJECT, "--json"))[0]["url"] == url
    assert cli("deploy", "stop", PROJECT).returncode == 0
