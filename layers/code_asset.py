"""The functions' one code asset (shared/ functions/ cli/ worker_image/), staged with precompiled bytecode.

Lambda's code directory is read-only, so a module without a usable `.pyc` is compiled from source at every
cold start and the result thrown away. The asset is therefore staged with `__pycache__/*.cpython-312.pyc`
compiled by a Python of the runtime's version (`layers.build.runtime_python`: this one, `python3.12` on
PATH, or pyenv's) in `unchecked-hash` mode: Lambda unpacks the zip with fixed timestamps, so
timestamp-checked files would be recompiled anyway, and hash-checked ones would hash every source at import.
Without such a Python the asset ships source only, and says so (`CodeAsset.bytecode`).

The staging directory is keyed by a digest of the sources, the bytecode's magic number and mode, and reused:
a second synth of the same code compiles nothing. The CDK app uses that digest as the asset's hash, so the
asset (and with it every function's published version) changes only when the code does, whatever bytes
the compiler wrote.

Plain Python (no aws_cdk): the tests check the staging without a synth.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from layers import build

INVALIDATION_MODE = "unchecked-hash"
"""What `layers.build.compileall_command` compiles with (part of the asset's digest)."""
STAGING_ROOT_NAME = "codegen-orch-code-asset"
COMPLETE_SUFFIX = ".staged"
"""`<directory>.staged`, written beside a staged directory when it is complete (an interrupted one is staged
again); beside, not inside: the directory is exactly what ships."""
KEPT_STAGINGS = 6
"""Stagings kept under the staging root (each code change makes one, ~3 MB): the newest, by completion."""
NO_BYTECODE_WARNING = "codegen-orch:code-asset-without-bytecode"
"""The id of the synth warning when no Python of the runtime's version was found to compile with."""


class CodeAssetError(RuntimeError):
    """The code asset could not be compiled (a syntax error the runtime would hit at import)."""


@dataclass(frozen=True)
class CodeAsset:
    path: Path
    digest: str
    python: str | None
    """The interpreter that compiled the bytecode; None when the asset ships source only."""

    @property
    def bytecode(self) -> bool:
        return self.python is not None


def _bytecode_tag(python: str) -> str:
    """`cpython-312 <magic number>`: what decides whether the runtime can use the compiled files."""
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util, sys; print(sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER.hex())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return probe.stdout.strip()


def source_digest(files: list[Path], repo_root: Path, bytecode_tag: str) -> str:
    digest = hashlib.sha256(f"{bytecode_tag}|{INVALIDATION_MODE}".encode())
    for relative in files:
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((repo_root / relative).read_bytes()).digest())
    return digest.hexdigest()


def staging_root() -> Path:
    return Path(tempfile.gettempdir()) / STAGING_ROOT_NAME


def compile_tree(python: str, directory: Path) -> None:
    result = subprocess.run(
        build.compileall_command(python, directory), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise CodeAssetError(f"compiling the code asset with {python} failed:\n{result.stdout[-4000:]}")


def stage_code_asset(
    repo_root: Path = build.REPO_ROOT,
    python: str | None = None,
    *,
    find_python: bool = True,
    root: Path | None = None,
) -> CodeAsset:
    """The staged code asset: the code directories' files, plus bytecode when a runtime Python is found.

    `python` names the interpreter; else one is looked for (`find_python`), as the layer build does.
    """
    python = python or (build.runtime_python() if find_python else None)
    tag = _bytecode_tag(python) if python else "source-only"
    files = build.code_asset_files(repo_root)
    digest = source_digest(files, repo_root, tag)
    target = (root or staging_root()) / digest[:24]
    complete = target.with_name(target.name + COMPLETE_SUFFIX)
    if complete.is_file() and target.is_dir():
        return CodeAsset(target, digest, python)
    target.parent.mkdir(parents=True, exist_ok=True)
    # one stager per digest at a time: without the lock a second synth could clear a staging the first
    # had just completed while the CDK copied it (seen: a rehearsal synth beside a test's synth)
    with open(target.with_name(target.name + ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (complete.is_file() and target.is_dir()):
            _stage(repo_root, files, python, tag, target, complete)
    prune_stagings(target.parent, keep=target)
    return CodeAsset(target, digest, python)


def _stage(
    repo_root: Path, files: list[Path], python: str | None, tag: str, target: Path, complete: Path
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name[:12]}-", dir=target.parent))
    try:
        for relative in files:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(repo_root / relative, staging / relative)
        if python:
            compile_tree(python, staging)
        complete.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)  # an interrupted staging
        os.replace(staging, target)
        complete.write_text(f"{tag}\n", encoding="utf-8")
    except OSError:
        if not complete.is_file():  # not another process staging the same digest at the same time
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prune_stagings(root: Path, keep: Path, newest: int = KEPT_STAGINGS) -> list[Path]:
    """Remove all but the `newest` complete stagings under `root` (never `keep`); returns what went."""
    complete = sorted(
        (marker for marker in root.glob(f"*{COMPLETE_SUFFIX}") if marker.is_file()),
        key=lambda marker: marker.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for marker in complete[newest:]:
        directory = marker.with_name(marker.name.removesuffix(COMPLETE_SUFFIX))
        if directory == keep:
            continue
        marker.unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed
