"""pytest fixtures around `tests.ssh_host.SshHost`. Import them into a test module (or a conftest)::

    from tests.ssh_fixtures import ssh_host  # noqa: F401  (a fixture)

`ssh_host` is a fresh host per test; `ssh_host_module` one host shared by a module's tests. Both skip
with the reason when this machine cannot run one (not root, no sshd/sudo/ip, no namespaces)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ssh_host import SshHost, skip_reason


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
