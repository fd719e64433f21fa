"""Each function's handler import in a Lambda-like environment, with and without the asset's bytecode.

    python -m tests.benchmarks.bench_cold_import [--runs 5] [--layers-dir layers/build]
        [--runtime-packages DIR] [--functions api telegram-bot ...]

Lambda-like: a fresh interpreter (`-I -S -B`: no site-packages, no environment, nothing written) whose
sys.path is only the function's code asset, then its layers, then what the runtime ships (boto3). Two
environments, the table says which one ran:

- **runtime** (Python 3.12 with the layers built by `python -m layers.build` into `--layers-dir`, and
  boto3 from `--runtime-packages`, e.g. `pip install --target DIR --python-version 3.12
  --only-binary=:all: --platform manylinux2014_x86_64 boto3`): what Lambda runs.
- **stand-in** (no 3.12 or no built layers): this interpreter with its own site-packages after the code
  asset; the bytecode is then this interpreter's. Closest to Lambda this machine offers, not Lambda.

"source only" stages the asset without bytecode, as it shipped before issue 23: each import compiles the
project's modules (Lambda's code directory is read-only, nothing is cached). "bytecode" is the asset as the
CDK app ships it now (`layers.code_asset`). Prints median wall and CPU ms; asserts nothing about time.

A cheaper import must not only move its cost to the first request, so the API also gets a second line
(bytecode asset, same environment): import, then answer one typical request (`GET /projects` with a key,
on a migrated SQLite database; the first request also bootstraps the admin key, as a fresh stack's does),
timed together in the same fresh interpreter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra_cdk import constants
from layers import build, code_asset
from shared.topology import CONSUMERS, SCHEDULER_HANDLER

IMPORT_PROBE = """
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
import {module}
print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
"""


FIRST_REQUEST_PROBE = """
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
import {module}
imported = [time.perf_counter() - wall, time.process_time() - cpu]
event = {{
    "version": "2.0", "routeKey": "$default", "rawPath": "/projects", "rawQueryString": "",
    "headers": {{"host": "bench.invalid", "authorization": "Bearer " + sys.argv[2]}},
    "requestContext": {{
        "http": {{"method": "GET", "path": "/projects", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}},
        "requestId": "bench", "routeKey": "$default", "stage": "$default",
    }},
    "isBase64Encoded": False,
}}
result = {module}.lambda_handler(event, None)
assert result["statusCode"] == 200, result
print(json.dumps(imported + [time.perf_counter() - wall, time.process_time() - cpu]))
"""
FIRST_REQUEST_KEY = "orch_bench_admin_key_0123456789abcdef"


def handler_modules() -> dict[str, str]:
    """Function name -> the module its handler lives in (`functions.api.handler`)."""
    handlers = {
        constants.API_FUNCTION: constants.API_HANDLER,
        constants.DEPLOY_HOOK_FUNCTION: constants.DEPLOY_HOOK_HANDLER,
        constants.WORKER_EVENTS_FUNCTION: constants.WORKER_EVENTS_HANDLER,
        constants.INFRA_EVENTS_FUNCTION: constants.INFRA_EVENTS_HANDLER,
        constants.TELEGRAM_WEBHOOK_FUNCTION: constants.TELEGRAM_WEBHOOK_HANDLER,
        constants.SCHEDULER_FUNCTION: SCHEDULER_HANDLER.replace(":", "."),
        **{constants.function_name_part(s.function): s.handler.replace(":", ".") for s in CONSUMERS},
    }
    return {name: handler.rpartition(".")[0] for name, handler in handlers.items()}


@dataclass(frozen=True)
class Environment:
    label: str
    python: str
    runtime_paths: tuple[str, ...]
    """After the layers: what the runtime ships (runtime), or this interpreter's site-packages (stand-in)."""
    layers_dir: Path | None
    """Built layers (runtime); None in the stand-in."""

    def paths(self, function: str, asset: Path) -> list[str]:
        layers = (
            [str(self.layers_dir / layer / "python") for layer in constants.FUNCTION_LAYERS[function]]
            if self.layers_dir
            else []
        )
        return [str(asset), *layers, *self.runtime_paths]

    def missing_layers(self, function: str) -> list[str]:
        if self.layers_dir is None:
            return []
        return [
            layer
            for layer in constants.FUNCTION_LAYERS[function]
            if not (self.layers_dir / layer / "python").is_dir()
        ]


def choose_environment(layers_dir: Path, runtime_packages: Path | None) -> Environment:
    """The runtime when a 3.12 and at least one built layer exist (functions whose layers are not built are
    reported as such), else the stand-in."""
    python = build.runtime_python()
    layers = {layer for layers in constants.FUNCTION_LAYERS.values() for layer in layers}
    if python and any((layers_dir / layer / "python").is_dir() for layer in layers):
        return Environment(
            f"runtime: Python {build.PYTHON_VERSION}, layers from {layers_dir}, boto3 from {runtime_packages}",
            python,
            (str(runtime_packages),) if runtime_packages else (),
            layers_dir,
        )
    site = tuple(p for p in sys.path if p.endswith("site-packages"))
    missing = "no Python 3.12" if not python else f"no layer built in {layers_dir}"
    return Environment(
        f"STAND-IN ({missing}): Python {sys.version.split()[0]} with its own site-packages",
        sys.executable,
        site,
        None,
    )


@dataclass(frozen=True)
class Sample:
    wall_ms: float | None
    cpu_ms: float | None
    error: str | None = None


