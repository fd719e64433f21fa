"""How every function of the stack is built: one code asset, per-function layers, a role and a log group each.

The code asset is the repository's `shared/ functions/ cli/ worker_image/` (nothing else: no tests,
.venv, cdk.out or .git), with bytecode precompiled for the runtime's Python (`layers.code_asset`).
Dependencies come in layers built without Docker by `python -m layers.build`; each function gets only
the layers its imports need (`constants.FUNCTION_LAYERS`), so the API carries no langgraph or aiogram.

Every function gets its own role: write access to its own log group and nothing else until its
construct grants what it uses; a function in the VPC also gets AWS's VPC access policy (network
interfaces, and log writes to any log group: see its acknowledgement).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import (
    Acknowledgment,
    Annotations,
    ArnFormat,
    AssetHashType,
    Duration,
    RemovalPolicy,
    Stack,
    Validations,
)
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk import constants, environment
from infra_cdk.config import ConfigError, StackConfig
from infra_cdk.layer_assets import NOT_BUILT_WARNING, LayerAsset, layer_asset, resolve_layers_dir
from layers import build, code_asset
from shared.secrets.refs import is_arn, parse_reference, ssm_path

VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"

SNAPSTART_FUNCTIONS = frozenset({constants.API_FUNCTION, constants.TELEGRAM_BOT_FUNCTION})
"""Functions a person waits on after an idle period (an HTTP answer, the bot's reply): Lambda SnapStart
restores them from a snapshot taken after their imports instead of importing again (the bot's aiogram
alone takes seconds). Their restore hooks: `shared.snapstart`. SnapStart applies to published versions
only, so each gets a version and the `LIVE_ALIAS` alias, and its triggers call the alias."""
LIVE_ALIAS = "live"


@dataclass(frozen=True)
class VpcPlacement:
    """Where a function that must reach the database runs."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup
    ipv6_out: bool = False
    """Outbound IPv6 from the dual-stack subnets (`infra_cdk.constructs.network`: AWS APIs without endpoints)."""


def lambda_handler_path(topology_handler: str) -> str:
    """`functions.api.handler:lambda_handler` (shared.topology) -> `functions.api.handler.lambda_handler`."""
    module, _, attribute = topology_handler.partition(":")
    if not module or not attribute:
        raise ValueError(f"handler {topology_handler!r} is not `module:function`")
    return f"{module}.{attribute}"


def pascal(name: str) -> str:
    """`worker-manager` / `worker_manager` -> `WorkerManager` (construct ids)."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


class LambdaRuntime(Construct):
    """The shared code asset, the layers, and `function()`, the one way this stack makes a Lambda."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.code_asset = code_asset.stage_code_asset()
        self.code = lambda_.Code.from_asset(
            str(self.code_asset.path), asset_hash=self.code_asset.digest, asset_hash_type=AssetHashType.CUSTOM
        )
        if not self.code_asset.bytecode:
            Annotations.of(self).add_warning_v2(
                code_asset.NO_BYTECODE_WARNING,
                f"no Python {build.PYTHON_VERSION} found (python{build.PYTHON_VERSION} on PATH or pyenv): the code "
                "asset ships no bytecode, so every cold start compiles the project's modules from source",
            )
        self.layer_assets = self._resolve_layer_assets()
        self.layers: dict[str, lambda_.LayerVersion] = {}
        self.functions: dict[str, lambda_.Function] = {}
        self.aliases: dict[str, lambda_.Alias] = {}

    @property
    def runtime(self) -> lambda_.Runtime:
        runtime: lambda_.Runtime = getattr(lambda_.Runtime, constants.LAMBDA_RUNTIME)
        return runtime

    @property
    def architecture(self) -> lambda_.Architecture:
        architecture: lambda_.Architecture = getattr(lambda_.Architecture, constants.LAMBDA_ARCHITECTURE)
        return architecture

    # -- layers ----------------------------------------------------------------------------------

    def _resolve_layer_assets(self) -> dict[str, LayerAsset]:
        layers_dir = resolve_layers_dir(self._config.layers_dir)
        names = sorted({name for names in constants.FUNCTION_LAYERS.values() for name in names})
        assets = {name: layer_asset(name, layers_dir) for name in names}
        problems = [asset.problem for asset in assets.values() if asset.problem]
        if problems and self._config.require_layers:
            raise ConfigError(
                f"context {constants.CONTEXT_REQUIRE_LAYERS}=true and "
                + "; ".join(problems)
                + f" (layers are looked for in {layers_dir})"
            )
        return assets

    def layer(self, name: str) -> lambda_.LayerVersion:
        """The layer version for `name`, made on first use (a placeholder with a warning if not built)."""
        if name not in self.layers:
            asset = self.layer_assets[name]
            layer = lambda_.LayerVersion(
                self,
                f"{pascal(name)}Layer",
                code=lambda_.Code.from_asset(str(asset.path)),
                compatible_runtimes=[self.runtime],
                compatible_architectures=[self.architecture],
                description=f"{self._config.resource_prefix}: {name} layer"
                + ("" if asset.usable else " (PLACEHOLDER: not built)"),
                removal_policy=RemovalPolicy.DESTROY,
            )
            if asset.problem:
                Annotations.of(layer).add_warning_v2(NOT_BUILT_WARNING, asset.problem)
            self.layers[name] = layer
        return self.layers[name]

    # -- functions -------------------------------------------------------------------------------

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        handler: str,
        timeout_seconds: int,
        description: str,
        environment_variables: Mapping[str, str],
        placement: VpcPlacement | None = None,
    ) -> lambda_.Function:
        """A function named `<resource prefix>-<name>` with its own role and log group.

        `handler` is `module.function` inside the code asset. Layers and memory come
        from `constants.FUNCTION_LAYERS` / `FUNCTION_MEMORY_MB` under `name`.
        """
        if name in self.functions:
            raise ValueError(f"a function named {name!r} exists already")
        function_name = f"{self._config.resource_prefix}-{name}"
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: its log group, plus what its construct grants",
        )
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}LogGroup",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=logs.RetentionDays[constants.LOG_RETENTION],
            removal_policy=RemovalPolicy.DESTROY,
        )
        log_group.grant_write(role)
        network: dict[str, object] = {}
        if placement is not None:
            role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(VPC_ACCESS_POLICY))
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{VPC_ACCESS_POLICY}]",
                    reason="A function in the VPC needs to create, describe and delete its network "
                    "interfaces; EC2 cannot scope DescribeNetworkInterfaces to a resource, and AWS keeps "
                    "this policy in step with what Lambda's VPC networking calls (a hand-kept copy could "
                    "fail Lambda's VPC check when that changes). The policy also allows logs:CreateLogGroup, "
                    "logs:CreateLogStream and logs:PutLogEvents on any log group of the account, not only "
                    "the function's own: accepted for the two functions in the VPC (the API and its deploy "
                    "hook), which can append log lines anywhere but read, change or delete none.",
                )
            )
            network = {
                "vpc": placement.vpc,
                "vpc_subnets": placement.subnets,
                "security_groups": [placement.security_group],
                "allow_public_subnet": False,
                "ipv6_allowed_for_dual_stack": placement.ipv6_out,
            }
        function = lambda_.Function(
            scope,
            construct_id,
            function_name=function_name,
            description=description,
            runtime=self.runtime,
            architecture=self.architecture,
            handler=handler,
            code=self.code,
            layers=[self.layer(layer) for layer in constants.FUNCTION_LAYERS[name]],
            memory_size=constants.FUNCTION_MEMORY_MB[name],
            timeout=Duration.seconds(timeout_seconds),
            role=role,
            log_group=log_group,
            # X-Ray: Lambda samples and records each invocation; the CDK grants the role
            # xray:PutTraceSegments/PutTelemetryRecords (which take no resource, hence their IAM5 below).
            tracing=lambda_.Tracing.ACTIVE,
            environment={**environment.observability(name), **environment_variables},
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if name in SNAPSTART_FUNCTIONS else None,
            # a replaced version is deleted, not retained: each cached snapshot is billed while its version lives
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY)
            if name in SNAPSTART_FUNCTIONS
            else None,
            **network,  # type: ignore[arg-type]
        )
        if name in SNAPSTART_FUNCTIONS:
            # `current_version` publishes a new version whenever the code or configuration changes.
            self.aliases[name] = function.add_alias(LIVE_ALIAS, description=f"{function_name}: SnapStart")
            Annotations.of(function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                f"published: the {LIVE_ALIAS} alias points at current_version, and the triggers call the alias",
            )
        Validations.of(function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason=f"Pinned to {constants.LAMBDA_RUNTIME}: the layers are built for exactly this Python "
                f"(cp{build.PYTHON_VERSION.replace('.', '')} manylinux wheels, layers.build.PYTHON_VERSION); "
                "moving to a newer runtime means rebuilding and re-testing them together.",
            )
        )
        acknowledge_wildcard_resources(
            role,
            ["*"],
            reason="Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords, which the CDK "
            "grants for tracing=ACTIVE, take no resource-level permissions. The role gets these two write "
            "actions on '*' and no other action on '*' (tests/infrastructure/test_compute.py checks).",
        )
        self.functions[name] = function
        return function

    def entry_point(self, name: str) -> lambda_.IFunction:
        """What a trigger of function `name` calls: its `LIVE_ALIAS` alias under SnapStart, else the function
        (SnapStart restores only published versions; the unqualified function would cold-start as before)."""
        return self.aliases.get(name) or self.functions[name]


# -- IAM helpers the constructs share --------------------------------------------------------------


def secret_arns_for_reference(scope: Construct, reference: str, secrets_prefix: str) -> list[str]:
    """The Secrets Manager ARNs a `secret://` reference can resolve to, for an IAM policy.

    A path reference names `<secrets prefix>/<path>`, whose ARN ends in a random six-character
    suffix (`-??????` matches exactly that); an ARN reference is used as given.
    """
    path = parse_reference(reference)
    if is_arn(path):
        return [path, f"{path}-??????"]
    return [secret_name_arn(scope, f"{secrets_prefix}/{path}-??????")]


def secret_name_arn(scope: Construct, name_pattern: str) -> str:
    return Stack.of(scope).format_arn(
        service="secretsmanager",
        resource="secret",
        resource_name=name_pattern,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def grant_secret_read(grantee: iam.IGrantable, arns: Sequence[str]) -> None:
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], resources=list(arns)
        )
    )


Reader = lambda_.FunctionBase | iam.IRole
"""What may be granted a secret reference: a function (its role) or a task role."""


def grant_reference_read(scope: Construct, grantee: Reader, reference: str, secrets_prefix: str) -> None:
    """Read exactly what one `secret://` reference resolves to: a Secrets Manager secret, or for
    `secret://ssm/<path>` the one SecureString parameter `/<secrets prefix>/<path>`."""
    parameter = ssm_path(parse_reference(reference))
    if parameter is None:
        grant_secret_read(grantee, secret_arns_for_reference(scope, reference, secrets_prefix))
    else:
        grant_parameter_read(scope, grantee, [f"{secrets_prefix}/{parameter}"])


