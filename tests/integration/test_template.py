"""The bundled default Copier template: rendered for real, its own tests run with `make`, the service
started the way a deploy starts it, and a git copy of the template pinned with `vcs_ref`."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from functions.scaffolder.render import (
    DEFAULT_TEMPLATE,
    TemplateRenderError,
    read_env_contract,
    render_project,
)
from shared.env_contract import (
    CONTRACT_FILE,
    EnvContractError,
    EnvContractMissingError,
    load_env_contract,
    parse_env_contract,
)

VARIANTS = {"backend": ["backend"], "telegram": ["backend", "telegram"]}
COMMON_FILES = [
    ".copier-answers.yml",
    ".gitignore",
    "Makefile",
    "README.md",
    "app/__init__.py",
    "app/features/__init__.py",
    "app/server.py",
    "orchestrator.env.json",
    "tests/test_server.py",
]
TELEGRAM_FILES = ["app/telegram_bot.py", "tests/test_telegram_bot.py"]
# Settings of the host must not leak into the rendered project's runs.
LEAKY_ENV = ("PORT", "HOST", "LOG_LEVEL", "PYTHON", "TELEGRAM_BOT_TOKEN", "TELEGRAM_API_BASE")
GIT_AUTHOR = ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_ENV}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *GIT_AUTHOR, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One rendered project per variant, shared by the tests of this module (they only read it)."""
    variant: str = request.param
    destination = tmp_path_factory.mktemp(f"rendered-{variant}") / "project"
    render_project(
        destination, f"demo-{variant}", VARIANTS[variant], description="A demo service.", port=8181
    )
    return variant, destination


