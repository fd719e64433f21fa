"""The Ansible runner without running Ansible: job validation, what goes into the private data dir,
secret resolution and redaction, reading a run's events, mapping outcomes onto the result contracts,
the supervisor's env-file format, packaging of the playbooks, and ansible-lint when it is installed."""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.template import Templar, trust_as_template

from shared.contracts import ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS, parse_message
from shared.contracts.jobs import AnsibleDeployResult, ProvisionerResult
from shared.secrets.local import LocalSecrets
from shared.secrets.redact import Redactor
from worker_image.ansible_runner.__main__ import load_job
from worker_image.ansible_runner.job import JobError, RunnerJob, RunnerOutcome
from worker_image.ansible_runner.playbooks.files.supervise import parse_env_file, read_upstream
from worker_image.ansible_runner.private_data import (
    PLAYBOOKS_DIR,
    ResolvedSecrets,
    SecretProblem,
    build_extravars,
    build_inventory,
    prepare_private_data_dir,
    render_env_file,
    resolve_secrets,
    to_unsafe_yaml,
)
from worker_image.ansible_runner.results import result_for, result_queue
from worker_image.ansible_runner.runner import (
    TAIL_CHARS,
    read_events,
    redacted_tails,
    run_job,
    service_cause,
)

ROOT = Path(__file__).resolve().parents[2]
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"
SSH_TARGET = {"handle": "srv-1", "host": "203.0.113.7", "ssh_user": "deploy", "ssh_port": 2222}
LOCAL_TARGET = {"handle": "localhost", "host": "127.0.0.1", "connection": "local"}


def job(**overrides: Any) -> RunnerJob:
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "correlation_id": "corr-1",
        "kind": "deploy",
        "target": SSH_TARGET,
        "project_id": "p1",
        "project_name": "demo_app",
        "repo_url": "https://github.com/acme/demo.git",
        "ref": "0123abcd",
        "port": 8123,
        "env": {"LOG_LEVEL": "INFO"},
        "secret_refs": {"API_TOKEN": "secret://projects/p1/API_TOKEN"},
    }
    fields.update(overrides)
    return RunnerJob.model_validate(fields)


# -- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": None}, "'port'"),
        ({"project_name": None}, "'project_name'"),
        ({"repo_url": None}, "'repo_url'"),
        ({"project_name": "Demo-App"}, "'project_name'"),
        ({"ref": "--upload-pack=evil"}, "'ref'"),
        ({"run_command": "python3 -m app.server\nrm -rf /"}, "'run_command'"),
        ({"port": 70000}, "'port'"),
        ({"env": {"lower": "x"}}, "'env'"),
        ({"secret_refs": {"API_TOKEN": "vault://x"}}, "'secret_refs'"),
        ({"secret_refs": {"LOG_LEVEL": "secret://a/b"}}, "'secret_refs'"),
        ({"env": {"PORT": "1"}}, "'port_variable'"),
        ({"repo_url": "https://user:pw@github.com/acme/demo.git"}, "'repo_url'"),
        ({"deploy_root": "relative/dir"}, "'deploy_root'"),
        ({"target": {"handle": "srv-1", "host": "bad host"}}, "'target.host'"),
        ({"target": {"handle": "srv-1"}}, "'target.host'"),
        ({"kind": "reboot"}, "'kind'"),
        ({"slot": "c", "stable_port": 9000}, "'slot'"),
        ({"slot": "a"}, "'stable_port'"),
        ({"slot": "a", "stable_port": 8123}, "'stable_port'"),
        ({"slot": "a", "stable_port": 9000, "domain": "not a domain"}, "'domain'"),
        ({"surprise": True}, "'surprise'"),
    ],
)
def test_an_invalid_job_names_the_field(change: dict[str, Any], field: str) -> None:
    data = json.loads(job().model_dump_json()) | change

    with pytest.raises(JobError) as raised:
        RunnerJob.from_json(json.dumps(data))

    message = str(raised.value)
    assert field in message and "\n" not in message


