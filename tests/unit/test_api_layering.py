"""The API's routers parse the request, call a service and shape the response: the SQL lives in
`functions/api/services`. Read from the routers' syntax trees (comments and strings do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROUTERS = Path(__file__).parents[2] / "functions" / "api" / "routers"
FORBIDDEN_IMPORTS = ("sqlalchemy", "functions.api.models")
SESSION_NAMES = frozenset({"session", "db_session"})


def _parse(path: Path) -> ast.AST:
    """`ast.parse`, once more on CPython 3.11's "AST constructor recursion depth mismatch": its AST depth
    counter is shared by threads (python/cpython#106905), and a thread an earlier test left compiling in
    this process can trip it (seen once in CI). The tree parsed is the same either way."""
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SystemError:
        return ast.parse(path.read_text(), filename=str(path))


def _router_files() -> list[Path]:
    return sorted(ROUTERS.glob("*.py"))


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import names, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _bound_by_with(tree: ast.AST) -> set[str]:
    """Names a `with ... as name` binds: in a router, the transaction's session."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            names |= {
                item.optional_vars.id for item in node.items if isinstance(item.optional_vars, ast.Name)
            }
    return names


def _session_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """`session.execute(...)`, `session.get(...)`, ... on a transaction's session, and any `x.session()`."""
    sessions = SESSION_NAMES | _bound_by_with(tree)
    calls: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if isinstance(target, ast.Name) and target.id in sessions:
            calls.append((node.lineno, f"{target.id}.{node.func.attr}()"))
        elif node.func.attr == "session":
            calls.append((node.lineno, f"{ast.unparse(node.func)}()"))
    return calls


def test_there_are_routers_to_check() -> None:
    assert len(_router_files()) >= 10, f"no routers found under {ROUTERS}"


@pytest.mark.parametrize("path", _router_files(), ids=lambda p: p.name)
def test_a_router_imports_no_sqlalchemy_and_no_orm_models(path: Path) -> None:
    tree = _parse(path)
    bad = [
        f"line {line}: {module}"
        for line, module in _imported_modules(tree)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN_IMPORTS)
    ]
    assert not bad, f"{path.name} imports the database layer (move the work to functions/api/services): {bad}"


@pytest.mark.parametrize("path", _router_files(), ids=lambda p: p.name)
def test_a_router_never_calls_the_session_itself(path: Path) -> None:
    calls = _session_calls(_parse(path))
    assert not calls, f"{path.name} runs database work itself (hand the session to a service): {calls}"


def test_the_checks_see_what_they_look_for() -> None:
    """The two checks above catch the code they exist to refuse."""
    sample = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy.orm import Session\n"
        "def route():\n"
        "    from functions.api.models import Task\n"
        "    with transaction() as s:\n"
        "        s.execute(select(Task))\n"
        "    with get_deps().db.session() as other:\n"
        "        return services.do(other)\n"
    )
    modules = {module for _line, module in _imported_modules(sample)}
    assert {"sqlalchemy.orm", "functions.api.models"} <= modules
    assert [call for _line, call in _session_calls(sample)] == ["s.execute()", "get_deps().db.session()"]
