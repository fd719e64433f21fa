"""Build the Lambda layers without Docker, and report what each function deploys.

    python -m layers.build               # build every layer into layers/build/<name>/python, then --sizes
    python -m layers.build api graph     # only these layers
    python -m layers.build --sizes       # sizes of the built layers and of every function's bundle

Each `layers/<name>.txt` is one layer; `-r base.txt` includes another file and `constraints.txt` pins
the versions the tests ran with. pip fetches wheels for the Lambda runtime (CPython 3.12, x86_64,
glibc 2.34 on Amazon Linux 2023) whatever the machine builds on:
`pip install --platform manylinux2014_x86_64 --implementation cp --python-version 3.12
--only-binary=:all: --target ...`. Needs the package index (PyPI), not Docker.

Next to each layer, `<name>.json` records the digest of the requirement files it was built from;
the CDK app uses a layer only when that digest is current (see `infra_cdk.layer_assets`).

A function's bundle is the one code asset (shared/, functions/, cli/, worker_image/) plus its
layers. Lambda allows 250 MB unzipped per function with its layers; the project keeps every
function under 50 MB zipped, and `--sizes` exits 1 when one is over either limit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from layers.bundles import CODE_ASSET_DIRS, FUNCTION_LAYERS

LAYERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = LAYERS_DIR.parent
DEFAULT_OUT = LAYERS_DIR / "build"
CONSTRAINTS = LAYERS_DIR / "constraints.txt"

PYTHON_VERSION = "3.12"
"""The Lambda runtime's Python; infra_cdk.constants.LAMBDA_RUNTIME must name the same."""
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
"""manylinux2014 first (the widest choice); newer tags up to the runtime's glibc 2.34 for the
packages that no longer publish manylinux2014 wheels."""
PRUNED = ("boto3", "botocore", "s3transfer")
"""Shipped by the Lambda runtime; bundling them would add ~20 MB zipped to a layer."""
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda's hard limit for a function and all its layers, unzipped."""
ZIPPED_BUDGET = 50 * 1024 * 1024
"""This project's budget per function bundle (code + layers), zipped."""
_SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


class BuildError(RuntimeError):
    """A layer could not be built (pip failed, a requirement file is missing...)."""


# -- requirement sets --------------------------------------------------------------------------


def built_layer_names() -> list[str]:
    """Every `layers/<name>.txt` except the constraints."""
    return sorted(p.stem for p in LAYERS_DIR.glob("*.txt") if p != CONSTRAINTS)


def requirement_files(name: str) -> list[Path]:
    """The layer's requirement file followed by every file it includes with `-r`, in order."""
    seen: list[Path] = []
    pending = [LAYERS_DIR / f"{name}.txt"]
    while pending:
        path = pending.pop(0)
        if path in seen:
            continue
        if not path.is_file():
            raise BuildError(f"layer {name!r}: requirement file {path} does not exist")
        seen.append(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
                pending.append((path.parent / parts[1]).resolve())
    return seen


def requirements(name: str) -> list[str]:
    """The requirement lines of a layer, includes resolved (comments and options dropped)."""
    lines: list[str] = []
    for path in requirement_files(name):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.split("#", 1)[0].strip()
            if text and not text.startswith("-"):
                lines.append(text)
    return lines


def requirements_digest(name: str) -> str:
    """What a build of `name` depends on: its requirement files, the constraints, the target platform."""
    digest = hashlib.sha256()
    for path in [*requirement_files(name), CONSTRAINTS]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"{PYTHON_VERSION}|{','.join(PLATFORMS)}|{','.join(PRUNED)}".encode())
    return digest.hexdigest()


