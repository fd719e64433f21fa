#!/usr/bin/env python3
"""A small process supervisor for apps deployed where systemd is not the service manager: the built-in
localhost server, and ssh servers without systemd as PID 1 (containers, some minimal hosts).

    supervise.py start   APP_DIR [--command CMD --path-prepend DIR ... --user NAME] [--url URL --timeout S]
                         [--git-repo URL --git-ref REF [--venv DIR]] [--env-file-from FILE]
                                    stop any supervisor of APP_DIR, then start one in the background
                                    (with --git-repo, first check out REF into APP_DIR/src, and install
                                    its requirements.txt, if any, into the virtualenv --venv: a failure
                                    there exits 3 before anything running was touched; with --command,
                                    write APP_DIR/supervise.json; with --env-file-from FILE, install
                                    FILE as APP_DIR/app.env, mode 0600; with --url, then wait as `wait`
                                    does). Run from anywhere else, it first installs itself as
                                    APP_DIR/supervise.py and goes on from there.
    supervise.py stop    APP_DIR    stop the supervisor of APP_DIR and its service (nothing running: ok)
    supervise.py wait    APP_DIR --url URL --timeout S
                                    wait until URL answers 200; fail early if the supervisor gave up
    supervise.py status  APP_DIR    print the supervisor's state as JSON
    supervise.py stop-tree APP_DIR  stop every supervisor of a project: APP_DIR (in place), its
                                    forwarder and its slots (APP_DIR/forwarder, APP_DIR/slots/*)
    supervise.py switch  FWD_DIR --upstream-file F --upstream HOST:PORT --listen-port P [--listen-host H]
                         [--retire DIR] --url URL --timeout S [--serving-file S --serving NAME]
                         [--stop-after DIR [--drain S]]
                                    blue/green on a machine without a proxy: point F at HOST:PORT (atomic
                                    rename), make sure a supervised forwarder listens on P (started once;
                                    with --retire, first stop the in-place service of DIR that held P),
                                    then wait until URL (through P) answers 200; then write NAME to S and
                                    stop the supervisor of DIR (the previous slot) after the drain (a
                                    failure to stop it is reported, not an error). On failure everything
                                    is put back as it was (F's old content, DIR's service) and it exits 1.

The forwarder (`_forward`, run by a supervisor like any service) is a small asyncio TCP relay: for
each new connection it reads F and connects there, so a switch sends new connections to the new slot
while open ones finish on the old one. Connecting to the upstream is retried for a few seconds
(re-reading F), so a connection that arrives just as the upstream changes still gets through.

APP_DIR holds `supervise.json`::

    {"command": "python3 -m app.server", "workdir": ".../src", "env_file": ".../app.env",
     "log_file": ".../service.log", "path_prepend": [".../venv/bin"], "user": "",
     "max_quick_crashes": 5, "quick_crash_s": 10}

With `user` (only when started as root) the service runs as that user, like systemd's `User=`: its uid,
primary and supplementary groups, HOME/USER/LOGNAME; the supervisor itself stays root, reads the env
file and writes the log, as systemd does.

The supervisor is a daemon (double fork, own session, stdin from /dev/null), so it outlives Ansible
and the runner. It runs `command` through /bin/sh in its own process group with a clean environment
(PATH, HOME, locale, plus the env file), appends the service's output to the log, restarts it with
exponential backoff when it exits, and gives up after `max_quick_crashes` exits in a row that each
came sooner than `quick_crash_s` after the start. SIGTERM stops the service (SIGKILL after a grace
period) and the supervisor. `supervisor.pid` names the live supervisor; `supervisor.state` says what
it is doing (running / gave_up / stopped). Standard library only: it runs on the target's Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PIDFILE = "supervisor.pid"
STATEFILE = "supervisor.state"
LOCKFILE = "supervisor.lock"
CONFIG = "supervise.json"
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 10.0
MAX_LOG_BYTES = 10 * 1024 * 1024
HEALTH_POLL_S = 0.05
"""How often `wait` asks the health URL: an app answers ~0.3 s after its start, the deploy waits on it."""
EXIT_NOT_PREPARED = 3
"""start/restart could not fetch the ref or install its requirements: nothing running was touched."""
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR")
ESCAPABLE = '"\\`$'


# -- the env file (the same format systemd's EnvironmentFile= reads) ---------------------------------


def parse_env_file(text: str) -> dict[str, str]:
    """NAME=value lines; a value may be double-quoted, spanning lines, with \\" \\\\ \\` \\$ escapes."""
    result: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        end = text.find("\n", i)
        line_end = n if end < 0 else end
        line = text[i:line_end].strip()
        if not line or line.startswith("#") or "=" not in line:
            i = line_end + 1
            continue
        start = text.index("=", i)
        name = text[i:start].strip()
        j = start + 1
        if j < n and text[j] == '"':
            j += 1
            chars: list[str] = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    if nxt in ESCAPABLE:
                        chars.append(nxt)
                    elif nxt != "\n":
                        chars.append("\\" + nxt)
                    j += 2
                    continue
                chars.append(text[j])
                j += 1
            result[name] = "".join(chars)
            end = text.find("\n", j)
            i = n if end < 0 else end + 1
        else:
            result[name] = text[j:line_end].strip()
            i = line_end + 1
    return result


