"""The deploy function's configuration block."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.contracts.jobs import MAX_DEPLOY_FIX_ATTEMPTS
from shared.graphs.settings import CheckpointSettings


class DeploySettings(CheckpointSettings):
    smoke_attempts: Annotated[
        int, Field(ge=1, le=60, description="Health GETs before the smoke test fails.")
    ] = 8
    smoke_initial_delay_s: Annotated[float, Field(ge=0, le=30)] = 0.25
    smoke_max_delay_s: Annotated[float, Field(gt=0, le=60)] = 4.0
    smoke_request_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    deploy_max_fix_attempts: Annotated[
        int,
        Field(ge=0, le=MAX_DEPLOY_FIX_ATTEMPTS, description="Engineering fix rounds after failed deploys."),
    ] = MAX_DEPLOY_FIX_ATTEMPTS
    default_agent: Annotated[str, Field(description="Agent for fix tasks when the project names none.")] = (
        "claude-code"
    )
