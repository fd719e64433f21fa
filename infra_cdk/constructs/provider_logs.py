"""Log groups for the Lambda functions CDK and the Serverless Application Repository make for us.

CDK's singleton custom-resource providers (`Custom::VpcRestrictDefaultSG` of the VPC, the provider of
the deploy hook's trigger) and the database's rotation function (a SAR application) take no log group
or retention setting: Lambda would create `/aws/lambda/<function name>` on their first invocation, with
no expiry, and it would outlive the stack. So the stack makes each of those groups itself, with
`constants.LOG_RETENTION` and deleted with the stack, and makes whatever invokes the function (the custom
resource, the SAR application, which the rotation schedule waits for) wait for its group: it exists
before the first invocation and is deleted after the last.

- A provider's handler gets a generated name, known as its `Ref`: the group's name is built from it
  (it depends on the function, the custom resources using it depend on the group).
- The rotation application takes its function's name as a parameter, which CDK fixes at synth
  (`functionName`): the group is named from that string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import CfnResource, CustomResourceProviderBase, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sam as sam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IConstruct

from infra_cdk import constants


def _log_group(scope: Construct, construct_id: str, name: str) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=logs.RetentionDays[constants.LOG_RETENTION],
        removal_policy=RemovalPolicy.DESTROY,
    )


class ProviderLogs(Construct):
    """One log group per provider handler and for the rotation function; their invokers wait for them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        provider_users: Mapping[str, Sequence[IConstruct]],
        rotation: secretsmanager.SecretRotation | None = None,
    ) -> None:
        """`provider_users`: each provider's construct id in the stack -> what invokes it (custom resources)."""
        super().__init__(scope, construct_id)
        self.log_groups: dict[str, logs.LogGroup] = {}
        providers = [c for c in Stack.of(self).node.children if isinstance(c, CustomResourceProviderBase)]
        unknown = sorted({p.node.id for p in providers} ^ set(provider_users))
        if unknown:
            raise KeyError(f"custom resource providers without their users named (or gone): {unknown}")
        for provider in providers:
            handler = provider.node.find_child("Handler")
            assert isinstance(handler, CfnResource)
            name = Fn.join("", ["/aws/lambda/", handler.ref])
            group = _log_group(self, f"{_id_part(provider.node.id)}LogGroup", name)
            self.log_groups[provider.node.id] = group
            for user in provider_users[provider.node.id]:
                user.node.add_dependency(group)
        if rotation is not None:
            self._rotation_log_group(rotation)

    def _rotation_log_group(self, rotation: secretsmanager.SecretRotation) -> None:
        application = rotation.node.default_child
        assert isinstance(application, sam.CfnApplication)
        parameters = application.parameters
        function_name = parameters.get("functionName") if isinstance(parameters, dict) else None
        if not isinstance(function_name, str) or Token.is_unresolved(function_name):
            raise ValueError(
                "the rotation application's functionName is not fixed at synth: cannot name its log group"
            )
        group = _log_group(self, "RotationFunctionLogGroup", f"/aws/lambda/{function_name}")
        self.log_groups["rotation"] = group
        application.node.add_dependency(group)


def _id_part(node_id: str) -> str:
    """`Custom::VpcRestrictDefaultSGCustomResourceProvider` -> `CustomVpcRestrictDefaultSGCustomResourceProvider`."""
    return "".join(character for character in node_id if character.isalnum())
