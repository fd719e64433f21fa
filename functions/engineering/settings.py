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
    worker_max_lifetime_s: Annotated[
        int,
        Field(
            gt=0,
            description="The worker manager's limit on a worker's life (the same ORCH_WORKER_MAX_LIFETIME_S): "
            "a task's worker takes its next round only if that round's timeout still fits in it.",
        ),
    ] = 1800
    merge_checks_wait_s: Annotated[
        float,
        Field(
            ge=0,
            le=240,
            description="GitHub: how long the merge step waits for the pull request's checks (inside one "
            "invocation, so below the function's timeout); still running after it: FAILED, the PR left open.",
        ),
    ] = 90
    merge_poll_s: Annotated[
        float, Field(gt=0, description="GitHub: seconds between two looks at the checks.")
    ] = 5
