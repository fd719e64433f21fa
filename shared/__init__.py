"""Contracts, settings, observability, ports and adapters shared by every function. No ORM here."""

import importlib.machinery
import sys
import types
from collections.abc import Sequence


class _HttpxWithoutItsCli:
    """httpx imports its command-line client as it is imported whenever click is installed (it is: typer
    needs it), and that client imports rich and pygments: ~5 MB and ~40 ms in every process of ours that
    speaks HTTP (the stack, the CLI, the workers' fork server), for a client none of them runs. This finder
    answers httpx's `from ._main import main` with a stand-in whose `main` says why it is missing.

    A finder and loader by the import protocol's shape, not by `importlib.abc`'s classes: importing those
    costs ~20 ms (they pull in `importlib.resources`), on every function's cold start."""

    NAME = "httpx._main"

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None, /
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.NAME:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)  # type: ignore[arg-type]  # a loader by shape

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        def main(*_args: object, **_kwargs: object) -> None:
            raise SystemExit("httpx's command-line client is not loaded in this process (shared/__init__.py)")

        module.main = main  # type: ignore[attr-defined]


if not any(isinstance(finder, _HttpxWithoutItsCli) for finder in sys.meta_path):
    sys.meta_path.insert(0, _HttpxWithoutItsCli())