def test_undeploy_needs_no_repo_and_ping_needs_no_project() -> None:
    assert job(kind="undeploy", repo_url=None).kind == "undeploy"
    assert (
        RunnerJob.from_json(json.dumps({"request_id": "r", "kind": "ping", "target": SSH_TARGET})).port
        is None
    )


@pytest.mark.parametrize("text", ["", "{nope", "[]", '"a string"'])
def test_a_job_that_is_not_a_json_object_is_refused(text: str) -> None:
    with pytest.raises(JobError, match="invalid job"):
        RunnerJob.from_json(text)


def test_load_job_names_a_missing_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_ANSIBLE_JOB", raising=False)

    with pytest.raises(JobError, match="ORCH_ANSIBLE_JOB is not set"):
        load_job(None, "ORCH_ANSIBLE_JOB")


def test_deploy_root_defaults_to_orch_home_locally_and_opt_over_ssh(tmp_path: Path) -> None:
    local = job(target=LOCAL_TARGET)

    assert local.app_dir() == f"{(tmp_path / 'orch-home').resolve()}/deployments/demo_app"
    assert job().app_dir() == "/opt/orchestrator/demo_app"
    assert job(deploy_root="/srv/apps").app_dir() == "/srv/apps/demo_app"


# -- the private data dir ---------------------------------------------------------------------------


def test_a_local_inventory_uses_this_python_and_no_ssh() -> None:
    host = build_inventory(job(target=LOCAL_TARGET))["all"]["hosts"]["localhost"]

    assert host["ansible_connection"] == "local"
    assert Path(host["ansible_python_interpreter"]).name.startswith("python")
    assert not any(key.startswith("ansible_ssh") or key == "ansible_user" for key in host)


def test_an_ssh_inventory_names_user_port_and_accepts_new_host_keys() -> None:
    host = build_inventory(job())["all"]["hosts"]["srv-1"]

    assert host["ansible_host"] == "203.0.113.7"
    assert (host["ansible_connection"], host["ansible_user"], host["ansible_port"]) == ("ssh", "deploy", 2222)
    assert "StrictHostKeyChecking=accept-new" in host["ansible_ssh_common_args"]
    assert host["ansible_become"] is True


def test_extravars_carry_the_deploy_but_no_secret() -> None:
    variables = build_extravars(job())

    assert variables["app_dir"] == "/opt/orchestrator/demo_app"
    assert (variables["app_port"], variables["ref"], variables["is_local"]) == (8123, "0123abcd", False)
    assert "app_secrets" not in variables and "git_token" not in variables


