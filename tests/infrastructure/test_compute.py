"""The compute slice: functions, their event sources and environments, the HTTP API, Fargate, schedules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra_cdk import constants
from infra_cdk.config import ConfigError
from infra_cdk.constructs.runtime import lambda_handler_path
from infra_cdk.constructs.workers import image_build_context_excludes
from layers import build
from shared.contracts import QUEUES
from shared.queues.naming import physical_name
from shared.secrets.refs import SCHEME
from shared.topology import CONSUMERS, SCHEDULER_HANDLER, SCHEDULES
from shared.workers.fargate import check_worker_env
from tests.infrastructure.conftest import Synthesized

DEFAULT_PREFIX = f"{constants.DEFAULT_PREFIX}-{constants.DEFAULT_ENV_NAME}"
EXPECTED_HANDLERS = {
    constants.API_FUNCTION: constants.API_HANDLER,
    constants.DEPLOY_HOOK_FUNCTION: constants.DEPLOY_HOOK_HANDLER,
    constants.WORKER_EVENTS_FUNCTION: constants.WORKER_EVENTS_HANDLER,
    constants.SCHEDULER_FUNCTION: lambda_handler_path(SCHEDULER_HANDLER),
    **{constants.function_name_part(s.function): lambda_handler_path(s.handler) for s in CONSUMERS},
}
HEAVY_PACKAGES = ("langgraph", "aiogram", "copier", "ansible")


# -- helpers ----------------------------------------------------------------------------------


def _functions(app: Synthesized) -> dict[str, tuple[str, dict[str, Any]]]:
    """Our functions by short name (`api`, `worker-manager`...) -> (logical id, properties)."""
    prefix = app.stack.config.resource_prefix + "-"
    found = {}
    for logical_id, resource in app.resources("AWS::Lambda::Function").items():
        name = resource["Properties"].get("FunctionName")
        if isinstance(name, str) and name.startswith(prefix):
            found[name[len(prefix) :]] = (logical_id, resource["Properties"])
    return found


def _function(app: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    return _functions(app)[name]


def _env(app: Synthesized, name: str) -> dict[str, Any]:
    env: dict[str, Any] = _function(app, name)[1]["Environment"]["Variables"]
    return env


def _policy_statements(app: Synthesized, role_logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in app.resources("AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _role_of(props: dict[str, Any]) -> str:
    role: str = props["Role"]["Fn::GetAtt"][0]
    return role


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _layer_names(app: Synthesized, props: dict[str, Any]) -> set[str]:
    """The layer names (`api`, `graph`...) of a function, by the layers' logical ids."""
    by_id = {
        app.stack.get_logical_id(layer.node.default_child): name  # type: ignore[arg-type]
        for name, layer in app.stack.runtime.layers.items()
    }
    return {by_id[ref["Ref"]] for ref in props.get("Layers", [])}


def _mappings(app: Synthesized) -> list[dict[str, Any]]:
    return [m["Properties"] for m in app.resources("AWS::Lambda::EventSourceMapping").values()]


# -- functions ----------------------------------------------------------------------------------


def test_every_function_of_the_design_exists_with_its_handler(any_app: Synthesized) -> None:
    functions = _functions(any_app)
    assert set(functions) == set(constants.FUNCTION_LAYERS) == set(EXPECTED_HANDLERS)
    for name, (_, props) in functions.items():
        assert props["Handler"] == EXPECTED_HANDLERS[name], name
        assert props["Runtime"] == "python3.12", name
        assert props["Architectures"] == ["x86_64"], name
        assert props["MemorySize"] == constants.FUNCTION_MEMORY_MB[name], name


