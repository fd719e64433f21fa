"""A real ssh host for tests: Debian's OpenSSH server in its own network namespace.

    with SshHost.start() as host:          # or host = SshHost.start(); ...; host.stop()
        host.address, host.port            # 10.213.X.Y, 22 (reachable from this machine)
        host.user, host.private_key_pem    # a login user with passwordless sudo, and its key
        host.exec("ss -ltn")               # a command inside the namespace (as root)

Layout: a namespace `orchssh-<pid>-<token>`, a veth pair (host side `.1/30`, namespace side `.2/30`,
loopback up inside), and `sshd -D -f <own config>` listening on the namespace address, port 22. Per
run: a host key, a login user `orchssh-<token>` (home in the run's directory, passwordless sudo through
`/etc/sudoers.d/orchssh-<token>`), its ed25519 key pair. Only that user may log in, only with its key.

The namespace has its own network stack but **shares this machine's filesystem, users and packages**:
whatever a playbook does "on the remote" (apt, useradd, files under /etc or /opt) it does here. Only
sshd's network view is separate; services started through ssh listen inside the namespace and are
reached from this machine at `address`.

Except for `PRIVATE_ETC`: each run gets its own empty `/etc/caddy` (the reverse proxy's configuration
that provisioning writes), so runs do not read each other's sites nor touch this machine's. It is
iproute2's own convention: `ip netns exec NS` (which starts sshd, so every session) bind-mounts
`/etc/netns/NS/<entry>` over `/etc/<entry>`. From this machine the run's copy is `host.etc("caddy")`.

`stop()` kills every process in the namespace (sshd, sessions, daemons started over ssh), deletes the
namespace (the veth pair goes with it), the login user, its sudoers file, the run's directory and this
address's line in root's known_hosts. `start()` first clears what a killed earlier run left behind
(namespaces and users whose creating pid is gone). Needs root, `ip`, sshd and sudo: `skip_reason()`
says which is missing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cli.local.stack import pid_alive

SSHD = "/usr/sbin/sshd"
NETNS_ETC = Path("/etc/netns")
PRIVATE_ETC = ("caddy",)
"""Entries of /etc each run sees as its own empty directory (only those that exist here: the bind needs
a mount point; the ssh tests that use Caddy skip without it)."""
SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
PREFIX = "orchssh-"
_NS_NAME = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)$")
_USER_COMMENT = "orch ssh test host pid="
KNOWN_HOSTS = Path("/root/.ssh/known_hosts")


class SshHostError(RuntimeError):
    """The host could not be set up; the message says which step failed and its output."""


def skip_reason() -> str | None:
    """Why an SshHost cannot run here, or None."""
    if os.geteuid() != 0:
        return "the ssh test host needs root (network namespaces, sshd, a login user)"
    missing = [tool for tool in ("ip", "ssh", "ssh-keygen", "sudo", "useradd") if shutil.which(tool) is None]
    if not Path(SSHD).is_file():
        missing.append(SSHD)
    if missing:
        return f"the ssh test host needs {', '.join(missing)} (apt-get install openssh-server sudo iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are not available: {probe.stderr.strip()}"
    return None


CADDY = "/usr/bin/caddy"


def proxy_skip_reason() -> str | None:
    """Why the reverse proxy cannot be provisioned on an SshHost here, or None: provisioning installs
    Debian's caddy when it is missing, but the namespace has no route to a mirror."""
    reason = skip_reason()
    if reason is None and not (Path(CADDY).is_file() and Path("/etc/caddy").is_dir()):
        reason = f"Debian's caddy is not installed here ({CADDY}; apt-get install caddy)"
    return reason


def _run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise SshHostError(
            f"{' '.join(argv)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}"
        )
    return done


