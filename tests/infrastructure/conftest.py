"""Each app variant is synthesized once per session: a synth costs seconds, an assertion microseconds.

Only first-party imports at module level: `infra_cdk` sets JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION
before anything starts jsii, and this conftest is imported before the test modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from infra_cdk.app import build_app
from infra_cdk.stack import OrchestratorStack

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

DEFAULT_CONTEXT: dict[str, Any] = {"github_owner": "octocat"}
"""What `cdk.json` gives (env_name=dev, also the default) plus the one required value, `-c github_owner=`."""

VARIANT_CONTEXT: dict[str, Any] = {
    "env_name": "ci",
    "enable_nat_gateway": "true",
    "database": "rds",
    "deletion_protection": "false",
    "alarm_email": "ops@example.com",
    "github_owner": "acme",
    "github_owner_is_org": "true",
    "github_token_ref": "secret://arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme/github-AbCdEf",
    "worker_agent_packages": "@openai/codex",
    "telegram_admins": "111,222",
    "agent_secret_refs": '{"ANTHROPIC_API_KEY": "secret://agents/anthropic"}',
    "worker_task_sizes": '{"codex": {"cpu": 2048, "memory": 4096}}',
}
"""Every switch flipped, as strings, the way `cdk -c key=value` passes them."""


@dataclass(frozen=True)
class Synthesized:
    stack: OrchestratorStack
    template: Template
    template_json: dict[str, Any]
    outdir: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def task_definition(self, family_suffix: str) -> dict[str, Any]:
        """The properties of the task definition of family `<resource prefix>-<family_suffix>`."""
        family = f"{self.stack.config.resource_prefix}-{family_suffix}"
        found: list[dict[str, Any]] = [
            r["Properties"]
            for r in self.resources("AWS::ECS::TaskDefinition").values()
            if r["Properties"]["Family"] == family
        ]
        (props,) = found
        return props

    def validation_report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.outdir / "validation-report.json").read_text())
        return report


def no_layers_context(outdir: Path) -> dict[str, Any]:
    """Point the app at a layer build directory with nothing in it: the tests synthesize the placeholder
    layers whatever this machine has built (real layers are hundreds of MB to stage)."""
    return {"layers_dir": str(outdir / "no-layers-built")}


def synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    """The full app, cdk-nag included: `app.synth()` raises ValidationFailed on any unacknowledged finding."""
    from aws_cdk.assertions import Template

    app, stack = build_app(outdir=str(outdir), context={**no_layers_context(outdir), **context})
    assembly = app.synth()
    template_json: dict[str, Any] = assembly.get_stack_by_name(stack.stack_name).template
    return Synthesized(stack, Template.from_json(template_json), template_json, Path(assembly.directory))


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk-default"), DEFAULT_CONTEXT)


@pytest.fixture(scope="session")
def variant_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk-variant"), VARIANT_CONTEXT)


@pytest.fixture(params=["default", "variant"])
def any_app(request: pytest.FixtureRequest) -> Synthesized:
    """Assertions that must hold whatever the context says."""
    fixture: Synthesized = request.getfixturevalue(f"{request.param}_app")
    return fixture
