"""What one ansible-runner run needs on disk, laid out from a job: its secrets, resolved only when
they are the job's to use, the inventory, the variables and an ansible.cfg.

Each run gets a fresh private data dir (mode 0700, deleted afterwards, even on failure)::

    <tmp>/orch-ansible-XXXX/
        ansible.cfg            no colour, no retry files, ssh pipelining, temp dirs inside this dir
        inventory/hosts.json   the one target
        env/extravars          plain variables (YAML; every string tagged !unsafe: never templated)
        env/secret_vars.yml    resolved secrets (app_secrets, git_token), passed with `-e @file`
        env/app.env            deploy: the service's env file, rendered here (`render_env_file`); the
                               playbook installs it (copy over ssh, the supervisor on connection local)
        env/ssh_key            the resolved private key; ansible-runner feeds it to ssh-agent
        project/               a copy of the playbooks
        artifacts/             ansible-runner's events and output

Secret values never reach the command line, the inventory or env/extravars; the playbook tasks
that use them are `no_log`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.secrets.port import SecretNotFound, SecretsError, SecretsPort
from shared.secrets.scope import SecretScope, reference_allowed
from shared.settings import HomeSettings
from worker_image.ansible_runner.job import RunnerJob

PLAYBOOKS_DIR: Path = Path(__file__).resolve().parent / "playbooks"
PLAYBOOKS: dict[str, str] = {
    "deploy": "deploy.yml",
    "undeploy": "undeploy.yml",
    "provision": "provision.yml",
    "ping": "ping.yml",
}
HEALTH_TIMEOUT_S = 30
"""How long a deploy waits for the health endpoint to answer 200."""
DRAIN_S = 2
"""After the stable address switched, how long the previous slot keeps running for open requests."""
SERVICE_USER = "orchestrator"
"""The user apps run as on ssh targets (systemd); on the localhost server they run as the runner's user."""
SSH_CONNECT_TIMEOUT_S = 20

_ANSIBLE_CFG = """\
[defaults]
nocolor = True
retry_files_enabled = False
interpreter_python = auto_silent
deprecation_warnings = False
local_tmp = {tmp}/local
timeout = {connect_timeout}

[connection]
pipelining = True

[ssh_connection]
pipelining = True
control_path_dir = {tmp}/cp
"""


GITHUB_TOKEN_PURPOSE = "github_token_ref"  # noqa: S105 - names a field, not a secret
SSH_KEY_PURPOSE = "target.ssh_key_ref"


class SecretProblem(Exception):
    """A secret reference of the job could not be resolved; the message names the reference, not a value."""


@dataclass
class ResolvedSecrets:
    """The job's secrets, resolved. Lives only for one run."""

    app: dict[str, str] = field(default_factory=dict)
    git_token: str = ""
    ssh_key: str | None = None

    def values(self) -> list[str]:
        found = [*self.app.values(), self.git_token]
        if self.ssh_key:
            found.append(self.ssh_key)
        return [v for v in found if v]


def job_scope(job: RunnerJob, purpose: str) -> SecretScope:
    """What a reference used for `purpose` may name: the job's project's secrets for the app, the
    target's own key (or an admin-granted `secret://shared/...` one) for ssh. The GitHub token is not a
    scope: it must be the stack's configured reference (see `resolve_secrets`)."""
    if purpose == SSH_KEY_PURPOSE:
        return SecretScope(server_handles=frozenset({job.target.handle}), shared=True)
    return SecretScope(project_ids=frozenset({job.project_id} if job.project_id else ()))


def resolve_secrets(
    job: RunnerJob, secrets: SecretsPort, *, github_token_ref: str | None = None
) -> ResolvedSecrets:
    """Read every secret the job references, each only if it is the job's to use (`job_scope`; the
    GitHub token only if it is the stack's `github_token_ref`), checked again here although the API
    checked it when stored. A reference out of scope and one that does not exist fail alike, so the
    answer never tells whether someone else's secret exists. The GitHub token is read only for clones
    it may travel to (https, or http to the server's own loopback: `git_ops.token_may_travel_to`)."""
    from worker_image.git_ops import token_may_travel_to

    wanted: list[tuple[str, str]] = [(f"secret_refs.{name}", ref) for name, ref in job.secret_refs.items()]
    if job.github_token_ref and job.kind == "deploy" and token_may_travel_to(job.repo_url or ""):
        wanted.append((GITHUB_TOKEN_PURPOSE, job.github_token_ref))
    if job.target.ssh_key_ref and not job.is_local:
        wanted.append((SSH_KEY_PURPOSE, job.target.ssh_key_ref))
    values: dict[str, str] = {}
    for purpose, reference in wanted:
        unavailable = f"secret reference {reference} ({purpose}) is missing or not this job's to use"
        if purpose == GITHUB_TOKEN_PURPOSE:
            allowed = github_token_ref is not None and reference == github_token_ref
        else:
            allowed = reference_allowed(reference, job_scope(job, purpose))
        if not allowed:
            raise SecretProblem(unavailable)
        try:
            values[purpose] = secrets.get(reference)
        except SecretNotFound:
            raise SecretProblem(unavailable) from None
        except SecretsError as error:  # the port's errors never carry values
            raise SecretProblem(f"could not read secret reference {reference} ({purpose}): {error}") from None
    return ResolvedSecrets(
        app={name: values[f"secret_refs.{name}"] for name in job.secret_refs},
        git_token=values.get(GITHUB_TOKEN_PURPOSE, ""),
        ssh_key=values.get(SSH_KEY_PURPOSE),
    )


# -- what goes into the private data dir ------------------------------------------------------------


