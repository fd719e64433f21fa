"""The Ansible runner against the built-in localhost server: real ansible-runner, real playbooks, a real
app rendered from the bundled template, served from a local bare git repository.

Every test that deploys registers the app directory with `deployments`, whose teardown kills whatever
the deploy left running, so no process outlives its test.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import ANSIBLE_DEPLOY_RESULTS, AnsibleDeployResult
from shared.queues.factory import build_queue
from shared.secrets.factory import build_secrets
from shared.secrets.port import SecretsPort
from tests.ansible_support import (
    NEEDS_GIT_AND_ANSIBLE,
    AppRepo,
    files_containing,
    free_port,
    http_get,
    kill_deployment,
    kill_project,
    make_app_repo,
    processes_in,
    processes_named,
    refuses_connections,
    supervisor_pids,
)
from tests.factories import drain
from tests.stable_poller import StablePoller
from worker_image.ansible_runner.job import RunnerJob
from worker_image.ansible_runner.playbooks.files.supervise import parse_env_file
from worker_image.ansible_runner.runner import run_job

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    *NEEDS_GIT_AND_ANSIBLE,
]

SECRET_REF = "secret://projects/p1/API_TOKEN"
LOCALHOST = {"handle": "localhost", "host": "127.0.0.1", "connection": "local"}


@pytest.fixture
def secrets() -> SecretsPort:
    """The local secrets file in this test's ORCH_HOME (set by tests/conftest.py)."""
    return build_secrets()


@pytest.fixture
def canary(secrets: SecretsPort) -> str:
    """A secret value that must reach the service's env file and nothing else. It holds template syntax
    and shell metacharacters, which must arrive as they are."""
    value = f'canary-{uuid.uuid4().hex}-{{{{ 7 * 6 }}}}-$HOME-"q"'
    secrets.put(SECRET_REF, value)
    return value


@pytest.fixture
def repo(tmp_path: Path) -> AppRepo:
    return make_app_repo(tmp_path / "app")


@pytest.fixture
def deployments() -> Iterator[list[Path]]:
    """Append each app directory a test deploys; teardown kills what runs there."""
    app_dirs: list[Path] = []
    yield app_dirs
    for app_dir in app_dirs:
        kill_deployment(app_dir)


def deploy_job(repo: AppRepo, port: int, **overrides: Any) -> RunnerJob:
    fields: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "correlation_id": "corr-" + uuid.uuid4().hex[:8],
        "kind": "deploy",
        "target": LOCALHOST,
        "project_id": "p1",
        "project_name": "demo_app",
        "repo_url": str(repo.bare),
        "ref": "main",
        "port": port,
        "timeout_s": 120,
    }
    fields.update(overrides)
    return RunnerJob.model_validate(fields)


def app_dir_of(job: RunnerJob) -> Path:
    app_dir = job.app_dir()
    assert app_dir is not None
    return Path(app_dir)


def test_deploy_redeploy_and_undeploy_on_localhost(
    repo: AppRepo, secrets: SecretsPort, deployments: list[Path], tmp_path: Path
) -> None:
    # given: the rendered app on main, a free port, the default deploy root ($ORCH_HOME/deployments)
    port = free_port()
    job = deploy_job(repo, port, env={"LOG_LEVEL": "INFO", "GREETING": "{{ 6 * 7 }}"})
    app_dir = app_dir_of(job)
    deployments.append(app_dir)
    assert app_dir == Path(os.environ["ORCH_HOME"]).resolve() / "deployments" / "demo_app"

    # when: deployed
    first = run_job(job, secrets)

    # then: healthy, served from the checkout, one supervisor; job strings were not templated
    assert first.status == "success", first.error
    assert first.deployed_url == f"http://127.0.0.1:{port}"
    assert first.health_url == f"http://127.0.0.1:{port}/health"
    assert http_get(f"http://127.0.0.1:{port}/health") == (200, {"status": "ok"})
    assert len(supervisor_pids(app_dir)) == 1
    env_file = app_dir / "app.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert 'GREETING="{{ 6 * 7 }}"' in env_file.read_text()
    assert f'PORT="{port}"' in env_file.read_text()
    first_supervisor = supervisor_pids(app_dir)[0]

    # when: a second commit is deployed over it
    repo.edit(
        "app/server.py", 'return HTTPStatus.OK, {"status": "ok"}', 'return HTTPStatus.OK, {"status": "v2"}'
    )
    second_sha = repo.commit("Version 2")
    second = run_job(job.model_copy(update={"ref": second_sha}), secrets)

    # then: the new code serves, still exactly one supervisor (a new one)
    assert second.status == "success", second.error
    assert http_get(f"http://127.0.0.1:{port}/health") == (200, {"status": "v2"})
    supervisors = supervisor_pids(app_dir)
    assert len(supervisors) == 1 and supervisors != [first_supervisor]

    # when: undeployed, twice
    undeploy = job.model_copy(update={"kind": "undeploy", "request_id": str(uuid.uuid4())})
    removed = run_job(undeploy, secrets)
    again = run_job(undeploy, secrets)

    # then: nothing listens, nothing runs, nothing is left; undeploying nothing succeeds
    assert removed.status == "success", removed.error
    assert again.status == "success", again.error
    assert refuses_connections(port)
    assert supervisor_pids(app_dir) == [] and processes_in(app_dir) == []
    assert not app_dir.exists()


