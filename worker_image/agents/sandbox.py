"""The agent's sandbox: which user the agent process runs as, its resource limits, and which commands it finds.

    sandbox = AgentSandbox.from_settings(SandboxSettings())
    env = sandbox.environment(env, workspace)     # HOME for the agent's user: use it for session files too
    result = run_agent(adapter, prompt, workspace, timeout_s, on_event, env=env, sandbox=sandbox)

Decisions a newcomer may question:

- **Another uid only when the wrapper is root.** Switching user needs CAP_SETUID. As root (the embedded
  stack on most servers, CI, a container run as root) the agent runs as `ORCH_AGENT_USER` (`auto`: the
  image's `agent` user if it exists, else `nobody`), so it cannot read the wrapper's memory, environment
  (`/proc/<pid>/environ`) or its files, cannot signal it, and the real `claude` accepts
  `bypassPermissions`. Not root (the image's default), the agent keeps the wrapper's uid and the wrapper
  makes itself non-dumpable instead (`PR_SET_DUMPABLE` 0), which closes `/proc/<pid>/environ`, `mem` and
  ptrace to a same-uid process.
- **The repository stays the wrapper's.** During a run the work tree is the agent's, `.git` is not: the
  wrapper runs git as root afterwards, and an agent able to write `.git/hooks` or `.git/config` could make
  it run anything. The agent may still read the history (`safe.directory` is set for it); the instructions
  already tell it not to commit. After the run the tree is handed back, so git sees one owner.
- **`RLIMIT_NPROC` only under the agent's own uid**: the kernel counts every process of the *real uid*, so
  under the wrapper's uid it would count the wrapper and the whole stack, and root ignores it. Under a
  shared uid (`nobody` on a host running several workers at once) the count is shared between them;
  in the image there is one worker per container, so it is exact.
- **`RLIMIT_AS` is address space, not memory in use**: runtimes reserve more than they touch (the
  pinned claude starts within 2 GB, the default is 8 GB). A cgroup would measure resident memory; this
  host's cgroups are not writable by the stack, so it is not used.
- **A PATH of allowed commands** (`command` agents with `allowed_commands`): the agent's PATH is a private
  folder of symlinks to the allowed commands (and the agent's own program and interpreter), so anything
  else is "command not found". It keeps a well-behaved agent (one that runs tools by name) to its
  commands; it is not a wall against code that calls `/usr/bin/curl` by path: that is what the uid and
  the limits are for. Claude Code is restricted by its own permission rules instead (see its adapter).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import resource
import shlex
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

IMAGE_AGENT_USER = "agent"
"""The unprivileged user the worker image creates for the agent (worker_image/Dockerfile)."""
FALLBACK_AGENT_USER = "nobody"
_PR_SET_DUMPABLE = 4
_MB = 1024 * 1024


class SandboxSettings(BaseSettings):
    """The machine's limits for every agent process (env `ORCH_AGENT_*`); 0 turns a limit off."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    agent_user: Annotated[
        str,
        Field(
            description="User the agent runs as when the wrapper is root: auto (agent if it exists, else "
            "nobody), none (the wrapper's user), a name, or UID[:GID]."
        ),
    ] = "auto"
    agent_max_memory_mb: Annotated[
        int, Field(ge=0, description="RLIMIT_AS of the agent and each process it starts, in MB.")
    ] = 8192
    agent_max_processes: Annotated[
        int, Field(ge=0, description="RLIMIT_NPROC for the agent's uid (only when it runs as its own user).")
    ] = 512
    agent_max_open_files: Annotated[int, Field(ge=0, description="RLIMIT_NOFILE of each agent process.")] = (
        8192
    )


@dataclass(frozen=True)
class RunAs:
    """The user an agent process is switched to (by subprocess, in the child, before exec)."""

    uid: int
    gid: int
    name: str
    home: Path | None


def resolve_user(spec: str, *, is_root: bool | None = None) -> RunAs | None:
    """The user `spec` names, or None when the agent keeps the wrapper's user (not root, or `none`).
    Raises ValueError for a user that does not exist."""
    spec = spec.strip()
    root = os.geteuid() == 0 if is_root is None else is_root
    if not root or spec.lower() in ("", "none"):
        return None
    if spec.lower() == "auto":
        candidate = resolve_user(IMAGE_AGENT_USER if _user_exists(IMAGE_AGENT_USER) else FALLBACK_AGENT_USER)
        # the wrapper's interpreter runs the `orchestrator` CLI a Product Owner's agent needs: a user that
        # cannot start it (a venv under root's 0700 home) would break that agent, so auto does not switch
        interpreter = Path(sys.executable).resolve()
        if candidate is None or blocked_parent(interpreter, candidate.uid) is not None:
            return None
        return candidate
    uid_part, _, gid_part = spec.partition(":")
    if uid_part.isdigit():
        uid = int(uid_part)
        try:
            entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
        except KeyError:
            entry = None
        gid = int(gid_part) if gid_part.isdigit() else (entry.pw_gid if entry else uid)
        return RunAs(uid, gid, entry.pw_name if entry else str(uid), _home(entry))
    try:
        entry = pwd.getpwnam(uid_part)
    except KeyError:
        raise ValueError(f"ORCH_AGENT_USER names no user on this machine: {spec!r}") from None
    if entry.pw_uid == 0:
        raise ValueError("ORCH_AGENT_USER must not be root")
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, _home(entry))


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _home(entry: pwd.struct_passwd | None) -> Path | None:
    home = Path(entry.pw_dir) if entry and entry.pw_dir else None
    return (
        home if home is not None and home.is_dir() and entry and home.stat().st_uid == entry.pw_uid else None
    )


