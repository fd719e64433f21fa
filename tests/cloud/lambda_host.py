"""One Lambda execution environment: run as a script (`python -I -S lambda_host.py`) by the rehearsal.

Like the Lambda Python runtime it puts the function's code asset first on sys.path, then its layers,
then the runtime's own packages (here: the venv's site-packages, but only the distributions the
function's layers would ship, plus boto3 which the runtime ships; any other import fails as it
would in Lambda). Before the handler is imported it installs the IAM guard with exactly the
function's role statements, so every AWS call is evaluated against them.

Invocations arrive as JSON lines on stdin (`{"event": ..., "request_id": ..., "deadline": ...}`);
each answer is one JSON line on stdout (`{"result": ...}` or `{"error": {"errorType", "errorMessage"}}`).
The function's own prints (fd 1 is redirected to fd 2) go to its log file, as they would go to CloudWatch.

Settings for this host come in REHEARSAL_* variables, which it removes from the environment before
any function code runs: the function sees exactly its template environment plus the runtime's.
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import os
import sys
import time
import traceback
import types
from typing import Any


def _take(name: str) -> str:
    return os.environ.pop(name, "")


class _OnlyTheLayers(importlib.abc.MetaPathFinder):
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        top = name.partition(".")[0]
        if top in self.allowed or top in sys.stdlib_module_names or top.startswith("_"):
            return None
        raise ModuleNotFoundError(
            f"No module named {name!r}: not in this function's code asset or layers", name=name
        )


class _Context:
    """The fields of the Lambda context object the code and Powertools read."""

    def __init__(self, request_id: str, deadline: float, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.invoked_function_arn = function_arn
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = "rehearsal"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


class _SnapStartRuntime:
    """What Lambda's Python runtime offers a SnapStart function: `snapshot_restore_py`'s two registrations.
    Lambda runs the before-snapshot hooks in reverse order of registration when it publishes the version, and
    the after-restore hooks in order when an environment starts from the snapshot; here both run after init."""

    MODULE = "snapshot_restore_py"

    def __init__(self) -> None:
        self.before: list[Any] = []
        self.after: list[Any] = []

    @classmethod
    def install(cls) -> _SnapStartRuntime:
        runtime = cls()
        module = types.ModuleType(cls.MODULE)
        module.register_before_snapshot = runtime.before.append  # type: ignore[attr-defined]
        module.register_after_restore = runtime.after.append  # type: ignore[attr-defined]
        sys.modules[cls.MODULE] = module
        return runtime

    def snapshot_and_restore(self) -> None:
        if not self.before or not self.after:
            raise RuntimeError("SnapStart is on but the handler registered no snapshot/restore hooks")
        for hook in reversed(self.before):
            hook()
        for hook in self.after:
            hook()


def main() -> None:
    settings = json.loads(_take("REHEARSAL_HOST"))
    # sys.path as in Lambda: /var/task, /opt/python, the runtime's packages
    sys.path[:] = [p for p in sys.path if "site-packages" not in p and p not in ("", ".")]
    sys.path[:0] = settings["code_paths"]
    sys.path += settings["site_packages"]
    if settings.get("iam"):  # before the import blocker: the guard is the harness's, not the function's
        sys.path.insert(0, settings["harness_dir"])
        guard = importlib.import_module("iam")
        guard.install_guard_from_env()
        sys.path.remove(settings["harness_dir"])
        del sys.modules["iam"]
    sys.meta_path.insert(0, _OnlyTheLayers(set(settings["allowed_modules"])))
    for name in [k for k in os.environ if k.startswith("REHEARSAL_")]:
        os.environ.pop(name)

    # answers go to the real stdout; whatever the function prints goes to its log (stderr), as in Lambda
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    module_name, _, attribute = settings["handler"].rpartition(".")
    handler: Any = None
    init_error: dict[str, str] | None = None
    snapstart = _SnapStartRuntime.install() if settings.get("snap_start") else None
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
        if snapstart is not None:  # the version's publication, then this environment's restore
            snapstart.snapshot_and_restore()
    except Exception as exc:  # an init error is reported on every invocation, as Lambda does
        traceback.print_exc()
        init_error = {
            "errorType": f"Runtime.ImportModuleError: {type(exc).__name__}",
            "errorMessage": str(exc),
        }
    out.write(json.dumps({"ready": True}) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        if init_error is not None:
            out.write(json.dumps({"error": init_error}) + "\n")
            continue
        context = _Context(request["request_id"], request["deadline"], settings["function_arn"])
        try:
            result = handler(request["event"], context)
            answer: dict[str, Any] = {"result": result}
        except Exception as exc:
            traceback.print_exc()
            answer = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc)[:2000]}}
        sys.stdout.flush()
        sys.stderr.flush()
        out.write(json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