def _kill_namespace_processes(namespace: str) -> None:
    for _ in range(20):
        listed = _run("ip", "netns", "pids", namespace, check=False)
        pids = [int(p) for p in listed.stdout.split() if p.isdigit() and int(p) != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_private_etc(namespace: str) -> None:
    shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when no other run has one


def _remove_user(user: str) -> None:
    with contextlib.suppress(KeyError):
        pwd.getpwnam(user)
        _run("userdel", user, check=False)
    with contextlib.suppress(FileNotFoundError):
        Path(f"/etc/sudoers.d/{user}").unlink()


def forget_known_host(address: str) -> None:
    """Drop `address` from root's known_hosts (a new run brings a new host key for it)."""
    if KNOWN_HOSTS.exists():
        _run("ssh-keygen", "-q", "-R", address, "-f", str(KNOWN_HOSTS), check=False)
        with contextlib.suppress(FileNotFoundError):
            KNOWN_HOSTS.with_name("known_hosts.old").unlink()


APT_LISTS = Path("/var/lib/apt/lists")
APT_FRESH_S = 45 * 60
"""The provision playbook refreshes apt's lists when they are over an hour old (`cache_valid_time: 3600`)."""


def fresh_apt_lists() -> None:
    """The namespace has no route out, but it shares this machine's apt lists: refresh them here (from the
    host, which reaches Debian's mirrors; well under a second) when the playbook would find them stale,
    so "the server" installs from a current index instead of failing to update it. Best effort."""
    if shutil.which("apt-get") is None:
        return
    try:
        age = time.time() - APT_LISTS.stat().st_mtime
    except OSError:
        age = float("inf")
    if age < APT_FRESH_S:
        return
    done = _run("apt-get", "update", "-q", check=False, timeout=180)
    if done.returncode == 0:
        os.utime(APT_LISTS)


def clean_leftovers() -> list[str]:
    """Remove the namespaces and login users of earlier runs whose process is gone; return what went."""
    removed: list[str] = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_NAME.match(name)
        if match and not pid_alive(int(match.group(1))):
            _kill_namespace_processes(name)
            _run("ip", "netns", "del", name, check=False)
            _run("ip", "link", "del", f"oh{match.group(2)}", check=False)
            removed.append(name)
    for private in NETNS_ETC.glob(f"{PREFIX}*"):
        match = _NS_NAME.match(private.name)
        if match and not pid_alive(int(match.group(1))):
            _remove_private_etc(private.name)
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(PREFIX) and entry.pw_gecos.startswith(_USER_COMMENT):
            pid = entry.pw_gecos.removeprefix(_USER_COMMENT)
            if pid.isdigit() and not pid_alive(int(pid)):
                _remove_user(entry.pw_name)
                removed.append(entry.pw_name)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
    candidates = list(SUBNET.subnets(new_prefix=30))
    for _ in range(100):
        net = random.choice(candidates[1:-1])
        if f" {net.network_address + 1}/" not in used:
            return net
    raise SshHostError("no free /30 in 10.213.0.0/16")


_SSHD_CONFIG = """\
# The ssh test host's own sshd (tests/ssh_host.py); nothing else uses it.
Port {port}
ListenAddress {address}
HostKey {state}/ssh_host_ed25519_key
PidFile {state}/sshd.pid
AuthorizedKeysFile {state}/authorized_keys/%u
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
# the run's directory lives under /tmp (world-writable): StrictModes would refuse the key file there
StrictModes no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
"""


@dataclass
class SshHost:
    """One running ssh host. Build it with `SshHost.start()`; always `stop()` it (or use `with`)."""

    namespace: str
    address: str
    host_address: str
    user: str
    private_key_pem: str
    public_key: str
    host_public_key: str
    state_dir: Path
    port: int = 22
    started_in_s: float = 0.0
    _sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- life cycle -----------------------------------------------------------------------------

    @classmethod
    def start(cls, *, timeout_s: float = 20) -> SshHost:
        reason = skip_reason()
        if reason:
            raise SshHostError(reason)
        began = time.monotonic()
        clean_leftovers()
        fresh_apt_lists()
        token = secrets.token_hex(3)
        namespace, user = f"{PREFIX}{os.getpid()}-{token}", f"{PREFIX}{token}"
        net = _free_subnet()
        host_ip, ns_ip = str(net.network_address + 1), str(net.network_address + 2)
        state = Path(tempfile.mkdtemp(prefix=PREFIX))
        state.chmod(0o755)  # the login user must reach its home inside
        host = cls(
            namespace=namespace,
            address=ns_ip,
            host_address=host_ip,
            user=user,
            private_key_pem="",
            public_key="",
            host_public_key="",
            state_dir=state,
        )
        try:
            host._setup(token, net.prefixlen, timeout_s)
        except BaseException:
            host.stop()
            raise
        host.started_in_s = time.monotonic() - began
        return host

    def _setup(self, token: str, prefixlen: int, timeout_s: float) -> None:
        state = self.state_dir
        # the network: a namespace, a veth pair, loopback up inside
        _run("ip", "netns", "add", self.namespace)
        for name in PRIVATE_ETC:
            if Path("/etc", name).is_dir():
                (NETNS_ETC / self.namespace / name).mkdir(parents=True, mode=0o755)
        outside, inside = f"oh{token}", f"on{token}"
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", self.namespace)
        _run("ip", "addr", "add", f"{self.host_address}/{prefixlen}", "dev", outside)
        _run("ip", "link", "set", outside, "up")
        for argv in (
            ("ip", "addr", "add", f"{self.address}/{prefixlen}", "dev", inside),
            ("ip", "link", "set", inside, "up"),
            ("ip", "link", "set", "lo", "up"),
        ):
            _run("ip", "netns", "exec", self.namespace, *argv)
        # keys: a host key and the login user's key, both new for this run
        _run(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "orch-ssh-test-host",
            "-f",
            str(state / "ssh_host_ed25519_key"),
        )
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.user, "-f", str(state / "id_ed25519"))
        self.private_key_pem = (state / "id_ed25519").read_text()
        self.public_key = (state / "id_ed25519.pub").read_text().strip()
        self.host_public_key = (state / "ssh_host_ed25519_key.pub").read_text().strip()
        # the login user: its own home, its key, passwordless sudo ('*': no password, yet not locked)
        home = state / "home"
        _run(
            "useradd",
            "--home-dir",
            str(home),
            "--create-home",
            "--shell",
            "/bin/sh",
            "--password",
            "*",
            "--comment",
            f"{_USER_COMMENT}{os.getpid()}",
            self.user,
        )
        keys = state / "authorized_keys"
        keys.mkdir(mode=0o755)
        (keys / self.user).write_text(self.public_key + "\n")
        (keys / self.user).chmod(0o644)
        sudoers = Path(f"/etc/sudoers.d/{self.user}")
        sudoers.write_text(f"{self.user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        # sshd, in the foreground, inside the namespace
        config = state / "sshd_config"
        config.write_text(
            _SSHD_CONFIG.format(port=self.port, address=self.address, state=state, user=self.user)
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        _run(SSHD, "-t", "-f", str(config))
        forget_known_host(self.address)
        log = open(state / "sshd.log", "ab")
        self._sshd = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self._wait_for_banner(timeout_s)

    def _wait_for_banner(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self._sshd is not None and self._sshd.poll() is not None:
                raise SshHostError(f"sshd exited with {self._sshd.returncode}: {self.sshd_log()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.address, self.port), timeout=1) as s,
            ):
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
            if time.monotonic() > deadline:
                raise SshHostError(f"sshd did not answer on {self.address}:{self.port} within {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Idempotent; never raises for something already gone."""
        if self._stopped:
            return
        self._stopped = True
        if self._sshd is not None and self._sshd.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._sshd.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._sshd.wait(timeout=5)
        _kill_namespace_processes(self.namespace)
        if self._sshd is not None and self._sshd.poll() is None:
            self._sshd.kill()
            self._sshd.wait(timeout=5)
        _run("ip", "netns", "del", self.namespace, check=False)
        _run("ip", "link", "del", f"oh{self.namespace.rsplit('-', 1)[1]}", check=False)
        _remove_user(self.user)
        _remove_private_etc(self.namespace)
        forget_known_host(self.address)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> SshHost:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- use ------------------------------------------------------------------------------------

    def exec(
        self, command: str, *, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the namespace, as root (not through ssh)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, "/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise SshHostError(f"{command!r} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def ssh(self, command: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command through the real ssh login (a quick proof that the key works)."""
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.private_key_path),
                "-p",
                str(self.port),
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                f"{self.user}@{self.address}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def namespace_pids(self) -> list[int]:
        listed = _run("ip", "netns", "pids", self.namespace, check=False)
        return sorted(int(p) for p in listed.stdout.split() if p.isdigit())

    def sshd_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.state_dir / "sshd.log").read_text(errors="replace")
        return ""

    def etc(self, name: str) -> Path:
        """This machine's path to what the namespace sees as `/etc/<name>` (its own, for `PRIVATE_ETC`)."""
        private = NETNS_ETC / self.namespace / name
        return private if private.is_dir() else Path("/etc", name)

    @property
    def private_key_path(self) -> Path:
        """The login user's private key as a 0600 file (for `orchestrator server add --ssh-key-file`)."""
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_line(self) -> str:
        """The host key as a known_hosts line, to pin it instead of trusting on first use."""
        return f"{self.address} {self.host_public_key.rsplit(' ', 1)[0]}"

    def target(self, handle: str = "ssh-test-host", key_ref: str | None = None) -> dict[str, object]:
        """A runner `Target` for this host (`worker_image.ansible_runner.job.Target` fields)."""
        return {
            "handle": handle,
            "host": self.address,
            "connection": "ssh",
            "ssh_user": self.user,
            "ssh_port": self.port,
            "ssh_key_ref": key_ref,
        }