@dataclass(frozen=True)
class AgentSandbox:
    """How one agent process is confined: its user (None = the wrapper's), its rlimits (None = inherited)."""

    run_as: RunAs | None = None
    max_memory_mb: int | None = None
    max_processes: int | None = None
    max_open_files: int | None = None
    settings_names: dict[str, str] = field(default_factory=dict)
    """Which setting set each limit, for the reason of a run that hit it."""

    @classmethod
    def from_settings(cls, settings: SandboxSettings | None = None) -> AgentSandbox:
        settings = settings or SandboxSettings()
        run_as = resolve_user(settings.agent_user)
        return cls(
            run_as=run_as,
            max_memory_mb=settings.agent_max_memory_mb or None,
            max_processes=(settings.agent_max_processes or None) if run_as else None,
            max_open_files=settings.agent_max_open_files or None,
        )

    # -- the environment -------------------------------------------------------------------------------

    def home_for(self, workspace: Path) -> Path | None:
        """The agent's HOME when it runs as another user: its own home if it has one, else a folder
        beside the workspace (stable for a conversation's stable workspace, so its sessions are found)."""
        if self.run_as is None:
            return None
        return self.run_as.home or workspace.parent / f"{workspace.name}.home"

    def environment(self, env: Mapping[str, str], workspace: Path) -> dict[str, str]:
        """`env` as the agent's user needs it: its HOME, USER and LOGNAME, and git allowed to read a
        repository whose `.git` is not its own. Unchanged when the agent keeps the wrapper's user."""
        home = self.home_for(workspace)
        if home is None or self.run_as is None:
            return dict(env)
        out = {**env, "HOME": str(home), "USER": self.run_as.name, "LOGNAME": self.run_as.name}
        if "GIT_CONFIG_COUNT" not in out:
            out.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
        return out

    # -- the process -----------------------------------------------------------------------------------

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, value) pairs to set in the child before it runs the agent."""
        limits = []
        if self.max_memory_mb:
            limits.append((resource.RLIMIT_AS, self.max_memory_mb * _MB))
        if self.max_open_files:
            limits.append((resource.RLIMIT_NOFILE, self.max_open_files))
        if self.max_processes and self.run_as is not None:
            limits.append((resource.RLIMIT_NPROC, self.max_processes))
        return limits

    def popen_kwargs(self) -> dict[str, object]:
        """subprocess.Popen arguments that switch user and set the limits in the child."""
        kwargs: dict[str, object] = {}
        if self.run_as is not None:
            kwargs.update(user=self.run_as.uid, group=self.run_as.gid, extra_groups=[])
        limits = self.rlimits()
        if limits:
            kwargs["preexec_fn"] = _limiter(limits)
        return kwargs

    def limit_hint(self, output_tail: str) -> str | None:
        """Which limit a failed run most likely hit, from what the agent printed last; None if none."""
        text = output_tail.lower()
        checks = (
            (self.max_memory_mb, _MEMORY_SIGNS, "memory", "ORCH_AGENT_MAX_MEMORY_MB", "MB"),
            (self.max_processes, _PROCESS_SIGNS, "process", "ORCH_AGENT_MAX_PROCESSES", " processes"),
            (self.max_open_files, _FILE_SIGNS, "open-file", "ORCH_AGENT_MAX_OPEN_FILES", " files"),
        )
        for value, signs, what, setting, unit in checks:
            if value and any(sign in text for sign in signs):
                return f"the agent hit its {what} limit ({setting}={value}: {value}{unit})"
        return None

    # -- the files -------------------------------------------------------------------------------------

    def unreachable(self, workspace: Path) -> str | None:
        """Why the agent's user cannot reach `workspace` (a 0700 parent), or None."""
        if self.run_as is None:
            return None
        parent = blocked_parent(workspace / "TASK.md", self.run_as.uid)
        if parent is None:
            return None
        return (
            f"the agent's user {self.run_as.name} cannot reach {workspace}: {parent} is not "
            f"searchable by others (set ORCH_WORKER_WORKSPACE_ROOT to a directory it can cross)"
        )

    @contextlib.contextmanager
    def handed_over(self, workspace: Path, extra_dirs: Sequence[Path]) -> Iterator[None]:
        """During the run the work tree (not `.git`), the agent's HOME and `extra_dirs` (its session
        folder) belong to the agent's user; afterwards the work tree is the wrapper's again."""
        if self.run_as is None:
            yield
            return
        uid, gid = self.run_as.uid, self.run_as.gid
        home = self.home_for(workspace)
        for folder in [home, *extra_dirs]:
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                chown_tree(folder, uid, gid)
        chown_tree(workspace, uid, gid, skip=".git")
        try:
            yield
        finally:
            chown_tree(workspace, os.getuid(), os.getgid(), skip=".git")