def manifest_path(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def read_manifest(out: Path, name: str) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(manifest_path(out, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


# -- building ----------------------------------------------------------------------------------


def pip_command(name: str, target: Path) -> list[str]:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--upgrade",
        "--target",
        str(target),
        "-r",
        str(LAYERS_DIR / f"{name}.txt"),
        "-c",
        str(CONSTRAINTS),
    ]


def runtime_python(explicit: str | None = None) -> str | None:
    """An interpreter of the runtime's version, to precompile bytecode the runtime can use.

    `explicit` (--bytecode-python), else this interpreter if it is 3.12, else `python3.12` on PATH, else
    the newest 3.12 pyenv installed (`$PYENV_ROOT`, default ~/.pyenv: a CI image may have it off PATH);
    each candidate must really run and report 3.12 (a pyenv shim may exist without a version behind it).
    """
    candidates = (
        [explicit]
        if explicit
        else [sys.executable, shutil.which(f"python{PYTHON_VERSION}"), *_pyenv_pythons(PYTHON_VERSION)]
    )
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == PYTHON_VERSION:
            return candidate
    if explicit:
        raise BuildError(f"--bytecode-python {explicit} is not a working Python {PYTHON_VERSION}")
    return None


def compileall_command(python: str, directory: Path) -> list[str]:
    """Compile every module under `directory` to unchecked-hash bytecode (used as is, whatever the mtimes)."""
    return [
        python,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(directory),
    ]


def _pyenv_pythons(version: str) -> list[str]:
    """`<pyenv root>/versions/<version>.*/bin/python<version>`, newest patch release first."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = [
        (
            tuple(int(part) for part in d.name.split(".")[2:3] if part.isdigit()),
            d / "bin" / f"python{version}",
        )
        for d in (root / "versions").glob(f"{version}.*")
    ]
    return [str(path) for _, path in sorted(found, reverse=True) if path.is_file()]


def prune(site: Path) -> list[str]:
    """Remove what the runtime provides and what a layer cannot use (console scripts with this
    machine's shebang). Returns the removed top-level names."""
    removed: list[str] = []
    for entry in sorted(site.iterdir()):
        base = (
            entry.name.split("-", 1)[0].lower() if entry.name.endswith(".dist-info") else entry.name.lower()
        )
        if base in PRUNED or entry.name == "bin":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    return removed


def build_layer(name: str, out: Path = DEFAULT_OUT, bytecode_python: str | None = None) -> Path:
    """Build one layer into `out/<name>/python` (replacing an older build) and write its manifest."""
    digest = requirements_digest(name)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    try:
        site = staging / "python"
        result = subprocess.run(pip_command(name, site), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"pip failed for layer {name!r}:\n{result.stderr.strip()[-4000:]}")
        pruned = prune(site)
        if bytecode_python:
            # Lambda unpacks layers with the zip's fixed timestamps, so timestamp-checked .pyc files
            # would be recompiled at every cold start; hash-free "unchecked" ones are used as they are.
            subprocess.run(compileall_command(bytecode_python, site), check=True)
        final = out / name
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    manifest = {
        "layer": name,
        "requirements_sha256": digest,
        "requirements": requirements(name),
        "python_version": PYTHON_VERSION,
        "platforms": list(PLATFORMS),
        "pruned": pruned,
        "bytecode": bool(bytecode_python),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest_path(out, name).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return final / "python"


# -- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    files: int
    unzipped: int
    zipped: int


def _source_files(root: Path) -> Iterator[Path]:
    """Files under `root` without caches and bytecode this machine left behind."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for filename in sorted(filenames):
            if not filename.endswith(".pyc"):
                yield Path(dirpath) / filename


def code_asset_files(repo_root: Path = REPO_ROOT) -> list[Path]:
    """The files of the Lambda code asset, relative to the repository root (what the CDK app stages)."""
    return [path.relative_to(repo_root) for top in CODE_ASSET_DIRS for path in _source_files(repo_root / top)]


def layer_files(root: Path) -> list[Path]:
    """Every file a built layer ships, its precompiled bytecode included, relative to its directory
    (the one holding `python/`)."""
    return [
        (Path(dirpath) / n).relative_to(root) for dirpath, _, names in os.walk(root) for n in sorted(names)
    ]


def measure(root: Path, files: Iterable[Path]) -> Size:
    """Unzipped bytes and the size of a deflate zip of `files` (paths relative to `root`)."""
    count = unzipped = 0
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for relative in files:
                path = root / relative
                count += 1
                unzipped += path.stat().st_size
                archive.write(path, relative.as_posix())
        handle.seek(0, os.SEEK_END)
        zipped = handle.tell()
    return Size(count, unzipped, zipped)


def layer_dir(name: str, out: Path = DEFAULT_OUT) -> Path | None:
    """The directory to ship for a layer, or None when it has not been built."""
    path = out / name
    return path if (path / "python").is_dir() else None


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:7.1f}"


def report_sizes(out: Path = DEFAULT_OUT, stream=sys.stdout) -> bool:  # type: ignore[no-untyped-def]
    """Print layer and function sizes; False when a function is over a limit or a layer is missing."""
    ok = True
    layer_sizes: dict[str, Size | None] = {}
    print(f"{'layer':<16}{'files':>7}{'unzipped MB':>13}{'zipped MB':>11}  state", file=stream)
    for name in sorted({layer for layers in FUNCTION_LAYERS.values() for layer in layers}):
        path = layer_dir(name, out)
        if path is None:
            layer_sizes[name] = None
            print(
                f"{name:<16}{'-':>7}{'-':>13}{'-':>11}  not built: python -m layers.build {name}", file=stream
            )
            ok = False
            continue
        size = measure(path, layer_files(path))
        layer_sizes[name] = size
        state = _build_state(out, name)
        print(
            f"{name:<16}{size.files:>7}{_mb(size.unzipped):>13}{_mb(size.zipped):>11}  {state}", file=stream
        )
    code = measure(REPO_ROOT, code_asset_files())
    print(
        f"\ncode asset: {code.files} files, {_mb(code.unzipped).strip()} MB unzipped, "
        f"{_mb(code.zipped).strip()} MB zipped (shared by every function)\n",
        file=stream,
    )
    width = max(16, *(len(function) + 2 for function in FUNCTION_LAYERS))
    print(f"{'function':<{width}}{'layers':<22}{'unzipped MB':>12}{'zipped MB':>11}  limits", file=stream)
    for function, layers in sorted(FUNCTION_LAYERS.items()):
        sizes = [layer_sizes.get(layer) for layer in layers]
        if any(size is None for size in sizes):
            print(f"{function:<{width}}{'+'.join(layers):<22}{'-':>12}{'-':>11}  layer missing", file=stream)
            continue
        unzipped = code.unzipped + sum(size.unzipped for size in sizes if size)
        zipped = code.zipped + sum(size.zipped for size in sizes if size)
        over = [
            label
            for label, value, limit in (
                ("250 MB unzipped", unzipped, LAMBDA_UNZIPPED_LIMIT),
                ("50 MB zipped", zipped, ZIPPED_BUDGET),
            )
            if value > limit
        ]
        ok = ok and not over
        verdict = "OVER " + ", ".join(over) if over else "ok"
        print(
            f"{function:<{width}}{'+'.join(layers):<22}{_mb(unzipped):>12}{_mb(zipped):>11}  {verdict}",
            file=stream,
        )
    return ok


def _build_state(out: Path, name: str) -> str:
    manifest = read_manifest(out, name)
    if manifest is None:
        return "built (no manifest: rebuild)"
    if manifest.get("requirements_sha256") != requirements_digest(name):
        return "STALE: requirements changed since the build"
    return f"built {manifest.get('built_at')}" + ("" if manifest.get("bytecode") else " (no .pyc)")


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layers.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("layers", nargs="*", help=f"layers to build (default: all of {built_layer_names()})")
    parser.add_argument("--sizes", action="store_true", help="only report sizes of what is built")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where layers are built")
    parser.add_argument(
        "--bytecode-python",
        metavar="PYTHON",
        help=f"a Python {PYTHON_VERSION} to precompile the layers with (default: this one or python{PYTHON_VERSION})",
    )
    args = parser.parse_args(argv)
    if not args.sizes:
        try:
            bytecode_python = runtime_python(args.bytecode_python)
        except BuildError as exc:
            parser.error(str(exc))
        names = args.layers or built_layer_names()
        unknown = sorted(set(names) - set(built_layer_names()))
        if unknown:
            parser.error(f"unknown layer(s) {unknown}; known: {built_layer_names()}")
        for name in names:
            started = datetime.now(UTC)
            print(f"building layer {name} ...", flush=True)
            try:
                path = build_layer(name, args.out, bytecode_python)
            except BuildError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            seconds = (datetime.now(UTC) - started).total_seconds()
            print(
                f"  {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} in {seconds:.0f} s"
            )
        if bytecode_python is None:
            print(
                f"note: no python{PYTHON_VERSION} here, so the layers carry no precompiled bytecode "
                "(imports compile at each cold start)",
                file=sys.stderr,
            )
        print()
    return 0 if report_sizes(args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
