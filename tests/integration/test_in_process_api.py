"""The embedded stack's own clients (consumers, jobs, graphs: its process) call its API in their thread, not
over the socket; other processes (workers, the CLI) still connect; a stopped stack fails its old clients as
a stopped server would."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.api_client import ApiClient, ApiUnreachable
from shared.apigw import in_process_transport
from tests.embedded_support import start_stack


def _count_connections(server: object) -> list[int]:
    """Connections the HTTP server accepts from now on (one per client connection)."""
    accepted = [0]
    lock = threading.Lock()
    inner = server.process_request  # type: ignore[attr-defined]

    def counted(request: object, client_address: object) -> None:
        with lock:
            accepted[0] += 1
        inner(request, client_address)

    server.process_request = counted  # type: ignore[attr-defined]
    return accepted


def test_the_stacks_own_clients_call_its_api_in_process_and_other_processes_over_http(
    embedded_home: Path,
) -> None:
    # given a running stack
    stack = start_stack(embedded_home)
    try:
        assert stack.server is not None
        url = stack.server.url
        accepted = _count_connections(stack.server)

        # when a client of this process calls it, the answers are the API's own
        with ApiClient(url, stack.admin_key) as admin:
            me = admin.me()
            created = admin.create_project("in-process", "made without a socket")
            listed = [p.name for p in admin.list_projects()]
            with pytest.raises(Exception, match="not found"):
                admin.get_project("no-such-project")

        # then nothing connected, and the stack's own service client is in-process too
        assert me.is_admin and created.name == "in-process" and "in-process" in listed
        assert accepted[0] == 0
        assert in_process_transport(url) is not None

        # when another process asks, it connects over HTTP as before
        code = (
            "import sys; from shared.api_client import ApiClient\n"
            "with ApiClient(sys.argv[1], sys.argv[2]) as c: print(len(c.list_projects()))\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, url, stack.admin_key or ""],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 0, other.stderr
        assert int(other.stdout) == len(listed)
        assert accepted[0] >= 1
        kept = ApiClient(url, stack.admin_key)
    finally:
        stack.stop()

    # then after the stop a client made before fails as on a stopped server, and none is in-process
    with kept, pytest.raises(ApiUnreachable):
        kept.me()
    assert in_process_transport(url) is None
