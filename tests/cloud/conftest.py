"""One rehearsal per test module: the stack synthesized, staged and running until the module's last test, then torn
down (its pollers and functions must not run on beside the rest of the suite)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.rehearsal import Rehearsal

FAKES = Path(__file__).parents[1] / "fakes" / "agents"
POSTGRES_URL_ENV = "ORCH_TEST_POSTGRES_URL"


def _skip_reason() -> str | None:
    if not os.environ.get(POSTGRES_URL_ENV):
        return f"{POSTGRES_URL_ENV} is not set: the rehearsal's database is the real PostgreSQL (CI sets it)"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "the rehearsal gives each function a private /tmp with `unshare --mount`: needs root and util-linux"
    return None


@pytest.fixture(scope="module")
def rehearsal_context() -> dict[str, Any]:
    """CDK context over the rehearsal's defaults; a module overrides it to rehearse another stack shape."""
    return {}


@pytest.fixture(scope="module")
def rehearsal(ssh_server: Any, rehearsal_context: dict[str, Any]) -> Iterator[Rehearsal]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    workdir = Path(os.environ.get("ORCH_REHEARSAL_DIR") or f"/var/tmp/orch-rehearsal-{os.getpid()}")
    shutil.rmtree(workdir, ignore_errors=True)
    with Rehearsal(
        workdir,
        os.environ[POSTGRES_URL_ENV],
        context=rehearsal_context,
        worker_image_env={
            # the image's coding agents: the fake developer (command agent) and the fake `claude`
            # (it notes the environment it was given in the container's /tmp first)
            "ORCH_AGENT_COMMAND": f"env > /tmp/agent-env.txt; exec {FAKES / 'dev-agent'}",
            "FAKE_DEV_COST": "0.25",  # each developer run reports $0.25 (the ledger's rehearsal)
            "PATH": f"{FAKES}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        },
        # the ssh host clones from the fake GitHub: it listens where the namespace can reach it
        github_bind="0.0.0.0" if ssh_server else "127.0.0.1",  # noqa: S104
    ) as stack:
        if ssh_server is not None:
            _github_reachable_from(ssh_server, stack.github.url)
        yield stack
        print(f"\nrehearsal timings: {json.dumps(stack.timings)}; logs in {workdir}/logs", file=sys.stderr)
    if not os.environ.get("ORCH_REHEARSAL_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)


def _github_reachable_from(host: Any, github_url: str) -> None:
    """A server clones from GitHub at the URL the functions use: inside the namespace, 127.0.0.1:<port> is
    relayed to the fake GitHub on this machine (the host side of the veth pair). Stopped with the namespace."""
    port = github_url.rsplit(":", 1)[1]
    subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            host.namespace,
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
            f"TCP:{host.host_address}:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


CloudCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def orch(rehearsal: Rehearsal, tmp_path_factory: pytest.TempPathFactory) -> CloudCli:
    """The real `orchestrator` CLI against the rehearsal's HTTP API, with the admin key by default."""
    home = tmp_path_factory.mktemp("cli-home")
    executable = shutil.which("orchestrator", path=str(Path(sys.executable).parent)) or "orchestrator"

    def run(
        *args: str, key: str | None = None, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "AWS_"))}
        env.update(
            ORCH_HOME=str(home), ORCH_API_URL=rehearsal.api_url, ORCH_API_KEY=key or rehearsal.admin_key
        )
        return subprocess.run(
            [executable, *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            timeout=timeout,
            check=False,
        )

    return run


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr or result.stdout}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[Any]:
    """A real OpenSSH server in its own network namespace (tests/ssh_host.py), or None where it cannot run."""
    from tests.ssh_host import SshHost, skip_reason

    if skip_reason():
        yield None
        return
    with SshHost.start() as host:
        yield host
    # what the deploy wrote "on the server" lands on this machine (the namespace shares its filesystem)
    shutil.rmtree("/opt/orchestrator/blog", ignore_errors=True)
