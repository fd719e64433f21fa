"""Names that a Lambda function and the CDK app must agree on, kept here so the CDK imports no function code."""

from __future__ import annotations

ANSIBLE_STARTED_BY = "orchestrator-ansible"
"""ECS `startedBy` of Ansible runner tasks (`functions.infra.launch.FargateLauncher`): the task-state rule
(`infra_cdk.constructs.workers`) tells them from worker tasks (`shared.workers.ecs_events.WORKER_STARTED_BY`)
by it."""
