"""The CDK app: `python -m infra_cdk.app` (or `npx cdk synth`, which runs it) writes `cdk.out/`.

`infra_cdk/__init__.py` has already set JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION by the
time `aws_cdk` is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.stack import OrchestratorStack


def feature_flags() -> dict[str, Any]:
    """The recommended feature flags of the pinned aws-cdk-lib, as `cdk init` would write them.

    Kept beside the code, not only in cdk.json, so the app run directly, through the CDK CLI
    and inside the tests synthesizes the same template. Context from cdk.json or `-c` wins.
    """
    text = resources.files("infra_cdk").joinpath("feature_flags.json").read_text(encoding="utf-8")
    flags: dict[str, Any] = json.loads(text)
    return flags


def build_app(
    outdir: str | None = None, context: dict[str, Any] | None = None
) -> tuple[App, OrchestratorStack]:
    """The app with its one stack and the cdk-nag AwsSolutions checks attached (run at synth)."""
    app = App(outdir=outdir, context={**feature_flags(), **(context or {})})
    config = StackConfig.from_context(app.node)
    stack = OrchestratorStack(app, config.stack_name, config=config)
    # cdk-nag 3.x is a validation plugin: findings make synth() raise ValidationFailed.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def context_from_argv(argv: Sequence[str]) -> dict[str, str]:
    """`-c key=value` / `--context key=value`, as the CDK CLI takes them, for the app run directly."""
    parser = argparse.ArgumentParser(
        prog="python -m infra_cdk.app", description="Synthesize the stack into cdk.out/."
    )
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    context: dict[str, str] = {}
    for item in parser.parse_args(list(argv)).context:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            parser.error(f"context {item!r} is not KEY=VALUE")
        context[key.strip()] = value
    return context


def main(argv: Sequence[str] | None = None) -> None:
    # The CDK CLI says where to write (CDK_OUTDIR) and passes context itself (CDK_CONTEXT_JSON); run
    # directly, write where the CLI would instead of the temp directory App() falls back to.
    outdir = None if os.environ.get(constants.CDK_OUTDIR_ENV) else constants.DEFAULT_OUTDIR
    app, _ = build_app(outdir=outdir, context=context_from_argv(sys.argv[1:] if argv is None else argv))
    app.synth()


if __name__ == "__main__":
    main()
