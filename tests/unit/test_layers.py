"""Lambda layers: the requirement sets, what each function imports, the build command and the synth fallback.

No network: the real `pip install` is not run here. What a function imports is checked by importing
its handler in a fresh interpreter that can see only its layers' packages (their dependency closure
as installed in this environment), what the Lambda runtime ships, the standard library and our code.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from functions.api.handler import ROUTERS as API_ROUTERS
from infra_cdk import constants
from infra_cdk.layer_assets import PLACEHOLDER_README, layer_asset, placeholder_text
from layers import build
from tests.layer_closure import allowed_modules, closure

HEAVY = ("langgraph", "aiogram", "copier", "ansible", "ansible-core", "ansible-runner")

FUNCTION_IMPORTS: dict[str, tuple[str, ...]] = {
    # the handler, and what it imports later, on its first event
    constants.API_FUNCTION: (
        "functions.api.handler",
        *(f"functions.api.routers.{name}" for name in API_ROUTERS),  # included per request path
        "aws_lambda_powertools.event_handler.openapi.models",  # /openapi.json and /docs
        "aws_lambda_powertools.event_handler.openapi.swagger_ui",
        "shared.queues.sqs",
        "shared.secrets.aws",
        "pg8000",
        "sqlalchemy.dialects.postgresql.pg8000",
        "aws_xray_sdk.core",  # the tracer, at the first invocation
    ),
    constants.DEPLOY_HOOK_FUNCTION: (
        "functions.migrations.handler",
        "functions.api.migrate",
        "alembic.command",
        "alembic.config",
        "alembic.script",
        "functions.api.deps",
        "pg8000",
        "sqlalchemy.dialects.postgresql.pg8000",
    ),
    constants.WORKER_MANAGER_FUNCTION: (
        "functions.worker_manager.handler",
        "shared.workers.fargate",
        "shared.queues.sqs",
        "shared.secrets.aws",
        "shared.service_client",
    ),
    constants.WORKER_EVENTS_FUNCTION: (
        "functions.worker_manager.handler",
        "shared.workers.ecs_events",
        "shared.workers.fargate",
        "shared.service_client",
    ),
    constants.SCHEDULER_FUNCTION: (
        "functions.scheduler.handler",
        "functions.scheduler.jobs",
        "shared.service_client",
        "shared.queues.sqs",
    ),
    constants.SCAFFOLDER_FUNCTION: (
        "functions.scaffolder.handler",
        "functions.scaffolder.logic",
        "functions.scaffolder.render",
        "copier",
        "shared.repos.github",
        "shared.service_client",
        "shared.queues.sqs",
    ),
    constants.ENGINEERING_FUNCTION: (
        "functions.engineering.handler",
        "functions.engineering.graph",
        "shared.graphs.checkpoint",
        "langgraph_checkpoint_aws",
        "shared.repos.github",
        "shared.service_client",
        "shared.queues.sqs",
    ),
    constants.DEPLOY_FUNCTION: (
        "functions.deploy.handler",
        "functions.deploy.graph",
        "functions.deploy.logic",
        "shared.graphs.checkpoint",
        "langgraph_checkpoint_aws",
        "shared.repos.factory",
        "shared.repos.github",
        "shared.service_client",
        "shared.queues.sqs",
        "httpx",
    ),
    constants.INFRA_FUNCTION: (
        "functions.infra.handler",
        "functions.infra.launch",
        "functions.infra.logic",
        "worker_image.ansible_runner.job",
        "worker_image.ansible_runner.results",
        "shared.service_client",
        "shared.queues.sqs",
        "shared.secrets.aws",
    ),
    constants.INFRA_EVENTS_FUNCTION: (
        "functions.infra.handler",
        "functions.infra.launch",
        "worker_image.ansible_runner.results",
        "shared.service_client",
        "shared.queues.sqs",
    ),
    constants.TELEGRAM_BOT_FUNCTION: (
        "functions.telegram_bot.handler",
        "functions.telegram_bot.bot",
        "shared.telegram.client",
        "shared.idempotency",
        "shared.queues.factory",
        "shared.queues.sqs",
        "shared.secrets.aws",
        "shared.service_client",
    ),
    constants.TELEGRAM_WEBHOOK_FUNCTION: (
        "functions.telegram_webhook.handler",
        "shared.telegram.intake",
        "shared.telegram.settings",
        "shared.idempotency",
        "shared.queues.factory",
        "shared.queues.sqs",
        "shared.secrets.aws",
    ),
    constants.PRODUCT_OWNER_FUNCTION: (
        "functions.product_owner.handler",
        "functions.product_owner.logic",
        "functions.product_owner.chat",
        "shared.idempotency",
        "shared.queues.factory",
        "shared.queues.sqs",
        "shared.secrets.aws",
        "shared.service_client",
        "httpx",
    ),
    constants.TELEGRAM_NOTIFIER_FUNCTION: (
        "functions.telegram_notifier.handler",
        "functions.telegram_notifier.notifier",
        "shared.telegram.client",
        "shared.secrets.aws",
        "shared.service_client",
        "httpx",
    ),
}


def _layer_requirements(function: str) -> list[str]:
    return [r for layer in constants.FUNCTION_LAYERS[function] for r in build.requirements(layer)]


_BLOCKER = """
import importlib, importlib.abc, json, sys
allowed = set(json.loads(sys.argv[1]))
class OnlyTheLayer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"No module named {name!r}: not in this function's layers", name=name)
sys.meta_path.insert(0, OnlyTheLayer())
for module in json.loads(sys.argv[2]):
    importlib.import_module(module)
