"""Consumers load their function at their first batch (`LazyHandler`), so what a function needs is looked
for before the stack starts: its module, and the optional dependencies its module imports at its top."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from shared.topology import CONSUMERS, HANDLER_NEEDS, SCHEDULER_HANDLER, LazyHandler

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "aws_lambda_powertools",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "httpx",
    "tenacity",
    "boto3",
}
BASE |= {"botocore", "dateutil", "typer", "rich", "aws_xray_sdk", "typing_extensions"}
"""Base dependencies (`pyproject.toml`'s `dependencies`): always installed."""
OURS = {"shared", "functions"}


def _top_level_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted({c.handler for c in CONSUMERS} | {SCHEDULER_HANDLER}))
def test_every_optional_dependency_a_handler_imports_at_its_top_is_listed(path: str) -> None:
    module = path.partition(":")[0]
    outside = {
        name
        for name in _top_level_imports(module)
        if name not in sys.stdlib_module_names and name not in BASE | OURS | {"__future__"}
    }
    assert outside <= set(HANDLER_NEEDS.get(module, ())), f"{module} imports {sorted(outside)} first thing"


def test_what_cannot_be_found_is_named_without_importing_anything() -> None:
    assert LazyHandler("functions.worker_manager.handler:lambda_handler").missing() == []
    assert LazyHandler("functions.no_such_function.handler:lambda_handler").missing() == [
        "functions.no_such_function.handler"
    ]


def test_a_stack_whose_consumer_cannot_load_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken install (here: the worker manager's module said to need a package that is not there) stops
    `local up` at once, as when the stack imported every consumer's function while starting."""
    from cli.local.stack import EmbeddedStack

    monkeypatch.setitem(HANDLER_NEEDS, "functions.worker_manager.handler", ("no_such_package_here",))
    stack = EmbeddedStack(tmp_path / "home", port=0, consumers=["worker_manager"])
    try:
        with pytest.raises(RuntimeError, match=r"missing module.*no_such_package_here"):
            stack.start()
    finally:
        stack.stop()
