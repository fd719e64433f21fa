"""What a Lambda function can import: its layers' dependency closure (as installed here), what the Lambda
Python runtime ships, and our own packages. Shared by the layer import checks (tests/unit/test_layers.py)
and the cloud rehearsal's execution environments (tests/cloud)."""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six")
"""What the Lambda Python runtime ships (boto3 and its dependencies)."""
FIRST_PARTY = ("shared", "functions", "cli", "worker_image")
MARKER_ENV = {
    "extra": "",
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}
"""The Lambda runtime, for evaluating requirement markers."""


def closure(requirements: Iterable[str]) -> set[str]:
    """Canonical distribution names: the requirements and everything they depend on, as installed here."""
    seen: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate(MARKER_ENV)):
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending += [Requirement(r) for r in requires]
    return seen


def importable(distributions: set[str]) -> set[str]:
    """Top-level module names the given distributions install."""
    modules: set[str] = set()
    for module, owners in metadata.packages_distributions().items():
        if any(canonicalize_name(owner) in distributions for owner in owners):
            modules.add(module)
    return modules


def allowed_modules(layer_requirements: Iterable[str]) -> set[str]:
    """Top-level modules a function with these layer requirements may import."""
    distributions = closure(layer_requirements) | {canonicalize_name(d) for d in RUNTIME_PROVIDED}
    return importable(distributions) | set(FIRST_PARTY)
