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
from tests.infrastructure.conftest import DEFAULT_CONTEXT, Synthesized

DEFAULT_PREFIX = f"{constants.DEFAULT_PREFIX}-{constants.DEFAULT_ENV_NAME}"
EXPECTED_HANDLERS = {
    constants.API_FUNCTION: constants.API_HANDLER,
    constants.DEPLOY_HOOK_FUNCTION: constants.DEPLOY_HOOK_HANDLER,
    constants.WORKER_EVENTS_FUNCTION: constants.WORKER_EVENTS_HANDLER,
    constants.INFRA_EVENTS_FUNCTION: constants.INFRA_EVENTS_HANDLER,
    constants.TELEGRAM_WEBHOOK_FUNCTION: constants.TELEGRAM_WEBHOOK_HANDLER,
    constants.SCHEDULER_FUNCTION: lambda_handler_path(SCHEDULER_HANDLER),
    **{constants.function_name_part(s.function): lambda_handler_path(s.handler) for s in CONSUMERS},
}
HEAVY_PACKAGES = ("langgraph", "aiogram", "copier", "ansible")
NO_API_CALLERS = (constants.API_FUNCTION, constants.DEPLOY_HOOK_FUNCTION, constants.TELEGRAM_WEBHOOK_FUNCTION)
"""The API itself, its migrations hook, and the webhook's ack path (it only queues)."""


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


SEND_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
"""What `queue.grant_send_messages` allows (the SQS adapter resolves the URL, then sends)."""


def _mappings(app: Synthesized) -> list[dict[str, Any]]:
    return [m["Properties"] for m in app.resources("AWS::Lambda::EventSourceMapping").values()]


def _mapped_function_id(app: Synthesized, mapping: dict[str, Any]) -> str:
    """The function a mapping invokes: `{"Ref": function}`, or (SnapStart) `<name>:live` joined from its alias."""
    target = mapping["FunctionName"]
    if "Ref" in target:
        return str(target["Ref"])
    alias_id = target["Fn::Join"][1][0]["Fn::Select"][1]["Fn::Split"][1]["Ref"]
    return str(app.resources("AWS::Lambda::Alias")[alias_id]["Properties"]["FunctionName"]["Ref"])


# -- functions ----------------------------------------------------------------------------------


def test_every_function_of_the_design_exists_with_its_handler(any_app: Synthesized) -> None:
    functions = _functions(any_app)
    assert set(functions) == set(constants.FUNCTION_LAYERS) == set(EXPECTED_HANDLERS)
    for name, (_, props) in functions.items():
        assert props["Handler"] == EXPECTED_HANDLERS[name], name
        assert props["Runtime"] == "python3.12", name
        assert props["Architectures"] == ["x86_64"], name
        assert props["MemorySize"] == constants.FUNCTION_MEMORY_MB[name], name