def blocked_parent(path: Path, uid: int) -> Path | None:
    """The first folder above `path` that `uid` may not cross (no search permission for others, not its
    own), or None. Group permissions are not considered: the agent's user gets no extra groups."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat()
        if not (mode.st_mode & stat.S_IXOTH or mode.st_uid == uid):
            return parent
    return None


def chown_tree(root: Path, uid: int, gid: int, *, skip: str | None = None) -> None:
    """`chown -R` without following symlinks; the top-level entry named `skip` is left alone."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == root and skip in dirnames:
            dirnames.remove(skip)
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(FileNotFoundError):  # removed while we walk: nothing to hand over
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _limiter(limits: list[tuple[int, int]]) -> object:
    def apply() -> None:  # runs in the child between fork and exec: lowering a limit needs no privilege
        for which, value in limits:
            _soft, hard = resource.getrlimit(which)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (cap, cap))

    return apply


_MEMORY_SIGNS = ("memoryerror", "cannot allocate memory", "out of memory", "bad_alloc", "allocation failed")
_PROCESS_SIGNS = ("resource temporarily unavailable", "fork: retry", "cannot fork", "can't fork")
_FILE_SIGNS = ("too many open files",)


def protect_wrapper() -> None:
    """Make this process non-dumpable: a process of the same uid (the agent, when it keeps the wrapper's
    user) can then neither ptrace it nor read its `/proc/<pid>/environ` or `mem`. Best effort."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing to set
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


# ---------------------------------------------------------------------------------------------------------
# A PATH of allowed commands
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def allowed_path(commands: Sequence[str], env: Mapping[str, str]) -> Iterator[str]:
    """A private folder holding a symlink for each command of `commands` found on `env`'s PATH, for the
    agent's PATH; removed afterwards. Commands not found are simply absent."""
    search = env.get("PATH") or os.defpath
    folder = Path(tempfile.mkdtemp(prefix="orchestrator-agent-path-"))
    try:
        folder.chmod(0o755)  # the agent's user must be able to look in it
        for name in dict.fromkeys(commands):
            found = _runnable_alone(name, search) if name and os.sep not in name else None
            if found:
                (folder / name).symlink_to(found)
        yield str(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _runnable_alone(name: str, search: str) -> str | None:
    """The first `name` on `search` that runs without looking anything else up on PATH: version-manager
    shims (pyenv's `python3` is `#!/usr/bin/env bash` calling `pyenv exec`) would need bash, pyenv and
    half of coreutils on the agent's cut-down PATH, so a real executable further down wins; the first
    match when every one is such a script."""
    matches = [
        str(Path(folder) / name)
        for folder in search.split(os.pathsep)
        if folder and os.access(Path(folder) / name, os.X_OK) and (Path(folder) / name).is_file()
    ]
    for match in matches:
        if _env_interpreter(Path(match)) is None:
            return match
    return matches[0] if matches else None


def program_of(command_line: str, search_path: str | None) -> list[str]:
    """The program a shell command line starts, and its interpreter when its script says
    `#!/usr/bin/env NAME`: what must stay findable for the agent itself to start."""
    try:
        words = shlex.split(command_line)
    except ValueError:
        return []
    words = [w for w in words if "=" not in w.split("/")[0]]  # leading VAR=value assignments
    if not words:
        return []
    program = words[0]
    names = [program] if os.sep not in program else []
    path = Path(program) if os.sep in program else None
    if path is None:
        found = shutil.which(program, path=search_path or os.defpath)
        path = Path(found) if found else None
    interpreter = _env_interpreter(path) if path else None
    return names + ([interpreter] if interpreter else [])


def _env_interpreter(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(200).decode("utf-8", "replace").strip()
    except OSError:
        return None
    parts = first[2:].split() if first.startswith("#!") else []
    if Path(parts[0] if parts else "").name != "env":
        return None
    names = [p for p in parts[1:] if not p.startswith("-")]  # `env -S python3 -u`: python3
    return names[0] if names else None
