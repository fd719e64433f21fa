"""IAM enforcement for the cloud rehearsal: every AWS call a function makes is authorized first.

Three layers, usable separately:

1. `evaluate(statements, action, resource, context)`: identity-based policy evaluation as AWS does it
   for one principal (explicit Deny wins, then any Allow, else the implicit deny), with Action /
   NotAction, Resource / NotResource and the common Condition operators.
2. `authorization_requests(service, operation, params, env)`: what AWS authorizes for one botocore
   call: one or more `AuthRequest(action, resource ARN, condition context)`. S3 operation names
   differ from IAM actions; some calls need several actions (RunTask also needs iam:PassRole on the
   task definition's roles, and ecs:TagResource when it tags). A call this table does not know
   raises `UnmappedOperation`: the rehearsal fails loudly instead of silently allowing it.
3. `install_guard(...)` / `install_guard_from_env()`: patches `botocore.client.BaseClient._make_api_call`
   so every client in the process (made before or after) is mapped and evaluated first, and the presigning
   of clients made after it (a presigned URL acts with the signer's permissions); a denied call
   raises a `ClientError` shaped like AWS's without being sent, and every decision is appended to a
   JSON-lines record so the harness can fail on a denial even when the code swallowed the error.

Only the standard library is imported at module level; botocore is imported by the guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlparse

ContextValue = str | list[str]

# ============================================================================================
# 1. Policy evaluation
# ============================================================================================


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    explicit_deny: bool = False


class PolicyError(ValueError):
    """A statement AWS would reject (no Effect, no Action, no Resource, unknown operator)."""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: `*` any run of characters (also empty), `?` exactly one; nothing else is special."""
    parts = ["\\A"]
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    parts.append("\\Z")
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).match(value) is not None


def arn_match(pattern: str, value: str) -> bool:
    """ARN matching (Resource element, ArnLike/ArnEquals): the first five colon-separated segments
    (arn, partition, service, region, account) are matched one by one, so a wildcard does not run
    across them; the resource part (the rest, which may itself hold `:` and `/`) as one string."""
    if pattern == "*":
        return True
    if not (pattern.startswith("arn:") and value.startswith("arn:")):
        return wildcard_match(pattern, value)
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return wildcard_match(pattern, value)
    return all(wildcard_match(p, v) for p, v in zip(p_parts, v_parts, strict=True))


def action_match(pattern: str, action: str) -> bool:
    return wildcard_match(pattern, action, ignore_case=True)


def _bool_value(value: str) -> str:
    return str(value).strip().lower()


def _numeric(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# base operator -> (negated?, matcher(policy_value, request_value) for the positive form)
_OPERATORS: dict[str, tuple[bool, Callable[[str, str], bool]]] = {
    "StringEquals": (False, lambda p, v: p == v),
    "StringNotEquals": (True, lambda p, v: p == v),
    "StringEqualsIgnoreCase": (False, lambda p, v: p.lower() == v.lower()),
    "StringNotEqualsIgnoreCase": (True, lambda p, v: p.lower() == v.lower()),
    "StringLike": (False, lambda p, v: wildcard_match(p, v)),
    "StringNotLike": (True, lambda p, v: wildcard_match(p, v)),
    "ArnEquals": (False, arn_match),
    "ArnLike": (False, arn_match),
    "ArnNotEquals": (True, arn_match),
    "ArnNotLike": (True, arn_match),
    "Bool": (False, lambda p, v: _bool_value(p) == _bool_value(v)),
    "NumericEquals": (False, lambda p, v: _numeric(p) is not None and _numeric(p) == _numeric(v)),
    "NumericNotEquals": (True, lambda p, v: _numeric(p) is not None and _numeric(p) == _numeric(v)),
    "NumericLessThan": (False, lambda p, v: _cmp(v, p, lambda a, b: a < b)),
    "NumericLessThanEquals": (False, lambda p, v: _cmp(v, p, lambda a, b: a <= b)),
    "NumericGreaterThan": (False, lambda p, v: _cmp(v, p, lambda a, b: a > b)),
    "NumericGreaterThanEquals": (False, lambda p, v: _cmp(v, p, lambda a, b: a >= b)),
}


def _cmp(request: str, policy: str, op: Callable[[float, float], bool]) -> bool:
    a, b = _numeric(request), _numeric(policy)
    return a is not None and b is not None and op(a, b)


def _lookup(context: Mapping[str, ContextValue], key: str) -> ContextValue | None:
    """Condition keys are case-insensitive (their values are not)."""
    if key in context:
        return context[key]
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return value
    return None


def _single(negated: bool, matcher: Callable[[str, str], bool], policy_values: list[str], value: str) -> bool:
    hit = any(matcher(str(p), str(value)) for p in policy_values)
    return not hit if negated else hit


def _condition_holds(operator: str, key: str, policy_value: Any, context: Mapping[str, ContextValue]) -> bool:
    qualifier = None
    op = operator
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if op.startswith(prefix):
            qualifier, op = prefix[:-1], op[len(prefix) :]
    present = _lookup(context, key)
    if op == "Null":
        # "Null": "true" means the key must be absent; "false" that it must be present.
        wanted = {_bool_value(p) for p in _as_list(policy_value)}
        return ("true" if present is None else "false") in wanted
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    if op not in _OPERATORS:
        raise PolicyError(f"condition operator {operator!r} is not supported by the rehearsal's evaluator")
    negated, matcher = _OPERATORS[op]
    policy_values = [str(p) for p in _as_list(policy_value)]
    if present is None:
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True  # vacuously true over an empty set
        if qualifier == "ForAnyValue":
            return False
        # AWS: a key absent from the request makes the condition false, except for the negated
        # operators (StringNotEquals, ArnNotLike, ...), which are then true.
        return negated
    values = [str(v) for v in _as_list(present)]
    if qualifier == "ForAllValues":
        return all(_single(negated, matcher, policy_values, v) for v in values)
    if qualifier == "ForAnyValue" or not negated:
        return any(_single(negated, matcher, policy_values, v) for v in values)
    return all(_single(negated, matcher, policy_values, v) for v in values)


def _conditions_hold(condition: Mapping[str, Any] | None, context: Mapping[str, ContextValue]) -> bool:
    for operator, block in (condition or {}).items():
        if not isinstance(block, Mapping):
            raise PolicyError(f"condition {operator!r} must map keys to values, got {block!r}")
        for key, value in block.items():
            if not _condition_holds(operator, key, value, context):
                return False
    return True


def statement_label(statement: Mapping[str, Any], index: int) -> str:
    sid = statement.get("Sid")
    source = statement.get("_source")  # optional note the harness may add (policy / role name)
    label = f"statement #{index}" + (f" ({sid})" if sid else "")
    return f"{label} of {source}" if source else label


def statement_applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, ContextValue]
) -> bool:
    if "Action" in statement:
        if not any(action_match(str(p), action) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(action_match(str(p), action) for p in _as_list(statement["NotAction"])):
            return False
    else:
        raise PolicyError(f"statement without Action or NotAction: {statement!r}")
    if "Resource" in statement:
        if not any(arn_match(str(p), resource) for p in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(arn_match(str(p), resource) for p in _as_list(statement["NotResource"])):
            return False
    else:
        raise PolicyError(f"statement without Resource or NotResource: {statement!r}")
    return _conditions_hold(statement.get("Condition"), context)


def evaluate(
    statements: Sequence[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
) -> Decision:
    """Identity-based evaluation for one principal: an explicit Deny wins, then any Allow; default deny."""
    context = context or {}
    allowed_by: str | None = None
    for index, statement in enumerate(statements):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"statement #{index} has Effect {effect!r} (Allow or Deny expected)")
        if not statement_applies(statement, action, resource, context):
            continue
        if effect == "Deny":
            return Decision(
                False,
                f"{statement_label(statement, index)} explicitly denies {action} on {resource}",
                explicit_deny=True,
            )
        if allowed_by is None:
            allowed_by = statement_label(statement, index)
    if allowed_by is not None:
        return Decision(True, f"{allowed_by} allows {action} on {resource}")
    return Decision(False, f"no statement allows {action} on {resource}")


# ============================================================================================
# 2. Botocore request -> what AWS authorizes
# ============================================================================================


class UnmappedOperation(LookupError):
    """The rehearsal does not know what AWS authorizes for this call: extend `tests/cloud/iam.py`."""

    def __init__(self, service: str, operation: str, detail: str = "") -> None:
        self.service, self.operation = service, operation
        message = f"the IAM rehearsal has no mapping for {service}:{operation}"
        super().__init__(message + (f" ({detail})" if detail else "") + " - add it to tests/cloud/iam.py")


@dataclass(frozen=True)
class AuthRequest:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    note: str = ""
    """Set when the resource is an approximation (a placeholder secret suffix, a not-yet-created ARN)."""


@dataclass(frozen=True)
class Env:
    """What the mapping needs beyond the call's parameters. The lookups may be None (then the ARN is
    built from the parameters alone, and noted)."""

    region: str = "us-east-1"
    account: str = "123456789012"
    partition: str = "aws"
    secret_arn: Callable[[str], str | None] | None = None
    """Secret name or (partial) ARN -> the secret's real ARN (with its 6-character suffix), None if absent."""
    task_definition: Callable[[str], Mapping[str, Any] | None] | None = None
    """Task definition family, family:revision or ARN -> {"taskDefinitionArn", "taskRoleArn", "executionRoleArn"}."""
    db_resource_id: Callable[[str], str | None] | None = None
    """Database host name -> its resource id (`cluster-...` / `db-...`), the middle of an `rds-db` ARN."""

    def arn(self, service: str, resource: str, region: str | None = None, account: str | None = None) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region is None else region}:"
            f"{self.account if account is None else account}:{resource}"
        )