def test_every_function_traces_to_x_ray_and_its_role_may_write_segments(any_app: Synthesized) -> None:
    functions = _functions(any_app)
    assert functions
    for name, (_, props) in functions.items():
        assert props.get("TracingConfig") == {"Mode": "Active"}, name
        statements = _policy_statements(any_app, _role_of(props))
        on_everything = [s for s in statements if "*" in _resources(s)]
        # X-Ray takes no resource-level permissions: its two write actions on "*", and nothing else on "*"
        assert [sorted(_actions(s)) for s in on_everything] == [
            ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
        ], name


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
    sources = {p for p in files if p.suffix != ".pyc"}
    # what `python -m layers.build --sizes` measures is what the app staged (plus the bytecode)
    assert sources == set(build.code_asset_files())
    # bytecode of the runtime's Python for every module, no other (tests/unit/test_code_asset.py), when this
    # machine has that Python; else none (and the synth warns)
    tag = f"cpython-{build.PYTHON_VERSION.replace('.', '')}"
    expected = {p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc" for p in sources if p.suffix == ".py"}
    has_bytecode = default_app.stack.runtime.code_asset.bytecode
    assert {p for p in files if p.suffix == ".pyc"} == (expected if has_bytecode else set())
    assert has_bytecode is (build.runtime_python() is not None)


def test_each_function_gets_only_its_layers_and_the_api_no_heavy_ones(any_app: Synthesized) -> None:
    for name, (_, props) in _functions(any_app).items():
        assert _layer_names(any_app, props) == set(constants.FUNCTION_LAYERS[name]), name
    api_layers = _layer_names(any_app, _function(any_app, constants.API_FUNCTION)[1])
    for layer in api_layers:
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
    if separator != "" or len(parts) != 2 or parts[0] != SCHEME:
        return False
    if set(parts[1]) == {"Fn::GetAtt"}:  # the database's RDS-managed master secret
        logical, attribute = parts[1]["Fn::GetAtt"]
        database = app.template_json["Resources"][logical]["Type"]
        return attribute == "MasterUserSecret.SecretArn" and database.startswith("AWS::RDS::DB")
    if set(parts[1]) != {"Ref"}:
        return False
    target = app.template_json["Resources"][parts[1]["Ref"]]["Type"]
    return target in ("AWS::SecretsManager::Secret", "AWS::SecretsManager::SecretTargetAttachment")


def _environments(app: Synthesized) -> dict[str, dict[str, Any]]:
    """Every environment the stack sets: each function's and each task definition container's."""
    found = {
        f"function {name}": props["Environment"]["Variables"] for name, (_, props) in _functions(app).items()
    }
    for family, (_, props) in _task_definitions(app).items():
        for container in props["ContainerDefinitions"]:
            env = {pair["Name"]: pair["Value"] for pair in container.get("Environment", [])}
            found[f"container {family}/{container['Name']}"] = env
    return found


def test_no_environment_holds_a_secret_value(any_app: Synthesized) -> None:
    environments = _environments(any_app)
    assert len(environments) == len(constants.FUNCTION_LAYERS) + 2
    for where, variables in environments.items():
        for variable, value in variables.items():
            if isinstance(value, str):
                # names that say credential hold references; nothing has the shape of a known key
                check_worker_env({variable: value})
                if variable == "ORCH_AGENT_SECRET_REFS":  # a JSON map of references
                    assert all(ref.startswith(SCHEME) for ref in json.loads(value).values()), where
                elif "secret" in value.lower():
                    assert value.startswith(SCHEME), f"{where} {variable}"
            elif "secret" in json.dumps(value).lower() or variable.endswith("_REF"):
                assert _is_reference_to_a_secret(any_app, value), f"{where} {variable}: {value}"
            # a secret's value is never resolved into an environment (no dynamic reference either)
            assert "{{resolve:secretsmanager" not in json.dumps(value), f"{where} {variable}"
            assert "SecretString" not in json.dumps(value), f"{where} {variable}"


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
    (cluster,) = default_app.resources("AWS::RDS::DBCluster")
    # the API logs in with an IAM token: no password, no secret (tests/infrastructure/test_database.py)
    assert "ORCH_DATABASE_SECRET_REF" not in env
    assert env["ORCH_DATABASE_IAM_USER"] == constants.DB_IAM_USER
    assert env["ORCH_DATABASE_HOST"] == {"Fn::GetAtt": [cluster, "Endpoint.Address"]}
    assert env["ORCH_QUEUE_BACKEND"] == "sqs"
    assert env["ORCH_QUEUE_PREFIX"] == DEFAULT_PREFIX
    assert env["ORCH_SECRETS_BACKEND"] == "aws"
    assert env["ORCH_SECRETS_PREFIX"] == DEFAULT_PREFIX
    # the deploy hook seeds the admin; the internet-facing function cannot read the admin key
    assert "ORCH_BOOTSTRAP_ADMIN_KEY_REF" not in env
    hook = _env(default_app, constants.DEPLOY_HOOK_FUNCTION)
    # both verify the server's certificate against the RDS CAs (pg8000 alone encrypts without checking)
    assert env["ORCH_DATABASE_TLS"] == hook["ORCH_DATABASE_TLS"] == "verify-full"
    assert _is_reference_to_a_secret(default_app, hook["ORCH_BOOTSTRAP_ADMIN_KEY_REF"])
    assert _is_reference_to_a_secret(default_app, hook["ORCH_SERVICE_API_KEY_REF"])


def test_functions_that_call_the_api_know_its_url_and_their_service_key(any_app: Synthesized) -> None:
    (api_id,) = any_app.resources("AWS::ApiGatewayV2::Api")
    service_keys = {
        json.dumps(_env(any_app, name)["ORCH_SERVICE_API_KEY_REF"])
        for name in _functions(any_app)
        if name not in NO_API_CALLERS
    }
    assert len(service_keys) == 1
    for name in _functions(any_app):
        if name in NO_API_CALLERS:
            continue
        env = _env(any_app, name)
        assert env["ORCH_API_URL"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}, name
        assert env["ORCH_SECRETS_BACKEND"] == "aws", name


def test_engineering_checkpoints_in_dynamodb_and_repos_live_on_github(
    default_app: Synthesized, variant_app: Synthesized
) -> None:
    (table,) = [k for k in default_app.resources("AWS::DynamoDB::Table") if "CheckpointTable" in k]
    for graph in (constants.ENGINEERING_FUNCTION, constants.DEPLOY_FUNCTION):
        env = _env(default_app, graph)
        assert env["ORCH_CHECKPOINTER"] == "dynamodb", graph
        assert env["ORCH_CHECKPOINT_TABLE"] == {"Ref": table}, graph
        assert env["ORCH_CHECKPOINT_TTL_S"] == str(constants.CHECKPOINT_TTL_SECONDS), graph
        _, props = _function(default_app, graph)
        tables = {
            json.dumps(resource)
            for statement in _policy_statements(default_app, _role_of(props))
            if "dynamodb:PutItem" in _actions(statement)
            for resource in _resources(statement)
        }
        assert json.dumps({"Fn::GetAtt": [table, "Arn"]}) in tables, graph
    for name in (constants.ENGINEERING_FUNCTION, constants.SCAFFOLDER_FUNCTION, constants.DEPLOY_FUNCTION):
        default_env, variant_env = _env(default_app, name), _env(variant_app, name)
        assert default_env["ORCH_REPO_HOST"] == variant_env["ORCH_REPO_HOST"] == "github"
        assert default_env["ORCH_GITHUB_TOKEN_REF"] == constants.DEFAULT_GITHUB_TOKEN_REF
        assert default_env["ORCH_GITHUB_OWNER"] == default_env["ORCH_REPO_OWNER"] == "octocat"
        assert default_env["ORCH_GITHUB_OWNER_IS_ORG"] == "false"
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
    assert readers == {
        constants.ENGINEERING_FUNCTION,
        constants.SCAFFOLDER_FUNCTION,
        constants.DEPLOY_FUNCTION,
        constants.SCHEDULER_FUNCTION,  # github_sync
        constants.API_FUNCTION,  # resolves it for a worker that pushes (POST /internal/workers/{id}/secrets)
    }
    # the Ansible runner clones over https; the worker's task role reads nothing
    task_roles = {
        family: props["TaskRoleArn"]["Fn::GetAtt"][0]
        for family, (_, props) in _task_definitions(any_app).items()
    }
    assert len(task_roles) == 2
    for family, role in task_roles.items():
        readable = json.dumps([_resources(s) for s in _policy_statements(any_app, role)])
        assert (fragment in readable) is family.endswith("-ansible-runner"), family


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
        function = functions[_mapped_function_id(any_app, mapping)]["Properties"]
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
        if _mapped_function_id(default_app, m) == logical_id
    }
    assert set(mine) == {physical_name(DEFAULT_PREFIX, q) for q in spec.queues}
    for mapping in mine.values():
        assert mapping["BatchSize"] == spec.batch_size
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == max(
            constants.SQS_EVENT_SOURCE_MIN_CONCURRENCY, spec.max_concurrency
        )
    # the topology's timeout and the one the queues were sized from agree (in AWS the infra function
    # only launches a Fargate task: shorter than its embedded, in-call playbook run)
    if constants.function_name_part(spec.function) in constants.AWS_LAUNCH_ONLY_CONSUMERS:
        assert props["Timeout"] < spec.timeout_s
        assert props["Timeout"] == min(constants.consumer_timeout_seconds(q) for q in spec.queues)
    else:
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
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        group = log_groups[container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]]["Properties"]
        assert group["RetentionInDays"] == 30
        assert "container-assets" in json.dumps(container["Image"])
    worker = tasks[f"{prefix}-worker"][1]["ContainerDefinitions"][0]
    assert worker["Name"] == constants.WORKER_CONTAINER_NAME
    # ids and the worker's own token travel in RunTask overrides; the container names nothing
    # (the agents' plain settings, -c agent_env, when given: tests/infrastructure/test_agent_env.py)
    assert "Environment" not in worker
    # the runner publishes its own outcome: it is told where queues and secrets live, nothing secret
    runner = tasks[f"{prefix}-ansible-runner"][1]["ContainerDefinitions"][0]
    assert runner["Name"] == constants.ANSIBLE_CONTAINER_NAME
    env = {pair["Name"]: pair["Value"] for pair in runner["Environment"]}
    assert env == {
        "ORCH_SERVICE_NAME": "ansible-runner",
        "ORCH_LOG_LEVEL": constants.LAMBDA_LOG_LEVEL,
        "ORCH_QUEUE_BACKEND": "sqs",
        "ORCH_QUEUE_PREFIX": prefix,
        "ORCH_QUEUE_MAX_RECEIVES": str(constants.QUEUE_MAX_RECEIVE_COUNT),
        "ORCH_SECRETS_BACKEND": "aws",
        "ORCH_SECRETS_PREFIX": prefix,
        "ORCH_AWS_REGION": {"Ref": "AWS::Region"},
        # the only token reference the runner lets a deploy job resolve
        "ORCH_GITHUB_TOKEN_REF": any_app.stack.config.github_token_ref,
    }


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
            "pyproject.toml",
            "README.md",
            "shared",
            "functions",
            "cli",
            "worker_image",
        }
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
    # no other function may touch ECS or pass roles (the infra function: see its own test)
    for name, (_, other) in _functions(any_app).items():
        if name not in (constants.WORKER_MANAGER_FUNCTION, constants.INFRA_FUNCTION):
            for statement in _policy_statements(any_app, _role_of(other)):
                assert not any(a.startswith(("ecs:", "iam:")) for a in _actions(statement)), name


