"""The Ansible runner over real ssh: Debian's sshd in a network namespace (tests/ssh_host.py), a login
user with sudo and a key registered as the server's `ssh_key` secret (by reference), the real ping,
provision, deploy and undeploy playbooks, and the rendered template app smoke-tested from this machine
at the namespace's address.

The namespace shares this machine's filesystem: provisioning really runs apt (packages already present,
cache fresh), really creates the service user here (removed afterwards if the test created it) and a
per-test deploy root. There is no systemd here, so the playbooks take their supervised path; the unit
they would install is checked with `systemd-analyze verify`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.secrets.port import SecretsPort
from tests.ansible_support import free_port, http_get, kill_deployment, make_app_repo, processes_in
from tests.ssh_fixtures import (  # noqa: F401 - fixtures
    HANDLE,
    KEY_REF,
    ssh_deploy_root,
    ssh_host,
    ssh_secrets,
    ssh_service_user,
    user_exists,
)
from tests.ssh_host import SshHost, proxy_skip_reason
from worker_image.ansible_runner.job import RunnerJob
from worker_image.ansible_runner.private_data import SERVICE_USER
from worker_image.ansible_runner.runner import run_job

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for the app repository"),
    pytest.mark.skipif(
        shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None,
        reason="ansible-core is not installed in this environment",
    ),
]

APP_SECRET_REF = "secret://projects/p1/API_TOKEN"


@pytest.fixture
def secrets(ssh_secrets: SecretsPort) -> SecretsPort:  # noqa: F811 - the imported fixture
    return ssh_secrets


@pytest.fixture
def deploy_root(ssh_deploy_root: Path) -> Path:  # noqa: F811 - the imported fixture
    return ssh_deploy_root


@pytest.fixture
def service_user(ssh_service_user: str) -> str:  # noqa: F811 - the imported fixture
    return ssh_service_user


_user_exists = user_exists


def _job(ssh_host: SshHost, **fields: Any) -> RunnerJob:  # noqa: F811
    return RunnerJob.model_validate(
        {"request_id": str(uuid.uuid4()), "target": ssh_host.target(HANDLE, KEY_REF), "timeout_s": 300}
        | fields
    )


def _timed(job: RunnerJob, secrets: SecretsPort, timings: dict[str, float]) -> Any:
    began = time.monotonic()
    outcome = run_job(job, secrets)
    timings[job.kind if job.kind not in timings else f"re{job.kind}"] = round(time.monotonic() - began, 2)
    return outcome


def test_ping_over_ssh_logs_in_with_the_key_by_reference_and_reports_facts(
    ssh_host: SshHost,  # noqa: F811
    secrets: SecretsPort,
) -> None:
    outcome = run_job(_job(ssh_host, kind="ping"), secrets)

    assert outcome.status == "success", outcome.error or outcome.stdout_tail
    assert outcome.reachable is True
    assert outcome.facts["hostname"] == os.uname().nodename.split(".")[0]  # the same machine, its own network
    assert outcome.facts["os"].startswith("Debian")
    assert ssh_host.private_key_pem.splitlines()[1] not in outcome.model_dump_json()
    assert f"Accepted publickey for {ssh_host.user}" in ssh_host.sshd_log()


def test_provision_deploy_smoke_and_undeploy_over_ssh(
    ssh_host: SshHost,  # noqa: F811
    secrets: SecretsPort,
    deploy_root: Path,
    service_user: str,
    tmp_path: Path,
) -> None:
    if Path("/usr/sbin/ufw").exists():
        pytest.skip(
            "ufw is installed here: provisioning the ssh test host would enable this machine's firewall"
        )
    if Path("/run/systemd/system").exists():
        pytest.skip("systemd is this machine's service manager: this test covers the supervised path")
    if proxy_skip_reason():
        pytest.skip(f"provisioning puts Caddy in front: {proxy_skip_reason()}")
    timings: dict[str, float] = {"fixture_start": round(ssh_host.started_in_s, 2)}
    repo = make_app_repo(tmp_path / "app")
    canary = f'canary-{uuid.uuid4().hex}-$HOME-"q"'
    secrets.put(APP_SECRET_REF, canary)
    port = free_port()

    # provision: packages (present already), the service user, the deploy root; no firewall here
    provisioned = _timed(
        _job(ssh_host, kind="provision", open_ports=[port], deploy_root=str(deploy_root)), secrets, timings
    )
    assert provisioned.status == "success", provisioned.error or provisioned.stdout_tail
    assert provisioned.reachable is True
    assert provisioned.facts["provisioned"] == "yes"
    assert provisioned.facts["os"].startswith("Debian")
    assert _user_exists(service_user)

    # deploy over ssh, as the deploy graph builds it for an ssh server (HOST 0.0.0.0, secrets by reference)
    deploy = _job(
        ssh_host,
        kind="deploy",
        project_id="p1",
        project_name="demo_app",
        repo_url=str(repo.bare),
        ref="main",
        port=port,
        env={"HOST": "0.0.0.0", "LOG_LEVEL": "INFO"},  # noqa: S104
        secret_refs={"API_TOKEN": APP_SECRET_REF},
        deploy_root=str(deploy_root),
    )
    deployed = _timed(deploy, secrets, timings)
    assert deployed.status == "success", deployed.error or deployed.stdout_tail
    assert deployed.health_url == f"http://{ssh_host.address}:{port}/health"

    # the smoke test, from this machine, at the namespace's address
    status, body = http_get(deployed.health_url, timeout=5)
    assert status == 200 and body.get("status") == "ok", body
    app_dir = deploy_root / "demo_app"
    service = [pid for pid in processes_in(app_dir / "src") if pid in ssh_host.namespace_pids()]
    assert service, "the service runs inside the namespace"
    assert {_uid_of(pid) for pid in service} == {pwd.getpwnam(service_user).pw_uid}, (
        "it runs as the service user"
    )
    env_file = app_dir / "app.env"
    assert canary.replace("$", "\\$").replace('"', '\\"') in env_file.read_text()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert not Path("/etc/systemd/system/orch-demo_app.service").exists(), (
        "no unit written on a systemd-less host"
    )
    for output in (deployed.stdout_tail or "", deployed.stderr_tail or "", deployed.model_dump_json()):
        assert canary not in output and ssh_host.private_key_pem.splitlines()[1] not in output

    # a redeploy over ssh replaces the running service (the supervisor restarts it as the service user)
    redeployed = _timed(deploy.model_copy(update={"request_id": str(uuid.uuid4())}), secrets, timings)
    assert redeployed.status == "success", redeployed.error or redeployed.stdout_tail
    assert http_get(deployed.health_url, timeout=5)[0] == 200
    again = [pid for pid in processes_in(app_dir / "src") if pid in ssh_host.namespace_pids()]
    assert again and not set(again) & set(service), "a new service process"
    assert {_uid_of(pid) for pid in again} == {pwd.getpwnam(service_user).pw_uid}

    # the unit the playbook would install under systemd, checked by systemd itself
    _verify_unit(app_dir / "orch-demo_app.service", app_dir)

    # undeploy over ssh: the service stops, its directory goes
    undeployed = _timed(
        _job(ssh_host, kind="undeploy", project_name="demo_app", port=port, deploy_root=str(deploy_root)),
        secrets,
        timings,
    )
    assert undeployed.status == "success", undeployed.error or undeployed.stdout_tail
    assert not app_dir.exists()
    assert not _answers(deployed.health_url)
    print(f"\nssh test host timings (s): {timings}")


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError):
        http_get(url, timeout=2)
        return True
    return False


def _verify_unit(unit: Path, app_dir: Path) -> None:
    assert unit.is_file(), f"the playbook keeps the unit it would install at {unit}"
    text = unit.read_text()
    assert f"User={SERVICE_USER}" in text and f"WorkingDirectory={app_dir}/src" in text
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the unit was not verified")
    done = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert unit.name not in done.stderr, done.stderr  # no warning about this unit either


def test_systemd_analyze_verify_rejects_a_broken_unit_here(tmp_path: Path) -> None:
    """The unit check above is not vacuous on this machine: a unit systemd cannot run fails it."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = tmp_path / "orch-broken.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/bin/app\nBogusKey=1\n")
    done = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Unknown key 'BogusKey'" in done.stderr and "is not executable" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the service's user needs root")