Mapper = Callable[[Mapping[str, Any], Env], list[AuthRequest]]
_MAPPERS: dict[tuple[str, str], Mapper] = {}
MAPPED_ACTIONS: set[str] = set()
"""Every IAM action some mapped operation can require."""


def _maps(service: str, operations: str, *actions: str) -> Callable[[Mapper], Mapper]:
    def register(fn: Mapper) -> Mapper:
        for operation in operations.split():
            _MAPPERS[(service, operation)] = fn
        MAPPED_ACTIONS.update(actions)
        return fn

    return register


def _simple(
    service: str, operation: str, action: str, resource: Callable[[Mapping[str, Any], Env], str]
) -> None:
    _maps(service, operation, action)(lambda p, env: [AuthRequest(action, resource(p, env))])


def _required(params: Mapping[str, Any], name: str, service: str, operation: str) -> Any:
    if params.get(name) in (None, ""):
        raise UnmappedOperation(service, operation, f"parameter {name} is missing")
    return params[name]


def authorization_requests(
    service: str, operation: str, params: Mapping[str, Any], env: Env
) -> list[AuthRequest]:
    """What AWS authorizes for one API call (an empty list: nothing, e.g. sts:GetCallerIdentity)."""
    mapper = _MAPPERS.get((service, operation))
    if mapper is None:
        raise UnmappedOperation(service, operation)
    requests = mapper(params, env)
    return [
        dataclasses.replace(r, context={"aws:RequestedRegion": env.region, **r.context}) for r in requests
    ]


def mapped_operations() -> list[tuple[str, str]]:
    return sorted(_MAPPERS)


# -- SQS ---------------------------------------------------------------------------------------