def test_an_unhealthy_deploy_fails_with_the_reason_and_the_service_log(
    repo: AppRepo, secrets: SecretsPort, deployments: list[Path], tmp_path: Path
) -> None:
    # given: a commit whose server cannot even be imported
    (repo.work / "app" / "server.py").write_text("def main(:\n")
    sha = repo.commit("Break the server")
    job = deploy_job(repo, free_port(), ref=sha, deploy_root=str(tmp_path / "apps"))
    deployments.append(app_dir_of(job))

    # when
    outcome = run_job(job, secrets)

    # then: a readable reason, the crash in the output tail, and the supervisor has given up
    assert outcome.status == "failed"
    assert outcome.error is not None and "\n" not in outcome.error
    assert outcome.error.startswith(f"health check http://127.0.0.1:{job.port}/health never answered 200")
    assert "gave up" in outcome.error
    assert outcome.stdout_tail is not None and "SyntaxError" in outcome.stdout_tail
    assert outcome.exit_code not in (None, 0)
    assert outcome.deployed_url is None
    assert supervisor_pids(app_dir_of(job)) == []
    # the cause, from the service's own log, and where the whole log is
    assert outcome.service_log is not None and "SyntaxError" in outcome.service_log
    assert outcome.service_log_path == f"{app_dir_of(job)}/service.log"
    assert "SyntaxError" in Path(outcome.service_log_path).read_text()


