"""pytest fixtures around `tests.ssh_host.SshHost`. Import them into a test module (or a conftest)::

    from tests.ssh_fixtures import ssh_host  # noqa: F401  (a fixture)

`ssh_host` is a fresh host per test; `ssh_host_module` one host shared by a module's tests. Both skip
with the reason when this machine cannot run one (not root, no sshd/sudo/ip, no namespaces).
`ssh_deploy_root` is a deploy root for the playbooks (teardown stops what runs there: apps, their slots,
the proxy); `ssh_service_user` removes the service user again if provisioning created it; `ssh_secrets`
is the test's local secrets store holding the host's key as the server's `ssh_key` (`KEY_REF`).
`PROXY_MARKS` skip a test that provisions the proxy where it cannot run."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.secrets.factory import build_secrets
from shared.secrets.port import SecretsPort
from tests.ansible_support import kill_project
from tests.ssh_host import SshHost, proxy_skip_reason, skip_reason
from worker_image.ansible_runner.private_data import SERVICE_USER

HANDLE = "ssh-test-host"
KEY_REF = f"secret://servers/{HANDLE}/ssh_key"

PROXY_MARKS = [
    pytest.mark.skipif(proxy_skip_reason() is not None, reason=str(proxy_skip_reason())),
    pytest.mark.skipif(
        Path("/usr/sbin/ufw").exists(),
        reason="ufw is installed here: provisioning would enable this firewall",
    ),
    pytest.mark.skipif(
        Path("/run/systemd/system").exists(),
        reason="systemd is the service manager here: these tests cover the supervised path",
    ),
]
"""pytestmark entries of tests that provision the ssh test host with Caddy in front."""


def _started() -> Iterator[SshHost]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    host = SshHost.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def ssh_host() -> Iterator[SshHost]:
    yield from _started()


@pytest.fixture(scope="module")
def ssh_host_module() -> Iterator[SshHost]:
    yield from _started()


@pytest.fixture
def ssh_deploy_root() -> Iterator[Path]:
    """Not under pytest's 0700 tmp: the service user must reach its working directory. Apps and their slots
    live here; teardown kills what runs in any of them."""
    root = Path(tempfile.mkdtemp(prefix="orch-ssh-deploy-"))
    root.chmod(0o755)
    yield root
    for app_dir in root.iterdir():
        kill_project(app_dir)
    shutil.rmtree(root, ignore_errors=True)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def ssh_service_user() -> Iterator[str]:
    """Provisioning creates the service user on this machine: remove it again if this test made it."""
    existed = user_exists(SERVICE_USER)
    yield SERVICE_USER
    if not existed and user_exists(SERVICE_USER):
        subprocess.run(["userdel", SERVICE_USER], capture_output=True, check=False)


@pytest.fixture
def ssh_secrets(ssh_host: SshHost) -> SecretsPort:
    """The local secrets file of this test's ORCH_HOME, holding the host's key as the server's secret."""
    store = build_secrets()
    store.put(KEY_REF, ssh_host.private_key_pem)
    return store
