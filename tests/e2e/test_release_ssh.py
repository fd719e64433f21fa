"""Releases behind Caddy on an ssh server (issue 19, item 3): the real runner, its provision, deploy and
undeploy playbooks, over real ssh to the ssh test host (tests/ssh_host.py), with the rendered template
app in a local git repository.

Provisioning puts Caddy in front (supervised: no systemd here). Release 1 goes to slot a and the
project's stable port answers through Caddy; release 2 goes to slot b while a client polls the stable
address every 100 ms from this machine: no poll may fail; a release whose service cannot start leaves
release 2 answering every poll; a release with a domain gets its HTTPS site beside the stable port (Caddy
validates and loads it; no certificate can be issued offline, so none is asked for here); undeploy takes
the site out. Then the same through the real CLI on the embedded stack: the ssh host added as a server,
`orchestrator run --server` ships release 1 (provisioning puts Caddy in front), `deploy start` ships
main's change as release 2 behind the same URL while a client polls it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.secrets.port import SecretsPort
from tests.ansible_support import NEEDS_GIT_AND_ANSIBLE, AppRepo, git, http_get, kill_project, make_app_repo
from tests.e2e.conftest import CliRunner
from tests.e2e.test_deploy import _json, deploy_stack, no_approval  # noqa: F401 - the fixture, shared
from tests.ssh_fixtures import (  # noqa: F401 - fixtures
    HANDLE,
    KEY_REF,
    PROXY_MARKS,
    ssh_deploy_root,
    ssh_host,
    ssh_secrets,
    ssh_service_user,
)
from tests.ssh_host import SshHost
from tests.stable_poller import StablePoller
from worker_image.ansible_runner.job import SSH_DEPLOY_ROOT, RunnerJob, RunnerOutcome
from worker_image.ansible_runner.runner import run_job

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # up to seven playbook runs over ssh, each a minute on a loaded machine
    *NEEDS_GIT_AND_ANSIBLE,
    *PROXY_MARKS,
]

DOMAIN = "shop.example.com"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[AppRepo]:
    yield make_app_repo(tmp_path / "app")


def _job(host: SshHost, deploy_root: Path, **fields: Any) -> RunnerJob:
    return RunnerJob.model_validate(
        {
            "request_id": str(uuid.uuid4()),
            "target": host.target(HANDLE, KEY_REF),
            "deploy_root": str(deploy_root),
            "timeout_s": 300,
        }
        | fields
    )


def _set_status(repo: AppRepo, old: str, new: str) -> str:
    repo.edit("app/server.py", f'{{"status": "{old}"}}', f'{{"status": "{new}"}}')
    return repo.commit(f"Answer {new}")


def _listening(host: SshHost, port: int) -> bool:
    return host.exec(f"ss -ltnH 'sport = :{port}'").stdout.strip() != ""


def _ok(outcome: RunnerOutcome) -> RunnerOutcome:
    assert outcome.status == "success", outcome.error or outcome.stdout_tail
    return outcome


def test_releases_switch_behind_caddy_without_a_failed_poll(
    ssh_host: SshHost,  # noqa: F811
    ssh_secrets: SecretsPort,  # noqa: F811
    ssh_deploy_root: Path,  # noqa: F811
    ssh_service_user: str,  # noqa: F811
    repo: AppRepo,
) -> None:
    host, root, secrets = ssh_host, ssh_deploy_root, ssh_secrets
    stable, port_a, port_b = 18080, 18081, 18082  # the namespace's own ports: nothing else listens there
    timings: dict[str, float] = {}

    def run(name: str, job: RunnerJob) -> RunnerOutcome:
        began = time.monotonic()
        outcome = run_job(job, secrets)
        timings[name] = round(time.monotonic() - began, 1)
        return outcome

    def release(port: int, ref: str, slot: str, number: int, **more: Any) -> RunnerJob:
        return _job(
            host,
            root,
            kind="deploy",
            project_id="p1",
            project_name="shop",
            repo_url=str(repo.bare),
            ref=ref,
            port=port,
            env={"HOST": "0.0.0.0"},  # noqa: S104 - as the deploy graph asks for an ssh server
            slot=slot,
            stable_port=stable,
            release=number,
            **more,
        )

    _ok(run("provision", _job(host, root, kind="provision")))
    sites = host.etc("caddy") / "sites"
    stable_url = f"http://{host.address}:{stable}/health"

    # release 1 into slot a: the stable port answers through Caddy
    v1 = _set_status(repo, "ok", "v1")
    first = _ok(run("release 1", release(port_a, v1, "a", 1)))
    assert first.switched is True and first.deployed_url == f"http://{host.address}:{stable}"
    assert http_get(stable_url, timeout=5) == (200, {"status": "v1"})
    assert f"reverse_proxy 127.0.0.1:{port_a}" in (sites / "shop.caddy").read_text()
    supervisor_state = host.etc("caddy") / "supervisor" / "supervisor.state"
    caddy = json.loads(supervisor_state.read_text())["child_pid"]

    # release 2 into slot b, polled every 100 ms from this machine: not one failure
    v2 = _set_status(repo, "v1", "v2")
    with StablePoller(stable_url) as poller:
        time.sleep(0.5)
        second = run("release 2", release(port_b, v2, "b", 2))
        time.sleep(0.5)
    _ok(second)
    assert poller.failures == [], poller.failures[:3]
    assert [json.loads(body)["status"] for body in poller.bodies()] == ["v1", "v2"]
    assert f"reverse_proxy 127.0.0.1:{port_b}" in (sites / "shop.caddy").read_text()
    assert not _listening(host, port_a), "slot a was stopped after the drain"
    state = json.loads(supervisor_state.read_text())
    assert state["child_pid"] == caddy, "Caddy was reloaded, never restarted"
    polls_during_switch = len(poller.polls)

    # a release whose service cannot start: FAILED with its own error, release 2 answers every poll
    server = repo.work / "app" / "server.py"
    working = server.read_text()
    server.write_text("def main(:\n")
    broken = repo.commit("Break the server")
    with StablePoller(stable_url) as poller:
        failed = run("broken release", release(port_a, broken, "a", 3))
    assert failed.status == "failed" and failed.switched is False
    assert failed.error is not None and "SyntaxError" in failed.error, failed.error
    assert poller.failures == [] and len(poller.polls) > 5
    assert {json.loads(body)["status"] for body in poller.bodies()} == {"v2"}
    assert f"reverse_proxy 127.0.0.1:{port_b}" in (sites / "shop.caddy").read_text()
    assert not _listening(host, port_a)

    # a release with a domain: its HTTPS site beside the stable port, validated and loaded by Caddy
    server.write_text(working)
    v4 = _set_status(repo, "v2", "v4")
    with_domain = _ok(run("release 4 (domain)", release(port_a, v4, "a", 4, domain=DOMAIN)))
    assert with_domain.deployed_url == f"https://{DOMAIN}"
    site = (sites / "shop.caddy").read_text()
    assert f"{DOMAIN} {{" in site and f":{stable} {{" in site and f"127.0.0.1:{port_a}" in site
    assert http_get(stable_url, timeout=5) == (200, {"status": "v4"})
    assert _listening(host, 443) and _listening(host, 80), "Caddy serves the domain (HTTPS, and the redirect)"

    # undeploy: the site goes, the stable port stops answering
    _ok(
        run(
            "undeploy",
            _job(host, root, kind="undeploy", project_name="shop", port=port_a, stable_port=stable),
        )
    )
    assert not (sites / "shop.caddy").exists()
    assert not _listening(host, stable) and not _listening(host, port_a)
    print(
        f"\nssh releases behind Caddy, timings (s, measured under load): {timings}; "
        f"{polls_during_switch} polls during release 2, 0 failed"
    )


# -- the whole flow through the CLI ------------------------------------------------------------------


@pytest.fixture
def apps_on_the_server() -> Iterator[Path]:
    """The CLI's deploys use the server's default deploy root: stop what the test leaves there."""
    root = Path(SSH_DEPLOY_ROOT)
    existed = {p.name for p in root.iterdir()} if root.exists() else set()
    yield root
    for app_dir in root.glob("*") if root.exists() else []:
        if app_dir.name not in existed:
            kill_project(app_dir)
            shutil.rmtree(app_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()  # only when this test made it and left it empty


def test_the_cli_releases_behind_caddy_on_an_ssh_server(
    deploy_stack: Any,  # noqa: F811
    cli: CliRunner,
    ssh_host: SshHost,  # noqa: F811
    ssh_service_user: str,  # noqa: F811
    apps_on_the_server: Path,
    tmp_path: Path,
) -> None:
    # given: the ssh host as a server, and release 1 (the template) deployed there through the CLI
    stack = deploy_stack()
    added = cli(
        "server",
        "add",
        "ssh-host",
        "--host",
        ssh_host.address,
        "--ssh-user",
        ssh_host.user,
        "--ssh-key-file",
        str(ssh_host.private_key_path),
        "--json",
    )
    assert added.returncode == 0, added.stdout + added.stderr
    created = cli("project", "create", "--name", "kiosk", "--agent", "none")
    assert created.returncode == 0, created.stdout + created.stderr
    no_approval(stack, "kiosk")  # this test is about releases, not approvals: `run` uses the project
    ran = cli(
        "run", "--name", "kiosk", "--spec", "a kiosk", "--agent", "none", "--server", "ssh-host", timeout=400
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [first] = _json(cli("deploy", "history", "kiosk", "--json"))
    assert (first["number"], first["status"], first["slot"]) == (1, "serving", "a")
    stable_url = first["url"] + "/health"
    assert first["url"].startswith(f"http://{ssh_host.address}:")
    assert http_get(stable_url, timeout=5) == (200, {"status": "ok"})
    site = ssh_host.etc("caddy") / "sites" / "kiosk.caddy"
    assert f"reverse_proxy 127.0.0.1:{first['port']}" in site.read_text(), "Caddy fronts the release"

    # when: main gets a change and it is deployed while a client polls the stable URL every 100 ms
    work = tmp_path / "work"
    subprocess.run(
        ["git", "clone", "-q", _json(cli("project", "show", "kiosk", "--json"))["repo_url"], str(work)],
        check=True,
    )
    server = work / "app" / "server.py"
    server.write_text(server.read_text().replace('{"status": "ok"}', '{"status": "v2"}'))
    git("commit", "-q", "-am", "Answer v2", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    with StablePoller(stable_url) as poller:
        time.sleep(0.5)
        second = cli("deploy", "start", "kiosk", "--server", "ssh-host", "--follow", timeout=400)
        time.sleep(0.5)

    # then: release 2 serves from slot b behind the same URL, and not one poll failed
    assert second.returncode == 0, second.stdout + second.stderr
    assert poller.failures == [], poller.failures[:3]
    assert [json.loads(body)["status"] for body in poller.bodies()] == ["ok", "v2"]
    newest, older = _json(cli("deploy", "history", "kiosk", "--json"))
    assert (newest["number"], newest["status"], newest["slot"], newest["url"]) == (
        2,
        "serving",
        "b",
        first["url"],
    )
    assert older["status"] == "superseded"
    assert f"reverse_proxy 127.0.0.1:{newest['port']}" in site.read_text()
    print(f"\nCLI release 2 over ssh behind Caddy: {len(poller.polls)} polls, 0 failed (measured under load)")
