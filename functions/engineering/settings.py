"""The engineering function's configuration block."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.graphs.settings import CheckpointSettings


class EngineeringSettings(CheckpointSettings):
    engineering_max_attempts: Annotated[
        int, Field(ge=1, le=10, description="Developer rounds before FAILED.")
    ] = 3
    default_agent: Annotated[
        str, Field(description="Agent when neither the task nor the project names one.")
    ] = "claude-code"
    test_command: Annotated[str, Field(description="How the tester runs a project's tests.")] = "make test"
    developer_timeout_s: Annotated[int, Field(gt=0)] = 1800
    tester_timeout_s: Annotated[int, Field(gt=0)] = 900
