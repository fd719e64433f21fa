"""Secret references: `secret://<path>`, the only form in which a secret travels through the system.

A path is segments of `[A-Za-z0-9._-]` joined by `/` (`secret://servers/<handle>/ssh_key`), so
it maps one-to-one onto a Secrets Manager name (`<prefix>/<path>`) and cannot escape its
prefix. A path may instead be a whole Secrets Manager ARN, for secrets another service owns
(the credentials RDS generates): `secret://arn:aws:secretsmanager:<region>:<account>:secret:<name>`.

The `ssm/` namespace is reserved for secrets the operator provides as SSM Parameter Store SecureString
parameters: `secret://ssm/<path>` names the parameter `/<prefix>/<path>` (the AWS adapter reads it,
read-only; the local store keeps it like any other path).
"""

from __future__ import annotations

import re

from shared.secrets.port import InvalidSecretReference

SCHEME = "secret://"
MAX_PATH_CHARS = 256
"""Leaves room for any allowed prefix inside Secrets Manager's 512-character name limit."""

SSM_NAMESPACE = "ssm"
"""`secret://ssm/<path>`: an operator-provided SSM SecureString parameter, `/<prefix>/<path>` in AWS."""

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# Secret names may hold /_+=.@- and RDS-managed ones a "!" (`rds!db-<uuid>`); partitions aws, aws-cn, ...
_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+")


def is_arn(path: str) -> bool:
    """Whether a reference's path names a Secrets Manager secret by ARN rather than by our naming."""
    return _ARN.fullmatch(path) is not None


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "is empty"
    if segment in {".", ".."}:
        return "is a relative path segment"
    if not _SEGMENT.fullmatch(segment):
        return "may only contain letters, digits, '.', '_' and '-'"
    return None


def _check_path(path: str, reference: str) -> None:
    if len(path) > MAX_PATH_CHARS:
        raise InvalidSecretReference(
            f"invalid secret reference {reference!r}: path is {len(path)} characters; the limit is {MAX_PATH_CHARS}"
        )
    for segment in path.split("/"):
        problem = _segment_problem(segment)
        if problem:
            raise InvalidSecretReference(
                f"invalid secret reference {reference!r}: segment {segment!r} {problem} "
                f"(expected {SCHEME}<segment>/<segment>/...)"
            )


def make_reference(*parts: str) -> str:
    """Build a reference from single segments, e.g. `make_reference("projects", project_id, "DATABASE_URL")`.

    Each part must be one segment, so an id that contains '/' cannot point somewhere else; a bad
    part raises `InvalidSecretReference` (a ValueError) naming it.
    """
    if not parts:
        raise InvalidSecretReference("make_reference needs at least one part")
    for index, part in enumerate(parts):
        if not isinstance(part, str):
            raise InvalidSecretReference(
                f"secret reference part {index} must be str, not {type(part).__name__}"
            )
        problem = _segment_problem(part)
        if "/" in part:
            problem = "contains '/'; pass each segment as its own part"
        if problem:
            raise InvalidSecretReference(f"secret reference part {index} ({part!r}) {problem}")
    reference = SCHEME + "/".join(parts)
    _check_path(reference[len(SCHEME) :], reference)
    return reference


def arn_reference(arn: str) -> str:
    """The reference for a secret known by its ARN (e.g. the RDS-generated credentials)."""
    if not is_arn(arn):
        raise InvalidSecretReference(f"not a Secrets Manager secret ARN: {arn!r}")
    return SCHEME + arn


def parse_reference(reference: str) -> str:
    """The path of a reference; refuses anything that is not exactly `secret://<path>` or `secret://<ARN>`."""
    if not isinstance(reference, str) or not reference.startswith(SCHEME):
        raise InvalidSecretReference(f"invalid secret reference {reference!r}: must start with {SCHEME}")
    path = reference[len(SCHEME) :]
    if is_arn(path):
        return path
    if not path:
        raise InvalidSecretReference(f"invalid secret reference {reference!r}: the path is empty")
    _check_path(path, reference)
    return path


def parse_prefix(prefix_reference: str) -> str:
    """The path prefix of a listing reference (`secret://projects/p1/`, trailing '/' optional).

    `secret://` alone means everything. ARNs name single secrets, so they are not prefixes.
    """
    if not isinstance(prefix_reference, str) or not prefix_reference.startswith(SCHEME):
        raise InvalidSecretReference(f"invalid secret prefix {prefix_reference!r}: must start with {SCHEME}")
    path = prefix_reference[len(SCHEME) :].removesuffix("/")
    if not path:
        return ""
    if is_arn(path):
        raise InvalidSecretReference(f"invalid secret prefix {prefix_reference!r}: an ARN is not a prefix")
    _check_path(path, prefix_reference)
    return path


def ssm_path(path: str) -> str | None:
    """The parameter path (under the prefix) of a reference path in the `ssm/` namespace, else None."""
    namespace, _, rest = path.partition("/")
    return rest if namespace == SSM_NAMESPACE and rest else None


def reference_for(path: str) -> str:
    """The reference for a stored path (adapters use it when listing)."""
    return SCHEME + path


def is_under(path: str, prefix: str) -> bool:
    """Segment-wise: `projects/p1` holds `projects/p1/x` but not `projects/p10/x`."""
    return not prefix or path.startswith(prefix + "/")
