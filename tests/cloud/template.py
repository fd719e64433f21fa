"""The synthesized CloudFormation template, read the way CloudFormation would deploy it.

`Resolver` turns intrinsics (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, pseudo
parameters) into the rehearsal's physical values: whatever the stager recorded for a resource it
created, and a stable fake for the rest (VPC, subnets, KMS...), so that nothing the functions
need can silently fall back to a default. The accessors return what AWS would hand each function:
its handler, environment, role statements, layers, code asset and event sources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"


class UnresolvedIntrinsic(RuntimeError):
    """An intrinsic the rehearsal cannot evaluate: a template feature this harness must learn."""


@dataclass
class Physical:
    """What CloudFormation would return for a resource: Ref and the GetAtt attributes."""

    ref: str
    attrs: dict[str, Any] = field(default_factory=dict)


class Template:
    def __init__(self, data: Mapping[str, Any], assembly_dir: Path, stack_name: str) -> None:
        self.data = data
        self.assembly_dir = assembly_dir
        self.stack_name = stack_name
        self.resources: dict[str, dict[str, Any]] = dict(data["Resources"])
        self.physical: dict[str, Physical] = {}

    @classmethod
    def load(cls, assembly_dir: Path, stack_name: str) -> Template:
        data = json.loads((assembly_dir / f"{stack_name}.template.json").read_text(encoding="utf-8"))
        return cls(data, assembly_dir, stack_name)

    # -- queries ------------------------------------------------------------------------------

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical, resource in self.resources.items():
            if resource["Type"] == resource_type:
                yield logical, resource

    def props(self, logical: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical].get("Properties", {})
        return props

    def asset_dir(self, logical: str) -> Path:
        """The staged directory of a function's or layer's code (its S3 key names the asset hash)."""
        resource = self.resources[logical]
        code = resource["Properties"].get("Code") or resource["Properties"].get("Content")
        key = code["S3Key"]
        path = self.assembly_dir / f"asset.{key.removesuffix('.zip')}"
        if not path.is_dir():
            raise FileNotFoundError(f"{logical}: asset {path} is not staged in the cloud assembly")
        return path

    def role_statements(self, role_logical: str) -> list[dict[str, Any]]:
        """Every statement of every AWS::IAM::Policy attached to the role, plus its inline and managed policies.

        Managed policies are expanded only for the ones this stack uses (the Lambda basic and VPC
        execution roles: log writes and ENI management, nothing the code under test calls).
        """
        statements: list[dict[str, Any]] = []
        role = self.props(role_logical)
        for policy in role.get("Policies", []):
            statements += _as_list(policy["PolicyDocument"]["Statement"])
        for _, policy in self.of_type("AWS::IAM::Policy"):
            roles = policy["Properties"].get("Roles", [])
            if {"Ref": role_logical} in roles:
                statements += _as_list(policy["Properties"]["PolicyDocument"]["Statement"])
        for arn in role.get("ManagedPolicyArns", []):
            statements += MANAGED_POLICIES.get(_managed_name(arn), [])
        return statements

    def event_source_mappings(self, function_logical: str) -> list[dict[str, Any]]:
        return [
            props
            for _, props in (
                (lg, self.props(lg)) for lg, _ in self.of_type("AWS::Lambda::EventSourceMapping")
            )
            if props.get("FunctionName") == {"Ref": function_logical}
        ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _managed_name(arn: Any) -> str:
    text = json.dumps(arn)
    match = re.search(r"policy/([A-Za-z0-9/_-]+)", text)
    return match.group(1) if match else text


MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        },
    ],
    "service-role/AWSLambdaVPCAccessExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "ec2:CreateNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Resource": "*",
        },
    ],
}
"""The AWS managed policies the stack attaches, as AWS publishes them (only their actions matter here)."""


class Resolver:
    """Evaluates CloudFormation intrinsics against what the stager created."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.pseudo = {
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": template.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{template.stack_name}/rehearsal",
            "AWS::NoValue": None,
        }

    def physical(self, logical: str) -> Physical:
        found = self.template.physical.get(logical)
        if found is not None:
            return found
        if logical not in self.template.resources:
            raise UnresolvedIntrinsic(f"no resource or parameter {logical!r} in the template")
        # not staged (VPC, subnets, KMS, alarms...): a stable fake, recognisable in any error
        fake = Physical(ref=f"rehearsal-unstaged-{logical}")
        self.template.physical[logical] = fake
        return fake

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        return self.physical(name).ref

    def get_att(self, logical: str, attribute: str) -> Any:
        physical = self.physical(logical)
        if attribute in physical.attrs:
            return physical.attrs[attribute]
        if physical.ref.startswith("rehearsal-unstaged-"):
            return f"arn:aws:rehearsal:{REGION}:{ACCOUNT_ID}:unstaged/{logical}/{attribute}"
        raise UnresolvedIntrinsic(
            f"{logical}.{attribute} is not known (staged attributes: {sorted(physical.attrs)})"
        )

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b"]
            if key == "Fn::If" or key == "Fn::ImportValue" or key == "Fn::FindInMap":
                raise UnresolvedIntrinsic(f"{key} is not supported by the rehearsal yet: {value}")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resolved_vars = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in resolved_vars:
                return str(resolved_vars[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)