def sqs_queue_arn(params: Mapping[str, Any], env: Env, operation: str = "?") -> str:
    """From QueueUrl (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or moto's
    `http://host:port/<account>/<name>`) or QueueName (+ QueueOwnerAWSAccountId)."""
    url = params.get("QueueUrl")
    if url:
        parsed = urlparse(str(url))
        parts = [p for p in parsed.path.split("/") if p]
        if len(parts) != 2 or not parts[0].isdigit():
            raise UnmappedOperation(
                "sqs", operation, f"cannot read account and queue name from QueueUrl {url!r}"
            )
        region = env.region
        host = re.fullmatch(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?", parsed.hostname or "")
        if host:
            region = host.group(1)
        return env.arn("sqs", parts[1], region=region, account=parts[0])
    name = _required(params, "QueueName", "sqs", operation)
    return env.arn("sqs", str(name), account=str(params.get("QueueOwnerAWSAccountId") or env.account))


def _sqs(action: str) -> Mapper:
    return lambda p, env: [AuthRequest(action, sqs_queue_arn(p, env, action.split(":")[1]))]


for _op, _action in {
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "SetQueueAttributes": "sqs:SetQueueAttributes",
    "GetQueueUrl": "sqs:GetQueueUrl",
    "PurgeQueue": "sqs:PurgeQueue",
    "DeleteQueue": "sqs:DeleteQueue",
    "ListQueueTags": "sqs:ListQueueTags",
    "TagQueue": "sqs:TagQueue",
    "UntagQueue": "sqs:UntagQueue",
    "ListDeadLetterSourceQueues": "sqs:ListDeadLetterSourceQueues",
}.items():
    _maps("sqs", _op, _action)(_sqs(_action))


@_maps("sqs", "CreateQueue", "sqs:CreateQueue", "sqs:TagQueue")
def _sqs_create(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    arn = sqs_queue_arn(p, env, "CreateQueue")
    out = [AuthRequest("sqs:CreateQueue", arn)]
    if p.get("tags"):  # tagging on create needs sqs:TagQueue as well
        out.append(AuthRequest("sqs:TagQueue", arn, _tag_context(p["tags"])))
    return out


_simple("sqs", "ListQueues", "sqs:ListQueues", lambda p, env: "*")


def _tag_context(tags: Mapping[str, str] | Sequence[Mapping[str, str]]) -> dict[str, ContextValue]:
    if isinstance(tags, Mapping):
        pairs = [(str(k), str(v)) for k, v in tags.items()]
    else:
        pairs = [(str(t.get("key", t.get("Key"))), str(t.get("value", t.get("Value", "")))) for t in tags]
    context: dict[str, ContextValue] = {f"aws:RequestTag/{k}": v for k, v in pairs}
    context["aws:TagKeys"] = [k for k, _ in pairs]
    return context


# -- DynamoDB ----------------------------------------------------------------------------------


def dynamodb_table_arn(table: str, env: Env, index: str | None = None) -> str:
    arn = table if table.startswith("arn:") else env.arn("dynamodb", f"table/{table}")
    return f"{arn}/index/{index}" if index else arn


def _dynamodb(action: str, indexed: bool = False) -> Mapper:
    def mapper(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
        table = str(_required(p, "TableName", "dynamodb", action.split(":")[1]))
        return [AuthRequest(action, dynamodb_table_arn(table, env, p.get("IndexName") if indexed else None))]

    return mapper


for _op in (
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "DescribeTable",
    "DescribeTimeToLive",
    "UpdateTimeToLive",
    "CreateTable",
    "DeleteTable",
    "UpdateTable",
):
    _maps("dynamodb", _op, f"dynamodb:{_op}")(_dynamodb(f"dynamodb:{_op}"))
for _op in ("Query", "Scan"):  # on an index, the resource is table/T/index/I
    _maps("dynamodb", _op, f"dynamodb:{_op}")(_dynamodb(f"dynamodb:{_op}", indexed=True))


def _dynamodb_batch(action: str) -> Mapper:
    # one request per table named in RequestItems
    return lambda p, env: [
        AuthRequest(action, dynamodb_table_arn(str(t), env)) for t in p.get("RequestItems") or {}
    ]


_maps("dynamodb", "BatchGetItem", "dynamodb:BatchGetItem")(_dynamodb_batch("dynamodb:BatchGetItem"))
_maps("dynamodb", "BatchWriteItem", "dynamodb:BatchWriteItem")(_dynamodb_batch("dynamodb:BatchWriteItem"))


_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


@_maps("dynamodb", "TransactWriteItems", *_TRANSACT_WRITE.values())
def _dynamodb_transact_write(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    # there is no dynamodb:TransactWriteItems action: each item needs its own action on its table
    out: list[AuthRequest] = []
    for item in p.get("TransactItems") or []:
        for kind, body in item.items():
            out.append(AuthRequest(_TRANSACT_WRITE[kind], dynamodb_table_arn(str(body["TableName"]), env)))
    return _dedupe(out)


@_maps("dynamodb", "TransactGetItems", "dynamodb:GetItem")
def _dynamodb_transact_get(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    return _dedupe(
        [
            AuthRequest("dynamodb:GetItem", dynamodb_table_arn(str(i["Get"]["TableName"]), env))
            for i in p.get("TransactItems") or []
        ]
    )


_simple(
    "dynamodbstreams",
    "DescribeStream",
    "dynamodb:DescribeStream",
    lambda p, env: str(_required(p, "StreamArn", "dynamodbstreams", "DescribeStream")),
)
_simple(
    "dynamodbstreams",
    "GetShardIterator",
    "dynamodb:GetShardIterator",
    lambda p, env: str(_required(p, "StreamArn", "dynamodbstreams", "GetShardIterator")),
)
# dynamodbstreams GetRecords takes only an opaque ShardIterator: its stream ARN cannot be known here.


def _dedupe(requests: Iterable[AuthRequest]) -> list[AuthRequest]:
    seen: dict[tuple[str, str], AuthRequest] = {}
    for r in requests:
        seen.setdefault((r.action, r.resource), r)
    return list(seen.values())


# -- S3 ----------------------------------------------------------------------------------------


def _bucket(p: Mapping[str, Any], operation: str) -> str:
    bucket = str(_required(p, "Bucket", "s3", operation))
    if bucket.startswith("arn:"):
        raise UnmappedOperation("s3", operation, "access point / Outposts bucket ARNs are not mapped")
    return bucket


def s3_bucket_arn(bucket: str, env: Env) -> str:
    return f"arn:{env.partition}:s3:::{bucket}"


def s3_object_arn(bucket: str, key: str, env: Env) -> str:
    return f"arn:{env.partition}:s3:::{bucket}/{key}"


def _s3_object(action: str, versioned_action: str | None = None) -> Mapper:
    def mapper(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
        name = action.split(":")[1]
        arn = s3_object_arn(_bucket(p, name), str(_required(p, "Key", "s3", name)), env)
        chosen = versioned_action if versioned_action and p.get("VersionId") else action
        return [AuthRequest(chosen, arn)]

    return mapper


_maps("s3", "GetObject HeadObject", "s3:GetObject", "s3:GetObjectVersion")(
    _s3_object("s3:GetObject", "s3:GetObjectVersion")
)
_maps("s3", "DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion")(
    _s3_object("s3:DeleteObject", "s3:DeleteObjectVersion")
)
_maps("s3", "UploadPart CompleteMultipartUpload", "s3:PutObject")(_s3_object("s3:PutObject"))
_maps("s3", "AbortMultipartUpload", "s3:AbortMultipartUpload")(_s3_object("s3:AbortMultipartUpload"))
_maps("s3", "ListParts", "s3:ListMultipartUploadParts")(_s3_object("s3:ListMultipartUploadParts"))
_maps("s3", "GetObjectTagging", "s3:GetObjectTagging", "s3:GetObjectVersionTagging")(
    _s3_object("s3:GetObjectTagging", "s3:GetObjectVersionTagging")
)
_maps("s3", "PutObjectTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging")(
    _s3_object("s3:PutObjectTagging", "s3:PutObjectVersionTagging")
)


def _s3_put_context(p: Mapping[str, Any]) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {}
    if p.get("ServerSideEncryption"):
        context["s3:x-amz-server-side-encryption"] = str(p["ServerSideEncryption"])
    if p.get("ACL"):
        context["s3:x-amz-acl"] = str(p["ACL"])
    return context


@_maps("s3", "PutObject CreateMultipartUpload", "s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectAcl")
def _s3_put(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    arn = s3_object_arn(_bucket(p, "PutObject"), str(_required(p, "Key", "s3", "PutObject")), env)
    out = [AuthRequest("s3:PutObject", arn, _s3_put_context(p))]
    if p.get("Tagging"):  # tags with the upload need s3:PutObjectTagging too
        out.append(AuthRequest("s3:PutObjectTagging", arn))
    if p.get("ACL") or any(k.startswith("Grant") for k in p):
        out.append(AuthRequest("s3:PutObjectAcl", arn, _s3_put_context(p)))
    return out


def _copy_source(source: Any) -> tuple[str, str, str | None]:
    if isinstance(source, Mapping):
        return str(source["Bucket"]), str(source["Key"]), source.get("VersionId")
    text = str(source).lstrip("/")
    path, _, query = text.partition("?versionId=")
    bucket, _, key = path.partition("/")
    return bucket, key, query or None


@_maps("s3", "CopyObject UploadPartCopy", "s3:PutObject", "s3:GetObject", "s3:GetObjectVersion")
def _s3_copy(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    bucket, key, version = _copy_source(_required(p, "CopySource", "s3", "CopyObject"))
    return [
        AuthRequest(
            "s3:PutObject", s3_object_arn(_bucket(p, "CopyObject"), str(p["Key"]), env), _s3_put_context(p)
        ),
        AuthRequest("s3:GetObjectVersion" if version else "s3:GetObject", s3_object_arn(bucket, key, env)),
    ]


@_maps("s3", "DeleteObjects", "s3:DeleteObject", "s3:DeleteObjectVersion")
def _s3_delete_many(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    bucket = _bucket(p, "DeleteObjects")
    return [
        AuthRequest(
            "s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject",
            s3_object_arn(bucket, str(o["Key"]), env),
        )
        for o in (p.get("Delete") or {}).get("Objects", [])
    ]


def _s3_list_context(p: Mapping[str, Any]) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {}
    for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"), ("MaxKeys", "s3:max-keys")):
        if p.get(param) is not None:
            context[key] = str(p[param])
    return context


def _s3_bucket(action: str, with_list_context: bool = False) -> Mapper:
    def mapper(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
        context = _s3_list_context(p) if with_list_context else {}
        return [AuthRequest(action, s3_bucket_arn(_bucket(p, action.split(":")[1]), env), context)]

    return mapper


_maps("s3", "ListObjectsV2 ListObjects HeadBucket", "s3:ListBucket")(_s3_bucket("s3:ListBucket", True))
_maps("s3", "ListObjectVersions", "s3:ListBucketVersions")(_s3_bucket("s3:ListBucketVersions", True))
_maps("s3", "ListMultipartUploads", "s3:ListBucketMultipartUploads")(
    _s3_bucket("s3:ListBucketMultipartUploads")
)
_maps("s3", "GetBucketLocation", "s3:GetBucketLocation")(_s3_bucket("s3:GetBucketLocation"))
_maps("s3", "GetBucketLifecycleConfiguration GetBucketLifecycle", "s3:GetLifecycleConfiguration")(
    _s3_bucket("s3:GetLifecycleConfiguration")
)
# DeleteBucketLifecycle is authorized as s3:PutLifecycleConfiguration (there is no Delete action)
_maps(
    "s3",
    "PutBucketLifecycleConfiguration PutBucketLifecycle DeleteBucketLifecycle",
    "s3:PutLifecycleConfiguration",
)(_s3_bucket("s3:PutLifecycleConfiguration"))
_maps("s3", "CreateBucket", "s3:CreateBucket")(_s3_bucket("s3:CreateBucket"))
_maps("s3", "DeleteBucket", "s3:DeleteBucket")(_s3_bucket("s3:DeleteBucket"))
_simple("s3", "ListBuckets", "s3:ListAllMyBuckets", lambda p, env: "*")

# -- Secrets Manager ---------------------------------------------------------------------------

SECRET_PLACEHOLDER_SUFFIX = "XXXXXX"
"""Stands for the 6 random characters AWS appends to a secret's name in its ARN (not known before
CreateSecret): matches `NAME-??????` and `prefix/*` patterns, as the real suffix would."""


def secret_request(secret_id: str, env: Env, creating: bool = False) -> tuple[str, str]:
    """(ARN to authorize, note). An existing secret: its real ARN (by the lookup). A name that does
    not exist: for CreateSecret the ARN it will get with a placeholder suffix; otherwise the partial
    ARN without suffix (a `NAME-??????` pattern does not match it, a `prefix/*` one does)."""
    real = env.secret_arn(secret_id) if env.secret_arn else None
    if real:
        return real, ""
    if secret_id.startswith("arn:"):
        return secret_id, "" if env.secret_arn is None else "secret not found: the ARN as given"
    base = env.arn("secretsmanager", f"secret:{secret_id}")
    if creating:
        return f"{base}-{SECRET_PLACEHOLDER_SUFFIX}", "new secret: placeholder for the random ARN suffix"
    return base, "secret not found: partial ARN without the random suffix"


_SECRET_ACTIONS = (
    "GetSecretValue",
    "DescribeSecret",
    "PutSecretValue",
    "UpdateSecret",
    "DeleteSecret",
    "RestoreSecret",
    "RotateSecret",
    "CancelRotateSecret",
    "ListSecretVersionIds",
    "GetResourcePolicy",
    "UpdateSecretVersionStage",
    "TagResource",
    "UntagResource",
)


def _secret_op(operation: str) -> Mapper:
    action = f"secretsmanager:{operation}"

    def mapper(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
        arn, note = secret_request(str(_required(p, "SecretId", "secretsmanager", operation)), env)
        context: dict[str, ContextValue] = {}
        if p.get("VersionId"):
            context["secretsmanager:VersionId"] = str(p["VersionId"])
        if p.get("VersionStage"):
            context["secretsmanager:VersionStage"] = str(p["VersionStage"])
        if "ForceDeleteWithoutRecovery" in p:
            context["secretsmanager:ForceDeleteWithoutRecovery"] = str(
                bool(p["ForceDeleteWithoutRecovery"])
            ).lower()
        if p.get("RecoveryWindowInDays") is not None:
            context["secretsmanager:RecoveryWindowInDays"] = str(p["RecoveryWindowInDays"])
        if operation == "TagResource":
            context.update(_tag_context(p.get("Tags") or []))
        return [AuthRequest(action, arn, context, note)]

    return mapper


for _op in _SECRET_ACTIONS:
    _maps("secretsmanager", _op, f"secretsmanager:{_op}")(_secret_op(_op))


@_maps("secretsmanager", "CreateSecret", "secretsmanager:CreateSecret", "secretsmanager:TagResource")
def _secret_create(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    name = str(_required(p, "Name", "secretsmanager", "CreateSecret"))
    arn, note = secret_request(name, env, creating=True)
    context: dict[str, ContextValue] = {"secretsmanager:Name": name}
    out = [AuthRequest("secretsmanager:CreateSecret", arn, context, note)]
    if p.get("Tags"):
        out[0] = AuthRequest("secretsmanager:CreateSecret", arn, {**context, **_tag_context(p["Tags"])}, note)
        out.append(AuthRequest("secretsmanager:TagResource", arn, _tag_context(p["Tags"]), note))
    if p.get("KmsKeyId"):
        raise UnmappedOperation("secretsmanager", "CreateSecret", "a customer KMS key needs kms: permissions")
    return out


_simple("secretsmanager", "ListSecrets", "secretsmanager:ListSecrets", lambda p, env: "*")
_simple("secretsmanager", "GetRandomPassword", "secretsmanager:GetRandomPassword", lambda p, env: "*")

# -- SSM Parameter Store ------------------------------------------------------------------------


def ssm_parameter_arn(name: str, env: Env) -> str:
    """`parameter/<name without its leading slash>`; a name may also be the parameter's ARN."""
    if name.startswith("arn:"):
        return name
    return env.arn("ssm", "parameter/" + name.split(":", 1)[0].lstrip("/"))


@_maps("ssm", "GetParameter", "ssm:GetParameter", "kms:Decrypt")
def _ssm_get_parameter(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    """GetParameter; with WithDecryption, the kms:Decrypt SSM makes with the caller's credentials (as if the
    parameter were a SecureString under the aws/ssm key, whose id the rehearsal does not know: a placeholder
    key ARN; the key's own policy is not evaluated, so the identity policy must allow it)."""
    arn = ssm_parameter_arn(str(_required(p, "Name", "ssm", "GetParameter")), env)
    out = [AuthRequest("ssm:GetParameter", arn)]
    if p.get("WithDecryption"):
        context: dict[str, ContextValue] = {
            "kms:ViaService": f"ssm.{env.region}.amazonaws.com",
            "kms:EncryptionContext:PARAMETER_ARN": arn,
        }
        out.append(AuthRequest("kms:Decrypt", env.arn("kms", "key/aws-ssm"), context, "the aws/ssm key's id"))
    return out


# -- RDS IAM database authentication -----------------------------------------------------------


@_maps("rds-db", "connect", "rds-db:connect")
def _db_connect(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    """A token from `generate_db_auth_token` logs in as DBUsername: `rds-db:connect` on
    `dbuser:<the database's resource id>/<user>` (the host names the database; the port does not count)."""
    host = str(_required(p, "DBHostname", "rds-db", "connect"))
    user = str(_required(p, "DBUsername", "rds-db", "connect"))
    resource_id = env.db_resource_id(host) if env.db_resource_id else None
    if resource_id is None:
        raise UnmappedOperation("rds-db", "connect", f"no database known at host {host}")
    return [AuthRequest("rds-db:connect", env.arn("rds-db", f"dbuser:{resource_id}/{user}"))]


# -- ECS ---------------------------------------------------------------------------------------


def ecs_cluster(p: Mapping[str, Any], env: Env) -> tuple[str, str]:
    """(cluster name, cluster ARN); ECS uses the cluster "default" when none is given."""
    cluster = str(p.get("cluster") or "default")
    if cluster.startswith("arn:"):
        return cluster.rsplit("/", 1)[-1], cluster
    return cluster, env.arn("ecs", f"cluster/{cluster}")


def ecs_task_arn(task: str, cluster_name: str, env: Env) -> str:
    return task if task.startswith("arn:") else env.arn("ecs", f"task/{cluster_name}/{task}")


def _task_definition(value: str, env: Env) -> tuple[str, Mapping[str, Any], str]:
    found = env.task_definition(value) if env.task_definition else None
    if found:
        return str(found["taskDefinitionArn"]), found, ""
    if value.startswith("arn:"):
        return value, {}, "task definition not found: its roles are unknown"
    return env.arn("ecs", f"task-definition/{value}"), {}, "task definition not found: its roles are unknown"


RUN_TASK_TAG_PLACEHOLDER = "00000000000000000000000000000000"
"""Stands for the id of the task RunTask is about to create (for ecs:TagResource on create)."""


@_maps("ecs", "RunTask", "ecs:RunTask", "ecs:TagResource", "iam:PassRole")
def _ecs_run_task(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    name, cluster_arn = ecs_cluster(p, env)
    td_arn, td, note = _task_definition(str(_required(p, "taskDefinition", "ecs", "RunTask")), env)
    context: dict[str, ContextValue] = {"ecs:cluster": cluster_arn}
    if "enableExecuteCommand" in p:
        context["ecs:enable-execute-command"] = "true" if p["enableExecuteCommand"] else "false"
    if "enableECSManagedTags" in p:
        context["ecs:enable-managed-tags"] = "true" if p["enableECSManagedTags"] else "false"
    if p.get("capacityProviderStrategy"):
        context["ecs:capacity-provider"] = [str(s["capacityProvider"]) for s in p["capacityProviderStrategy"]]
    if p.get("tags"):
        context.update(_tag_context(p["tags"]))
    out = [AuthRequest("ecs:RunTask", td_arn, context, note)]
    if p.get("tags"):
        # tag-on-create: ecs:TagResource on the task about to exist, with ecs:CreateAction=RunTask
        task_arn = env.arn("ecs", f"task/{name}/{RUN_TASK_TAG_PLACEHOLDER}")
        out.append(
            AuthRequest(
                "ecs:TagResource",
                task_arn,
                {"ecs:CreateAction": "RunTask", **_tag_context(p["tags"])},
                "placeholder id for the task being created",
            )
        )
    overrides = p.get("overrides") or {}
    for role in (
        overrides.get("taskRoleArn") or td.get("taskRoleArn"),
        overrides.get("executionRoleArn") or td.get("executionRoleArn"),
    ):
        if role:
            out.append(
                AuthRequest("iam:PassRole", str(role), {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
            )
    return _dedupe(out)


@_maps("ecs", "StopTask", "ecs:StopTask")
def _ecs_stop(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    name, cluster_arn = ecs_cluster(p, env)
    task = ecs_task_arn(str(_required(p, "task", "ecs", "StopTask")), name, env)
    return [AuthRequest("ecs:StopTask", task, {"ecs:cluster": cluster_arn})]


@_maps("ecs", "DescribeTasks", "ecs:DescribeTasks")
def _ecs_describe(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    name, cluster_arn = ecs_cluster(p, env)
    return [
        AuthRequest("ecs:DescribeTasks", ecs_task_arn(str(t), name, env), {"ecs:cluster": cluster_arn})
        for t in _required(p, "tasks", "ecs", "DescribeTasks")
    ]


@_maps("ecs", "ListTasks", "ecs:ListTasks")
def _ecs_list(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    # The Service Authorization Reference gives ListTasks the container-instance resource type with
    # ecs:cluster; without a containerInstance filter (Fargate) only Resource "*" (narrowed by an
    # ecs:cluster condition) grants it, so the request's resource is "*" then.
    name, cluster_arn = ecs_cluster(p, env)
    instance = p.get("containerInstance")
    resource = "*"
    if instance:
        resource = (
            str(instance)
            if str(instance).startswith("arn:")
            else env.arn("ecs", f"container-instance/{name}/{instance}")
        )
    return [AuthRequest("ecs:ListTasks", resource, {"ecs:cluster": cluster_arn})]


@_maps("ecs", "DescribeClusters", "ecs:DescribeClusters")
def _ecs_describe_clusters(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    clusters = p.get("clusters") or ["default"]
    return [AuthRequest("ecs:DescribeClusters", ecs_cluster({"cluster": c}, env)[1]) for c in clusters]


_simple("ecs", "DescribeTaskDefinition", "ecs:DescribeTaskDefinition", lambda p, env: "*")
_simple("ecs", "ListClusters", "ecs:ListClusters", lambda p, env: "*")

# -- CloudWatch, Logs, EventBridge, STS, Lambda -----------------------------------------------

_maps("cloudwatch", "PutMetricData", "cloudwatch:PutMetricData")(
    lambda p, env: [
        AuthRequest(
            "cloudwatch:PutMetricData",
            "*",
            {"cloudwatch:namespace": str(_required(p, "Namespace", "cloudwatch", "PutMetricData"))},
        )
    ]
)


def _log_stream_arn(p: Mapping[str, Any], env: Env, operation: str) -> str:
    group = str(_required(p, "logGroupName", "logs", operation))
    stream = str(_required(p, "logStreamName", "logs", operation))
    return env.arn("logs", f"log-group:{group}:log-stream:{stream}")


# CreateLogStream and PutLogEvents are evaluated on the log stream ARN
# (`...:log-group:G:log-stream:S`), which the usual `...:log-group:G:*` grant covers.
_simple(
    "logs",
    "CreateLogStream",
    "logs:CreateLogStream",
    lambda p, env: _log_stream_arn(p, env, "CreateLogStream"),
)
_simple("logs", "PutLogEvents", "logs:PutLogEvents", lambda p, env: _log_stream_arn(p, env, "PutLogEvents"))
_simple(
    "logs",
    "CreateLogGroup",
    "logs:CreateLogGroup",
    lambda p, env: env.arn("logs", f"log-group:{_required(p, 'logGroupName', 'logs', 'CreateLogGroup')}"),
)


@_maps("events", "PutEvents", "events:PutEvents")
def _events_put(p: Mapping[str, Any], env: Env) -> list[AuthRequest]:
    out = []
    for entry in p.get("Entries") or []:
        bus = str(entry.get("EventBusName") or "default")
        arn = bus if bus.startswith("arn:") else env.arn("events", f"event-bus/{bus}")
        context: dict[str, ContextValue] = {}
        if entry.get("Source"):
            context["events:source"] = str(entry["Source"])
        if entry.get("DetailType"):
            context["events:detail-type"] = str(entry["DetailType"])
        out.append(AuthRequest("events:PutEvents", arn, context))
    return out


_maps("sts", "GetCallerIdentity")(lambda p, env: [])  # AWS never denies it


def lambda_function_arn(p: Mapping[str, Any], env: Env) -> str:
    name = str(_required(p, "FunctionName", "lambda", "Invoke"))
    qualifier = p.get("Qualifier")
    if name.startswith("arn:"):
        arn = name
    elif ":" in name:  # "account:function:name[:qualifier]" (partial ARN) or "name:qualifier"
        parts = name.split(":")
        if len(parts) >= 3 and parts[1] == "function":
            arn = env.arn("lambda", ":".join(parts[1:]), account=parts[0])
        else:
            arn = env.arn("lambda", f"function:{name}")
    else:
        arn = env.arn("lambda", f"function:{name}")
    return f"{arn}:{qualifier}" if qualifier and arn.count(":") == 6 else arn


_simple("lambda", "Invoke", "lambda:InvokeFunction", lambda_function_arn)

# -- vocabulary ---------------------------------------------------------------------------------

PLATFORM_ACTIONS = frozenset(
    {
        # used by Lambda / ECS with the role on the function's behalf, never by its code
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        "ec2:DescribeSubnets",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage",
    }
)
GRANT_ONLY_ACTIONS = frozenset(
    {
        # granted by CDK helpers (grantReadWriteData) but not callable through this mapping: GetRecords
        # takes an opaque shard iterator, so its stream ARN is unknown; the code base never reads streams
        "dynamodb:GetRecords",
    }
)


def known_actions() -> frozenset[str]:
    """Every action the rehearsal knows: produced by the mapping, used by the platform, or grant-only."""
    return frozenset(MAPPED_ACTIONS) | PLATFORM_ACTIONS | GRANT_ONLY_ACTIONS


def is_known_action(pattern: str) -> bool:
    """A policy's Action entry (possibly with wildcards) names at least one known action."""
    return any(action_match(pattern, a) for a in known_actions())


# ============================================================================================
# 3. The guard
# ============================================================================================

_JSON_ERROR_CODE = "AccessDeniedException"
_QUERY_ERROR_CODE = "AccessDenied"
_ACCESS_DENIED: dict[str, tuple[str, int]] = {
    # service -> (Error.Code, HTTP status) as AWS answers an identity-policy denial
    "sqs": (_QUERY_ERROR_CODE, 403),  # JSON protocol now, but query-compatible codes
    "s3": (_QUERY_ERROR_CODE, 403),
    "sts": (_QUERY_ERROR_CODE, 403),
    "cloudwatch": (_QUERY_ERROR_CODE, 403),
    "iam": (_QUERY_ERROR_CODE, 403),
    "lambda": (_JSON_ERROR_CODE, 403),
}


def access_denied_message(principal: str, request: AuthRequest, decision: Decision) -> str:
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.explicit_deny
        else f"because no identity-based policy allows the {request.action} action"
    )
    return f"User: {principal} is not authorized to perform: {request.action} on resource: {request.resource} {why}"


@dataclass
class _GuardState:
    statements: list[Mapping[str, Any]]
    principal: str
    env: Env
    record_path: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)


_state: _GuardState | None = None
_original_make_api_call: Any = None
_original_presign: Any = None
_original_db_auth_token: Any = None
_local = threading.local()


@contextlib.contextmanager
def unguarded() -> Iterator[None]:
    """Calls made inside are not checked nor recorded (the guard's own look-ups)."""
    previous = getattr(_local, "bypass", False)
    _local.bypass = True
    try:
        yield
    finally:
        _local.bypass = previous


def _record(state: _GuardState, entry: dict[str, Any]) -> None:
    if not state.record_path:
        return
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    with state.lock:  # one write() per line on an O_APPEND descriptor: lines from processes never interleave
        fd = os.open(state.record_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _denied_error(client: Any, service: str, operation: str, message: str) -> Exception:
    code, status = _ACCESS_DENIED.get(service, (_JSON_ERROR_CODE, 400))
    detail = message
    if service == "s3" and operation == "HeadObject":
        code, message = "403", "Forbidden"  # HEAD answers carry no body
    response = {
        "Error": {"Code": code, "Message": message, "Type": "Sender"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
        "rehearsal": f"denied by tests/cloud/iam.py before the request was sent: {detail}",
    }
    error: Exception = client.exceptions.from_code(code)(response, operation)
    return error


def check_call(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    region: str | None = None,
    state: _GuardState | None = None,
) -> tuple[list[tuple[AuthRequest, Decision]], Decision]:
    """Map and evaluate one call against the installed guard (records every decision)."""
    state = state or _state
    if state is None:
        raise RuntimeError("the IAM guard is not installed")
    env = dataclasses.replace(state.env, region=region) if region else state.env
    base = {"service": service, "operation": operation, "principal": state.principal}
    try:
        requests = authorization_requests(service, operation, params, env)
    except UnmappedOperation as exc:
        _record(state, {**base, "action": None, "resource": None, "allowed": False, "reason": str(exc)})
        raise
    results = []
    for request in requests:
        decision = evaluate(state.statements, request.action, request.resource, request.context)
        reason = decision.reason + (f" [{request.note}]" if request.note else "")
        _record(
            state,
            {
                **base,
                "action": request.action,
                "resource": request.resource,
                "allowed": decision.allowed,
                "reason": reason,
            },
        )
        results.append((request, decision))
    if not requests:
        overall = Decision(True, f"{service}:{operation} needs no permission")
        _record(state, {**base, "action": None, "resource": None, "allowed": True, "reason": overall.reason})
        return results, overall
    denied = [(r, d) for r, d in results if not d.allowed]
    if denied:
        request, decision = denied[0]
        return results, Decision(
            False, access_denied_message(state.principal, request, decision), decision.explicit_deny
        )
    return results, Decision(True, "; ".join(d.reason for _, d in results))


_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _guarded_make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
    state = _state
    if state is None or getattr(_local, "bypass", False):
        return _original_make_api_call(self, operation_name, api_params)
    service = self.meta.service_model.service_name
    _results, decision = check_call(service, operation_name, api_params, self.meta.region_name, state)
    if not decision.allowed:
        raise _denied_error(self, service, operation_name, decision.reason)
    try:
        return _original_make_api_call(self, operation_name, api_params)
    except Exception as exc:
        if service == "s3" and operation_name in ("GetObject", "HeadObject"):
            _missing_object_as_aws(self, exc, operation_name, api_params, state)
        raise


def _guarded_presign(self: Any, ClientMethod: str, Params: Any = None, **kwargs: Any) -> Any:
    """A presigned URL acts with its signer's permissions when it is used, and the request then goes to S3
    without botocore (here: to moto, unchecked). So the signer's policy is checked when it signs: a URL
    its role could not use is a denial on the record (and an error here), as its use would be in AWS."""
    state = _state
    if state is not None and not getattr(_local, "bypass", False):
        service = self.meta.service_model.service_name
        operation = self._PY_TO_OP_NAME.get(ClientMethod, ClientMethod)
        _results, decision = check_call(service, operation, Params or {}, self.meta.region_name, state)
        if not decision.allowed:
            raise _denied_error(self, service, operation, f"presigned URL: {decision.reason}")
    return _original_presign(self, ClientMethod, Params, **kwargs)


def _missing_object_as_aws(
    client: Any, exc: Exception, operation: str, params: Mapping[str, Any], state: _GuardState
) -> None:
    """S3 answers 404 for a missing key only to a caller with s3:ListBucket on the bucket; else 403."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    if code not in _MISSING_OBJECT_CODES:
        return
    env = dataclasses.replace(state.env, region=client.meta.region_name or state.env.region)
    request = AuthRequest("s3:ListBucket", s3_bucket_arn(str(params["Bucket"]), env))
    decision = evaluate(state.statements, request.action, request.resource, request.context)
    _record(
        state,
        {
            "service": "s3",
            "operation": operation,
            "principal": state.principal,
            "action": request.action,
            "resource": request.resource,
            "allowed": decision.allowed,
            "reason": decision.reason + " [missing key: S3 answers 404 only with s3:ListBucket, else 403]",
        },
    )
    if not decision.allowed:
        raise _denied_error(
            client, "s3", operation, access_denied_message(state.principal, request, decision)
        ) from exc


def install_guard(
    statements: Sequence[Mapping[str, Any]],
    principal_arn: str,
    env: Env | None = None,
    record_path: str | os.PathLike[str] | None = None,
) -> None:
    """Check every botocore call of this process against `statements` (installing again replaces them)."""
    global _state, _original_make_api_call
    from botocore.client import BaseClient

    for index, statement in enumerate(statements):  # malformed policies fail here, not mid-call
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"statement #{index} has Effect {statement.get('Effect')!r}")
    _state = _GuardState(
        list(statements),
        principal_arn,
        env or env_from_environ(),
        os.fspath(record_path) if record_path else None,
    )
    if _original_make_api_call is None:
        _original_make_api_call = BaseClient._make_api_call
        BaseClient._make_api_call = _guarded_make_api_call
    _guard_presigning()
    _guard_db_auth_tokens()


def _guarded_db_auth_token(self: Any, DBHostname: str, Port: int, DBUsername: str, Region: Any = None) -> Any:
    """An IAM database token is a presigned `connect` request, checked by RDS when it is used to log in (here
    the rehearsal's PostgreSQL does not check it): the signer's policy is checked when it signs."""
    state = _state
    if state is not None and not getattr(_local, "bypass", False):
        params = {"DBHostname": DBHostname, "Port": Port, "DBUsername": DBUsername}
        region = Region or self.meta.region_name
        _results, decision = check_call("rds-db", "connect", params, region, state)
        if not decision.allowed:
            raise PermissionError(f"rds-db:connect denied when signing the login token: {decision.reason}")
    return _original_db_auth_token(self, DBHostname, Port, DBUsername, Region)


def _guard_db_auth_tokens() -> None:
    """RDS clients made from now on sign login tokens through `_guarded_db_auth_token` (botocore adds
    `generate_db_auth_token` to the RDS client class it creates, from this module attribute)."""
    global _original_db_auth_token
    import botocore.signers

    if _original_db_auth_token is None:
        _original_db_auth_token = botocore.signers.generate_db_auth_token
        botocore.signers.generate_db_auth_token = _guarded_db_auth_token


def _guard_presigning() -> None:
    """Clients made from now on sign URLs through `_guarded_presign` (botocore adds `generate_presigned_url`
    to each client class it creates, from this module attribute)."""
    global _original_presign
    import botocore.signers

    if _original_presign is None:
        _original_presign = botocore.signers.generate_presigned_url
        botocore.signers.generate_presigned_url = _guarded_presign


def uninstall_guard() -> None:
    global _state, _original_make_api_call, _original_presign, _original_db_auth_token
    import botocore.signers
    from botocore.client import BaseClient

    if _original_make_api_call is not None:
        BaseClient._make_api_call = _original_make_api_call
    if _original_presign is not None:
        botocore.signers.generate_presigned_url = _original_presign
    if _original_db_auth_token is not None:
        botocore.signers.generate_db_auth_token = _original_db_auth_token
    _original_make_api_call = None
    _original_presign = None
    _state = None


def guard_installed() -> bool:
    return _state is not None


# -- look-ups with an unguarded client against the same endpoint ------------------------------

_lookup_clients: dict[tuple[str, str, str | None], Any] = {}
_lookup_lock = threading.Lock()


def _lookup_client(service: str, region: str) -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    with _lookup_lock:
        client = _lookup_clients.get((service, region, endpoint))
        if client is None:
            import botocore.session

            client = botocore.session.get_session().create_client(
                service, region_name=region, endpoint_url=endpoint
            )
            _lookup_clients[(service, region, endpoint)] = client
        return client


def _error_code(exc: Exception) -> str | None:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return None if code is None else str(code)


def secret_arn_lookup(region: str) -> Callable[[str], str | None]:
    """DescribeSecret (unguarded), positives cached: a secret created later is found then."""
    found: dict[str, str] = {}

    def lookup(secret_id: str) -> str | None:
        if secret_id in found:
            return found[secret_id]
        with unguarded():
            try:
                arn = str(_lookup_client("secretsmanager", region).describe_secret(SecretId=secret_id)["ARN"])
            except Exception as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    return None
                raise
        found[secret_id] = arn
        return arn

    return lookup


def task_definition_lookup(region: str) -> Callable[[str], Mapping[str, Any] | None]:
    found: dict[str, Mapping[str, Any]] = {}

    def lookup(value: str) -> Mapping[str, Any] | None:
        if value in found:
            return found[value]
        with unguarded():
            try:
                td = _lookup_client("ecs", region).describe_task_definition(taskDefinition=value)[
                    "taskDefinition"
                ]
            except Exception as exc:
                if _error_code(exc) in ("ClientException", "InvalidParameterException"):
                    return None
                raise
        result = {k: td.get(k) for k in ("taskDefinitionArn", "taskRoleArn", "executionRoleArn")}
        found[value] = result
        return result

    return lookup


DEFAULT_ACCOUNT_ID = "123456789012"


def env_from_environ(environ: Mapping[str, str] | None = None) -> Env:
    environ = os.environ if environ is None else environ
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    databases: dict[str, str] = json.loads(environ.get(DB_RESOURCE_IDS_ENV) or "{}")
    return Env(
        region=region,
        account=environ.get("REHEARSAL_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID,
        secret_arn=secret_arn_lookup(region),
        task_definition=task_definition_lookup(region),
        db_resource_id=databases.get,
    )


DB_RESOURCE_IDS_ENV = "REHEARSAL_DB_RESOURCE_IDS"
"""JSON {database host: resource id}: which database a login token is for (the stager knows)."""


POLICY_ENV = "REHEARSAL_IAM_POLICY"
RECORD_ENV = "REHEARSAL_IAM_RECORD"


def install_guard_from_env() -> bool:
    """Install from `$REHEARSAL_IAM_POLICY` (JSON `{"principal", "statements"}`), recording to
    `$REHEARSAL_IAM_RECORD`. False (nothing installed) when the policy variable is unset."""
    path = os.environ.get(POLICY_ENV)
    if not path:
        return False
    with open(path, encoding="utf-8") as f:
        policy = json.load(f)
    install_guard(policy["statements"], policy["principal"], env_from_environ(), os.environ.get(RECORD_ENV))
    return True


def read_record(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def denials(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The denied (or unmapped) calls of a record: the harness fails the test on any."""
    return [entry for entry in read_record(path) if not entry.get("allowed")]
