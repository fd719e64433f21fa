"""Whose secret a reference names: the one rule the API (when a reference is stored) and the runner
and worker (when it is resolved) both apply, so a caller can never make the system use someone
else's secret. No database, no I/O: a pure function of the reference and a scope.

The namespaces:

- `secret://projects/<project id>[/...]`: a project's secrets (the API writes them there).
- `secret://servers/<handle>[/...]`: a server's SSH key (`.../ssh_key`, uploaded on `server add`).
- `secret://shared/...`: a reference an admin grants by attaching it to a server they add (e.g. one
  deploy key for a fleet). Only admins may store one; whoever deploys to that server may use it.

Anything else (`secret://local/...`, `secret://po/...`, `secret://agents/...`, ARNs) belongs to the
stack itself and is never a valid reference in a request, not even an admin's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.secrets.port import InvalidSecretReference
from shared.secrets.refs import is_arn, parse_reference

SHARED = "shared"


@dataclass(frozen=True)
class SecretScope:
    """What a reference may name for one use: these projects' secrets, these servers' keys, and
    (when `shared`) the admin-granted `secret://shared/...` references."""

    project_ids: frozenset[str] = frozenset()
    server_handles: frozenset[str] = frozenset()
    shared: bool = False


_MALFORMED = ("<malformed>", "")
_ARN = ("<arn>", "")


def _namespace_and_owner(reference: str) -> tuple[str, str]:
    """(`projects`, `<id>`) for `secret://projects/<id>/NAME`; `_ARN` for an ARN, `_MALFORMED` for a bad one."""
    try:
        path = parse_reference(reference)
    except InvalidSecretReference:
        return _MALFORMED
    if is_arn(path):
        return _ARN
    namespace, _, rest = path.partition("/")
    return namespace, rest.split("/", 1)[0]


def reference_allowed(reference: str, scope: SecretScope) -> bool:
    """True only if `reference` is a well-formed reference inside `scope`. Never looks the secret up,
    so the answer is the same whether or not it exists."""
    namespace, owner = _namespace_and_owner(reference)
    if namespace == "projects":
        return owner in scope.project_ids
    if namespace == "servers":
        return owner in scope.server_handles
    if namespace == SHARED:
        return scope.shared and bool(owner)
    return False


PERSON_NAMESPACES = ("projects", "servers", SHARED, "po")
"""Namespaces that hold a person's secrets (or, for `local/`, the stack's own admin material)."""


def worker_reference_allowed(reference: str, po_user_id: str | None = None) -> bool:
    """What a worker may resolve from its `env_vars`: the stack's own references the operator configured
    (the GitHub token, the agents' credentials, in any namespace or as ARNs), and for a Product Owner
    worker its own person's key (`secret://po/<user>/...`); never a project's secrets, a server's key, a
    shared grant, another person's PO key or the embedded stack's `local/` keys. Workers are created by the
    service, so this is defence in depth against a graph that was made to pass the wrong reference."""
    namespace, owner = _namespace_and_owner(reference)
    if (namespace, owner) == _MALFORMED:
        return False
    if (namespace, owner) == _ARN:
        return True
    if namespace == "local":
        return False
    if namespace == "po":
        return po_user_id is not None and owner == po_user_id
    return namespace not in PERSON_NAMESPACES