def test_the_cli_publishes_one_result_and_the_secret_reaches_only_the_service(
    repo: AppRepo, canary: str, deployments: list[Path], tmp_path: Path
) -> None:
    # given: a job referencing the canary secret, run as the infra consumer runs it
    port = free_port()
    job = deploy_job(repo, port, secret_refs={"API_TOKEN": SECRET_REF})
    app_dir = app_dir_of(job)
    deployments.append(app_dir)
    job_file = tmp_path / "job.json"
    job_file.write_text(job.model_dump_json())
    runner_tmp, runner_home = tmp_path / "runner-tmp", tmp_path / "runner-home"
    runner_tmp.mkdir()
    runner_home.mkdir()
    env = {**os.environ, "TMPDIR": str(runner_tmp), "HOME": str(runner_home)}

    # when
    done = subprocess.run(
        [sys.executable, "-m", "worker_image.ansible_runner", "--job", str(job_file), "--publish"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then: exit 0, the outcome is the last stdout line, one valid result is on the results queue
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "success", outcome["error"]
    results = drain(build_queue(), ANSIBLE_DEPLOY_RESULTS)
    assert len(results) == 1
    result = results[0]
    assert isinstance(result, AnsibleDeployResult)
    assert (result.request_id, result.status, result.job_type) == (job.request_id, "success", "deploy")
    assert result.deployed_url == f"http://127.0.0.1:{port}" and result.port == port
    assert result.model_extra is not None and result.model_extra.get("correlation_id") == job.correlation_id
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert logs and all(line["correlation_id"] == job.correlation_id for line in logs)

    # then: the service got the secret (in its env file and in its process environment) ...
    assert http_get(f"http://127.0.0.1:{port}/health")[0] == 200
    assert parse_env_file((app_dir / "app.env").read_text())["API_TOKEN"] == canary
    environs = [Path(f"/proc/{pid}/environ").read_bytes() for pid in processes_in(app_dir / "src")]
    assert environs and all(f"API_TOKEN={canary}".encode() in environ.split(b"\0") for environ in environs)
    # ... and nothing else did: not the outcome, the result, the logs, nor any file the run left behind
    assert canary not in done.stdout and canary not in done.stderr
    assert canary not in result.model_dump_json()
    assert files_containing(runner_tmp, canary) == [] and files_containing(runner_home, canary) == []
    assert list(runner_tmp.iterdir()) == [], "the private data dir is removed after the run"


def test_an_invalid_job_exits_2_with_one_line_naming_the_field(tmp_path: Path) -> None:
    job = {
        "request_id": "r1",
        "kind": "deploy",
        "target": LOCALHOST,
        "project_name": "demo_app",
        "repo_url": "/x",
    }

    done = subprocess.run(
        [sys.executable, "-m", "worker_image.ansible_runner", "--job", "-", "--publish"],
        cwd=ROOT,
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "'port'" in done.stderr


def test_a_missing_secret_fails_naming_the_reference(repo: AppRepo, secrets: SecretsPort) -> None:
    job = deploy_job(repo, free_port(), secret_refs={"API_TOKEN": "secret://projects/p1/NOT_THERE"})

    outcome = run_job(job, secrets)

    assert outcome.status == "failed"
    assert (
        outcome.error
        == "secret reference secret://projects/p1/NOT_THERE (secret_refs.API_TOKEN) is missing or not this job's to use"
    )
    assert outcome.exit_code is None


def test_ping_reports_facts_of_localhost(secrets: SecretsPort) -> None:
    job = RunnerJob.model_validate({"request_id": "ping-1", "kind": "ping", "target": LOCALHOST})

    outcome = run_job(job, secrets)

    assert outcome.status == "success", outcome.error
    assert outcome.reachable is True
    assert outcome.facts["hostname"] == socket.gethostname().split(".")[0]
    assert outcome.facts["python"] == platform.python_version()
    assert outcome.facts["os"] and outcome.facts["kernel"] == platform.release()


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("ssh", "ssh-agent", "ssh-keygen")), reason="needs openssh-client"
)
def test_an_ssh_target_that_does_not_answer_is_unreachable_and_its_key_stays_secret(
    secrets: SecretsPort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a real private key in the secret store and an ssh target on a port where nothing listens
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runner-test", "-f", str(tmp_path / "key")],
        check=True,
    )
    key = (tmp_path / "key").read_text()
    secrets.put("secret://servers/srv-1/ssh_key", key)
    target = {
        "handle": "srv-1",
        "host": "127.0.0.1",
        "ssh_port": free_port(),
        "ssh_key_ref": "secret://servers/srv-1/ssh_key",
    }
    job = RunnerJob.model_validate(
        {"request_id": "ping-ssh", "kind": "ping", "target": target, "timeout_s": 60}
    )

    runner_tmp = tmp_path / "runner-tmp"
    runner_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runner_tmp))

    # when
    outcome = run_job(job, secrets)

    # then: unreachable, the key nowhere, and the ssh-agent that held it is gone with the private dir
    assert outcome.status == "failed"
    assert outcome.reachable is False
    assert list(runner_tmp.iterdir()) == []
    assert processes_named(str(runner_tmp)) == []
    assert outcome.error is not None and outcome.error.startswith("srv-1 is unreachable:")
    body = key.splitlines()[1]
    assert body not in outcome.model_dump_json()


