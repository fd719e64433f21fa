"""Spend and control settings (issue 21): budget defaults, worker-time prices, approval defaults and
gate timeouts. One block, read by the API (which enforces them) and shown by `orchestrator config`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.spend import ApprovalPolicy


class SpendControlSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    budget_task_usd: Annotated[
        float | None,
        Field(ge=0, description="Default budget of one task (all its rounds and retries); unset: none."),
    ] = 10.0
    budget_project_month_usd: Annotated[
        float | None, Field(ge=0, description="Default monthly budget of a project; unset: none.")
    ] = None
    budget_user_month_usd: Annotated[
        float | None,
        Field(ge=0, description="Default monthly budget of a person (an admin sets others); unset: none."),
    ] = 100.0
    worker_vcpu: Annotated[
        float, Field(gt=0, description="vCPUs a worker is billed for (the Fargate task size).")
    ] = 1.0
    worker_memory_gb: Annotated[float, Field(gt=0, description="GB of memory a worker is billed for.")] = 2.0
    price_vcpu_hour_usd: Annotated[
        float, Field(ge=0, description="Price of one vCPU-hour (Fargate Linux/x86, us-east-1: $0.04048).")
    ] = 0.04048
    price_gb_hour_usd: Annotated[
        float, Field(ge=0, description="Price of one GB-hour of memory (Fargate, us-east-1: $0.004445).")
    ] = 0.004445
    approval_default: Annotated[
        ApprovalPolicy,
        Field(
            description="What waits for approval on projects that set nothing: deploy, plan, deploy,plan, none."
        ),
    ] = "deploy"
    approval_plan_above_usd: Annotated[
        float | None,
        Field(
            ge=0,
            description="An engineering plan whose cost estimate (the project's recent tasks' average) is above "
            "this waits for approval even when the policy does not name plan; unset: never.",
        ),
    ] = 2.0
    approval_timeout_s: Annotated[
        int,
        Field(gt=0, description="An approval nobody answers fails the task (approval_timeout) after this."),
    ] = 86_400
    review_timeout_s: Annotated[
        int,
        Field(gt=0, description="A human review nobody answers fails the task (review_timeout) after this."),
    ] = 7 * 86_400
