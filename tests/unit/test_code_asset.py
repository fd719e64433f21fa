"""The code asset ships bytecode for the runtime's Python (issue 23): staged once per content, compiled in
unchecked-hash mode, used by a 3.12 interpreter as it is; without such an interpreter, source only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from layers import build, code_asset

RUNTIME_PYTHON = build.runtime_python()
needs_runtime_python = pytest.mark.skipif(
    RUNTIME_PYTHON is None,
    reason=f"no Python {build.PYTHON_VERSION} here (python{build.PYTHON_VERSION} or pyenv)",
)
UNCHECKED_HASH_FLAGS = 0b01
"""PEP 552: bit 0 = hash-based, bit 1 = check the source; unchecked = hash-based, never checked."""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "shared" / "pkg").mkdir(parents=True)
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "pkg" / "__init__.py").write_text("")
    (root / "shared" / "pkg" / "mod.py").write_text("VALUE = 42\n")
    (root / "shared" / "pkg" / "data.json").write_text("{}")
    (root / "tests").mkdir()
    (root / "tests" / "t.py").write_text("")  # not a code directory: stays out
    return root


def test_without_a_runtime_python_the_asset_is_the_sources_only(repo: Path, tmp_path: Path) -> None:
    asset = code_asset.stage_code_asset(repo, find_python=False, root=tmp_path / "staged")
    assert asset.bytecode is False
    files = sorted(p.relative_to(asset.path).as_posix() for p in asset.path.rglob("*") if p.is_file())
    assert files == [
        "shared/__init__.py",
        "shared/pkg/__init__.py",
        "shared/pkg/data.json",
        "shared/pkg/mod.py",
    ]


@needs_runtime_python
def test_the_asset_has_unchecked_hash_bytecode_of_the_runtime_for_every_module(
    repo: Path, tmp_path: Path
) -> None:
    asset = code_asset.stage_code_asset(repo, root=tmp_path / "staged")
    assert asset.bytecode is True
    tag = f"cpython-{build.PYTHON_VERSION.replace('.', '')}"
    for module in ("shared/__init__", "shared/pkg/__init__", "shared/pkg/mod"):
        source = asset.path / f"{module}.py"
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        header = pyc.read_bytes()[:16]
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH_FLAGS, pyc


@needs_runtime_python
def test_a_runtime_python_imports_from_the_shipped_bytecode_without_compiling(
    repo: Path, tmp_path: Path
) -> None:
    asset = code_asset.stage_code_asset(repo, root=tmp_path / "staged")
    (asset.path / "shared" / "pkg" / "mod.py").touch()  # a new mtime: an unchecked pyc is still used
    assert RUNTIME_PYTHON is not None
    run = subprocess.run(
        [RUNTIME_PYTHON, "-B", "-v", "-c", "import shared.pkg.mod as m; print(m.VALUE)"],
        cwd=asset.path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == "42"
    assert "code object from" in run.stderr and "mod.cpython-312.pyc" in run.stderr


@needs_runtime_python
def test_staging_is_reused_for_the_same_sources_and_redone_when_one_changes(
    repo: Path, tmp_path: Path
) -> None:
    first = code_asset.stage_code_asset(repo, root=tmp_path / "staged")
    again = code_asset.stage_code_asset(repo, root=tmp_path / "staged")
    assert (again.path, again.digest) == (first.path, first.digest)
    (repo / "shared" / "pkg" / "mod.py").write_text("VALUE = 43\n")
    changed = code_asset.stage_code_asset(repo, root=tmp_path / "staged")
    assert changed.digest != first.digest and changed.path != first.path
    source_only = code_asset.stage_code_asset(repo, find_python=False, root=tmp_path / "staged")
    assert source_only.digest != changed.digest  # the asset hash says whether bytecode ships


@needs_runtime_python
def test_a_syntax_error_fails_the_staging_instead_of_every_cold_start(repo: Path, tmp_path: Path) -> None:
    (repo / "shared" / "pkg" / "broken.py").write_text("def (:\n")
    with pytest.raises(code_asset.CodeAssetError, match=r"broken\.py"):
        code_asset.stage_code_asset(repo, root=tmp_path / "staged")


def test_old_stagings_are_pruned_the_newest_kept(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "staged"
    made = []
    for value in range(code_asset.KEPT_STAGINGS + 2):
        (repo / "shared" / "pkg" / "mod.py").write_text(f"VALUE = {value}\n")
        made.append(code_asset.stage_code_asset(repo, find_python=False, root=root).path)
    kept = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(kept) == code_asset.KEPT_STAGINGS
    assert made[-1] in kept and made[0] not in kept