def test_each_function_has_its_own_role_and_log_group_with_retention(any_app: Synthesized) -> None:
    functions = _functions(any_app)
    roles = [_role_of(props) for _, props in functions.values()]
    assert len(set(roles)) == len(functions)
    log_groups = any_app.resources("AWS::Logs::LogGroup")
    for name, (_, props) in functions.items():
        group = log_groups[props["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
        assert group["LogGroupName"] == f"/aws/lambda/{any_app.stack.config.resource_prefix}-{name}"
        assert group["RetentionInDays"] == 30, name
        # the role may write its own log group and no other
        log_statements = [
            s
            for s in _policy_statements(any_app, _role_of(props))
            if any(a.startswith("logs:") for a in _actions(s))
        ]
        assert [_resources(s) for s in log_statements] == [
            [{"Fn::GetAtt": [props["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]}]
        ], name


def test_functions_share_one_code_asset(default_app: Synthesized) -> None:
    keys = {json.dumps(props["Code"]) for _, props in _functions(default_app).values()}
    assert len(keys) == 1


def test_code_asset_holds_only_the_code_directories(default_app: Synthesized) -> None:
    (_, props) = _function(default_app, constants.API_FUNCTION)
    asset_hash = props["Code"]["S3Key"].removesuffix(".zip")
    staged = default_app.outdir / f"asset.{asset_hash}"
    files = {p.relative_to(staged) for p in staged.rglob("*") if p.is_file()}
    assert {p.parts[0] for p in files} == set(constants.CODE_ASSET_DIRS)
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc"]
    # what `python -m layers.build --sizes` measures is what the app staged
    assert files == set(build.code_asset_files())


def test_each_function_gets_only_its_layers_and_the_api_no_heavy_ones(any_app: Synthesized) -> None:
    for name, (_, props) in _functions(any_app).items():
        assert _layer_names(any_app, props) == set(constants.FUNCTION_LAYERS[name]), name
    api_layers = _layer_names(any_app, _function(any_app, constants.API_FUNCTION)[1])
    for layer in api_layers - set(build.SOURCE_LAYERS):
        for requirement in build.requirements(layer):
            assert not requirement.lower().startswith(HEAVY_PACKAGES), f"{layer}: {requirement}"


def test_only_the_database_functions_run_in_the_vpc(any_app: Synthesized) -> None:
    groups = any_app.resources("AWS::EC2::SecurityGroup")
    (function_group,) = [k for k in groups if "FunctionSecurityGroup" in k]
    for name, (_, props) in _functions(any_app).items():
        if name in (constants.API_FUNCTION, constants.DEPLOY_HOOK_FUNCTION):
            vpc = props["VpcConfig"]
            assert vpc["SecurityGroupIds"] == [{"Fn::GetAtt": [function_group, "GroupId"]}], name
            assert all("private" in json.dumps(subnet) for subnet in vpc["SubnetIds"]), name
        else:
            # consumers reach the API and GitHub over the internet without a NAT gateway
            assert "VpcConfig" not in props, name


# -- environments -------------------------------------------------------------------------------


def _is_reference_to_a_secret(app: Synthesized, value: Any) -> bool:
    """`secret://` + the ARN of a secret this stack defines (CloudFormation renders the join)."""
    if not (isinstance(value, dict) and set(value) == {"Fn::Join"}):
        return False
    separator, parts = value["Fn::Join"]
    if separator != "" or len(parts) != 2 or parts[0] != SCHEME or set(parts[1]) != {"Ref"}:
        return False
    target = app.template_json["Resources"][parts[1]["Ref"]]["Type"]
    return target in ("AWS::SecretsManager::Secret", "AWS::SecretsManager::SecretTargetAttachment")


def test_no_environment_holds_a_secret_value(any_app: Synthesized) -> None:
    for name, (_, props) in _functions(any_app).items():
        for variable, value in props["Environment"]["Variables"].items():
            if isinstance(value, str):
                # names that say credential hold references; nothing has the shape of a known key
                check_worker_env({variable: value})
                if "secret" in value.lower():
                    assert value.startswith(SCHEME), f"{name} {variable}"
            elif "secret" in json.dumps(value).lower():
                assert _is_reference_to_a_secret(any_app, value), f"{name} {variable}: {value}"


def test_every_secret_reference_in_an_environment_is_readable_by_that_function(any_app: Synthesized) -> None:
    for name, (_, props) in _functions(any_app).items():
        readable = [
            resource
            for statement in _policy_statements(any_app, _role_of(props))
            if "secretsmanager:GetSecretValue" in _actions(statement)
            for resource in _resources(statement)
        ]
        for variable, value in props["Environment"]["Variables"].items():
            if _is_reference_to_a_secret(any_app, value):
                assert value["Fn::Join"][1][1] in readable, f"{name} {variable}"


def test_api_environment_names_the_database_secret_queues_and_secrets_backend(
    default_app: Synthesized,
) -> None:
    env = _env(default_app, constants.API_FUNCTION)
    (attachment,) = default_app.resources("AWS::SecretsManager::SecretTargetAttachment")
    assert env["ORCH_DATABASE_SECRET_REF"] == {"Fn::Join": ["", [SCHEME, {"Ref": attachment}]]}
    assert env["ORCH_QUEUE_BACKEND"] == "sqs"
    assert env["ORCH_QUEUE_PREFIX"] == DEFAULT_PREFIX
    assert env["ORCH_SECRETS_BACKEND"] == "aws"
    assert env["ORCH_SECRETS_PREFIX"] == DEFAULT_PREFIX
    # the deploy hook seeds the admin; the internet-facing function cannot read the admin key
    assert "ORCH_BOOTSTRAP_ADMIN_KEY_REF" not in env
    hook = _env(default_app, constants.DEPLOY_HOOK_FUNCTION)
    assert _is_reference_to_a_secret(default_app, hook["ORCH_BOOTSTRAP_ADMIN_KEY_REF"])
    assert _is_reference_to_a_secret(default_app, hook["ORCH_SERVICE_API_KEY_REF"])


def test_functions_that_call_the_api_know_its_url_and_their_service_key(any_app: Synthesized) -> None:
    (api_id,) = any_app.resources("AWS::ApiGatewayV2::Api")
    service_keys = {
        json.dumps(_env(any_app, name)["ORCH_SERVICE_API_KEY_REF"])
        for name in _functions(any_app)
        if name not in (constants.API_FUNCTION, constants.DEPLOY_HOOK_FUNCTION)
    }
    assert len(service_keys) == 1
    for name in _functions(any_app):
        if name in (constants.API_FUNCTION, constants.DEPLOY_HOOK_FUNCTION):
            continue
        env = _env(any_app, name)
        assert env["ORCH_API_URL"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}, name
        assert env["ORCH_SECRETS_BACKEND"] == "aws", name


def test_engineering_checkpoints_in_dynamodb_and_repos_live_on_github(
    default_app: Synthesized, variant_app: Synthesized
) -> None:
    (table,) = default_app.resources("AWS::DynamoDB::Table")
    env = _env(default_app, constants.ENGINEERING_FUNCTION)
    assert env["ORCH_CHECKPOINTER"] == "dynamodb"
    assert env["ORCH_CHECKPOINT_TABLE"] == {"Ref": table}
    assert env["ORCH_CHECKPOINT_TTL_S"] == str(constants.CHECKPOINT_TTL_SECONDS)
    for name in (constants.ENGINEERING_FUNCTION, constants.SCAFFOLDER_FUNCTION):
        default_env, variant_env = _env(default_app, name), _env(variant_app, name)
        assert default_env["ORCH_REPO_HOST"] == variant_env["ORCH_REPO_HOST"] == "github"
        assert default_env["ORCH_GITHUB_TOKEN_REF"] == constants.DEFAULT_GITHUB_TOKEN_REF
        assert "ORCH_GITHUB_OWNER" not in default_env
        assert variant_env["ORCH_GITHUB_OWNER"] == variant_env["ORCH_REPO_OWNER"] == "acme"
        assert variant_env["ORCH_GITHUB_OWNER_IS_ORG"] == "true"
        assert variant_env["ORCH_GITHUB_TOKEN_REF"] == variant_app.stack.config.github_token_ref


def test_github_token_is_readable_by_exactly_its_users(any_app: Synthesized) -> None:
    config = any_app.stack.config
    path = config.github_token_ref.removeprefix(SCHEME)
    fragment = path if path.startswith("arn:") else f"{config.resource_prefix}/{path}-??????"
    readers = {
        name
        for name, (_, props) in _functions(any_app).items()
        for statement in _policy_statements(any_app, _role_of(props))
        if fragment in json.dumps(_resources(statement))
    }
    assert readers == {constants.ENGINEERING_FUNCTION, constants.SCAFFOLDER_FUNCTION}
    (worker_role,) = [
        props["TaskRoleArn"]["Fn::GetAtt"][0]
        for props in (r["Properties"] for r in any_app.resources("AWS::ECS::TaskDefinition").values())
        if props["Family"].endswith("-worker")
    ]
    assert fragment in json.dumps([_resources(s) for s in _policy_statements(any_app, worker_role)])


# -- consumers ------------------------------------------------------------------------------------


def test_every_sqs_event_source_reports_batch_item_failures(any_app: Synthesized) -> None:
    mappings = _mappings(any_app)
    assert len(mappings) == sum(len(spec.queues) for spec in CONSUMERS)
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"], mapping["EventSourceArn"]


def test_visibility_timeout_is_at_least_six_times_the_consuming_function_timeout(
    any_app: Synthesized,
) -> None:
    queues = any_app.resources("AWS::SQS::Queue")
    functions = any_app.resources("AWS::Lambda::Function")
    for mapping in _mappings(any_app):
        queue = queues[mapping["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
        function = functions[mapping["FunctionName"]["Ref"]]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * function["Timeout"], queue["QueueName"]


@pytest.mark.parametrize("spec", CONSUMERS, ids=lambda spec: spec.function)
def test_each_consumer_reads_its_queues_with_the_table_batch_and_concurrency(
    default_app: Synthesized, spec: Any
) -> None:
    logical_id, props = _function(default_app, constants.function_name_part(spec.function))
    queues = default_app.resources("AWS::SQS::Queue")
    mine = {
        queues[m["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]["QueueName"]: m
        for m in _mappings(default_app)
        if m["FunctionName"] == {"Ref": logical_id}
    }
    assert set(mine) == {physical_name(DEFAULT_PREFIX, q) for q in spec.queues}
    for mapping in mine.values():
        assert mapping["BatchSize"] == spec.batch_size
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == max(
            constants.SQS_EVENT_SOURCE_MIN_CONCURRENCY, spec.max_concurrency
        )
    # the topology's timeout and the one the queues were sized from agree
    assert props["Timeout"] == spec.timeout_s
    assert all(props["Timeout"] <= constants.consumer_timeout_seconds(q) for q in spec.queues)


def test_consumers_send_only_to_the_queues_they_produce_for(default_app: Synthesized) -> None:
    queues = default_app.resources("AWS::SQS::Queue")
    for name, (_, props) in _functions(default_app).items():
        sends = {
            queues[resource["Fn::GetAtt"][0]]["Properties"]["QueueName"]
            for statement in _policy_statements(default_app, _role_of(props))
            if "sqs:SendMessage" in _actions(statement)
            for resource in _resources(statement)
        }
        expected = {physical_name(DEFAULT_PREFIX, q) for q in constants.QUEUE_PRODUCERS.get(name, ())}
        assert sends == expected, name


def test_the_api_publishes_every_queue_its_outbox_writes() -> None:
    # Every queue a message can be published to has a publisher; all but progress events are covered.
    produced = {q for queues in constants.QUEUE_PRODUCERS.values() for q in queues}
    assert produced <= set(QUEUES)


# -- workers ------------------------------------------------------------------------------------


def _task_definitions(app: Synthesized) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        props["Properties"]["Family"]: (logical_id, props["Properties"])
        for logical_id, props in app.resources("AWS::ECS::TaskDefinition").items()
    }


def test_task_definitions_are_fargate_with_memory_logs_and_asset_images(any_app: Synthesized) -> None:
    prefix = any_app.stack.config.resource_prefix
    tasks = _task_definitions(any_app)
    assert set(tasks) == {f"{prefix}-worker", f"{prefix}-ansible-runner"}
    log_groups = any_app.resources("AWS::Logs::LogGroup")
    for family, (_, props) in tasks.items():
        (container,) = props["ContainerDefinitions"]
        assert props["RequiresCompatibilities"] == ["FARGATE"]
        assert props["RuntimePlatform"] == {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"}
        assert container["Memory"] == int(props["Memory"]), family  # moto's RunTask needs it
        assert "Environment" not in container, family  # ids and references travel in RunTask overrides
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        group = log_groups[container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]]["Properties"]
        assert group["RetentionInDays"] == 30
        assert "container-assets" in json.dumps(container["Image"])
    worker = tasks[f"{prefix}-worker"][1]["ContainerDefinitions"][0]
    assert worker["Name"] == constants.WORKER_CONTAINER_NAME


def test_images_are_staged_from_the_dockerignore_context_with_their_dockerfiles(any_app: Synthesized) -> None:
    manifest = json.loads((any_app.outdir / f"{any_app.stack.artifact_id}.assets.json").read_text())
    images = {image["source"]["dockerFile"]: image["source"] for image in manifest["dockerImages"].values()}
    assert set(images) == {constants.WORKER_DOCKERFILE, constants.ANSIBLE_DOCKERFILE}
    assert images[constants.WORKER_DOCKERFILE]["dockerBuildArgs"] == {
        "AGENT_NPM_PACKAGES": any_app.stack.config.worker_agent_packages
    }
    for source in images.values():
        assert source["platform"] == "linux/amd64"
        staged = any_app.outdir / source["directory"]
        assert {p.name for p in staged.iterdir()} == {
            "pyproject.toml", "README.md", "shared", "functions", "cli", "worker_image"
        }  # fmt: skip
        assert not list(staged.rglob("__pycache__"))
    assert image_build_context_excludes()[0] == "*"


def test_cluster_has_container_insights(default_app: Synthesized) -> None:
    (cluster,) = default_app.resources("AWS::ECS::Cluster").values()
    assert cluster["Properties"]["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]
    assert cluster["Properties"]["ClusterName"] == f"{DEFAULT_PREFIX}-workers"


def test_worker_manager_runs_only_the_worker_task_definition_in_the_cluster(any_app: Synthesized) -> None:
    (cluster_id,) = any_app.resources("AWS::ECS::Cluster")
    worker_id, worker = _task_definitions(any_app)[f"{any_app.stack.config.resource_prefix}-worker"]
    _, props = _function(any_app, constants.WORKER_MANAGER_FUNCTION)
    statements = _policy_statements(any_app, _role_of(props))
    ecs = [s for s in statements if any(a.startswith("ecs:") for a in _actions(s))]
    by_action = {a: s for s in ecs for a in _actions(s)}
    assert set(by_action) == {"ecs:RunTask", "ecs:TagResource", "ecs:StopTask", "ecs:DescribeTasks"}
    run = by_action["ecs:RunTask"]
    assert _resources(run) == [{"Ref": worker_id}]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster_id, "Arn"]}}}
    for action in ("ecs:StopTask", "ecs:DescribeTasks", "ecs:TagResource"):
        (resource,) = _resources(by_action[action])
        assert resource["Fn::Join"][1][-2:] == [{"Ref": cluster_id}, "/*"], action
        assert ":task/" in json.dumps(resource), action
    assert by_action["ecs:TagResource"]["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    (pass_role,) = [s for s in statements if "iam:PassRole" in _actions(s)]
    assert sorted(map(json.dumps, _resources(pass_role))) == sorted(
        map(json.dumps, [worker["TaskRoleArn"], worker["ExecutionRoleArn"]])
    )
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # no other function may touch ECS or pass roles
    for name, (_, other) in _functions(any_app).items():
        if name != constants.WORKER_MANAGER_FUNCTION:
            for statement in _policy_statements(any_app, _role_of(other)):
                assert not any(a.startswith(("ecs:", "iam:")) for a in _actions(statement)), name


def test_worker_manager_environment_points_at_the_fargate_runtime(default_app: Synthesized) -> None:
    (cluster_id,) = default_app.resources("AWS::ECS::Cluster")
    worker_id, _ = _task_definitions(default_app)[f"{DEFAULT_PREFIX}-worker"]
    (task_group,) = [k for k in default_app.resources("AWS::EC2::SecurityGroup") if "TaskSecurityGroup" in k]
    for name in (constants.WORKER_MANAGER_FUNCTION, constants.WORKER_EVENTS_FUNCTION):
        env = _env(default_app, name)
        assert env["ORCH_WORKER_RUNTIME"] == "fargate"
        assert env["ORCH_FARGATE_CLUSTER"] == {"Ref": cluster_id}
        assert env["ORCH_FARGATE_TASK_DEFINITION"] == {"Ref": worker_id}
        assert env["ORCH_FARGATE_CONTAINER_NAME"] == constants.WORKER_CONTAINER_NAME
        assert env["ORCH_FARGATE_SECURITY_GROUPS"] == {"Fn::GetAtt": [task_group, "GroupId"]}
        subnets = env["ORCH_FARGATE_SUBNETS"]["Fn::Join"][1]
        assert [part for part in subnets if part != ","] == [
            {"Ref": k} for k in default_app.resources("AWS::EC2::Subnet") if "public" in k
        ]


def test_task_roles_read_only_their_own_secrets(any_app: Synthesized) -> None:
    service_key = [k for k in any_app.resources("AWS::SecretsManager::Secret") if "ServiceKey" in k]
    for family, (_, props) in _task_definitions(any_app).items():
        role = props["TaskRoleArn"]["Fn::GetAtt"][0]
        statements = _policy_statements(any_app, role)
        assert {a for s in statements for a in _actions(s)} == {
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
        }, family
        readable = json.dumps([r for s in statements for r in _resources(s)])
        assert f'"Ref": "{service_key[0]}"' in readable
        assert "AdminKey" not in readable and "DataInstance" not in readable, family
        if family.endswith("-worker"):
            assert "projects" not in readable and "servers" not in readable


def test_stopped_worker_tasks_are_routed_to_the_worker_events_function(any_app: Synthesized) -> None:
    (cluster_id,) = any_app.resources("AWS::ECS::Cluster")
    events_id, events_props = _function(any_app, constants.WORKER_EVENTS_FUNCTION)
    assert events_props["Handler"] == "functions.worker_manager.handler.ecs_event_handler"
    (rule,) = [
        r["Properties"]
        for r in any_app.resources("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["clusterArn"] == [{"Fn::GetAtt": [cluster_id, "Arn"]}]
    assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    (prefix_match,) = pattern["detail"]["taskDefinitionArn"]
    assert f":task-definition/{any_app.stack.config.resource_prefix}-worker:" in json.dumps(
        prefix_match["prefix"]
    )
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [events_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == constants.ECS_EVENT_MAX_AGE_HOURS * 3600


# -- schedules -------------------------------------------------------------------------------------


def _rate(seconds: int) -> str:
    minutes = seconds // 60
    return f"rate({minutes} minute{'s' if minutes != 1 else ''})"


def test_schedules_match_the_topology_one_to_one(any_app: Synthesized) -> None:
    scheduler_id, scheduler = _function(any_app, constants.SCHEDULER_FUNCTION)
    assert scheduler["Handler"] == lambda_handler_path(SCHEDULER_HANDLER)
    rules = {
        r["Properties"]["Name"]: r["Properties"]
        for r in any_app.resources("AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    }
    prefix = any_app.stack.config.resource_prefix
    assert set(rules) == {f"{prefix}-job-{spec.job}" for spec in SCHEDULES}
    for spec in SCHEDULES:
        rule = rules[f"{prefix}-job-{spec.job}"]
        assert rule["ScheduleExpression"] == _rate(spec.every_s)
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [scheduler_id, "Arn"]}
        assert json.loads(target["Input"]) == {"job": spec.job}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_scheduler_reads_queue_depths_and_nothing_else_of_the_queues(default_app: Synthesized) -> None:
    _, props = _function(default_app, constants.SCHEDULER_FUNCTION)
    sqs = [
        s
        for s in _policy_statements(default_app, _role_of(props))
        if any(a.startswith("sqs:") for a in _actions(s))
    ]
    assert {a for s in sqs for a in _actions(s)} == {"sqs:GetQueueUrl", "sqs:GetQueueAttributes"}
    assert len({json.dumps(r) for s in sqs for r in _resources(s)}) == 2 * len(QUEUES)
    assert _env(default_app, constants.SCHEDULER_FUNCTION)["ORCH_QUEUE_BACKEND"] == "sqs"


# -- the API ------------------------------------------------------------------------------------


def test_http_api_throttles_logs_and_routes_everything_to_the_function(any_app: Synthesized) -> None:
    api_fn_id, _ = _function(any_app, constants.API_FUNCTION)
    (stage,) = any_app.resources("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default" and props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": constants.API_THROTTLE_BURST,
        "ThrottlingRateLimit": constants.API_THROTTLE_RATE_PER_SECOND,
    }
    log_group = any_app.resources("AWS::Logs::LogGroup")[
        props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    ]
    assert log_group["Properties"]["RetentionInDays"] == 30
    assert "$context.requestId" in props["AccessLogSettings"]["Format"]
    (route,) = any_app.resources("AWS::ApiGatewayV2::Route").values()
    assert route["Properties"]["RouteKey"] == "$default"
    (integration,) = any_app.resources("AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": [api_fn_id, "Arn"]}


def test_api_writes_only_project_and_server_secrets_and_reads_only_the_database_secret(
    default_app: Synthesized,
) -> None:
    _, props = _function(default_app, constants.API_FUNCTION)
    statements = [
        s
        for s in _policy_statements(default_app, _role_of(props))
        if any(a.startswith("secretsmanager:") for a in _actions(s))
    ]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    (attachment,) = default_app.resources("AWS::SecretsManager::SecretTargetAttachment")
    assert [_resources(s) for s in reads] == [[{"Ref": attachment}]]
    (writes,) = [s for s in statements if "secretsmanager:PutSecretValue" in _actions(s)]
    assert "secretsmanager:GetSecretValue" not in _actions(writes)
    written = sorted(json.dumps(r) for r in _resources(writes))
    assert len(written) == 2
    assert f":secret:{DEFAULT_PREFIX}/projects/*" in written[0]
    assert f":secret:{DEFAULT_PREFIX}/servers/*" in written[1]


def test_migrations_run_on_deploy_after_the_database_and_before_the_api(default_app: Synthesized) -> None:
    resources = default_app.template_json["Resources"]
    ((trigger_id, trigger),) = default_app.resources("Custom::Trigger").items()
    hook_id, _ = _function(default_app, constants.DEPLOY_HOOK_FUNCTION)
    api_id, _ = _function(default_app, constants.API_FUNCTION)
    version = resources[trigger["Properties"]["HandlerArn"]["Ref"]]
    assert version["Type"] == "AWS::Lambda::Version"
    assert version["Properties"]["FunctionName"] == {"Ref": hook_id}
    assert trigger["Properties"]["InvocationType"] == "RequestResponse"
    (db_id,) = default_app.resources("AWS::RDS::DBInstance")
    assert db_id in trigger["DependsOn"]
    assert any("SecretsManagerEndpoint" in d for d in trigger["DependsOn"])
    assert trigger_id in resources[api_id]["DependsOn"]


# -- observability --------------------------------------------------------------------------------


def test_dashboard_shows_the_api_and_running_fargate_tasks(default_app: Synthesized) -> None:
    (dashboard,) = default_app.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ('\\"Count\\"', '\\"Latency\\"', '\\"5xx\\"', '\\"4xx\\"'):
        assert metric in body, metric
    assert "ECS/ContainerInsights" in body and "TaskCount" in body
    for family in ("worker", "ansible-runner"):
        assert f"{DEFAULT_PREFIX}-{family}" in body
    for name in constants.FUNCTION_LAYERS:
        assert f"{name}: errors" in body, name


def test_every_function_has_an_error_rate_alarm_and_the_api_a_5xx_alarm(default_app: Synthesized) -> None:
    names = {a["Properties"]["AlarmName"] for a in default_app.resources("AWS::CloudWatch::Alarm").values()}
    for function in constants.FUNCTION_LAYERS:
        assert f"{DEFAULT_PREFIX}-{function}-error-rate" in names
    assert f"{DEFAULT_PREFIX}-api-5xx-rate" in names


# -- layers ----------------------------------------------------------------------------------------


def test_require_layers_refuses_to_synthesize_placeholders(tmp_path: Path) -> None:
    from infra_cdk.app import build_app

    with pytest.raises(ConfigError, match=r"python -m layers.build"):
        build_app(
            outdir=str(tmp_path), context={"require_layers": "true", "layers_dir": str(tmp_path / "none")}
        )