def test_the_supervisor_runs_the_service_as_its_user_and_refuses_an_unknown_one() -> None:
    from worker_image.ansible_runner.playbooks.files import supervise

    root = Path(tempfile.mkdtemp(prefix="orch-supervise-user-"))  # not under pytest's 0700 tmp
    root.chmod(0o755)
    app_dir = root / "app"
    (app_dir / "src").mkdir(parents=True, mode=0o777)
    (app_dir / "src").chmod(0o777)  # the service writes its answer there
    out = app_dir / "src" / "who"
    command = f"id -u > {out}.tmp; echo $HOME $USER >> {out}.tmp; mv {out}.tmp {out}; exec sleep 60"
    run = [sys.executable, str(Path(supervise.__file__)), "restart", str(app_dir), "--command", command]
    try:
        refused = subprocess.run(
            [*run, "--user", "no-such-user-zz"], capture_output=True, text=True, timeout=30
        )
        assert refused.returncode == 1 and "'no-such-user-zz' does not exist" in refused.stdout
        started = subprocess.run([*run, "--user", "nobody"], capture_output=True, text=True, timeout=30)
        assert started.returncode == 0, started.stdout + started.stderr
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        nobody = pwd.getpwnam("nobody")
        assert out.read_text().split() == [str(nobody.pw_uid), nobody.pw_dir, "nobody"]
        # the log stays the supervisor's
        assert oct((app_dir / "service.log").stat().st_mode & 0o777) == "0o600"
    finally:
        kill_deployment(app_dir)
        shutil.rmtree(root, ignore_errors=True)


def test_a_leftover_namespace_of_a_killed_run_is_cleared(ssh_host: SshHost) -> None:  # noqa: F811
    """A run killed with SIGKILL leaves its namespace and login user; the next start removes them."""
    from tests.ssh_host import PREFIX, clean_leftovers

    gone = subprocess.Popen(["true"])
    gone.wait()
    name = f"{PREFIX}{gone.pid}-abc123"
    subprocess.run(["ip", "netns", "add", name], check=True)
    assert name in clean_leftovers()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed and ssh_host.namespace in listed  # a live run's namespace stays
