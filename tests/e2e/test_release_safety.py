"""A broken release never takes the working one down (issue 19, item 3): through the real CLI on the
embedded stack and real Ansible runs against the built-in localhost server.

Release 1 (the template, `orchestrator run --agent none`) serves from slot a behind the project's
stable port. Then main gets a commit whose service cannot start (its run command names a module that
does not exist) and `orchestrator deploy start` ships it as release 2 into slot b. A client polls the
stable URL every 100 ms through the whole attempt and must see only 200s; release 2 is FAILED with the
service's own error; release 1 still serves; nothing listens on slot b's port afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible_support import NEEDS_GIT_AND_ANSIBLE, git, http_get, kill_project, refuses_connections
from tests.e2e.conftest import CliRunner
from tests.e2e.test_deploy import deploy_stack  # noqa: F401 - the fixture, shared
from tests.stable_poller import StablePoller

pytestmark = [pytest.mark.slow, *NEEDS_GIT_AND_ANSIBLE]

PROJECT = "shop"
BROKEN_MODULE = "app.no_such_entrypoint"


@pytest.fixture
def slots() -> Iterator[None]:
    """Teardown of what test_deploy's fixture does not know: the slots and the forwarder of each app."""
    yield
    deployments = Path(os.environ["ORCH_HOME"]) / "deployments"
    for app_dir in deployments.glob("*") if deployments.exists() else []:
        kill_project(app_dir)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _push_a_release_that_cannot_start(cli: CliRunner, work: Path) -> str:
    """Commit to main a run command naming a module that does not exist; returns the commit."""
    repo = _json(cli("project", "show", PROJECT, "--json"))["repo_url"]
    subprocess.run(["git", "clone", "-q", repo, str(work)], check=True)
    contract = work / "orchestrator.env.json"
    data = json.loads(contract.read_text())
    data["run"] = f"python3 -m {BROKEN_MODULE}"
    contract.write_text(json.dumps(data, indent=2) + "\n")
    git("commit", "-q", "-am", "Start from a module that does not exist", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def test_a_release_that_cannot_start_leaves_the_serving_one_answering(
    deploy_stack: Any,  # noqa: F811
    slots: None,
    cli: CliRunner,
    tmp_path: Path,
) -> None:
    # given: release 1 serving
    deploy_stack()
    ran = cli("run", "--name", PROJECT, "--spec", "a shop", "--agent", "none", timeout=240)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [first] = _json(cli("deploy", "history", PROJECT, "--json"))
    assert (first["number"], first["status"], first["slot"]) == (1, "serving", "a")
    stable_url = first["url"] + "/health"

    # given: main's head is a release whose service cannot start
    broken = _push_a_release_that_cannot_start(cli, tmp_path / "work")

    # when: it is deployed while a client polls the stable address every 100 ms
    with StablePoller(stable_url) as poller:
        time.sleep(0.5)
        attempt = cli("deploy", "start", PROJECT, "--server", "localhost", "--follow", timeout=300)
        time.sleep(0.5)

    # then: every poll was answered 200, by release 1
    assert attempt.returncode != 0, attempt.stdout + attempt.stderr
    assert len(poller.polls) > 20
    assert poller.failures == [], poller.failures[:3]
    assert {json.loads(body)["status"] for body in poller.bodies()} == {"ok"}

    # then: release 2 is FAILED with the service's own error; release 1 still serves
    second, still = _json(cli("deploy", "history", PROJECT, "--json"))
    assert (second["number"], second["status"], second["slot"], second["commit_sha"]) == (
        2,
        "failed",
        "b",
        broken,
    )
    assert f"No module named {BROKEN_MODULE}" in second["error"], second["error"]
    assert (still["number"], still["status"]) == (1, "serving")
    [deploy, _] = _json(cli("task", "list", "--project", PROJECT, "--type", "deploy", "--json"))
    assert deploy["status"] == "FAILED" and f"No module named {BROKEN_MODULE}" in deploy["error"]

    # then: nothing listens on the failed slot's port; the stable address still answers
    assert refuses_connections(second["port"])
    assert http_get(stable_url) == (200, {"status": "ok"})
    assert cli("deploy", "stop", PROJECT).returncode == 0
    assert refuses_connections(int(first["url"].rsplit(":", 1)[1]))