# -- small helpers --------------------------------------------------------------------------------


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} supervisor[{os.getpid()}]: {message}", flush=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Running and not a zombie (a container's init may be slow to reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_our_supervisor(pid: int, app_dir: Path) -> bool:
    """Guards against a recycled pid: the process must be this script supervising this APP_DIR."""
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    words = [a.decode(errors="replace") for a in argv if a]
    script = next((i for i, w in enumerate(words) if w.endswith("supervise.py")), None)
    if script is None:
        return False
    return any(Path(w).resolve() == app_dir for w in words[script + 1 :] if w.startswith("/"))


def _read_state(app_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((app_dir / STATEFILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(app_dir: Path, **state: Any) -> None:
    _write_atomic(app_dir / STATEFILE, json.dumps({"pid": os.getpid(), "at": time.time(), **state}))


def _load_config(app_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((app_dir / CONFIG).read_text())
    config.setdefault("workdir", str(app_dir / "src"))
    config.setdefault("env_file", str(app_dir / "app.env"))
    config.setdefault("log_file", str(app_dir / "service.log"))
    config.setdefault("path_prepend", [])
    config.setdefault("user", "")
    config.setdefault("max_quick_crashes", 5)
    config.setdefault("quick_crash_s", 10)
    return config


def _service_env(config: dict[str, Any]) -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    prepend = [p for p in config["path_prepend"] if Path(p).is_dir()]
    env["PATH"] = os.pathsep.join([*prepend, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    account = _account(config)
    if account is not None:
        env |= {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}
    env_file = Path(config["env_file"])
    if env_file.exists():
        env.update(parse_env_file(env_file.read_text()))
    return env


def _account(config: dict[str, Any]) -> pwd.struct_passwd | None:
    """The user the service runs as, or None to keep the supervisor's own (no `user`, or already it)."""
    name = str(config.get("user") or "")
    if not name:
        return None
    account = pwd.getpwnam(name)  # KeyError: an unknown user is the deploy's error, not a silent root run
    return None if account.pw_uid == os.getuid() else account


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """Popen arguments that drop to the service user."""
    account = _account(config)
    if account is None:
        return {}
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups}


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- the daemon ---------------------------------------------------------------------------------------


class Supervisor:
    def __init__(self, app_dir: Path, config: dict[str, Any]) -> None:
        self.app_dir = app_dir
        self.config = config
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            _kill_group(self.child.pid, signal.SIGTERM)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _write_atomic(self.app_dir / PIDFILE, f"{os.getpid()}\n")
        quick_crashes = 0
        max_quick, quick_s = int(self.config["max_quick_crashes"]), float(self.config["quick_crash_s"])
        try:
            while not self.stopping:
                started = time.monotonic()
                env = _service_env(self.config)
                self.child = subprocess.Popen(
                    ["/bin/sh", "-c", self.config["command"]],
                    cwd=self.config["workdir"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=sys.stdout,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **_identity(self.config),
                )
                _log(f"started service (pid {self.child.pid}): {self.config['command']}")
                _write_state(self.app_dir, state="running", child_pid=self.child.pid, crashes=quick_crashes)
                rc = self.child.wait()
                if self.stopping:
                    break
                ran = time.monotonic() - started
                _kill_group(self.child.pid, signal.SIGKILL)  # whatever the service left behind
                quick_crashes = quick_crashes + 1 if ran < quick_s else 0
                _log(f"service exited with code {rc} after {ran:.1f} s")
                if quick_crashes >= max_quick:
                    message = (
                        f"the service exited {quick_crashes} times in a row within {quick_s:g} s of starting "
                        f"(last exit code {rc}); the supervisor gave up"
                    )
                    _log(message)
                    _write_state(self.app_dir, state="gave_up", message=message, exit_code=rc)
                    return 1
                backoff = min(MAX_BACKOFF_S, 0.25 * 2 ** max(0, quick_crashes - 1))
                _log(f"restarting in {backoff:.2f} s")
                self._sleep(backoff)
            self._stop_child()
            _write_state(self.app_dir, state="stopped")
            _log("stopped")
            return 0
        finally:
            if _read_pid(self.app_dir / PIDFILE) == os.getpid():
                with contextlib.suppress(OSError):
                    (self.app_dir / PIDFILE).unlink()

    def _stop_child(self) -> None:
        child = self.child
        if child is None:
            return
        _kill_group(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _log(f"service did not stop within {STOP_GRACE_S:g} s; killing it")
        _kill_group(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def _daemonize(app_dir: Path, config: dict[str, Any]) -> None:
    """Double fork: the grandchild runs the supervisor in its own session and never returns."""
    if os.fork() > 0:
        return
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    try:
        os.chdir("/")
        log_path = Path(config["log_file"])
        with contextlib.suppress(OSError):
            if log_path.stat().st_size > MAX_LOG_BYTES:  # keep one previous log, not an unbounded one
                os.replace(log_path, log_path.with_name(log_path.name + ".1"))
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(config["log_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 1024)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = sys.stdout
        code = Supervisor(app_dir, config).run()
    except BaseException as error:  # the daemon has no one to raise to: log and go
        with contextlib.suppress(Exception):
            _log(f"crashed: {type(error).__name__}: {error}")
        code = 70
    os._exit(code)


# -- commands -------------------------------------------------------------------------------------


def stop(app_dir: Path) -> int:
    pid = _read_pid(app_dir / PIDFILE)
    state = _read_state(app_dir)
    if pid is None or not _is_our_supervisor(pid, app_dir):
        print("no supervisor running")
        with contextlib.suppress(OSError):
            (app_dir / PIDFILE).unlink()
        _kill_leftover_service(state)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        print(f"supervisor {pid} did not stop; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _kill_leftover_service(_read_state(app_dir) or state)
    with contextlib.suppress(OSError):
        (app_dir / PIDFILE).unlink()
    print(f"stopped supervisor {pid}")
    return 0


def _kill_leftover_service(state: dict[str, Any]) -> None:
    child = state.get("child_pid")
    if isinstance(child, int) and child > 1 and _alive(child):
        _kill_group(child, signal.SIGKILL)


def start(app_dir: Path) -> int:
    try:
        config = _load_config(app_dir)
    except (OSError, ValueError) as error:
        print(f"cannot read {app_dir / CONFIG}: {error}")
        return 1
    try:
        _account(config)
    except KeyError:
        print(f"the service user {config['user']!r} does not exist")
        return 1
    with open(app_dir / LOCKFILE, "a") as lock:  # two deploys at once must not start two supervisors
        fcntl.flock(lock, fcntl.LOCK_EX)
        stop(app_dir)
        (app_dir / STATEFILE).unlink(missing_ok=True)
        sys.stdout.flush()
        _daemonize(app_dir, config)
        os.wait()  # the first child exits at once
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = _read_pid(app_dir / PIDFILE)
            if pid is not None and _alive(pid):
                print(f"started supervisor {pid}")
                return 0
            time.sleep(0.02)
    print("the supervisor did not start (see the service log)")
    return 1


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - the app's own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait(app_dir: Path, url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        if _answers_200(url):
            print(f"{url} answered 200")
            return 0
        state = _read_state(app_dir)
        if state.get("state") == "gave_up":
            print(f"health check {url} never answered 200: {state.get('message')}")
            return 1
        pid = _read_pid(app_dir / PIDFILE)
        if state and (pid is None or not _alive(pid)):
            print(f"health check {url} never answered 200: the supervisor is not running")
            return 1
        if time.monotonic() >= deadline:
            print(f"health check {url} did not answer 200 within {timeout:g} s")
            return 1
        time.sleep(HEALTH_POLL_S)


def status(app_dir: Path) -> int:
    pid = _read_pid(app_dir / PIDFILE)
    running = pid is not None and _is_our_supervisor(pid, app_dir)
    print(json.dumps({"running": running, "pid": pid if running else None, **_read_state(app_dir)}))
    return 0


def _install_env_file(source: Path, app_dir: Path) -> None:
    """Copy the env file the runner rendered (it holds secrets) into place, 0600 from its first byte."""
    staging = app_dir / f".app.env.{os.getpid()}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(source.read_bytes())
    os.replace(staging, app_dir / "app.env")


DONE_BEFORE_EXEC = ("--env-file-from", "--git-repo", "--git-ref", "--venv")
"""Options `_continue_from_app_dir` has carried out already: the re-run command leaves them out."""


def _without_done_options(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for word in argv:
        done = word in DONE_BEFORE_EXEC or word.split("=", 1)[0] in DONE_BEFORE_EXEC
        if not skip and not done:
            kept.append(word)
        skip = word in DONE_BEFORE_EXEC
    return kept


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def fetch_source(src: Path, repo: str, ref: str) -> str | None:
    """Check out REF (a branch, tag or commit) of REPO into SRC, local changes discarded, as Ansible's git
    module with `force` does, in one process instead of a module run. None, or why it could not."""
    if not (src / ".git").is_dir():
        if src.exists():
            shutil.rmtree(src)
        src.parent.mkdir(parents=True, exist_ok=True)
        cloned = _git("clone", "-q", "--no-checkout", "--", repo, str(src))
        if cloned.returncode != 0:
            return f"could not fetch {repo} at {ref}: {_last_line(cloned)}"
    else:
        _git("remote", "set-url", "origin", repo, cwd=src)
        fetched = _git(
            "fetch", "-q", "--force", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*", cwd=src
        )
        if fetched.returncode != 0:
            return f"could not fetch {repo} at {ref}: {_last_line(fetched)}"
    for candidate in (f"refs/remotes/origin/{ref}", ref):
        resolved = _git("rev-parse", "-q", "--verify", f"{candidate}^{{commit}}", cwd=src)
        if resolved.returncode == 0:
            break
    else:  # a commit no branch or tag names: ask for it by name
        fetched = _git("fetch", "-q", "origin", ref, cwd=src)
        resolved = _git("rev-parse", "-q", "--verify", "FETCH_HEAD^{commit}", cwd=src)
        if fetched.returncode != 0 or resolved.returncode != 0:
            return f"could not fetch {repo} at {ref}: {_last_line(fetched)}"
    checkout = _git("checkout", "-q", "--force", "--detach", resolved.stdout.strip(), cwd=src)
    if checkout.returncode != 0:
        return f"could not check out {ref} of {repo}: {_last_line(checkout)}"
    return None


def install_requirements(src: Path, venv: Path) -> str | None:
    """SRC/requirements.txt into the virtualenv VENV (made with this Python's venv module if absent), as
    Ansible's pip module does. None (also when there is no requirements.txt), or why it could not."""
    requirements = src / "requirements.txt"
    if not requirements.is_file():
        return None
    steps = [] if (venv / "bin" / "python").exists() else [[sys.executable, "-m", "venv", str(venv)]]
    steps.append([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)])
    for step in steps:
        done = subprocess.run(step, cwd=src, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"could not install {requirements.name} into {venv}: {_last_line(done)}"
    return None


def _prepare_release(args: argparse.Namespace, app_dir: Path) -> int:
    """--git-repo/--venv/--env-file-from of start/restart, before anything running is touched."""
    problem = fetch_source(app_dir / "src", args.git_repo, args.git_ref) if args.git_repo else None
    if problem is None and args.git_repo and args.venv:
        problem = install_requirements(app_dir / "src", args.venv)
    if problem is not None:
        print(problem)
        return EXIT_NOT_PREPARED
    if args.env_file_from:
        app_dir.mkdir(parents=True, exist_ok=True)
        _install_env_file(args.env_file_from, app_dir)
    return 0


def _continue_from_app_dir(app_dir: Path, argv: list[str]) -> None:
    """Started from a copy elsewhere (Ansible's `script` sends a temporary one) or naming the runner's
    env file: install this file as APP_DIR/supervise.py and re-run the command from there without the
    options already carried out (`DONE_BEFORE_EXEC`), so the daemon's command line names neither the temporary copy
    nor the runner's private dir (the runner stops whatever names it), and a person can run it."""
    installed = app_dir / "supervise.py"
    here = Path(__file__).resolve()
    rest = _without_done_options(argv)
    if installed.exists() and installed.resolve() == here and rest == argv:
        return
    if installed.resolve() != here:
        app_dir.mkdir(parents=True, exist_ok=True)
        staging = installed.with_name(f".supervise.py.{os.getpid()}")
        shutil.copyfile(here, staging)
        staging.chmod(0o755)
        os.replace(staging, installed)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, str(installed), *rest])  # noqa: S606 - this script, re-run


# -- the forwarder (blue/green without a proxy) ------------------------------------------------------

FORWARD_CONNECT_S = 5.0
"""How long a new connection keeps trying its upstream (re-reading the upstream file) before it is closed."""


def read_upstream(path: Path) -> tuple[str, int] | None:
    """`HOST:PORT` (or just `PORT`, on 127.0.0.1) from the upstream file; None if absent or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    host, _, port = text.rpartition(":")
    try:
        return (host.strip("[]") or "127.0.0.1", int(port))
    except ValueError:
        return None


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except (OSError, RuntimeError):
        writer.close()


async def _open_upstream(
    upstream_file: Path,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    deadline = time.monotonic() + FORWARD_CONNECT_S
    while True:
        target = read_upstream(upstream_file)
        if target is not None:
            with contextlib.suppress(OSError):
                return await asyncio.wait_for(asyncio.open_connection(*target), timeout=2)
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.05)


async def _forward_one(
    upstream_file: Path, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
) -> None:
    upstream = await _open_upstream(upstream_file)
    if upstream is None:
        client_writer.close()
        return
    up_reader, up_writer = upstream
    try:
        await asyncio.gather(_relay(client_reader, up_writer), _relay(up_reader, client_writer))
    finally:
        for writer in (up_writer, client_writer):
            writer.close()


async def _serve_forever(host: str, port: int, upstream_file: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _forward_one(upstream_file, reader, writer)

    server = await asyncio.start_server(handle, host, port, reuse_address=True, backlog=512)
    _log(f"forwarding {host}:{port} to the upstream named in {upstream_file}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def forward(host: str, port: int, upstream_file: Path) -> int:
    try:
        asyncio.run(_serve_forever(host, port, upstream_file))
    except OSError as error:  # the port is taken: the supervisor's quick-crash rule gives up and says so
        _log(f"cannot listen on {host}:{port}: {error.strerror or error}")
        return 1
    return 0


def _forwarder_config(fwd_dir: Path, host: str, port: int, upstream_file: Path) -> dict[str, Any]:
    import shlex

    words = [sys.executable, str(fwd_dir / "supervise.py"), "_forward", str(fwd_dir)]
    words += ["--listen-host", host, "--listen-port", str(port), "--upstream-file", str(upstream_file)]
    command = " ".join(shlex.quote(word) for word in words)
    return {
        "command": f"exec {command}",
        "workdir": str(fwd_dir),
        "env_file": str(fwd_dir / "forward.env"),
        "log_file": str(fwd_dir / "forward.log"),
        "path_prepend": [],
        "user": "",
        "max_quick_crashes": 5,
        "quick_crash_s": 10,
        "listen": f"{host}:{port}",
    }


def _running_config(app_dir: Path) -> dict[str, Any] | None:
    """The config of APP_DIR's live supervisor, or None when none runs."""
    pid = _read_pid(app_dir / PIDFILE)
    if pid is None or not _is_our_supervisor(pid, app_dir) or _read_state(app_dir).get("state") != "running":
        return None
    try:
        return _load_config(app_dir)
    except (OSError, ValueError):
        return None


def _put_back(upstream_file: Path, previous: str | None) -> None:
    if previous is None:
        upstream_file.unlink(missing_ok=True)
    else:
        _write_atomic(upstream_file, previous)


def switch(args: argparse.Namespace) -> int:
    fwd_dir: Path = args.app_dir
    upstream_file: Path = args.upstream_file.resolve()
    try:
        previous: str | None = upstream_file.read_text()
    except OSError:
        previous = None
    _write_atomic(upstream_file, args.upstream + "\n")
    config = _forwarder_config(fwd_dir, args.listen_host, args.listen_port, upstream_file)
    running = _running_config(fwd_dir)
    started_now = retired = False
    if running is None or running.get("listen") != config["listen"]:
        retire: Path | None = args.retire.resolve() if args.retire else None
        if retire is not None and _running_config(retire) is not None:
            print(f"stopping the in-place service of {retire}: the forwarder takes its port")
            stop(retire)
            retired = True
        _write_atomic(fwd_dir / CONFIG, json.dumps(config, indent=2) + "\n")
        started_now = True
        if start(fwd_dir) != 0:
            return _undo_switch(fwd_dir, upstream_file, previous, retire if retired else None)
    if wait(fwd_dir, args.url, args.timeout) == 0:
        print(f"the stable address now forwards to {args.upstream}")
        _after_switch(args)
        return 0
    if not started_now:
        _put_back(upstream_file, previous)
        return 1
    return _undo_switch(fwd_dir, upstream_file, previous, args.retire.resolve() if retired else None)


def _after_switch(args: argparse.Namespace) -> None:
    """Record the slot that serves now, then stop the previous one after the drain: the switch is done
    whatever happens here (a slot that will not stop is reported, the next deploy stops it)."""
    if args.serving_file and args.serving:
        _write_atomic(args.serving_file, f"{args.serving}\n")
    previous: Path | None = args.stop_after
    if previous is None or not previous.is_dir():
        return
    try:
        if args.drain > 0 and _running_config(previous) is not None:
            time.sleep(args.drain)
        stop(previous.resolve())
    except OSError as error:
        print(f"could not stop the previous slot {previous}: {error}")


def _undo_switch(fwd_dir: Path, upstream_file: Path, previous: str | None, retired: Path | None) -> int:
    """The forwarder did not come up: stop it, put the upstream file back, restart the in-place service."""
    stop(fwd_dir)
    _put_back(upstream_file, previous)
    if retired is not None:
        print(f"restarting the in-place service of {retired}")
        start(retired)
    problem = _forwarder_problem(fwd_dir)
    print(f"the forwarder did not serve the stable address{': ' + problem if problem else ''}")
    return 1


def _forwarder_problem(fwd_dir: Path) -> str:
    """Why the forwarder did not come up, from its log: its own words when it could not listen."""
    try:
        lines = (fwd_dir / "forward.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    own = [line.split(": ", 1)[-1] for line in lines if "cannot listen on" in line]
    return (own or lines or [""])[-1]


def stop_tree(app_dir: Path) -> int:
    """Stop the forwarder, the slots and the in-place service of one project (what undeploy removes)."""
    slots = sorted((app_dir / "slots").glob("*")) if (app_dir / "slots").is_dir() else []
    for directory in (app_dir / "forwarder", *slots, app_dir):
        if directory.is_dir():
            stop(directory)
    return 0


def _blue_green_command(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "_forward":
        return forward(args.listen_host, int(args.listen_port), args.upstream_file)
    if args.command == "stop-tree":
        return stop_tree(args.app_dir)
    if not (args.upstream_file and args.upstream and args.listen_port and args.url):
        parser.error("switch needs --upstream-file, --upstream, --listen-port and --url")
    _continue_from_app_dir(args.app_dir, argv)
    return switch(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command", choices=["start", "stop", "restart", "wait", "status", "stop-tree", "switch", "_forward"]
    )
    parser.add_argument("app_dir", type=Path)
    parser.add_argument("--command", dest="service_command", help="start: the service's shell command")
    parser.add_argument("--path-prepend", action="append", default=[], help="start: put DIR first on PATH")
    parser.add_argument("--user", default="", help="start: run the service as this user (needs root)")
    parser.add_argument("--max-quick-crashes", type=int, default=5)
    parser.add_argument("--quick-crash-s", type=float, default=10.0)
    parser.add_argument("--env-file-from", type=Path, help="start: install this file as APP_DIR/app.env")
    parser.add_argument("--url", help="wait (start: then wait): the health URL")
    parser.add_argument("--timeout", type=float, default=30.0, help="wait: seconds")
    parser.add_argument("--drain", type=float, default=0.0, help="stop: wait this long first (open requests)")
    parser.add_argument("--upstream-file", type=Path, help="switch/_forward: the file naming the upstream")
    parser.add_argument("--upstream", help="switch: HOST:PORT new connections go to")
    parser.add_argument("--listen-host", default="127.0.0.1", help="switch/_forward: the stable address")
    parser.add_argument("--listen-port", type=int, help="switch/_forward: the stable port")
    parser.add_argument(
        "--retire", type=Path, help="switch: the in-place app dir whose service held the port"
    )
    parser.add_argument("--serving-file", type=Path, help="switch: once switched, write --serving to it")
    parser.add_argument("--serving", help="switch: the name of the slot that serves now")
    parser.add_argument("--stop-after", type=Path, help="switch: once switched, stop this app dir (drained)")
    parser.add_argument("--git-repo", help="start: check out --git-ref of this repository into APP_DIR/src")
    parser.add_argument("--git-ref", default="main", help="start: the branch, tag or commit to check out")
    parser.add_argument("--venv", type=Path, help="start: install src/requirements.txt into this virtualenv")
    args = parser.parse_args(argv)
    app_dir = args.app_dir.resolve()
    args.app_dir = app_dir
    if args.command in ("_forward", "switch", "stop-tree"):
        return _blue_green_command(parser, args, argv)
    if args.command in ("start", "restart"):
        prepared = _prepare_release(args, app_dir)
        if prepared != 0:
            return prepared
        _continue_from_app_dir(app_dir, argv)
        if args.service_command:
            config = {
                "command": args.service_command,
                "workdir": str(app_dir / "src"),
                "env_file": str(app_dir / "app.env"),
                "log_file": str(app_dir / "service.log"),
                "path_prepend": args.path_prepend,
                "user": args.user,
                "max_quick_crashes": args.max_quick_crashes,
                "quick_crash_s": args.quick_crash_s,
            }
            _write_atomic(app_dir / CONFIG, json.dumps(config, indent=2) + "\n")
        started = start(app_dir)
        return started if started or not args.url else wait(app_dir, args.url, args.timeout)
    if args.command == "stop":
        if not app_dir.is_dir():
            return 0
        if args.drain > 0 and _running_config(app_dir) is not None:
            time.sleep(args.drain)
        return stop(app_dir)
    if args.command == "wait":
        if not args.url:
            parser.error("wait needs --url")
        return wait(app_dir, args.url, args.timeout)
    return status(app_dir)


if __name__ == "__main__":
    sys.exit(main())
