"""A broken release never takes the working one down (issue 19, item 3), on the built-in localhost server.

Release 1 serves from slot a behind the project's stable port. Release 2 is a commit whose service cannot
start, deployed into slot b by the Ansible runner exactly as the infra consumer launches it
(`python -m worker_image.ansible_runner --job FILE --publish`, real playbooks). A client polls the stable
URL every 100 ms through the whole attempt and must see only 200s from release 1; the published result
is FAILED with the service's own error, and nothing listens on the failed slot's port afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import ANSIBLE_DEPLOY_RESULTS, AnsibleDeployResult
from shared.queues.factory import build_queue
from tests.ansible_support import (
    NEEDS_GIT_AND_ANSIBLE,
    AppRepo,
    free_port,
    git,
    kill_project,
    make_app_repo,
    refuses_connections,
)
from tests.factories import drain
from tests.stable_poller import StablePoller

ROOT = Path(__file__).resolve().parents[2]
LOCALHOST = {"handle": "localhost", "host": "127.0.0.1", "connection": "local"}

pytestmark = [
    pytest.mark.slow,
    *NEEDS_GIT_AND_ANSIBLE,
]


@pytest.fixture
def repo(tmp_path: Path) -> AppRepo:
    return make_app_repo(tmp_path / "app", project_name="shop")


@pytest.fixture
def app_dir() -> Iterator[Path]:
    directory = Path(os.environ["ORCH_HOME"]).resolve() / "deployments" / "shop"
    yield directory
    kill_project(directory)


def _run_runner(tmp_path: Path, **job: Any) -> AnsibleDeployResult:
    """One job through the runner's command line, publishing its result; returns that result."""
    fields = {"request_id": str(uuid.uuid4()), "kind": "deploy", "target": LOCALHOST, "project_id": "p-shop"}
    path = tmp_path / f"job-{fields['request_id']}.json"
    path.write_text(json.dumps(fields | job))
    done = subprocess.run(
        [sys.executable, "-m", "worker_image.ansible_runner", "--job", str(path), "--publish"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = drain(build_queue(), ANSIBLE_DEPLOY_RESULTS)
    assert isinstance(result, AnsibleDeployResult)
    return result


def test_a_release_that_cannot_start_leaves_the_serving_one_answering(
    repo: AppRepo, app_dir: Path, tmp_path: Path
) -> None:
    # given: release 1 serving from slot a behind the stable port
    stable, port_a, port_b = free_port(), free_port(), free_port()
    common = {"project_name": "shop", "repo_url": str(repo.bare), "stable_port": stable, "timeout_s": 240}
    first = _run_runner(
        tmp_path, **common, ref=git("rev-parse", "HEAD", cwd=repo.work), slot="a", port=port_a, release=1
    )
    assert first.status == "success" and first.switched is True, first.error
    stable_url = f"{first.deployed_url}/health"
    assert first.deployed_url == f"http://127.0.0.1:{stable}"

    # given: release 2, whose service dies at start with its own error
    (repo.work / "app" / "server.py").write_text(
        "raise SystemExit('release 2 cannot start: DATABASE_URL is not set')\n"
    )
    broken = repo.commit("Release 2 (broken)")

    # when: it is deployed into slot b while a client polls the stable address every 100 ms
    with StablePoller(stable_url) as poller:
        time.sleep(0.5)
        second = _run_runner(tmp_path, **common, ref=broken, slot="b", port=port_b, release=2)
        time.sleep(0.5)

    # then: every poll answered 200, from release 1
    assert len(poller.polls) > 20
    assert poller.failures == [], poller.failures[:3]
    assert poller.longest_gap_s() == 0.0
    assert {json.loads(body)["status"] for body in poller.bodies()} == {"ok"}

    # then: the release FAILED with the service's own words, nothing stayed on slot b's port
    assert second.status == "failed" and second.switched is False
    assert second.slot == "b" and second.release == 2
    assert second.error is not None and "DATABASE_URL is not set" in second.error, second.error
    assert second.service_log is not None and "DATABASE_URL is not set" in second.service_log
    assert second.service_log_path == f"{app_dir}/slots/b/service.log"
    assert refuses_connections(port_b)
    assert (app_dir / "serving").read_text().strip() == "a"
    assert (app_dir / "upstream").read_text().strip() == f"127.0.0.1:{port_a}"

    # and: undeploying the project stops release 1, its forwarder and the stable port
    removed = _run_runner(tmp_path, kind="undeploy", project_name="shop", port=port_a, slot="a")
    assert removed.status == "success", removed.error
    assert refuses_connections(stable) and refuses_connections(port_a) and not app_dir.exists()