def test_renders_the_expected_files_and_the_answers(tmp_path: Path) -> None:
    # given / when
    backend = render_project(tmp_path / "a", "plain", ["backend"])
    telegram = render_project(tmp_path / "b", "chatty", ["telegram"], description="Talks.")

    # then
    assert backend == COMMON_FILES
    assert telegram == sorted(COMMON_FILES + TELEGRAM_FILES)
    answers = yaml.safe_load((tmp_path / "b" / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "chatty"
    assert answers["description"] == "Talks."
    assert answers["modules"] == ["backend", "telegram"]  # backend is always part of the project
    assert answers["port"] == 8080
    assert Path(answers["_src_path"]) == DEFAULT_TEMPLATE


@needs_make
def test_the_rendered_projects_own_tests_pass(rendered: tuple[str, Path]) -> None:
    variant, project = rendered

    result = subprocess.run(
        ["make", "-C", str(project), "test"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in output
    assert ("test_telegram_bot" in output) == (variant == "telegram")


def test_the_env_contract_lists_the_telegram_secret_only_with_the_module(rendered: tuple[str, Path]) -> None:
    variant, project = rendered

    contract = read_env_contract(project)

    assert contract["port_variable"] == "PORT"
    assert contract["default_port"] == 8181
    assert contract["health_path"] == "/health"
    assert contract["run"] == "python3 -m app.server"
    assert contract["test"] == "make test"
    assert {"PORT", "HOST"} <= {variable["name"] for variable in contract["variables"]}
    if variant == "telegram":
        assert contract["secrets"] == [
            {
                "name": "TELEGRAM_BOT_TOKEN",
                "required": True,
                "description": contract["secrets"][0]["description"],
            }
        ]
        assert load_env_contract(project).required_secrets == ["TELEGRAM_BOT_TOKEN"]
    else:
        assert contract["secrets"] == []
    json.dumps(contract)  # JSON-ready, e.g. for graph state


def test_the_run_command_answers_health_and_stops_on_sigterm(rendered: tuple[str, Path]) -> None:
    """Started as a deploy starts it: the contract's `run` command with its port variable set."""
    variant, project = rendered
    contract = read_env_contract(project)
    port = free_port()
    env = clean_env(**{contract["port_variable"]: str(port)})
    canary = "424242:canary-token-never-logged"
    if variant == "telegram":
        # The bot is on but its API is unreachable: the service must stay healthy and never log the token.
        env.update(TELEGRAM_BOT_TOKEN=canary, TELEGRAM_API_BASE=f"http://127.0.0.1:{free_port()}")
    process = subprocess.Popen(
        shlex.split(contract["run"]),
        cwd=project,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        status, body = wait_for_health(f"http://127.0.0.1:{port}{contract['health_path']}", process)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert (status, body) == (200, {"status": "ok"})
    assert process.returncode == 0, output
    assert f"listening on http://127.0.0.1:{port}" in output
    assert "SIGTERM" in output
    assert "stopped" in output
    assert canary not in output


def wait_for_health(url: str, process: subprocess.Popen[str], within_s: float = 5.0) -> tuple[int, object]:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                pytest.fail(f"the service exited with {process.returncode}: {process.communicate()[0]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer from {url} within {within_s} s")
            time.sleep(0.05)


def test_the_rendered_python_is_lint_clean(rendered: tuple[str, Path]) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    _, project = rendered
    # The project's own rule set, with no config file: the rendered project ships none.
    common = ["--isolated", "--line-length", "110", "--target-version", "py39"]
    rules = [
        "--select",
        "E,F,W,I,B,UP,S,RUF",
        "--ignore",
        "S101",
        "--config",
        'lint.per-file-ignores = {"tests/*" = ["S105", "S310"]}',
    ]

    check = subprocess.run(
        [ruff, "check", *common, *rules, "."], cwd=project, capture_output=True, text=True, check=False
    )
    formatted = subprocess.run(
        [ruff, "format", "--check", *common, "."], cwd=project, capture_output=True, text=True, check=False
    )

    assert check.returncode == 0, check.stdout + check.stderr
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"modules": ["backend", "mobile", "ai"]},
            "unknown module(s): ai, mobile; known modules: backend, telegram",
        ),
        ({"project_name": "Not A Slug"}, "is not a slug"),
        ({"project_name": "trailing-"}, "is not a slug"),
        ({"port": 0}, "port must be"),
        ({"port": 70000}, "port must be"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"project_name": "demo", "modules": ["backend"], **kwargs}

    with pytest.raises(ValueError, match=re.escape(message)):
        render_project(tmp_path / "out", **arguments)  # type: ignore[arg-type]

    assert not (tmp_path / "out").exists()


def test_a_destination_with_files_is_refused_but_a_bare_git_dir_is_fine(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"is not empty: notes\.txt"):
        render_project(tmp_path / "busy", "demo", ["backend"])

    clone = tmp_path / "clone"
    git(tmp_path, "init", "-q", str(clone))
    files = render_project(clone, "demo", ["backend"])
    assert files == COMMON_FILES  # .git is not reported as written


def test_a_git_template_is_pinned_with_vcs_ref(tmp_path: Path) -> None:
    # given: the template in its own git repository, tagged v1, then changed and tagged v2
    template = tmp_path / "template-repo"
    shutil.copytree(DEFAULT_TEMPLATE, template)
    git(template, "init", "-q", "-b", "main")
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "v1")
    git(template, "tag", "v1")
    v1_sha = git(template, "rev-parse", "HEAD")
    readme = template / "project" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nChanged in v2.\n")
    git(template, "commit", "-q", "-am", "v2")
    git(template, "tag", "v2")

    # when
    files = render_project(tmp_path / "out", "pinned", ["telegram"], template=str(template), vcs_ref="v1")

    # then
    answers = yaml.safe_load((tmp_path / "out" / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v1"
    assert answers["_src_path"] == str(template)
    assert "Changed in v2." not in (tmp_path / "out" / "README.md").read_text()
    assert "app/telegram_bot.py" in files
    assert v1_sha != git(template, "rev-parse", "HEAD")


def test_a_template_that_cannot_be_fetched_fails_without_leaking_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    url = f"http://user:s3cret-token@127.0.0.1:{free_port()}/template.git"

    with pytest.raises(TemplateRenderError) as caught:
        render_project(tmp_path / "out", "demo", ["backend"], template=url, vcs_ref="v1")

    assert "s3cret-token" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


# -- the env contract's validation --------------------------------------------------------------------


def minimal_contract(**changes: object) -> dict[str, object]:
    contract: dict[str, object] = {
        "port_variable": "PORT",
        "default_port": 8080,
        "health_path": "/health",
        "run": "python3 -m app.server",
        "test": "make test",
    }
    contract.update(changes)
    return contract


def test_a_minimal_contract_gets_defaults() -> None:
    contract = parse_env_contract(json.dumps(minimal_contract()))

    assert contract.schema_version == 1
    assert contract.variables == [] and contract.secrets == []
    assert contract.required_secrets == [] and contract.required_variables == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must hold a JSON object, not list"),
        (
            json.dumps({k: v for k, v in minimal_contract().items() if k != "health_path"}),
            "health_path: Field required",
        ),
        (json.dumps(minimal_contract(health_path="health")), "health_path: String should match pattern"),
        (
            json.dumps(minimal_contract(default_port=0)),
            "default_port: Input should be greater than or equal to 1",
        ),
        (json.dumps(minimal_contract(secret=[])), "secret: Extra inputs are not permitted"),
        (
            json.dumps(minimal_contract(secrets=[{"name": "bot-token"}])),
            "secrets.0.name: String should match pattern",
        ),
        (json.dumps(minimal_contract(schema_version=2)), "schema_version: Input should be 1"),
        (
            json.dumps(minimal_contract(variables=[{"name": "TOKEN"}], secrets=[{"name": "TOKEN"}])),
            "TOKEN is declared more than once",
        ),
    ],
)
def test_an_invalid_contract_is_refused_naming_the_problem(raw: str, message: str) -> None:
    with pytest.raises(EnvContractError) as caught:
        parse_env_contract(raw)

    assert message in str(caught.value)
    assert str(caught.value).startswith(CONTRACT_FILE)
    assert isinstance(caught.value, ValueError)


def test_a_missing_contract_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(EnvContractMissingError, match=f"{CONTRACT_FILE} not found"):
        read_env_contract(tmp_path)