def build_inventory(job: RunnerJob) -> dict[str, Any]:
    """One host, named by its handle. No secret in it: the ssh key goes to env/ssh_key."""
    target = job.target
    host: dict[str, Any] = {"ansible_host": target.host}
    if job.is_local:
        host |= {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    else:
        host |= {
            "ansible_connection": "ssh",
            "ansible_user": target.ssh_user,
            "ansible_port": target.ssh_port,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new -o BatchMode=yes",
        }
        if target.ssh_user != "root":
            host["ansible_become"] = True
    return {"all": {"hosts": {target.handle: host}}}


def build_extravars(job: RunnerJob, home: HomeSettings | None = None) -> dict[str, Any]:
    """The plain variables every playbook may use; never a secret value."""
    variables: dict[str, Any] = {
        "orch_kind": job.kind,
        "request_id": job.request_id,
        "is_local": job.is_local,
        "deploy_root": job.effective_deploy_root(home),
        "service_user": SERVICE_USER,
        "open_ports": list(job.open_ports),
        "force_reinstall": job.force_reinstall,
    }
    if job.kind in ("deploy", "undeploy"):
        variables |= {
            "project_name": job.project_name,
            "app_dir": job.app_dir(home),
            "app_port": job.port,
            # blue/green: the slot's directory and port, the stable address switched to it ("" / null: in place)
            "slot": job.slot or "",
            "slot_dir": job.slot_dir(home),
            "slot_port": job.port,
            "stable_port": job.stable_port,
            "domain": job.domain or "",
            "release": job.release,
            "listen_host": job.env.get("HOST") or "127.0.0.1",
            "drain_s": DRAIN_S,
        }
    if job.kind == "deploy":
        variables |= {
            "repo_url": job.repo_url,
            "ref": job.ref,
            "port_variable": job.port_variable,
            "run_command": job.run_command,
            "health_path": job.health_path,
            "health_timeout_s": HEALTH_TIMEOUT_S,
        }
    return variables


def build_secret_vars(resolved: ResolvedSecrets) -> dict[str, Any]:
    """Variables holding secret values: only ever written to the 0600 file passed with `-e @file`."""
    return {"app_secrets": dict(resolved.app), "git_token": resolved.git_token}


ENV_FILE_HEADER = "# Written by the orchestrator's deploy playbook; the next deploy replaces it."


def _env_file_value(value: str) -> str:
    for char in '\\"`$':  # the backslash first: the others add one
        value = value.replace(char, "\\" + char)
    return f'"{value}"'


def render_env_file(job: RunnerJob, resolved: ResolvedSecrets) -> str:
    """The service's env file: the plain variables, the secrets and the port, as `NAME="value"` lines
    (systemd's EnvironmentFile= format, which `playbooks/files/supervise.py` reads back). Rendered here
    rather than by an Ansible template: on connection local the supervisor installs it in the same
    `script` run that restarts the service, saving a stat and a copy module round."""
    values = {**job.env, **resolved.app, job.port_variable: str(job.port)}
    lines = [ENV_FILE_HEADER, *(f"{name}={_env_file_value(value)}" for name, value in values.items())]
    return "\n".join(lines) + "\n"


def _yaml_string(value: str) -> str:
    if not value:
        return '""'  # ansible-core 2.19 loads `!unsafe ""` as null; an empty string has nothing to template
    out = ['!unsafe "']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def to_unsafe_yaml(value: Any) -> str:
    """YAML flow style in which every string *value* is tagged `!unsafe`, so Ansible never templates it
    (a `{{ ... }}` inside an env value stays text). Non-ASCII characters are escaped, so YAML's own line
    breaks (NEL, LS, PS) cannot fold a value."""
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}: {to_unsafe_yaml(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_unsafe_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        return _yaml_string(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as a variable")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@dataclass
class PreparedRun:
    private_data_dir: Path
    playbook: str
    envvars: dict[str, str]
    cmdline: str


def prepare_private_data_dir(
    root: Path,
    job: RunnerJob,
    resolved: ResolvedSecrets,
    playbooks_dir: Path,
    home: HomeSettings | None = None,
) -> PreparedRun:
    """Lay out everything ansible-runner needs under `root` (an empty 0700 directory)."""
    for sub in ("env", "inventory", "tmp/local", "tmp/remote"):
        (root / sub).mkdir(parents=True, mode=0o700)
    shutil.copytree(playbooks_dir, root / "project", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _write_private(
        root / "ansible.cfg", _ANSIBLE_CFG.format(tmp=root / "tmp", connect_timeout=SSH_CONNECT_TIMEOUT_S)
    )
    inventory = build_inventory(job)
    if job.is_local:  # module temp files of a local run stay in the private dir
        for host in inventory["all"]["hosts"].values():
            host["ansible_remote_tmp"] = str(root / "tmp" / "remote")
    _write_private(root / "inventory" / "hosts.json", json.dumps(inventory, indent=2))
    variables = build_extravars(job, home)
    if job.kind == "deploy":
        _write_private(root / "env" / "app.env", render_env_file(job, resolved))
        variables["app_env_source"] = str(root / "env" / "app.env")
    _write_private(root / "env" / "extravars", to_unsafe_yaml(variables) + "\n")
    secret_vars = root / "env" / "secret_vars.yml"
    _write_private(secret_vars, to_unsafe_yaml(build_secret_vars(resolved)) + "\n")
    if resolved.ssh_key:
        key = resolved.ssh_key if resolved.ssh_key.endswith("\n") else resolved.ssh_key + "\n"
        _write_private(root / "env" / "ssh_key", key)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    envvars = {
        "PATH": path,
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(root / "tmp" / "local"),
    }
    return PreparedRun(root, PLAYBOOKS[job.kind], envvars, f"-e @{secret_vars}")