def test_the_private_data_dir_keeps_secrets_out_of_inventory_and_extravars(tmp_path: Path) -> None:
    resolved = ResolvedSecrets(app={"API_TOKEN": "tok-123456"}, git_token="ghp_abcdef", ssh_key=SSH_KEY)
    root = tmp_path / "pdd"
    root.mkdir(mode=0o700)

    prepared = prepare_private_data_dir(root, job(), resolved, PLAYBOOKS_DIR)

    key_file = root / "env" / "ssh_key"
    assert key_file.read_text() == SSH_KEY + "\n"
    env_file = root / "env" / "app.env"
    for path in (key_file, root / "env" / "extravars", root / "env" / "secret_vars.yml", env_file):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    assert parse_env_file(env_file.read_text()) == {
        "LOG_LEVEL": "INFO",
        "API_TOKEN": "tok-123456",
        "PORT": "8123",
    }
    assert AnsibleLoader((root / "env" / "extravars").read_text()).get_single_data()["app_env_source"] == str(
        env_file
    )
    public = (root / "env" / "extravars").read_text() + (root / "inventory" / "hosts.json").read_text()
    for value in (*resolved.values(), "BEGIN OPENSSH"):
        assert value not in public
        assert value not in prepared.cmdline and value not in json.dumps(prepared.envvars)
    secret_vars = AnsibleLoader((root / "env" / "secret_vars.yml").read_text()).get_single_data()
    assert secret_vars == {"app_secrets": {"API_TOKEN": "tok-123456"}, "git_token": "ghp_abcdef"}
    assert prepared.cmdline == f"-e @{root / 'env' / 'secret_vars.yml'}"
    assert (root / "project" / "deploy.yml").is_file()
    assert prepared.envvars["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_a_ping_of_the_local_machine_answers_its_facts_without_a_playbook(tmp_path: Path) -> None:
    ping = RunnerJob.model_validate({"request_id": "ping-1", "kind": "ping", "target": LOCAL_TARGET})

    outcome = run_job(ping, LocalSecrets(tmp_path / "secrets.json"), playbooks_dir=tmp_path / "none")

    assert (outcome.status, outcome.reachable, outcome.exit_code) == ("success", True, None)
    assert outcome.facts["python"] == platform.python_version()
    assert outcome.facts["kernel"] == platform.release() and outcome.facts["os"]


def test_variables_round_trip_through_ansible_yaml_untemplated() -> None:
    value = {
        "plain": "x {{ lookup('pipe', 'id') }} \"quoted\" back\\slash\nnew line",
        "unicode": "é \u0085 \u2028 😀",
        "empty": "",
        "numbers": [1, 2.5, True, None],
        "nested": {"K": "{% raw %}"},
    }

    loaded = AnsibleLoader(to_unsafe_yaml(value)).get_single_data()

    assert loaded == value


# -- secrets ----------------------------------------------------------------------------------------


def test_secrets_resolve_by_reference(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path / "secrets.json")
    store.put("secret://projects/p1/API_TOKEN", "tok-123456")
    store.put("secret://github/token", "ghp_abcdef")
    store.put("secret://servers/srv-1/ssh_key", SSH_KEY)

    resolved = resolve_secrets(
        job(
            github_token_ref="secret://github/token",
            target=SSH_TARGET | {"ssh_key_ref": "secret://servers/srv-1/ssh_key"},
        ),
        store,
        github_token_ref="secret://github/token",
    )

    assert resolved == ResolvedSecrets({"API_TOKEN": "tok-123456"}, "ghp_abcdef", SSH_KEY)


def test_the_token_is_read_only_for_https_clones_and_the_key_only_for_ssh(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path / "secrets.json")
    store.put("secret://projects/p1/API_TOKEN", "tok-123456")
    local = job(
        target=LOCAL_TARGET | {"ssh_key_ref": "secret://absent/key"},
        repo_url="/srv/git/demo.git",
        github_token_ref="secret://absent/token",
    )

    assert resolve_secrets(local, store) == ResolvedSecrets({"API_TOKEN": "tok-123456"}, "", None)


def test_a_missing_secret_names_its_reference(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path / "secrets.json")

    with pytest.raises(SecretProblem) as raised:
        resolve_secrets(job(), store)

    assert (
        str(raised.value)
        == "secret reference secret://projects/p1/API_TOKEN (secret_refs.API_TOKEN) is missing or not this job's to use"
    )


def test_tails_are_redacted_and_bounded() -> None:
    redactor = Redactor(["tok-123456", SSH_KEY])
    stdout = "x" * 10_000 + "\nheader tok-123456\n" + json.dumps({"key": SSH_KEY}) + "\n" + SSH_KEY

    tails = redacted_tails(stdout, "", redactor)

    assert tails["stderr_tail"] is None
    tail = tails["stdout_tail"]
    assert tail is not None
    assert len(tail) <= TAIL_CHARS
    assert "tok-123456" not in tail and "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ" not in tail
    assert tail.endswith("***")


def test_a_secret_cut_by_the_tail_boundary_is_still_masked() -> None:
    secret = "s3cret-value-0123456789"
    stdout = "x" * 100 + secret + "y" * (TAIL_CHARS - 10)

    tail = redacted_tails(stdout, "", Redactor([secret]))["stdout_tail"]

    assert tail is not None and "0123456789" not in tail


# -- events -------------------------------------------------------------------------------------------


def event(name: str, task: str = "Do it", ignore_errors: bool | None = None, **res: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"task": task, "host": "srv-1", "res": res}
    if ignore_errors is not None:
        data["ignore_errors"] = ignore_errors
    return {"event": name, "event_data": data}


def test_the_last_real_failure_is_the_error() -> None:
    report = read_events(
        [
            event("runner_on_ok", changed=True),
            event("runner_on_failed", task="Probe", ignore_errors=True, msg="ignored"),
            event("runner_on_failed", task="Check out the requested ref", msg="Failed to checkout\n  main"),
        ]
    )

    assert report.error == "task 'Check out the requested ref' failed: Failed to checkout main"
    assert report.reachable is True


def test_the_playbooks_own_report_is_used_as_is_and_stderr_explains_a_bare_rc() -> None:
    assert read_events(
        [event("runner_on_failed", task="Report the failed health check", msg="health x")]
    ).error == ("health x")
    failed_command = event("runner_on_failed", msg="non-zero return code", stderr="boom\nNo such file")
    assert read_events([failed_command]).error == "task 'Do it' failed: No such file"


def test_an_unreachable_host_is_reported_and_facts_are_collected() -> None:
    unreachable = read_events([event("runner_on_unreachable", msg="ssh: connect to host port 22: refused")])
    with_facts = read_events(
        [event("runner_on_ok", ansible_facts={"orch_facts": {"os": "Debian 12", "x": ""}})]
    )

    assert unreachable.reachable is False
    assert unreachable.error == "srv-1 is unreachable: ssh: connect to host port 22: refused"
    assert with_facts.facts == {"os": "Debian 12"}


# -- results ------------------------------------------------------------------------------------------


def outcome(status: str = "success", **fields: Any) -> RunnerOutcome:
    base: dict[str, Any] = {"request_id": "req-1", "kind": "deploy", "status": status, "duration_ms": 1234}
    return RunnerOutcome.model_validate(base | fields)


def test_a_successful_deploy_result_has_urls_and_no_output() -> None:
    done = outcome(
        exit_code=0,
        stdout_tail="PLAY RECAP",
        deployed_url="http://203.0.113.7:8123",
        health_url="http://203.0.113.7:8123/health",
    )

    result = result_for(job(), done)

    assert result_queue(job()) == ANSIBLE_DEPLOY_RESULTS
    assert isinstance(result, AnsibleDeployResult)
    assert (result.request_id, result.status, result.job_type, result.project_id) == (
        "req-1",
        "success",
        "deploy",
        "p1",
    )
    assert (result.deployed_url, result.health_url) == (
        "http://203.0.113.7:8123",
        "http://203.0.113.7:8123/health",
    )
    assert (result.server_ip, result.port, result.ref, result.duration_ms) == (
        "203.0.113.7",
        8123,
        "0123abcd",
        1234,
    )
    assert result.stdout is None and result.exit_code is None
    parsed = parse_message(ANSIBLE_DEPLOY_RESULTS, result.model_dump_json())
    assert parsed.model_extra["correlation_id"] == "corr-1"


def test_a_failed_undeploy_result_carries_the_output() -> None:
    undeploy = job(kind="undeploy", repo_url=None)
    failed = outcome(
        "failed", kind="undeploy", exit_code=2, error="task failed", stdout_tail="out", stderr_tail="err"
    )

    result = result_for(undeploy, failed)

    assert isinstance(result, AnsibleDeployResult)
    assert (result.job_type, result.status, result.error, result.ref) == (
        "undeploy",
        "failed",
        "task failed",
        None,
    )
    assert (result.stdout, result.stderr, result.exit_code) == ("out", "err", 2)


@pytest.mark.parametrize("kind", ["ping", "provision"])
def test_ping_and_provision_results_go_to_the_provisioner(kind: str) -> None:
    server_job = RunnerJob.model_validate({"request_id": "req-2", "kind": kind, "target": SSH_TARGET})
    ok = outcome(kind=kind, facts={"os": "Debian 12"}, reachable=True)
    unreachable = outcome(
        "failed", kind=kind, error="srv-1 is unreachable: timeout", reachable=False, exit_code=4
    )

    good, bad = result_for(server_job, ok), result_for(server_job, unreachable)

    assert result_queue(server_job) == PROVISIONER_RESULTS
    assert isinstance(good, ProvisionerResult) and isinstance(bad, ProvisionerResult)
    assert (good.server_handle, good.server_ip, good.reachable, good.facts) == (
        "srv-1",
        "203.0.113.7",
        True,
        {"os": "Debian 12"},
    )
    assert (bad.status, bad.reachable, bad.errors, bad.exit_code) == (
        "failed",
        False,
        ["srv-1 is unreachable: timeout"],
        4,
    )
    assert parse_message(PROVISIONER_RESULTS, bad.model_dump_json()).request_id == "req-2"


# -- the supervisor's env file ------------------------------------------------------------------------


def test_the_env_file_format_reads_back_quotes_dollars_and_new_lines() -> None:
    text = (
        "# comment\n"
        'PLAIN="value"\n'
        'TRICKY="a \\"quoted\\" \\$HOME \\`cmd\\` back\\\\slash {{ x }}"\n'
        'MULTI="line one\nline two"\n'
        "BARE=unquoted value\n"
        'EMPTY=""\n'
    )

    assert parse_env_file(text) == {
        "PLAIN": "value",
        "TRICKY": 'a "quoted" $HOME `cmd` back\\slash {{ x }}',
        "MULTI": "line one\nline two",
        "BARE": "unquoted value",
        "EMPTY": "",
    }


def render_template(name: str, variables: dict[str, Any]) -> str:
    """As the template module renders (file templates keep their backslashes), with job values unsafe."""
    templar = Templar(
        loader=DataLoader(), variables=AnsibleLoader(to_unsafe_yaml(variables)).get_single_data()
    )
    source = trust_as_template((PLAYBOOKS_DIR / "templates" / name).read_text())
    return str(templar.template(source, escape_backslashes=False))


def test_the_env_file_the_runner_renders_is_what_the_supervisor_reads_back() -> None:
    tricky = 'x "q" $HOME `c` back\\slash {{ 1 }} %s\nline two'
    deploy = job(env={"TRICKY": tricky, "LOG_LEVEL": "INFO"}, secret_refs={})

    rendered = render_env_file(deploy, ResolvedSecrets(app={"API_TOKEN": 'tok-$1-"x"'}))

    assert parse_env_file(rendered) == {
        "TRICKY": tricky,
        "LOG_LEVEL": "INFO",
        "API_TOKEN": 'tok-$1-"x"',
        "PORT": "8123",
    }


def test_the_systemd_unit_escapes_the_run_command_for_systemd() -> None:
    variables = {
        "project_name": "demo_app",
        "service_user": "orchestrator",
        "src_dir": "/opt/orchestrator/demo_app/src",
        "venv_dir": "/opt/orchestrator/demo_app/venv",
        "env_file": "/opt/orchestrator/demo_app/app.env",
        "log_file": "/opt/orchestrator/demo_app/service.log",
        "run_command": 'python3 -m app.server --name "x" $PORT 100%',
    }

    unit = render_template("app.service.j2", variables)

    assert 'ExecStart=/bin/sh -c "python3 -m app.server --name \\"x\\" $$PORT 100%%"' in unit.splitlines()
    assert "EnvironmentFile=/opt/orchestrator/demo_app/app.env" in unit.splitlines()
    assert "User=orchestrator" in unit.splitlines()


# -- blue/green slots --------------------------------------------------------------------------------


def test_a_slot_job_lives_in_its_slot_and_answers_on_the_stable_address() -> None:
    local = job(target=LOCAL_TARGET, slot="b", stable_port=9000, release=3, deploy_root="/srv/apps")
    proxied = job(slot="a", stable_port=9000, domain="Shop.Example.com")

    assert local.slot_dir() == "/srv/apps/demo_app/slots/b"
    assert local.service_log_path() == "/srv/apps/demo_app/slots/b/service.log"
    assert local.deployed_url == "http://127.0.0.1:9000"
    assert local.health_url == "http://127.0.0.1:9000/health"
    assert proxied.domain == "shop.example.com" and proxied.deployed_url == "https://shop.example.com"
    assert (
        job().slot_dir() == "/opt/orchestrator/demo_app" and job().deployed_url == "http://203.0.113.7:8123"
    )


def test_extravars_name_the_slot_the_stable_port_and_the_switch_variables() -> None:
    variables = build_extravars(job(slot="a", stable_port=9000, domain="shop.example.com", release=2))
    in_place = build_extravars(job())

    assert variables["slot"] == "a" and variables["slot_port"] == 8123 and variables["stable_port"] == 9000
    assert variables["slot_dir"] == "/opt/orchestrator/demo_app/slots/a"
    assert variables["domain"] == "shop.example.com" and variables["release"] == 2
    assert variables["listen_host"] == "127.0.0.1" and variables["drain_s"] > 0
    assert in_place["slot"] == "" and in_place["slot_dir"] == "/opt/orchestrator/demo_app"


def test_a_slot_deploy_result_says_whether_the_stable_address_switched() -> None:
    deploy = job(slot="b", stable_port=9000, release=4)
    failed = RunnerOutcome(
        request_id="req-1", kind="deploy", status="failed", duration_ms=5, switched=False, error="boom"
    )

    result = result_for(deploy, failed)

    assert isinstance(result, AnsibleDeployResult)
    assert (result.slot, result.stable_port, result.release, result.switched) == ("b", 9000, 4, False)
    parsed = parse_message(ANSIBLE_DEPLOY_RESULTS, result.model_dump_json())
    assert isinstance(parsed, AnsibleDeployResult) and (parsed.slot, parsed.switched) == ("b", False)


def test_the_cause_is_the_services_own_last_lines_not_the_supervisors() -> None:
    log = "\n".join(
        [
            "2026-12-03 19:00:00 supervisor[12]: started service (pid 13): python3 -m app.server",
            "Traceback (most recent call last):",
            '  File "/srv/app/server.py", line 1',
            "SyntaxError: invalid syntax",
            "2026-12-03 19:00:01 supervisor[12]: service exited with code 1 after 0.1 s",
        ]
    )

    assert service_cause(log) == (
        'Traceback (most recent call last): | File "/srv/app/server.py", line 1 | SyntaxError: invalid syntax'
    )
    assert (
        service_cause("2026-12-03 19:00:00 supervisor[12]: stopped\n") is None and service_cause(None) is None
    )


def test_the_upstream_file_names_a_port_or_host_and_port(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    assert read_upstream(upstream) is None
    upstream.write_text("127.0.0.1:8124\n")
    assert read_upstream(upstream) == ("127.0.0.1", 8124)
    upstream.write_text("8125")
    assert read_upstream(upstream) == ("127.0.0.1", 8125)
    upstream.write_text("garbage")
    assert read_upstream(upstream) is None


# -- packaging and lint -----------------------------------------------------------------------------


def test_every_playbook_file_ships_in_the_wheel() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in PLAYBOOKS_DIR.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        package = ".".join(path.parent.relative_to(ROOT).parts)
        patterns = package_data.get("*", []) + package_data.get(package, [])
        shipped = path.suffix == ".py" or any(fnmatch.fnmatch(path.name, p) for p in patterns)
        assert shipped, f"{path.relative_to(ROOT)} matches no package-data pattern of {package}"


def test_the_playbooks_pass_the_syntax_check(tmp_path: Path) -> None:
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    assert playbook is not None, "ansible-core is a dependency of the runner"

    done = subprocess.run(
        [
            playbook,
            "--syntax-check",
            "-i",
            "localhost,",
            *sorted(p.name for p in PLAYBOOKS_DIR.glob("*.yml")),
        ],
        cwd=PLAYBOOKS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
    )

    assert done.returncode == 0, done.stdout + done.stderr


def _ansible_lint() -> str | None:
    """ansible-lint from PATH or the throwaway venv the runner's author used (/tmp/ansible-lint-venv)."""
    return shutil.which("ansible-lint") or shutil.which("ansible-lint", path="/tmp/ansible-lint-venv/bin")


def test_the_playbooks_pass_ansible_lint() -> None:
    lint = _ansible_lint()
    if lint is None:
        pytest.skip("ansible-lint is not installed (pip install ansible-lint into a venv on PATH to run it)")
    done = subprocess.run(
        [
            lint,
            "--offline",
            "--nocolor",
            "--profile",
            "production",
            *sorted(p.name for p in PLAYBOOKS_DIR.glob("*.yml")),
        ],
        cwd=PLAYBOOKS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_LINT_NODEPS": "1", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