def test_worker_manager_environment_points_at_the_fargate_runtime(default_app: Synthesized) -> None:
    (cluster_id,) = default_app.resources("AWS::ECS::Cluster")
    worker_id, _ = _task_definitions(default_app)[f"{DEFAULT_PREFIX}-worker"]
    (task_group,) = [
        k
        for k in default_app.resources("AWS::EC2::SecurityGroup")
        if k.startswith("NetworkTaskSecurityGroup")
    ]
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


def test_the_runner_task_role_reads_only_its_own_secrets(any_app: Synthesized) -> None:
    """The Ansible runner runs no agent, so it keeps its own role; the worker's holds nothing
    (tests/infrastructure/test_worker_role.py)."""
    service_key = [k for k in any_app.resources("AWS::SecretsManager::Secret") if "ServiceKey" in k]
    _, props = _task_definitions(any_app)[f"{any_app.stack.config.resource_prefix}-ansible-runner"]
    statements = _policy_statements(any_app, props["TaskRoleArn"]["Fn::GetAtt"][0])
    secret_statements = [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    read = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert {a for s in secret_statements for a in _actions(s)} == read
    # it publishes its outcome (see its own test), nothing else
    assert {a for s in statements for a in _actions(s)} - read == set(SEND_ACTIONS)
    readable = json.dumps([r for s in secret_statements for r in _resources(s)])
    assert f'"Ref": "{service_key[0]}"' in readable
    assert "AdminKey" not in readable and "DataInstance" not in readable
    assert f"/{constants.PO_SECRETS_PATH}/" not in readable


def test_stopped_worker_tasks_are_routed_to_the_worker_events_function(any_app: Synthesized) -> None:
    (cluster_id,) = any_app.resources("AWS::ECS::Cluster")
    events_id, events_props = _function(any_app, constants.WORKER_EVENTS_FUNCTION)
    assert events_props["Handler"] == "functions.worker_manager.handler.ecs_event_handler"
    (rule,) = [
        r["Properties"]
        for r in any_app.resources("AWS::Events::Rule").values()
        if r["Properties"]["Name"] == f"{any_app.stack.config.resource_prefix}-worker-task-stopped"
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


def test_every_scheduler_job_runs_in_aws_and_gates_expire_within_five_minutes(
    default_app: Synthesized,
) -> None:
    # a job in the scheduler's table without a rule would never run in AWS (the embedded ticker reads
    # the same topology); issue 21's gate_expiry fails unanswered approvals and reviews
    from functions.scheduler.jobs import JOBS

    prefix = default_app.stack.config.resource_prefix
    rules = {
        r["Properties"]["Name"]: r["Properties"]["ScheduleExpression"]
        for r in default_app.resources("AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    }
    assert {f"{prefix}-job-{job}" for job in JOBS} == set(rules)
    assert rules[f"{prefix}-job-gate_expiry"] == "rate(5 minutes)"


def test_the_api_prices_worker_time_at_the_size_the_stack_gives_agent_clis(default_app: Synthesized) -> None:
    # issue 21: the ledger prices a worker's running time from SpendControlSettings (the API's settings);
    # its defaults must be the Fargate size the stack launches coding agents at, or the API would need env
    from shared.spend_settings import SpendControlSettings

    fields = SpendControlSettings.model_fields
    vcpu, memory_gb = fields["worker_vcpu"].default, fields["worker_memory_gb"].default
    sizes = dict(default_app.stack.config.worker_task_sizes)
    for agent in ("claude-code", "codex", "droid"):
        assert (sizes[agent].cpu / 1024, sizes[agent].memory / 1024) == (vcpu, memory_gb), agent
    assert not {"ORCH_WORKER_VCPU", "ORCH_WORKER_MEMORY_GB"} & set(_env(default_app, constants.API_FUNCTION))


def test_scheduler_reads_queue_depths_and_sends_only_what_server_sync_publishes(
    default_app: Synthesized,
) -> None:
    _, props = _function(default_app, constants.SCHEDULER_FUNCTION)
    sqs = [
        s
        for s in _policy_statements(default_app, _role_of(props))
        if any(a.startswith("sqs:") for a in _actions(s))
    ]
    # dlq_watch: depths of every queue and DLQ, never a message
    assert {a for s in sqs for a in _actions(s)} == {
        "sqs:GetQueueUrl",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
    }
    assert len({json.dumps(r) for s in sqs for r in _resources(s)}) == 2 * len(QUEUES)
    # server_sync: one ping per server on provisioner:queue, and nowhere else
    queues = default_app.resources("AWS::SQS::Queue")
    sends = [s for s in sqs if "sqs:SendMessage" in _actions(s)]
    assert set(_actions(sends[0])) == set(SEND_ACTIONS)
    assert {queues[r["Fn::GetAtt"][0]]["Properties"]["QueueName"] for s in sends for r in _resources(s)} == {
        physical_name(DEFAULT_PREFIX, "provisioner:queue")
    }
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
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in any_app.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"$default", f"POST {constants.TELEGRAM_WEBHOOK_PATH}"}
    integrations = any_app.resources("AWS::ApiGatewayV2::Integration")
    integration = integrations[routes["$default"]["Target"]["Fn::Join"][1][1]["Ref"]]
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    alias = any_app.resources("AWS::Lambda::Alias")[integration["Properties"]["IntegrationUri"]["Ref"]]
    # through its SnapStart alias (tests/infrastructure/test_snapstart.py)
    assert alias["Properties"]["FunctionName"] == {"Ref": api_fn_id}


def test_api_writes_only_project_and_server_secrets_and_reads_only_the_database_and_worker_secrets(
    default_app: Synthesized,
) -> None:
    """It does not read the database's master secret (IAM login); for workers (issue 20) the GitHub token and the Product Owner
    keys (the agents' credentials too when given: tests/infrastructure/test_worker_role.py); it cannot read
    back the project and server secrets it writes, nor any key of the stack's."""
    _, props = _function(default_app, constants.API_FUNCTION)
    statements = [
        s
        for s in _policy_statements(default_app, _role_of(props))
        if any(a.startswith("secretsmanager:") for a in _actions(s))
    ]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    readable = [r for s in reads for r in _resources(s)]
    assert "MasterUserSecret" not in json.dumps(readable)  # it logs in with an IAM token instead
    others = sorted(json.dumps(r) for r in readable)
    assert len(others) == 2
    assert f":secret:{DEFAULT_PREFIX}/github/token-??????" in others[0]
    assert f":secret:{DEFAULT_PREFIX}/po/*" in others[1]
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
    (db_id,) = default_app.resources("AWS::RDS::DBCluster")
    assert db_id in trigger["DependsOn"]
    # the hook reads the master secret from Secrets Manager over IPv6: after the private subnets' route out
    assert any("PrivateIpv6Route" in d for d in trigger["DependsOn"])
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


def test_functions_no_other_alarm_watches_have_an_errors_alarm_and_the_api_a_5xx_alarm(
    default_app: Synthesized,
) -> None:
    # issue 23: consumers are watched through their queues, the API and the webhook through the 5xx rate
    names = {a["Properties"]["AlarmName"] for a in default_app.resources("AWS::CloudWatch::Alarm").values()}
    assert f"{DEFAULT_PREFIX}-function-errors-1" in names
    assert f"{DEFAULT_PREFIX}-api-5xx-rate" in names


# -- layers ----------------------------------------------------------------------------------------


def test_require_layers_refuses_to_synthesize_placeholders(tmp_path: Path) -> None:
    from infra_cdk.app import build_app

    with pytest.raises(ConfigError, match=r"python -m layers.build"):
        build_app(
            outdir=str(tmp_path),
            context={**DEFAULT_CONTEXT, "require_layers": "true", "layers_dir": str(tmp_path / "none")},
        )


# -- deploy, infra and the Ansible runner ----------------------------------------------------------


def _ansible_rule(app: Synthesized) -> dict[str, Any]:
    rule: dict[str, Any]
    (rule,) = [
        r["Properties"]
        for r in app.resources("AWS::Events::Rule").values()
        if r["Properties"]["Name"] == f"{app.stack.config.resource_prefix}-ansible-task-stopped"
    ]
    return rule


def _subnet_ids(app: Synthesized, group: str) -> list[dict[str, str]]:
    return [{"Ref": k} for k in app.resources("AWS::EC2::Subnet") if group in k]


def test_deploy_function_runs_outside_the_vpc_to_reach_the_services_it_smoke_tests(
    any_app: Synthesized,
) -> None:
    # its smoke test GETs the deployed service on the internet: the private subnets have no way out
    # without a NAT gateway, so it runs where Lambda has internet access, like the other consumers
    _, props = _function(any_app, constants.DEPLOY_FUNCTION)
    assert "VpcConfig" not in props
    assert props["Handler"] == "functions.deploy.handler.lambda_handler"
    assert _layer_names(any_app, props) == {"graph"}


def test_infra_runs_only_the_ansible_task_definition_and_passes_only_its_roles(any_app: Synthesized) -> None:
    (cluster_id,) = any_app.resources("AWS::ECS::Cluster")
    prefix = any_app.stack.config.resource_prefix
    ansible_id, ansible = _task_definitions(any_app)[f"{prefix}-ansible-runner"]
    _, props = _function(any_app, constants.INFRA_FUNCTION)
    statements = _policy_statements(any_app, _role_of(props))
    by_action = {a: s for s in statements for a in _actions(s) if a.startswith(("ecs:", "iam:"))}
    assert set(by_action) == {"ecs:RunTask", "ecs:TagResource", "iam:PassRole"}
    run = by_action["ecs:RunTask"]
    assert _resources(run) == [{"Ref": ansible_id}]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster_id, "Arn"]}}}
    (tag_resource,) = _resources(by_action["ecs:TagResource"])
    assert tag_resource["Fn::Join"][1][-2:] == [{"Ref": cluster_id}, "/*"]
    assert by_action["ecs:TagResource"]["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    pass_role = by_action["iam:PassRole"]
    assert sorted(map(json.dumps, _resources(pass_role))) == sorted(
        map(json.dumps, [ansible["TaskRoleArn"], ansible["ExecutionRoleArn"]])
    )
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # and nothing of the worker's
    worker_id, worker = _task_definitions(any_app)[f"{prefix}-worker"]
    granted = json.dumps([_resources(s) for s in by_action.values()])
    assert worker_id not in granted
    assert worker["TaskRoleArn"]["Fn::GetAtt"][0] not in granted


def test_infra_environment_launches_the_runner_on_fargate_where_it_can_reach_the_internet(
    default_app: Synthesized, variant_app: Synthesized
) -> None:
    for app, behind_nat in ((default_app, False), (variant_app, True)):
        (cluster_id,) = app.resources("AWS::ECS::Cluster")
        ansible_id, _ = _task_definitions(app)[f"{app.stack.config.resource_prefix}-ansible-runner"]
        (ansible_group,) = [
            k for k in app.resources("AWS::EC2::SecurityGroup") if "AnsibleTaskSecurityGroup" in k
        ]
        for name in (constants.INFRA_FUNCTION, constants.INFRA_EVENTS_FUNCTION):
            env = _env(app, name)
            assert env["ORCH_ANSIBLE_RUNTIME"] == "fargate", name
            assert env["ORCH_FARGATE_CLUSTER"] == {"Ref": cluster_id}, name
            assert env["ORCH_ANSIBLE_TASK_DEFINITION"] == {"Ref": ansible_id}, name
            assert env["ORCH_ANSIBLE_CONTAINER_NAME"] == constants.ANSIBLE_CONTAINER_NAME, name
            assert env["ORCH_FARGATE_SECURITY_GROUPS"] == {"Fn::GetAtt": [ansible_group, "GroupId"]}, name
            subnets = [part for part in env["ORCH_FARGATE_SUBNETS"]["Fn::Join"][1] if part != ","]
            # without NAT: public subnets and a public IP (the internet gateway is the only way out);
            # behind the NAT gateway: private subnets, no public IP, one stable source address
            assert subnets == _subnet_ids(app, "private" if behind_nat else "public"), name
            assert env["ORCH_ANSIBLE_ASSIGN_PUBLIC_IP"] == ("false" if behind_nat else "true"), name
            assert env["ORCH_QUEUE_BACKEND"] == "sqs" and env["ORCH_SECRETS_BACKEND"] == "aws", name
    # the container name the overrides address is the task definition's
    (container,) = _task_definitions(default_app)[f"{DEFAULT_PREFIX}-ansible-runner"][1][
        "ContainerDefinitions"
    ]
    assert container["Name"] == _env(default_app, constants.INFRA_FUNCTION)["ORCH_ANSIBLE_CONTAINER_NAME"]


def test_infra_settings_read_the_stack_environment(
    default_app: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.infra.settings import InfraSettings

    for variable, value in _env(default_app, constants.INFRA_FUNCTION).items():
        monkeypatch.setenv(variable, value if isinstance(value, str) else "x")
    settings = InfraSettings()
    assert settings.ansible_runtime == "fargate"
    assert settings.ansible_assign_public_ip is True
    assert settings.ansible_container_name == constants.ANSIBLE_CONTAINER_NAME


def test_the_fargate_launcher_asks_for_a_public_ip_only_when_told() -> None:
    from functions.infra.launch import FargateLauncher
    from worker_image.ansible_runner.job import RunnerJob, Target

    class Ecs:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def run_task(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            return {"tasks": [{"taskArn": "arn:task"}], "failures": []}

    job = RunnerJob(request_id="r1", kind="ping", target=Target(handle="web", host="203.0.113.5"))
    for assign, expected in ((True, "ENABLED"), (False, "DISABLED")):
        ecs = Ecs()
        FargateLauncher(ecs, "c", "td", "ansible-runner", ["s"], ["g"], assign_public_ip=assign).launch(job)
        assert ecs.calls[0]["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == expected
        assert ecs.calls[0]["startedBy"] == "orchestrator-ansible"


def test_ansible_runner_egress_is_ssh_and_https_only(any_app: Synthesized) -> None:
    groups = any_app.resources("AWS::EC2::SecurityGroup")
    (group,) = [g["Properties"] for k, g in groups.items() if "AnsibleTaskSecurityGroup" in k]
    egress = sorted(
        (rule["IpProtocol"], rule["FromPort"], rule["ToPort"], rule["CidrIp"])
        for rule in group["SecurityGroupEgress"]
    )
    assert egress == [("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")]
    assert "SecurityGroupIngress" not in group


def test_ansible_task_role_publishes_only_to_the_results_queues(any_app: Synthesized) -> None:
    prefix = any_app.stack.config.resource_prefix
    _, ansible = _task_definitions(any_app)[f"{prefix}-ansible-runner"]
    queues = any_app.resources("AWS::SQS::Queue")
    statements = _policy_statements(any_app, ansible["TaskRoleArn"]["Fn::GetAtt"][0])
    sends = {
        queues[resource["Fn::GetAtt"][0]]["Properties"]["QueueName"]
        for statement in statements
        if "sqs:SendMessage" in _actions(statement)
        for resource in _resources(statement)
    }
    assert sends == {
        physical_name(prefix, "ansible:deploy:results"),
        physical_name(prefix, "provisioner:results"),
    }
    readable = json.dumps(
        [_resources(s) for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    )
    assert f":secret:{prefix}/servers/*" in readable and f":secret:{prefix}/projects/*" in readable


def test_stopped_ansible_tasks_are_routed_to_the_infra_events_function(any_app: Synthesized) -> None:
    from shared.constants import ANSIBLE_STARTED_BY as STARTED_BY

    (cluster_id,) = any_app.resources("AWS::ECS::Cluster")
    events_id, events_props = _function(any_app, constants.INFRA_EVENTS_FUNCTION)
    assert events_props["Handler"] == "functions.infra.handler.ecs_event_handler"
    assert _layer_names(any_app, events_props) == set(constants.FUNCTION_LAYERS[constants.INFRA_FUNCTION])
    rule = _ansible_rule(any_app)
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["startedBy"] == [STARTED_BY] == ["orchestrator-ansible"]
    assert pattern["detail"]["clusterArn"] == [{"Fn::GetAtt": [cluster_id, "Arn"]}]
    assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    (prefix_match,) = pattern["detail"]["taskDefinitionArn"]
    assert f":task-definition/{any_app.stack.config.resource_prefix}-ansible-runner:" in json.dumps(
        prefix_match["prefix"]
    )
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [events_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == constants.ECS_EVENT_MAX_AGE_HOURS * 3600
    # the rule may invoke exactly that function
    (permission,) = [
        p["Properties"]
        for p in any_app.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [events_id, "Arn"]}
    ]
    assert permission["Principal"] == "events.amazonaws.com"


def test_the_product_owner_consumes_its_two_queues_with_dlqs(default_app: Synthesized) -> None:
    queues = default_app.resources("AWS::SQS::Queue")
    po_id, po_props = _function(default_app, constants.PRODUCT_OWNER_FUNCTION)
    for logical in ("po:inbox", "po:responses"):
        (queue_id,) = [
            k
            for k, q in queues.items()
            if q["Properties"]["QueueName"] == physical_name(DEFAULT_PREFIX, logical)
        ]
        assert "RedrivePolicy" in queues[queue_id]["Properties"]
        assert queues[queue_id]["Properties"]["VisibilityTimeout"] == 6 * constants.consumer_timeout_seconds(
            logical
        )
        consumers = [
            m for m in _mappings(default_app) if m["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        ]
        assert [m["FunctionName"] for m in consumers] == [{"Ref": po_id}]
    assert po_props["Timeout"] == constants.consumer_timeout_seconds("po:inbox")
    env = _env(default_app, constants.PRODUCT_OWNER_FUNCTION)
    assert "ORCH_TELEGRAM_BOT_TOKEN_REF" in env and "ORCH_IDEMPOTENCY_TABLE" in env
    statements = _policy_statements(default_app, _role_of(po_props))
    writes = [s for s in statements if "secretsmanager:PutSecretValue" in _actions(s)]
    assert len(writes) == 1 and "secretsmanager:DeleteSecret" not in _actions(writes[0])
    assert all(f"/{constants.PO_SECRETS_PATH}/*" in json.dumps(r) for r in _resources(writes[0]))


# -- telegram ---------------------------------------------------------------------------------------


def _idempotency_table(app: Synthesized) -> str:
    (table,) = [k for k in app.resources("AWS::DynamoDB::Table") if "IdempotencyTable" in k]
    return table


def _secret_id(app: Synthesized, fragment: str) -> str:
    (secret,) = [k for k in app.resources("AWS::SecretsManager::Secret") if fragment in k]
    return secret


def test_webhook_route_is_post_only_without_an_authorizer_to_the_webhook_function(
    any_app: Synthesized,
) -> None:
    webhook_id, _ = _function(any_app, constants.TELEGRAM_WEBHOOK_FUNCTION)
    (route,) = [
        r["Properties"]
        for r in any_app.resources("AWS::ApiGatewayV2::Route").values()
        if r["Properties"]["RouteKey"] == "POST /telegram/webhook"
    ]
    # the secret header, checked by the function, is the check: Telegram cannot send anything else
    assert route["AuthorizationType"] == "NONE"
    assert "AuthorizerId" not in route
    integration = any_app.resources("AWS::ApiGatewayV2::Integration")[
        route["Target"]["Fn::Join"][1][1]["Ref"]
    ]
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": [webhook_id, "Arn"]}
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert "/telegram/webhook" in json.dumps(any_app.template_json["Outputs"]["TelegramWebhookUrl"]["Value"])


def test_webhook_is_the_light_ack_path_with_only_what_it_needs(any_app: Synthesized) -> None:
    _, props = _function(any_app, constants.TELEGRAM_WEBHOOK_FUNCTION)
    assert props["Handler"] == "functions.telegram_webhook.handler.lambda_handler"
    assert "VpcConfig" not in props
    layers = _layer_names(any_app, props)
    assert "bot" not in layers
    for layer in layers:
        assert not [r for r in build.requirements(layer) if r.lower().startswith(HEAVY_PACKAGES)], layer
    env = _env(any_app, constants.TELEGRAM_WEBHOOK_FUNCTION)
    webhook_secret = _secret_id(any_app, "WebhookSecret")
    table = _idempotency_table(any_app)
    assert env["ORCH_TELEGRAM_WEBHOOK_SECRET_REF"] == {"Fn::Join": ["", [SCHEME, {"Ref": webhook_secret}]]}
    assert env["ORCH_SECRETS_BACKEND"] == "aws"
    assert env["ORCH_QUEUE_BACKEND"] == "sqs"
    assert env["ORCH_QUEUE_PREFIX"] == any_app.stack.config.resource_prefix
    assert env["ORCH_IDEMPOTENCY_BACKEND"] == "dynamodb"
    assert env["ORCH_IDEMPOTENCY_TABLE"] == {"Ref": table}
    assert "ORCH_TELEGRAM_BOT_TOKEN_REF" not in env
    statements = _policy_statements(any_app, _role_of(props))
    secrets = [r for s in statements if "secretsmanager:GetSecretValue" in _actions(s) for r in _resources(s)]
    assert secrets == [{"Ref": webhook_secret}]
    dynamo = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert [sorted(_actions(s)) for s in dynamo] == [["dynamodb:DeleteItem", "dynamodb:PutItem"]]
    assert _resources(dynamo[0]) == [{"Fn::GetAtt": [table, "Arn"]}]


def test_bot_consumer_reads_its_token_claims_and_talks_to_the_po_inbox(
    default_app: Synthesized, variant_app: Synthesized
) -> None:
    for app, admins in ((default_app, ""), (variant_app, "111,222")):
        _, props = _function(app, constants.TELEGRAM_BOT_FUNCTION)
        assert props["Timeout"] == 90
        assert _layer_names(app, props) == {"bot"}
        env = _env(app, constants.TELEGRAM_BOT_FUNCTION)
        token = _secret_id(app, "BotTokenSecret")
        table = _idempotency_table(app)
        assert env["ORCH_TELEGRAM_BOT_TOKEN_REF"] == {"Fn::Join": ["", [SCHEME, {"Ref": token}]]}
        assert env["ORCH_TELEGRAM_ADMINS"] == admins
        assert env["ORCH_IDEMPOTENCY_BACKEND"] == "dynamodb"
        assert env["ORCH_IDEMPOTENCY_TABLE"] == {"Ref": table}
        assert "ORCH_TELEGRAM_WEBHOOK_SECRET_REF" not in env
        statements = _policy_statements(app, _role_of(props))
        readable = {
            json.dumps(r)
            for s in statements
            if "secretsmanager:GetSecretValue" in _actions(s)
            for r in _resources(s)
        }
        assert json.dumps({"Ref": token}) in readable
        assert json.dumps({"Ref": _secret_id(app, "WebhookSecret")}) not in readable
        dynamo = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
        assert [sorted(_actions(s)) for s in dynamo] == [["dynamodb:DeleteItem", "dynamodb:PutItem"]]
        assert _resources(dynamo[0]) == [{"Fn::GetAtt": [table, "Arn"]}]


def test_only_the_bot_and_the_webhook_may_claim_and_only_they_read_telegram_secrets(
    any_app: Synthesized,
) -> None:
    table = _idempotency_table(any_app)
    secrets = {_secret_id(any_app, "BotTokenSecret"), _secret_id(any_app, "WebhookSecret")}
    claimers, readers = set(), set()
    for name, (_, props) in _functions(any_app).items():
        granted = json.dumps([_resources(s) for s in _policy_statements(any_app, _role_of(props))])
        if table in granted:
            claimers.add(name)
        if any(secret in granted for secret in secrets):
            readers.add(name)
    telegram = {constants.TELEGRAM_BOT_FUNCTION, constants.TELEGRAM_WEBHOOK_FUNCTION}
    telegram |= {constants.PRODUCT_OWNER_FUNCTION}  # answers as the bot; claims per person and per answer
    assert claimers == telegram
    # the progress notifier sends as the bot; it needs no claims (the API's notification row serialises it)
    assert readers == telegram | {constants.TELEGRAM_NOTIFIER_FUNCTION}


def test_telegram_secrets_are_generated_never_written_in_the_template(any_app: Synthesized) -> None:
    for fragment in ("BotTokenSecret", "WebhookSecret"):
        props = any_app.resources("AWS::SecretsManager::Secret")[_secret_id(any_app, fragment)]["Properties"]
        assert "SecretString" not in props
        generator = props["GenerateSecretString"]
        # Telegram's secret_token alphabet is A-Za-z0-9_- : letters and digits only stay inside it
        assert generator["ExcludePunctuation"] is True and generator["IncludeSpace"] is False
    webhook = any_app.resources("AWS::SecretsManager::Secret")[_secret_id(any_app, "WebhookSecret")]
    assert 1 <= webhook["Properties"]["GenerateSecretString"]["PasswordLength"] <= 256


def test_agent_credentials_reach_the_graphs_by_reference_and_only_the_api_reads_them(
    default_app: Synthesized, variant_app: Synthesized
) -> None:
    """The graphs put the references into a worker's config; the API resolves them for that worker
    (its per-task token), so the API function's role reads them and no task role does."""
    import json

    for name in ("engineering", "product-owner"):
        assert "ORCH_AGENT_SECRET_REFS" not in _env(default_app, name)
        refs = json.loads(_env(variant_app, name)["ORCH_AGENT_SECRET_REFS"])
        assert refs == {"ANTHROPIC_API_KEY": "secret://agents/anthropic"}

    def readers(app: Synthesized) -> set[str]:
        return {
            role["Ref"]
            for policy in app.resources("AWS::IAM::Policy").values()
            if "agents/anthropic" in json.dumps(policy["Properties"]["PolicyDocument"])
            for role in policy["Properties"]["Roles"]
        }

    api_id, api = _function(variant_app, constants.API_FUNCTION)
    assert readers(variant_app) == {api["Role"]["Fn::GetAtt"][0]}, api_id
    assert readers(default_app) == set()


def test_the_scheduler_syncs_repositories_on_github_like_the_graphs(
    variant_app: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    """github_sync reads the same repo-host settings as engineering, and the token they name."""
    from functions.scheduler.settings import SchedulerSettings
    from shared.repos.factory import RepoHostSettings

    scheduler = _env(variant_app, constants.SCHEDULER_FUNCTION)
    engineering = _env(variant_app, constants.ENGINEERING_FUNCTION)
    repo_host = {k: v for k, v in engineering.items() if k.startswith(("ORCH_REPO_", "ORCH_GITHUB_"))}
    assert repo_host["ORCH_REPO_HOST"] == "github"
    assert {k: scheduler.get(k) for k in repo_host} == repo_host
    for variable, value in scheduler.items():
        monkeypatch.setenv(variable, value if isinstance(value, str) else "x")
    settings = RepoHostSettings()
    assert (settings.repo_host, settings.github_owner, settings.github_owner_is_org) == (
        "github",
        "acme",
        True,
    )
    assert settings.github_token_ref == variant_app.stack.config.github_token_ref
    assert SchedulerSettings().repo_owner == "acme"  # github_sync looks repositories up as acme/<project>