print("ok")
"""


def _import_with_only(requirements: list[str], modules: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    allowed = allowed_modules(requirements)
    path = [str(build.REPO_ROOT)]
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path[:0] = {path!r}\n" + _BLOCKER,
            json.dumps(sorted(allowed)),
            json.dumps(modules),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("function", sorted(FUNCTION_IMPORTS))
def test_each_function_imports_only_what_its_layers_provide(function: str) -> None:
    # given only the layers' closure, the runtime's boto3 and our own packages
    # when its handler and its lazy imports are imported
    result = _import_with_only(_layer_requirements(function), FUNCTION_IMPORTS[function])

    # then nothing outside the layers was needed
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_import_check_fails_when_a_layer_lacks_a_package() -> None:
    # the negative control: the API's routes with only the base layer have no SQLAlchemy
    result = _import_with_only(
        build.requirements("base"), ("functions.api.handler", "functions.api.routers.projects")
    )
    assert result.returncode != 0
    assert "not in this function's layers" in result.stderr and "sqlalchemy" in result.stderr


def test_every_function_has_layers_and_an_import_check() -> None:
    assert set(FUNCTION_IMPORTS) == set(constants.FUNCTION_LAYERS) == set(constants.FUNCTION_MEMORY_MB)


def test_the_api_layers_carry_no_heavy_library() -> None:
    for function in (constants.API_FUNCTION, constants.DEPLOY_HOOK_FUNCTION):
        distributions = closure(_layer_requirements(function))
        assert not distributions & {canonicalize_name(h) for h in HEAVY}, function
        assert "aiogram" not in distributions


def test_the_bot_layer_carries_aiogram_and_the_webhook_does_not() -> None:
    assert "bot" in build.built_layer_names()  # `python -m layers.build` builds every layers/*.txt
    assert constants.FUNCTION_LAYERS[constants.TELEGRAM_BOT_FUNCTION] == ("bot",)
    assert "aiogram" in closure(_layer_requirements(constants.TELEGRAM_BOT_FUNCTION))
    webhook = closure(_layer_requirements(constants.TELEGRAM_WEBHOOK_FUNCTION))
    assert not webhook & {canonicalize_name(h) for h in HEAVY}
    # the webhook's own imports pass without aiogram (parametrized test above); the bot's do not
    blocked = _import_with_only(
        _layer_requirements(constants.TELEGRAM_WEBHOOK_FUNCTION), ("functions.telegram_bot.handler",)
    )
    assert blocked.returncode != 0 and "aiogram" in blocked.stderr


def test_every_layer_requirement_is_pinned_and_the_pin_satisfies_pyproject() -> None:
    pins = {canonicalize_name(Requirement(r).name): Requirement(r) for r in _lines(build.CONSTRAINTS)}
    for pin in pins.values():
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
    ranges = _pyproject_ranges()
    for layer in build.built_layer_names():
        for line in build.requirements(layer):
            name = canonicalize_name(Requirement(line).name)
            assert name in pins, f"{layer}: {name} has no pin in layers/constraints.txt"
    for name, pin in pins.items():
        version = next(iter(pin.specifier)).version
        if name in ranges:
            assert ranges[name].contains(version, prereleases=True), (
                f"{name}=={version} outside pyproject {ranges[name]}"
            )


def _lines(path: Path) -> list[str]:
    return [
        line.split("#", 1)[0].strip()
        for line in path.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]


def _pyproject_ranges() -> dict[str, SpecifierSet]:
    import tomllib

    project = tomllib.loads((build.REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    ranges: dict[str, SpecifierSet] = {}
    for line in lines:
        requirement = Requirement(line)
        if requirement.specifier:
            ranges[canonicalize_name(requirement.name)] = requirement.specifier
    return ranges


def test_includes_are_followed_and_the_digest_covers_them() -> None:
    files = [p.name for p in build.requirement_files("graph")]
    assert files == ["graph.txt", "base.txt"]
    assert {"langgraph", "pydantic"} <= {
        canonicalize_name(Requirement(r).name) for r in build.requirements("graph")
    }
    assert build.requirements_digest("graph") != build.requirements_digest("base")


def test_pip_command_targets_the_lambda_runtime_without_docker(tmp_path: Path) -> None:
    command = build.pip_command("api", tmp_path / "python")
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64" in joined
    assert "--implementation cp" in joined and "--python-version 3.12" in joined
    assert "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == str(tmp_path / "python")
    assert command[command.index("-c") + 1] == str(build.CONSTRAINTS)
    assert build.PYTHON_VERSION == "3.12" and constants.LAMBDA_RUNTIME == "PYTHON_3_12"


def test_prune_removes_what_the_runtime_ships(tmp_path: Path) -> None:
    for name in (
        "boto3",
        "botocore",
        "boto3-1.40.0.dist-info",
        "bin",
        "pydantic",
        "pydantic-2.13.5.dist-info",
    ):
        (tmp_path / name).mkdir()
    build.prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pydantic", "pydantic-2.13.5.dist-info"]


# -- what the CDK app ships ----------------------------------------------------------------------


def _fake_build(out: Path, name: str, digest: str | None) -> None:
    site = out / name / "python" / "pkg"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("VALUE = 1\n" * 100)
    if digest is not None:
        (out / f"{name}.json").write_text(json.dumps({"requirements_sha256": digest}))


def test_a_current_build_is_shipped(tmp_path: Path) -> None:
    _fake_build(tmp_path, "api", build.requirements_digest("api"))
    asset = layer_asset("api", tmp_path)
    assert (asset.state, asset.path, asset.problem) == ("built", tmp_path / "api", None)


def test_a_build_from_other_requirements_is_stale(tmp_path: Path) -> None:
    _fake_build(tmp_path, "api", "0" * 64)
    asset = layer_asset("api", tmp_path)
    assert asset.state == "stale" and "python -m layers.build api" in (asset.problem or "")


def test_a_missing_build_becomes_a_placeholder_holding_only_a_readme(tmp_path: Path) -> None:
    asset = layer_asset("graph", tmp_path)
    assert asset.state == "missing" and not asset.usable
    assert [p.name for p in asset.path.iterdir()] == [PLACEHOLDER_README]
    text = (asset.path / PLACEHOLDER_README).read_text()
    assert text == placeholder_text("graph") and "NOT BUILT" in text and "python -m layers.build" in text
    # same content, same directory: the asset hash does not change between synths
    assert layer_asset("graph", tmp_path).path == asset.path


def test_every_layer_is_a_requirement_set_and_the_deploy_hook_ships_in_the_code_asset() -> None:
    """No layer holds source: the deploy hook is a function package like the others (functions.migrations)."""
    used = {layer for layers in constants.FUNCTION_LAYERS.values() for layer in layers}
    assert used <= set(build.built_layer_names())
    hook_module = constants.DEPLOY_HOOK_HANDLER.rpartition(".")[0]
    assert hook_module.partition(".")[0] in constants.CODE_ASSET_DIRS
    assert (build.REPO_ROOT / (hook_module.replace(".", "/") + ".py")).is_file()


def test_sizes_report_every_layer_and_function_and_flags_a_missing_layer(tmp_path: Path) -> None:
    for name in ("api", "base", "graph"):
        _fake_build(tmp_path, name, build.requirements_digest(name))
    stream = io.StringIO()

    ok = build.report_sizes(tmp_path, stream=stream)

    report = stream.getvalue()
    assert not ok  # `scaffold` is not built
    assert "not built: python -m layers.build scaffold" in report
    for function in constants.FUNCTION_LAYERS:
        assert f"\n{function} " in report, function
    assert "code asset:" in report


def test_sizes_flag_a_function_over_the_zipped_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in build.built_layer_names():
        _fake_build(tmp_path, name, build.requirements_digest(name))
    stream = io.StringIO()
    assert build.report_sizes(tmp_path, stream=stream), stream.getvalue()
    monkeypatch.setattr(build, "ZIPPED_BUDGET", 1)
    assert not build.report_sizes(tmp_path, stream=io.StringIO())