def ssm_parameter_arn(scope: Construct, name: str) -> str:
    """A parameter's ARN: `parameter/<name without its leading slash>`."""
    return Stack.of(scope).format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))


def grant_parameter_read(scope: Construct, grantee: Reader, names: Sequence[str]) -> None:
    """`ssm:GetParameter` on exactly these parameters (no path, no wildcard, no GetParametersByPath), and
    `kms:Decrypt` only as SSM asks for it while decrypting exactly these parameters (`kms:ViaService` and
    SSM's encryption context `PARAMETER_ARN`). The `aws/ssm` key's own policy already lets the account's
    principals decrypt through SSM; the statement makes the grant explicit and also covers a parameter
    the operator encrypted with a customer managed key whose policy defers to IAM, and it cannot be used
    for anything else: KMS is reached only through SSM, only for these parameters."""
    stack = Stack.of(scope)
    arns = [ssm_parameter_arn(scope, name) for name in names]
    principal = grantee.grant_principal
    principal.add_to_principal_policy(iam.PolicyStatement(actions=["ssm:GetParameter"], resources=arns))
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["kms:Decrypt"],
            resources=[stack.format_arn(service="kms", resource="key", resource_name="*")],
            conditions={
                "StringEquals": {
                    "kms:ViaService": f"ssm.{stack.region}.{stack.url_suffix}",
                    "kms:EncryptionContext:PARAMETER_ARN": arns,
                }
            },
        )
    )
    acknowledge_wildcard_resources(
        grantee,
        [KMS_KEYS_FINDING],
        reason="kms:Decrypt names no key because the aws/ssm key's id is not known at synth time (an "
        "alias is not a key resource); it is usable only via SSM (kms:ViaService) and only to decrypt "
        "the parameters this role may GetParameter (kms:EncryptionContext:PARAMETER_ARN).",
    )


KMS_KEYS_FINDING = "arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*"
"""How cdk-nag spells the `key/*` resource of `grant_parameter_read` in an IAM5 finding id."""


def secret_name_arn_finding(name_pattern: str) -> str:
    """How cdk-nag spells `secret_name_arn(name_pattern)` in an IAM5 finding id."""
    return f"arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:{name_pattern}"


def acknowledge_wildcard_resources(
    grantee: lambda_.FunctionBase | iam.IRole, resources: Sequence[str], *, reason: str
) -> None:
    """Acknowledge cdk-nag IAM5 for exactly these resource patterns (each finding by its id), nothing else.

    On the role, whose policy carries the finding (a function's role is not its child).
    """
    role = grantee.role if isinstance(grantee, lambda_.FunctionBase) else grantee
    if role is None:
        raise ValueError("a function without a role has no policy to acknowledge findings on")
    Validations.of(role).acknowledge(
        *(
            Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=reason)
            for resource in resources
        )
    )