def test_a_result_that_cannot_be_published_exits_3_after_printing_the_outcome(tmp_path: Path) -> None:
    # given: a job that fails before Ansible (its secret is missing) and a queue file that cannot exist
    job = RunnerJob.model_validate(
        {
            "request_id": "r-3",
            "kind": "ping",
            "target": LOCALHOST,
            "secret_refs": {"API_TOKEN": "secret://projects/p1/NOT_THERE"},
        }
    )
    env = {**os.environ, "ORCH_QUEUE_FILE": str(tmp_path / "not-a-dir" / "queue.db")}
    (tmp_path / "not-a-dir").write_text("a file where the queue's directory should be")

    done = subprocess.run(
        [sys.executable, "-m", "worker_image.ansible_runner", "--job", "-", "--publish"],
        cwd=ROOT,
        env=env,
        input=job.model_dump_json(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == "failed"
    assert "could not publish the result" in done.stderr


def test_provision_of_localhost_changes_nothing_and_reports_facts(secrets: SecretsPort) -> None:
    job = RunnerJob.model_validate(
        {"request_id": "prov-1", "kind": "provision", "target": LOCALHOST, "open_ports": [8080]}
    )

    outcome = run_job(job, secrets)

    assert outcome.status == "success", outcome.error
    assert outcome.facts["provisioned"].startswith("no")
    assert outcome.stdout_tail is not None and "changed=0" in outcome.stdout_tail


# -- blue/green slots -------------------------------------------------------------------------------------


@pytest.fixture
def slot_deployments() -> Iterator[list[Path]]:
    """Append each project directory a test deploys into slots; teardown kills what runs in any of them."""
    app_dirs: list[Path] = []
    yield app_dirs
    for app_dir in app_dirs:
        kill_project(app_dir)


def _set_status(repo: AppRepo, old: str, new: str) -> str:
    repo.edit("app/server.py", f'{{"status": "{old}"}}', f'{{"status": "{new}"}}')
    return repo.commit(f"Answer {new}")


def test_slots_switch_the_stable_port_only_to_a_healthy_release(
    repo: AppRepo, secrets: SecretsPort, slot_deployments: list[Path]
) -> None:
    # given: a project deployed in place on its stable port (before slots existed), two slot ports
    stable, port_a, port_b = free_port(), free_port(), free_port()
    in_place = deploy_job(repo, stable)
    app_dir = app_dir_of(in_place)
    slot_deployments.append(app_dir)
    assert run_job(in_place, secrets).status == "success"
    stable_url = f"http://127.0.0.1:{stable}/health"

    # when: release 2 goes to slot a (the first slot deploy takes the stable port from the in-place service)
    v2 = _set_status(repo, "ok", "v2")
    with StablePoller(stable_url) as poller:
        first = run_job(deploy_job(repo, port_a, ref=v2, slot="a", stable_port=stable, release=2), secrets)
        time.sleep(0.3)

    # then: the stable port serves slot a through the forwarder; the in-place release is gone; the polls
    # saw "ok", at most one short gap (the in-place service stopped, the forwarder started), then "v2"
    assert first.status == "success", first.error
    statuses = [json.loads(poll.body)["status"] if poll.ok else "-" for poll in poller.polls]
    assert "".join(dict.fromkeys(s[0] for s in statuses)) in ("ov", "o-v"), statuses
    print(
        f"first slot deploy: {len(poller.failures)} failed polls, longest gap {poller.longest_gap_s():.2f} s"
    )
    assert first.switched is True and first.deployed_url == f"http://127.0.0.1:{stable}"
    assert first.service_log_path == f"{app_dir}/slots/a/service.log"
    assert http_get(stable_url) == (200, {"status": "v2"})
    assert (app_dir / "upstream").read_text().strip() == f"127.0.0.1:{port_a}"
    assert (app_dir / "serving").read_text().strip() == "a"
    assert not (app_dir / "src").exists() and not (app_dir / "supervise.json").exists()

    # when: release 3 goes to slot b while a client polls the stable address every 100 ms
    v3 = _set_status(repo, "v2", "v3")
    with StablePoller(stable_url) as poller:
        second = run_job(deploy_job(repo, port_b, ref=v3, slot="b", stable_port=stable, release=3), secrets)
        time.sleep(0.3)

    # then: not one poll failed; v2 answered until v3 took over; slot a was stopped after the drain
    assert second.status == "success", second.error
    assert poller.failures == [], poller.failures[:3]
    assert [json.loads(body)["status"] for body in poller.bodies()] == ["v2", "v3"]
    assert refuses_connections(port_a)
    assert (app_dir / "serving").read_text().strip() == "b"

    # when: a release whose service cannot start goes to slot a, polled the same way
    (repo.work / "app" / "server.py").write_text("def main(:\n")
    broken = repo.commit("Break the server")
    with StablePoller(stable_url) as poller:
        failed = run_job(
            deploy_job(repo, port_a, ref=broken, slot="a", stable_port=stable, release=4), secrets
        )

    # then: FAILED with the service's own error; v3 answered every poll; nothing listens on slot a
    assert failed.status == "failed" and failed.switched is False
    assert failed.error is not None and "SyntaxError" in failed.error, failed.error
    assert failed.service_log is not None and "SyntaxError" in failed.service_log
    assert poller.failures == [] and len(poller.polls) > 5
    assert {json.loads(body)["status"] for body in poller.bodies()} == {"v3"}
    assert refuses_connections(port_a)
    assert (app_dir / "serving").read_text().strip() == "b"

    # when: a message names the serving slot for a different release (a bug upstream): refused, untouched
    refused = run_job(deploy_job(repo, port_b, ref=v2, slot="b", stable_port=stable), secrets)
    assert refused.status == "failed" and refused.error is not None
    assert "serves this project's current release" in refused.error
    assert http_get(stable_url) == (200, {"status": "v3"})

    # when: the serving release is asked again (a redelivered message whose result was lost): already done
    supervisors = supervisor_pids(app_dir / "slots" / "b")
    again = run_job(deploy_job(repo, port_b, ref=v3, slot="b", stable_port=stable, release=3), secrets)
    assert again.status == "success" and again.switched is True, again.error
    assert supervisor_pids(app_dir / "slots" / "b") == supervisors

    # when: undeployed
    undeploy = deploy_job(repo, port_b, kind="undeploy", slot="b", stable_port=stable)
    removed = run_job(undeploy, secrets)

    # then: the forwarder and both slots are stopped, the directory is gone
    assert removed.status == "success", removed.error
    assert refuses_connections(stable) and refuses_connections(port_b) and refuses_connections(port_a)
    assert processes_in(app_dir) == [] and not app_dir.exists()


SUPERVISE = ROOT / "worker_image" / "ansible_runner" / "playbooks" / "files" / "supervise.py"


def _answering(name: str) -> http.server.ThreadingHTTPServer:
    """A keep-alive HTTP server on a free port that answers every GET with its name."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            """No access log on the test's stderr."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _switch(
    app_dir: Path, upstream_port: int, stable: int, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, str(SUPERVISE), "switch", str(app_dir / "forwarder")),
            *("--upstream-file", str(app_dir / "upstream"), "--upstream", f"127.0.0.1:{upstream_port}"),
            *(
                "--listen-port",
                str(stable),
                "--url",
                f"http://127.0.0.1:{stable}/",
                "--timeout",
                str(timeout),
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _get_over(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/")
    return connection.getresponse().read().decode()


def test_the_forwarder_sends_new_connections_to_the_new_upstream_while_open_ones_finish(
    tmp_path: Path, slot_deployments: list[Path]
) -> None:
    # given: two releases answering on their own ports, the forwarder pointed at the first
    app_dir = tmp_path / "proj"
    slot_deployments.append(app_dir)
    blue, green, stable = _answering("blue"), _answering("green"), free_port()
    try:
        first = _switch(app_dir, blue.server_port, stable)
        assert first.returncode == 0, first.stdout + first.stderr
        supervisor = (app_dir / "forwarder" / "supervisor.pid").read_text()
        held = http.client.HTTPConnection("127.0.0.1", stable, timeout=5)
        assert _get_over(held) == "blue"

        # when: switched to the second
        second = _switch(app_dir, green.server_port, stable)

        # then: new connections reach green; the connection held open still talks to blue
        assert second.returncode == 0, second.stdout + second.stderr
        assert http_get_text(f"http://127.0.0.1:{stable}/") == "green"
        assert _get_over(held) == "blue"
        held.close()
        assert (app_dir / "forwarder" / "supervisor.pid").read_text() == supervisor, "started once, not again"

        # when: switched to a port where nothing answers: refused, and the upstream is put back
        dead = _switch(app_dir, free_port(), stable, timeout=3)
        assert dead.returncode == 1
        assert (app_dir / "upstream").read_text().strip() == f"127.0.0.1:{green.server_port}"
        assert http_get_text(f"http://127.0.0.1:{stable}/") == "green"

        # when: a project whose stable port something else holds: refused, naming why, nothing changed
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            other = tmp_path / "other"
            slot_deployments.append(other)
            taken = _switch(other, green.server_port, squatter.getsockname()[1], timeout=20)
        assert taken.returncode == 1
        assert "cannot listen on" in taken.stdout and "in use" in taken.stdout, taken.stdout
        assert not (other / "upstream").exists() and not refuses_connections(stable)

        # when: stopped
        stopped = subprocess.run(
            [sys.executable, str(SUPERVISE), "stop-tree", str(app_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0 and refuses_connections(stable)
    finally:
        blue.shutdown()
        green.shutdown()


def http_get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