def cold_import(python: str, module: str, paths: list[str], runs: int) -> Sample:
    """Median of `runs` fresh interpreters importing `module` with only `paths` added to sys.path."""
    walls, cpus = [], []
    for _ in range(runs):
        run = subprocess.run(
            [python, "-I", "-S", "-B", "-c", IMPORT_PROBE.format(module=module), json.dumps(paths)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if run.returncode != 0:
            return Sample(None, None, (run.stderr.strip().splitlines() or ["?"])[-1])
        wall, cpu = json.loads(run.stdout.strip().splitlines()[-1])
        walls.append(wall * 1000)
        cpus.append(cpu * 1000)
    return Sample(statistics.median(walls), statistics.median(cpus))


def first_request(python: str, module: str, paths: list[str], runs: int) -> tuple[Sample, Sample]:
    """(import, import + first GET /projects) of the API handler, medians of `runs` fresh interpreters, each
    on its own copy of a migrated SQLite database with an admin key to bootstrap."""
    import os
    import shutil
    import tempfile

    from sqlalchemy import create_engine

    from functions.api.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.db"
        engine = create_engine(f"sqlite:///{template}")
        upgrade(engine)
        engine.dispose()
        samples: list[list[float]] = []
        for i in range(runs):
            home = Path(tmp) / f"home-{i}"
            home.mkdir()
            shutil.copy(template, home / "orchestrator.db")
            env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
            env |= {"ORCH_HOME": str(home), "ORCH_BOOTSTRAP_ADMIN_KEY": FIRST_REQUEST_KEY}
            probe = FIRST_REQUEST_PROBE.format(module=module)
            done = subprocess.run(
                [python, "-I", "-S", "-B", "-c", probe, json.dumps(paths), FIRST_REQUEST_KEY],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
                env=env,
            )
            if done.returncode != 0:
                error = (done.stderr.strip().splitlines() or ["?"])[-1]
                return Sample(None, None, error), Sample(None, None, error)
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    medians = [statistics.median(s[i] * 1000 for s in samples) for i in range(4)]
    return Sample(medians[0], medians[1]), Sample(medians[2], medians[3])


def run(
    functions: Sequence[str] | None = None,
    runs: int = 5,
    layers_dir: Path = build.DEFAULT_OUT,
    runtime_packages: Path | None = None,
) -> tuple[Environment, list[tuple[str, str, Sample, Sample]]]:
    """(environment, rows of (function, module, source-only sample, bytecode sample))."""
    environment = choose_environment(layers_dir, runtime_packages)
    source_only = code_asset.stage_code_asset(find_python=False)
    compiled = code_asset.stage_code_asset(python=environment.python)
    modules = handler_modules()
    rows = []
    for name in functions or sorted(modules):
        module = modules[name]
        missing = environment.missing_layers(name)
        if missing:
            not_built = Sample(None, None, f"layer(s) {', '.join(missing)} not built in {layers_dir}")
            rows.append((name, module, not_built, not_built))
            continue
        rows.append(
            (
                name,
                module,
                cold_import(environment.python, module, environment.paths(name, source_only.path), runs),
                cold_import(environment.python, module, environment.paths(name, compiled.path), runs),
            )
        )
    return environment, rows


def api_first_request(
    runs: int = 5, layers_dir: Path = build.DEFAULT_OUT, runtime_packages: Path | None = None
) -> tuple[Sample, Sample]:
    """The API handler's (import, import + first GET /projects) from the bytecode asset, Lambda-like."""
    environment = choose_environment(layers_dir, runtime_packages)
    compiled = code_asset.stage_code_asset(python=environment.python)
    paths = environment.paths(constants.API_FUNCTION, compiled.path)
    return first_request(environment.python, handler_modules()[constants.API_FUNCTION], paths, runs)


def _cell(sample: Sample) -> str:
    if sample.error is not None:
        return f"{'failed':>17}"
    return f"{sample.wall_ms:8.0f} {sample.cpu_ms:8.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layers-dir", type=Path, default=build.DEFAULT_OUT)
    parser.add_argument("--runtime-packages", type=Path, help="a 3.12 boto3 (what Lambda's runtime ships)")
    parser.add_argument("--functions", nargs="*", choices=sorted(handler_modules()))
    args = parser.parse_args(argv)
    environment, rows = run(args.functions, args.runs, args.layers_dir, args.runtime_packages)
    print(f"handler import, median of {args.runs} fresh interpreters; {environment.label}")
    print(
        f"{'function':<19}{'source only: wall':>18}{' cpu ms':>8}{'bytecode: wall':>16}{' cpu ms':>8}{'cpu saved':>11}"
    )
    errors = []
    for name, _module, plain, compiled in rows:
        saved = (
            f"{plain.cpu_ms - compiled.cpu_ms:9.0f}ms"
            if plain.cpu_ms is not None and compiled.cpu_ms is not None
            else ""
        )
        print(f"{name:<19}{_cell(plain):>26}{_cell(compiled):>24}{saved:>11}")
        errors += [f"  {name}: {s.error}" for s in (plain, compiled) if s.error]
    if errors:
        print("imports that failed:", *sorted(set(errors)), sep="\n")
    if constants.API_FUNCTION in [name for name, *_ in rows]:
        imported, answered = api_first_request(args.runs, args.layers_dir, args.runtime_packages)
        if imported.error is not None:
            print(f"api first request failed: {imported.error}")
        else:
            print(
                f"api (bytecode): import {imported.wall_ms:.0f} ms wall, {imported.cpu_ms:.0f} ms CPU; "
                f"import + first GET /projects {answered.wall_ms:.0f} ms wall, {answered.cpu_ms:.0f} ms CPU"
            )


if __name__ == "__main__":
    main()
