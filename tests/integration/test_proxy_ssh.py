"""Caddy in front of an ssh server's projects, against the real ssh test host (tests/ssh_host.py): the
provision playbook through the runner installs (here: finds) Debian's caddy and runs it under the
supervisor (no systemd here); the deploy's `tasks/switch_proxy.yml` and the undeploy's
`tasks/remove_proxy.yml` run over ssh from a playbook that only includes them, with small HTTP servers in
the namespace standing in for a project's two slots.

The namespace sees its own empty /etc/caddy (`PRIVATE_ETC`), so this machine's Caddy configuration is
never touched; Caddy's admin endpoint (localhost:2019) is on the namespace's own loopback.

TLS cannot be issued offline: the domain test checks that Caddy validates and loads the site (the host
route on :443, the plain stable port kept), not that a certificate arrives.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.secrets.local import LocalSecrets
from tests.ansible_support import free_port, kill_deployment
from tests.ssh_fixtures import HANDLE, KEY_REF, PROXY_MARKS, ssh_host_module  # noqa: F401 - a fixture
from tests.ssh_host import SshHost
from tests.stable_poller import StablePoller
from worker_image.ansible_runner.job import RunnerJob, RunnerOutcome
from worker_image.ansible_runner.private_data import PLAYBOOKS_DIR
from worker_image.ansible_runner.runner import run_job

ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
pytestmark = [
    pytest.mark.slow,
    *PROXY_MARKS,
    pytest.mark.skipif(ANSIBLE_PLAYBOOK is None, reason="ansible-core is not installed in this environment"),
]

_SLOT_APP = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name = sys.argv[2]
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "slot": name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        return  # no access log on the service's stderr
ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""


@dataclass
class Proxy:
    """The provisioned host, and a way to run the proxy task files on it."""

    host: SshHost
    deploy_root: Path
    playbooks: Path
    provisioned: RunnerOutcome
    apps: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def run_tasks(self, action: str, **variables: Any) -> subprocess.CompletedProcess[str]:
        """`switch` or `remove` over ssh, as deploy.yml / undeploy.yml include them."""
        extra = self.playbooks / f"vars-{uuid.uuid4().hex}.json"
        extra.write_text(json.dumps({"action": action, "deploy_root": str(self.deploy_root), **variables}))
        assert ANSIBLE_PLAYBOOK is not None
        return subprocess.run(
            [
                ANSIBLE_PLAYBOOK,
                "-i",
                f"{self.host.address},",
                "-u",
                self.host.user,
                "--private-key",
                str(self.host.private_key_path),
                "--become",
                "-e",
                f"@{extra}",
                "proxy_tasks.yml",
            ],
            cwd=self.playbooks,
            capture_output=True,
            text=True,
            timeout=240,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin",
                "HOME": str(self.playbooks),
                "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_PIPELINING": "1",
                "ANSIBLE_LOCAL_TEMP": str(self.playbooks / ".ansible-tmp"),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.playbooks / ".cp"),
            },
        )

    def start_app(self, port: int, name: str) -> None:
        """A stand-in for a slot: answers every GET with 200 and its name, inside the namespace."""
        app = subprocess.Popen(
            ["ip", "netns", "exec", self.host.namespace, sys.executable, "-c", _SLOT_APP, str(port), name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.apps[port] = app
        deadline = time.monotonic() + 10
        while self.host.exec(f"ss -ltnH 'sport = :{port}'").stdout.strip() == "":
            assert app.poll() is None and time.monotonic() < deadline, f"the slot app on {port} did not start"
            time.sleep(0.05)

    def stop_app(self, port: int) -> None:
        app = self.apps.pop(port)
        app.kill()
        app.wait(timeout=5)

    def url(self, port: int, path: str = "/health") -> str:
        return f"http://{self.host.address}:{port}{path}"

    def caddy_pid(self) -> int:
        state = json.loads((self.host.etc("caddy") / "supervisor" / "supervisor.state").read_text())
        return int(state["child_pid"])


def _provision(host: SshHost, deploy_root: Path, secrets: LocalSecrets) -> RunnerOutcome:
    job = RunnerJob.model_validate(
        {
            "request_id": str(uuid.uuid4()),
            "kind": "provision",
            "target": host.target(HANDLE, KEY_REF),
            "deploy_root": str(deploy_root),
            "timeout_s": 300,
        }
    )
    return run_job(job, secrets)


@pytest.fixture(scope="module")
def proxy(ssh_host_module: SshHost) -> Iterator[Proxy]:  # noqa: F811 - the imported fixture
    work = Path(tempfile.mkdtemp(prefix="orch-proxy-test-"))
    work.chmod(0o755)
    deploy_root = work / "apps"
    secrets = LocalSecrets(work / "secrets.json")
    secrets.put(KEY_REF, ssh_host_module.private_key_pem)
    playbooks = work / "playbooks"
    shutil.copytree(PLAYBOOKS_DIR, playbooks, ignore=shutil.ignore_patterns("__pycache__"))
    (playbooks / "proxy_tasks.yml").write_text(
        "- name: The proxy's task files, as the deploy and undeploy playbooks include them\n"
        "  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Switch\n      ansible.builtin.include_tasks: tasks/switch_proxy.yml\n"
        "      when: action == 'switch'\n"
        "    - name: Remove\n      ansible.builtin.include_tasks: tasks/remove_proxy.yml\n"
        "      when: action == 'remove'\n"
    )
    provisioned = _provision(ssh_host_module, deploy_root, secrets)
    proxy = Proxy(ssh_host_module, deploy_root, playbooks, provisioned)
    try:
        yield proxy
    finally:
        for app in proxy.apps.values():
            app.kill()
        kill_deployment(ssh_host_module.etc("caddy") / "supervisor")
        shutil.rmtree(work, ignore_errors=True)


def _answer(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return dict(json.loads(response.read()))


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# -- provisioning ------------------------------------------------------------------------------------


def test_provision_runs_caddy_on_the_server_with_its_own_config(proxy: Proxy) -> None:
    outcome = proxy.provisioned
    assert outcome.status == "success", outcome.error or outcome.stdout_tail
    assert re.fullmatch(r"caddy v?2\.\d+\.\d+ \(supervised\)", outcome.facts["proxy"]), outcome.facts

    caddyfile = proxy.host.etc("caddy") / "Caddyfile"
    assert caddyfile != Path("/etc/caddy/Caddyfile"), "the namespace has its own /etc/caddy"
    assert "import /etc/caddy/sites/*.caddy" in caddyfile.read_text()
    assert "Managed by the orchestrator" not in Path("/etc/caddy/Caddyfile").read_text()
    # Caddy answers on the namespace's own loopback: its admin endpoint, through the namespace
    config = proxy.host.exec(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://localhost:2019/config/').read().decode())\""
    )
    assert json.loads(config.stdout)["admin"]["listen"] == "localhost:2019"
    assert proxy.caddy_pid() in proxy.host.namespace_pids()


def test_provision_again_keeps_the_running_caddy(proxy: Proxy, tmp_path: Path) -> None:
    before = proxy.caddy_pid()
    secrets = LocalSecrets(tmp_path / "secrets.json")
    secrets.put(KEY_REF, proxy.host.private_key_pem)

    again = _provision(proxy.host, proxy.deploy_root, secrets)

    assert again.status == "success", again.error or again.stdout_tail
    assert proxy.caddy_pid() == before, "an unchanged server's Caddy is neither restarted nor reloaded"


# -- switching ---------------------------------------------------------------------------------------


def test_a_release_switch_keeps_every_poll_answered(proxy: Proxy) -> None:
    stable, port_a, port_b = free_port(), free_port(), free_port()
    site = {"project_name": "poll_app", "stable_port": stable, "domain": ""}
    proxy.start_app(port_a, "a")
    _ok(proxy.run_tasks("switch", **site, slot="a", slot_port=port_a))
    assert _answer(proxy.url(stable))["slot"] == "a"
    caddy = proxy.caddy_pid()

    # given a client polling every 100 ms, when release b takes the stable address and a is stopped
    proxy.start_app(port_b, "b")
    with StablePoller(proxy.url(stable)) as poller:
        time.sleep(1)
        began = time.monotonic()
        switched = proxy.run_tasks("switch", **site, slot="b", slot_port=port_b)
        switch_s = time.monotonic() - began
        time.sleep(0.5)  # the drain the deploy leaves before stopping the old slot
        proxy.stop_app(port_a)
        time.sleep(1)

    # then no poll failed, the answers moved from a to b once, and Caddy was reloaded, not restarted
    _ok(switched)
    assert poller.failures == [], poller.failures[:3]
    slots = [json.loads(poll.body)["slot"] for poll in poller.polls]
    assert slots[0] == "a" and slots[-1] == "b" and "a" not in slots[slots.index("b") :], slots
    assert proxy.caddy_pid() == caddy
    site_file = (proxy.host.etc("caddy") / "sites" / "poll_app.caddy").read_text()
    assert f"reverse_proxy 127.0.0.1:{port_b}" in site_file and "slot b" in site_file
    print(
        f"\nswitch through Caddy: {switch_s:.1f} s (measured under load), {len(poller.polls)} polls, 0 failed"
    )


def test_a_switch_caddy_refuses_leaves_the_old_release_serving(proxy: Proxy) -> None:
    stable, port_a, port_b = free_port(), free_port(), free_port()
    site = {"project_name": "keep_app", "stable_port": stable, "domain": ""}
    proxy.start_app(port_a, "a")
    _ok(proxy.run_tasks("switch", **site, slot="a", slot_port=port_a))
    before = (proxy.host.etc("caddy") / "sites" / "keep_app.caddy").read_text()

    # the new slot does not answer through the proxy: the check fails, the previous site comes back
    failed = proxy.run_tasks("switch", **site, slot="b", slot_port=port_b)

    assert failed.returncode != 0
    assert "the previous release keeps serving" in failed.stdout, failed.stdout[-3000:]
    assert (proxy.host.etc("caddy") / "sites" / "keep_app.caddy").read_text() == before
    assert _answer(proxy.url(stable))["slot"] == "a"


def test_a_site_whose_port_is_taken_is_refused_by_caddy_and_removed(proxy: Proxy) -> None:
    taken = free_port()
    proxy.start_app(taken, "squatter")  # something else listens on the stable port in the namespace
    port_a = free_port()
    proxy.start_app(port_a, "a")

    failed = proxy.run_tasks("switch", project_name="late_app", stable_port=taken, slot="a", slot_port=port_a)

    assert failed.returncode != 0
    assert "address already in use" in failed.stdout, failed.stdout[-3000:]
    assert not (proxy.host.etc("caddy") / "sites" / "late_app.caddy").exists()
    assert _answer(proxy.url(taken))["slot"] == "squatter"


def test_a_domain_site_validates_and_loads_beside_the_stable_port(proxy: Proxy) -> None:
    stable, port_a = free_port(), free_port()
    proxy.start_app(port_a, "a")

    done = proxy.run_tasks(
        "switch",
        project_name="shop_app",
        stable_port=stable,
        slot="a",
        slot_port=port_a,
        domain="Shop.Example.com",
    )

    _ok(done)
    site = proxy.host.etc("caddy") / "sites" / "shop_app.caddy"
    assert "shop.example.com {" in site.read_text()
    validated = subprocess.run(
        ["caddy", "validate", "--adapter", "caddyfile", "--config", str(site)], capture_output=True, text=True
    )
    assert validated.returncode == 0 and "Valid configuration" in validated.stdout, validated.stderr
    loaded = json.loads(
        proxy.host.exec(
            'python3 -c "import urllib.request as u; '
            "print(u.urlopen('http://localhost:2019/config/apps/http/servers').read().decode())\""
        ).stdout
    )
    https = [s for s in loaded.values() if s["listen"] == [":443"]]
    assert https and "shop.example.com" in json.dumps(https[0]["routes"]), loaded
    assert _answer(proxy.url(stable))["slot"] == "a", "the plain stable port is kept"


def test_a_domain_that_is_not_a_host_name_never_reaches_caddy(proxy: Proxy) -> None:
    port_a = free_port()
    failed = proxy.run_tasks(
        "switch",
        project_name="bad_app",
        stable_port=free_port(),
        slot="a",
        slot_port=port_a,
        domain="evil.com {\n}\n:2019 {",
    )

    assert failed.returncode != 0 and "needs ports and a host name" in failed.stdout
    assert not (proxy.host.etc("caddy") / "sites" / "bad_app.caddy").exists()


def test_undeploy_removes_the_site(proxy: Proxy) -> None:
    stable, port_a = free_port(), free_port()
    proxy.start_app(port_a, "a")
    _ok(proxy.run_tasks("switch", project_name="gone_app", stable_port=stable, slot="a", slot_port=port_a))
    assert _answer(proxy.url(stable))["slot"] == "a"

    _ok(proxy.run_tasks("remove", project_name="gone_app", stable_port=stable))

    assert not (proxy.host.etc("caddy") / "sites" / "gone_app.caddy").exists()
    with pytest.raises(urllib.error.URLError):
        _answer(proxy.url(stable))
    _ok(proxy.run_tasks("remove", project_name="gone_app"))  # nothing left to remove: still fine
