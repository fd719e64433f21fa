"""The coding-agent worker's roles in the synthesized template (issue 20): its task role holds nothing, its
execution role only pulls the image and writes its log group, and the API function, which now reads and
signs for workers, holds what the task role used to.

Reuses the session-scoped synthesized apps of conftest.py (one synth per variant for the whole run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from infra_cdk import constants
from shared.workers.fargate import (
    DEFAULT_TASK_SIZES,
    TASK_SIZES_ENV,
    FargateRuntime,
    TaskSize,
    parse_task_sizes,
    task_sizes_json,
)
from shared.workers.runtime import WorkerLaunch
from tests.infrastructure.conftest import Synthesized

EXECUTION_ACTIONS = {
    # the image asset from the bootstrap repository
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetAuthorizationToken",
    # the awslogs driver
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}


def _worker_task_definition(app: Synthesized) -> dict[str, Any]:
    return app.task_definition(constants.WORKER_FAMILY_SUFFIX)


def _role_id(arn: Any) -> str:
    role_id: str = arn["Fn::GetAtt"][0]
    return role_id


def _statements(app: Synthesized, role_id: str) -> list[dict[str, Any]]:
    """Every statement of the role's own policies: attached and inline (managed ones: `_managed`)."""
    role = app.template_json["Resources"][role_id]["Properties"]
    statements = [
        statement
        for policy in app.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    for inline in role.get("Policies", []):
        statements.extend(inline["PolicyDocument"]["Statement"])
    return statements


def _managed(app: Synthesized, role_id: str) -> list[Any]:
    """Managed policies on the role: AWS's (ManagedPolicyArns) and the stack's own."""
    arns: list[Any] = list(app.template_json["Resources"][role_id]["Properties"].get("ManagedPolicyArns", []))
    ours = [
        logical_id
        for logical_id, managed in app.resources("AWS::IAM::ManagedPolicy").items()
        if {"Ref": role_id} in managed["Properties"].get("Roles", [])
    ]
    return arns + ours


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _logical_ids(app: Synthesized, resource_type: str, starts_with: str) -> list[str]:
    return [k for k in app.resources(resource_type) if k.startswith(starts_with)]


def test_the_worker_task_role_holds_no_permission_at_all(any_app: Synthesized) -> None:
    """No secret, bucket, key, queue or table: the agent runs arbitrary commands with the task's
    credentials, and every worker (every person's) runs under this one role."""
    role_id = _role_id(_worker_task_definition(any_app)["TaskRoleArn"])
    assert _statements(any_app, role_id) == []
    assert _managed(any_app, role_id) == []
    role = any_app.template_json["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}}
    ]
    assert "PermissionsBoundary" not in role


def test_the_worker_execution_role_only_pulls_the_image_and_writes_its_logs(any_app: Synthesized) -> None:
    task = _worker_task_definition(any_app)
    statements = _statements(any_app, _role_id(task["ExecutionRoleArn"]))
    assert _managed(any_app, _role_id(task["ExecutionRoleArn"])) == []
    assert {a for s in statements for a in _actions(s)} == EXECUTION_ACTIONS
    assert all(s["Effect"] == "Allow" for s in statements)
    # its log group and nothing else
    (container,) = task["ContainerDefinitions"]
    log_group = container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    for statement in statements:
        if _actions(statement) & {"logs:CreateLogStream", "logs:PutLogEvents"}:
            assert statement["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
    # nothing that reads a secret, the sessions, or decrypts
    text = json.dumps(statements)
    for forbidden in ("secretsmanager:", "s3:", "kms:", "sqs:", "dynamodb:", "ssm:"):
        assert forbidden not in text, forbidden


def test_the_worker_container_names_no_credential_bucket_or_key(any_app: Synthesized) -> None:
    (container,) = _worker_task_definition(any_app)["ContainerDefinitions"]
    names = {pair["Name"] for pair in container.get("Environment", [])}
    assert names == {name for name, _ in any_app.stack.config.agent_env}
    assert "Secrets" not in container  # no ECS-injected secret either
    for name in ("ORCH_SERVICE_API_KEY_REF", "ORCH_API_KEY", "ORCH_SESSION_BUCKET", "ORCH_SECRETS_BACKEND"):
        assert name not in names


def test_the_api_function_reads_what_workers_resolve_through_it(variant_app: Synthesized) -> None:
    """The GitHub token, the agents' credentials and the Product Owner keys: read only, nothing more."""
    prefix = variant_app.stack.config.resource_prefix
    role_id = _role_id(_api_function(variant_app)["Role"])
    statements = _statements(variant_app, role_id)
    readable = json.dumps(
        [s["Resource"] for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    )
    assert "acme/github-AbCdEf" in readable  # -c github_token_ref (an ARN)
    assert f"{prefix}/agents/anthropic-??????" in readable  # -c agent_secret_refs
    assert f"{prefix}/{constants.PO_SECRETS_PATH}/*" in readable
    service_key = _logical_ids(variant_app, "AWS::SecretsManager::Secret", "ApiServiceKey")
    admin_key = _logical_ids(variant_app, "AWS::SecretsManager::Secret", "ApiAdminKey")
    assert service_key and admin_key
    for secret in (*service_key, *admin_key):
        assert f'"{secret}"' not in readable, secret


def test_the_api_function_signs_session_urls_under_the_prefix_only(any_app: Synthesized) -> None:
    (bucket_id,) = _logical_ids(any_app, "AWS::S3::Bucket", "WorkersSessions")
    function = _api_function(any_app)
    statements = [
        s for s in _statements(any_app, _role_id(function["Role"])) if f'"{bucket_id}"' in json.dumps(s)
    ]
    bucket_arn = {"Fn::GetAtt": [bucket_id, "Arn"]}
    assert [(sorted(_actions(s)), s["Resource"]) for s in statements] == [
        (["s3:GetObject", "s3:PutObject"], {"Fn::Join": ["", [bucket_arn, "/sessions/*"]]}),
        (["s3:ListBucket"], bucket_arn),
    ]
    env = function["Environment"]["Variables"]
    assert env["ORCH_SESSION_BUCKET"] == {"Ref": bucket_id}
    assert env["ORCH_SESSION_PREFIX"] == constants.SESSIONS_KEY_PREFIX


def test_the_worker_manager_sizes_each_agent_s_task(
    default_app: Synthesized, variant_app: Synthesized
) -> None:
    env = _function_env(default_app, constants.WORKER_MANAGER_FUNCTION)
    assert parse_task_sizes(env[TASK_SIZES_ENV]) == DEFAULT_TASK_SIZES
    sized = dict(DEFAULT_TASK_SIZES)
    assert (sized["claude-code"].cpu, sized["claude-code"].memory) == (1024, 2048)
    assert (sized["command"].cpu, sized["command"].memory) == (512, 1024)
    # the task definition's size is the one for an agent without its own
    task = _worker_task_definition(default_app)
    assert (task["Cpu"], task["Memory"]) == (str(constants.WORKER_CPU), str(constants.WORKER_MEMORY_MIB))
    # -c worker_task_sizes overrides one agent, the others keep their defaults
    variant = parse_task_sizes(_function_env(variant_app, constants.WORKER_MANAGER_FUNCTION)[TASK_SIZES_ENV])
    assert variant == {**DEFAULT_TASK_SIZES, "codex": TaskSize(2048, 4096)}


def _api_function(app: Synthesized) -> dict[str, Any]:
    return _function(app, constants.API_FUNCTION)


def _function(app: Synthesized, short_name: str) -> dict[str, Any]:
    name = f"{app.stack.config.resource_prefix}-{short_name}"
    found: list[dict[str, Any]] = [
        r["Properties"]
        for r in app.resources("AWS::Lambda::Function").values()
        if r["Properties"].get("FunctionName") == name
    ]
    (props,) = found
    return props


def _function_env(app: Synthesized, short_name: str) -> dict[str, Any]:
    env: dict[str, Any] = _function(app, short_name)["Environment"]["Variables"]
    return env


# -- the sizes in RunTask (shared.workers.fargate) ------------------------------------------------------


@dataclass(frozen=True)
class _AgentLaunch(WorkerLaunch):
    """A launch naming its agent (WorkerLaunch.agent, once the worker manager passes it)."""

    agent: str | None = None


def _overrides(agent: str | None, sizes: dict[str, TaskSize] | None = None) -> dict[str, Any]:
    runtime = FargateRuntime("c", "td", "worker", ["subnet-1"], ["sg-1"], client=object(), task_sizes=sizes)
    return runtime.overrides_for(_AgentLaunch(worker_id="w-1", task_id=None, agent=agent))


def test_runtask_overrides_size_the_task_and_its_container_by_agent() -> None:
    overrides = _overrides("command")
    assert (overrides["cpu"], overrides["memory"]) == ("512", "1024")
    (container,) = overrides["containerOverrides"]
    assert container["memory"] == 1024  # the definition's hard limit (4096) would exceed the task's
    assert _overrides("codex", {"codex": TaskSize(2048, 4096)})["cpu"] == "2048"


def test_an_agent_without_a_size_runs_at_the_task_definition_s() -> None:
    for agent in ("unknown-agent", None):
        overrides = _overrides(agent)
        assert "cpu" not in overrides and "memory" not in overrides
        assert "memory" not in overrides["containerOverrides"][0]


def test_the_runtime_reads_the_stack_s_sizes_and_refuses_one_fargate_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TASK_SIZES_ENV, task_sizes_json({"command": TaskSize(256, 512)}))
    assert _overrides("command")["memory"] == "512"
    assert "cpu" not in _overrides("claude-code")  # the stack's map replaces the defaults
    monkeypatch.setenv(TASK_SIZES_ENV, '{"command": {"cpu": 512, "memory": 512}}')
    with pytest.raises(ValueError, match="memory 512 MiB does not go with cpu 512"):
        _overrides("command")
