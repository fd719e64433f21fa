"""Fargate workers: the cluster, the worker and Ansible-runner task definitions, and the task-stopped events.

- **Images are assets built at deploy time** from the repository root with `worker_image/Dockerfile`
  and `worker_image/ansible.Dockerfile`; synth only stages their build context (what
  `worker_image/Dockerfile.dockerignore` lets in), so it needs no Docker. linux/amd64 whatever the
  deploying machine is.
- **Worker tasks run in the public subnets with a public IP** and the task security group (outbound
  only): no NAT gateway. Every container has `memory` set (moto's RunTask needs it; ECS is fine with it).
- **Ansible runner tasks** must reach target servers on SSH and git hosts on HTTPS. Without a NAT
  gateway (the default) the only way out is the internet gateway, so they run in the public subnets
  and the infra function asks for a public IP (`ORCH_ANSIBLE_ASSIGN_PUBLIC_IP=true`); their security
  group admits nothing in, so the address is only a source address. With `-c enable_nat_gateway=true`
  they run in the private subnets without a public IP and leave through the NAT gateway's one Elastic
  IP: a stable source address operators can allow in their servers' SSH firewalls.
- **Agent sessions live in their own bucket** (`shared.sessions.S3SessionStore`), reached through the
  API only: a worker asks it for a presigned URL for its own conversation's archive
  (`POST /internal/workers/{id}/session`), so the API function's role (the signer, whose permissions a
  presigned URL carries) may get and put objects under `sessions/` and list the bucket (without
  ListBucket, S3 answers a first session's missing archive with 403, not 404), and is told the bucket
  (ORCH_SESSION_BUCKET, ORCH_SESSION_PREFIX); no other role is granted anything on it. SSE-S3, private,
  SSL-only, access-logged to the audit bucket; archives expire 30 days after their last save; retained
  on stack deletion like every bucket of the stack.
- **The worker task role holds nothing** (issue 20): a coding agent runs arbitrary commands, and every
  worker shares one task definition, so any permission on the task role would be every person's. A
  worker acts with its own per-task API token (ORCH_WORKER_TOKEN, in the RunTask override), which
  reads its own job and resolves exactly the references that job names; the API function reads those
  secrets for it (the GitHub token, the agents' credentials, the Product Owner keys under `po/`). The
  execution role pulls the image and writes the task's log group, nothing else.
- **The Ansible runner's task role reads its own secrets**: the service key, the GitHub token (https
  clones) and the server / project secrets a deploy needs, and it may send only to the two results
  queues. It runs no agent: only the runner's own code and ansible-playbook run in it. Its container
  environment names its backends (queue prefix, secrets prefix, region), never a secret; the job itself
  travels in the RunTask override.
- **The worker manager may run only the worker task definition in this cluster** (and stop and
  describe tasks only in it), passing only that task definition's two roles; **the infra function
  may run only the Ansible runner task definition**, passing only its two roles.
- **Task State Change events** (STOPPED only, the one state the handlers act on) of the worker family
  go to `functions.worker_manager.handler.ecs_event_handler`; those of Ansible runner tasks (started by
  `orchestrator-ansible`) go to `functions.infra.handler.ecs_event_handler`. Each has its own function,
  so each rule's target can do only what its handler needs.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, ArnFormat, Duration, IgnoreMode, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants, environment
from infra_cdk.config import StackConfig
from infra_cdk.constructs.messaging import Messaging
from infra_cdk.constructs.network import Network
from infra_cdk.constructs.runtime import (
    LambdaRuntime,
    acknowledge_wildcard_resources,
    grant_reference_read,
    grant_secret_read,
    secret_name_arn,
    secret_name_arn_finding,
)
from layers.build import REPO_ROOT
from shared.constants import ANSIBLE_STARTED_BY
from shared.contracts import ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS
from shared.workers.ecs_events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from shared.workers.fargate import TASK_SIZES_ENV, task_sizes_json

TASK_STATE_STOPPED = "STOPPED"
ANSIBLE_RESULT_QUEUES = (ANSIBLE_DEPLOY_RESULTS, PROVISIONER_RESULTS)
"""Where the Ansible runner publishes its outcome (worker_image.ansible_runner.results.result_queue)."""


def image_build_context_excludes(repo_root: Path = REPO_ROOT) -> list[str]:
    """The images' .dockerignore patterns, so synth stages only what the build reads."""
    lines = (repo_root / constants.IMAGE_DOCKERIGNORE).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class Workers(Construct):
    """The ECS cluster, the two Fargate task definitions, the two task-stopped rules, the sessions bucket."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        network: Network,
        runtime: LambdaRuntime,
        messaging: Messaging,
        api_url: str,
        service_key_secret: secretsmanager.ISecret,
        log_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self._runtime = runtime
        self._messaging = messaging
        self._api_url = api_url
        self._service_key_secret = service_key_secret
        prefix = config.resource_prefix
        self.cluster_name = f"{prefix}-{constants.WORKER_CLUSTER_SUFFIX}"
        self.cluster = self._build_cluster()
        self.sessions_bucket = self._build_sessions_bucket(log_bucket)
        self.worker_family = f"{prefix}-{constants.WORKER_FAMILY_SUFFIX}"
        self.worker_task = self._build_task_definition(
            "Worker",
            family=self.worker_family,
            container_name=constants.WORKER_CONTAINER_NAME,
            dockerfile=constants.WORKER_DOCKERFILE,
            cpu=constants.WORKER_CPU,
            memory_mib=constants.WORKER_MEMORY_MIB,
            build_args={"AGENT_NPM_PACKAGES": config.worker_agent_packages},
            environment=self._worker_container_environment(),
        )
        self.ansible_family = f"{prefix}-{constants.ANSIBLE_FAMILY_SUFFIX}"
        self.ansible_task = self._build_task_definition(
            "AnsibleRunner",
            family=self.ansible_family,
            container_name=constants.ANSIBLE_CONTAINER_NAME,
            dockerfile=constants.ANSIBLE_DOCKERFILE,
            cpu=constants.ANSIBLE_CPU,
            memory_mib=constants.ANSIBLE_MEMORY_MIB,
            build_args={},
            environment=self._ansible_container_environment(),
        )
        self._grant_ansible_task(self.ansible_task.task_role)
        self.events_function = self._build_events_function()
        self.task_state_rule = self._build_task_state_rule()
        self.ansible_events_function = self._build_ansible_events_function()
        self.ansible_task_state_rule = self._build_ansible_task_state_rule()

    # -- what the worker manager needs -----------------------------------------------------------------

    def manager_environment(self) -> dict[str, str]:
        """`functions.worker_manager.settings.WorkerManagerSettings` for the Fargate runtime.

        The manager acts with the service key; a worker gets only the API URL and its own token in its
        RunTask overrides (`functions.worker_manager.handler.launch_env`), and its agent's task size.
        """
        public = self._network.vpc.select_subnets(subnet_group_name=constants.PUBLIC_SUBNET_GROUP)
        return {
            "ORCH_WORKER_RUNTIME": "fargate",
            "ORCH_FARGATE_CLUSTER": self.cluster.cluster_name,
            "ORCH_FARGATE_TASK_DEFINITION": self.worker_task.task_definition_arn,
            "ORCH_FARGATE_CONTAINER_NAME": constants.WORKER_CONTAINER_NAME,
            "ORCH_FARGATE_SUBNETS": ",".join(public.subnet_ids),
            "ORCH_FARGATE_SECURITY_GROUPS": self._network.task_security_group.security_group_id,
            "ORCH_AWS_REGION": Stack.of(self).region,
            TASK_SIZES_ENV: task_sizes_json(dict(self._config.worker_task_sizes)),
            **environment.queues(self._config),
            **environment.service_api(self._config, self._api_url, self._service_key_secret.secret_arn),
        }

    def grant_manage_workers(self, function: lambda_.Function) -> None:
        """RunTask of the worker task definition in this cluster; Stop/DescribeTasks of this cluster's tasks."""
        self._grant_run_task(function, self.worker_task, "Worker")
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="StopAndDescribeWorkerTasks",
                actions=["ecs:StopTask", "ecs:DescribeTasks"],
                resources=[self._tasks_in_cluster_arn()],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )

    # -- what the infra function needs -----------------------------------------------------------------

    @property
    def ansible_behind_nat(self) -> bool:
        """Whether runner tasks leave through the NAT gateway (else: public subnets, public IP)."""
        return self._config.enable_nat_gateway

    def infra_environment(self) -> dict[str, str]:
        """`functions.infra.settings.InfraSettings` for the Fargate runtime (the infra and infra-events functions)."""
        group = constants.PRIVATE_SUBNET_GROUP if self.ansible_behind_nat else constants.PUBLIC_SUBNET_GROUP
        subnets = self._network.vpc.select_subnets(subnet_group_name=group)
        return {
            "ORCH_ANSIBLE_RUNTIME": "fargate",
            "ORCH_FARGATE_CLUSTER": self.cluster.cluster_name,
            "ORCH_ANSIBLE_TASK_DEFINITION": self.ansible_task.task_definition_arn,
            "ORCH_ANSIBLE_CONTAINER_NAME": constants.ANSIBLE_CONTAINER_NAME,
            "ORCH_FARGATE_SUBNETS": ",".join(subnets.subnet_ids),
            "ORCH_FARGATE_SECURITY_GROUPS": self._network.ansible_security_group.security_group_id,
            "ORCH_ANSIBLE_ASSIGN_PUBLIC_IP": "false" if self.ansible_behind_nat else "true",
            **environment.region(Stack.of(self).region),
            **environment.queues(self._config),
            **environment.service_api(self._config, self._api_url, self._service_key_secret.secret_arn),
        }

    def grant_launch_ansible(self, function: lambda_.Function) -> None:
        """RunTask of the Ansible runner task definition in this cluster, passing only its two roles."""
        self._grant_run_task(function, self.ansible_task, "Ansible")

    def _grant_run_task(self, function: lambda_.Function, task: ecs.FargateTaskDefinition, what: str) -> None:
        """RunTask of `task` in this cluster, tagging the task it creates, passing only its two roles."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid=f"Run{what}Tasks",
                actions=["ecs:RunTask"],
                resources=[task.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid=f"Tag{what}TasksAtLaunch",
                actions=["ecs:TagResource"],
                resources=[self._tasks_in_cluster_arn()],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        execution_role = task.execution_role
        assert execution_role is not None  # an asset image with awslogs always gets one
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid=f"Pass{what}TaskRoles",
                actions=["iam:PassRole"],
                resources=[task.task_role.role_arn, execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        acknowledge_wildcard_resources(
            function,
            [self._tasks_in_cluster_finding()],
            reason="Task ARNs are assigned by ECS at RunTask; the wildcard is the task id under this one "
            "cluster, and the statements also require ecs:cluster to be this cluster (TagResource only "
            "while RunTask creates the task).",
        )

    def _tasks_in_cluster_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="ecs",
            resource="task",
            resource_name=f"{self.cluster.cluster_name}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _tasks_in_cluster_finding(self) -> str:
        return (
            "arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/"
            f"<{Stack.of(self).get_logical_id(self.cluster.node.default_child)}>/*"  # type: ignore[arg-type]
        )

    # -- building blocks -------------------------------------------------------------------------------

    def _build_cluster(self) -> ecs.Cluster:
        return ecs.Cluster(
            self,
            "Cluster",
            cluster_name=self.cluster_name,
            vpc=self._network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

    def _build_task_definition(
        self,
        construct_id: str,
        *,
        family: str,
        container_name: str,
        dockerfile: str,
        cpu: int,
        memory_mib: int,
        build_args: dict[str, str],
        environment: dict[str, str] | None = None,
    ) -> ecs.FargateTaskDefinition:
        task_definition = ecs.FargateTaskDefinition(
            self,
            f"{construct_id}TaskDefinition",
            family=family,
            cpu=cpu,
            memory_limit_mib=memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.X86_64,
            ),
        )
        log_group = logs.LogGroup(
            self,
            f"{construct_id}LogGroup",
            log_group_name=f"/ecs/{family}",
            retention=logs.RetentionDays[constants.LOG_RETENTION],
            removal_policy=RemovalPolicy.DESTROY,
        )
        task_definition.add_container(
            container_name,
            container_name=container_name,
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT),
                file=dockerfile,
                exclude=image_build_context_excludes(),
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_AMD64,
                build_args=build_args or None,
            ),
            memory_limit_mib=memory_mib,
            essential=True,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=container_name, log_group=log_group),
            environment=environment,
        )
        if environment:
            Validations.of(task_definition).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-ECS2",
                    reason="The container environment only names backends (queue and secrets prefixes, "
                    "bucket names, the region, which services to use); no value in it is a secret. Secrets "
                    "are read at run time from Secrets Manager by reference, and the job arrives in the "
                    "RunTask override.",
                )
            )
        execution_role = task_definition.obtain_execution_role()
        Validations.of(execution_role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken, which the execution role needs to pull the image "
                "asset, has no resource-level permissions; the pull itself is limited to the asset "
                "repository.",
            )
        )
        return task_definition

    def _build_sessions_bucket(self, log_bucket: s3.IBucket) -> s3.Bucket:
        """Agent session archives (tar.gz of a conversation) that must outlive the worker that wrote them."""
        return s3.Bucket(
            self,
            "SessionsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=log_bucket,
            server_access_logs_prefix=constants.SESSIONS_ACCESS_LOGS_PREFIX,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-sessions",
                    expiration=Duration.days(constants.SESSION_RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(
                        constants.SESSION_ABORT_INCOMPLETE_UPLOAD_DAYS
                    ),
                )
            ],
            # Like the artifacts bucket: deleting a bucket that still holds objects fails anyway; keep it.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _worker_container_environment(self) -> dict[str, str]:
        """The agents' model endpoint and models (-c agent_env); nothing else: the job, its secrets and its
        session come from the API with the worker's own token."""
        return environment.agent_settings(self._config)

    # -- what the API function needs to serve workers --------------------------------------------------

    def grant_worker_resolution(self, function: lambda_.Function) -> None:
        """What the API reads and signs for workers (`POST /internal/workers/{id}/secrets` and `/session`):
        the references a worker's job may name, and its conversation's archive by presigned URL."""
        prefix = self._config.resource_prefix
        # the git token and the coding agents' credentials (-c agent_secret_refs), each by its exact reference
        for reference in (self._config.github_token_ref, *(ref for _, ref in self._config.agent_secret_refs)):
            grant_reference_read(self, function, reference, prefix)
        # A Product Owner worker's person-scope key (secret://po/<user_id>/api_key).
        po_keys = f"{prefix}/{constants.PO_SECRETS_PATH}/*"
        grant_secret_read(function, [secret_name_arn(self, po_keys)])
        acknowledge_wildcard_resources(
            function,
            [secret_name_arn_finding(po_keys)],
            reason="The API resolves a Product Owner worker's key for it: the key of the one person that "
            "worker serves (its token names the worker, the worker's config the reference, and the API "
            "refuses any other person's), named at run time under one fixed prefix of this stack; read only "
            "(GetSecretValue, DescribeSecret).",
        )
        function.add_environment("ORCH_SESSION_BUCKET", self.sessions_bucket.bucket_name)
        function.add_environment("ORCH_SESSION_PREFIX", constants.SESSIONS_KEY_PREFIX)
        self._grant_session_signing(function)

    def _grant_session_signing(self, function: lambda_.Function) -> None:
        """Get and put archives under the prefix (a presigned URL acts with these); list the bucket, so that
        a missing archive is a 404."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="SignSessionArchives",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[self.sessions_bucket.arn_for_objects(f"{constants.SESSIONS_KEY_PREFIX}*")],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListSessionArchives",
                actions=["s3:ListBucket"],
                resources=[self.sessions_bucket.bucket_arn],
            )
        )
        bucket_resource = self.sessions_bucket.node.default_child
        bucket_id = Stack.of(self).get_logical_id(bucket_resource)  # type: ignore[arg-type]
        acknowledge_wildcard_resources(
            function,
            [f"<{bucket_id}.Arn>/{constants.SESSIONS_KEY_PREFIX}*"],
            reason="The API signs 15-minute URLs for the one session archive of the worker that asks "
            "(sessions/po/<user_id>.tar.gz, keyed by the person its token acts for), in a bucket that "
            "holds only session archives; object actions only (GetObject, PutObject) under that one prefix.",
        )

    def _ansible_container_environment(self) -> dict[str, str]:
        """What `python -m worker_image.ansible_runner --publish` reads: where secrets and queues are."""
        return {
            "ORCH_SERVICE_NAME": constants.ANSIBLE_SERVICE_NAME,
            "ORCH_LOG_LEVEL": constants.LAMBDA_LOG_LEVEL,
            **environment.queues(self._config),
            **environment.secrets(self._config),
            **environment.region(Stack.of(self).region),
            # the one GitHub token reference a deploy job may use (the runner refuses any other)
            "ORCH_GITHUB_TOKEN_REF": self._config.github_token_ref,
        }

    def _grant_ansible_task(self, role: iam.IRole) -> None:
        """Read the secrets a run resolves; publish its outcome on the two results queues, nothing else."""
        self._grant_ansible_secrets(role)
        for logical in ANSIBLE_RESULT_QUEUES:
            self._messaging.queues[logical].queue.grant_send_messages(role)

    def _grant_ansible_secrets(self, role: iam.IRole) -> None:
        prefix = self._config.resource_prefix
        self._service_key_secret.grant_read(role)
        # https clones of the project's repository (the deploy message carries this reference)
        grant_reference_read(self, role, self._config.github_token_ref, prefix)
        patterns = [
            f"{prefix}/{constants.SERVER_SECRETS_PATH}/*",
            f"{prefix}/{constants.PROJECT_SECRETS_PATH}/*",
        ]
        grant_secret_read(role, [secret_name_arn(self, pattern) for pattern in patterns])
        acknowledge_wildcard_resources(
            role,
            [secret_name_arn_finding(pattern) for pattern in patterns],
            reason="A deploy reads the target server's SSH key and the project's secrets, named at run "
            "time under two fixed prefixes of this stack; read only (GetSecretValue, DescribeSecret).",
        )

    def _build_events_function(self) -> lambda_.Function:
        function = self._runtime.function(
            self,
            "EventsFunction",
            name=constants.WORKER_EVENTS_FUNCTION,
            handler=constants.WORKER_EVENTS_HANDLER,
            timeout_seconds=constants.WORKER_EVENTS_TIMEOUT_SECONDS,
            description=f"{self._config.resource_prefix}: ECS task-stopped events of workers -> the API",
            environment_variables=self.manager_environment(),
        )
        # It reports to the API only; the ECS and SQS clients the manager builds make no calls here.
        self._service_key_secret.grant_read(function)
        return function

    def _build_task_state_rule(self) -> events.Rule:
        stack = Stack.of(self)
        family_arn_prefix = stack.format_arn(
            service="ecs",
            resource="task-definition",
            resource_name=f"{self.worker_family}:",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        rule = events.Rule(
            self,
            "TaskStoppedRule",
            rule_name=f"{self._config.resource_prefix}-worker-task-stopped",
            description="Worker tasks that stopped -> worker-events function (the worker is reported ended)",
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE],
                detail_type=[EVENT_DETAIL_TYPE],
                detail={
                    "clusterArn": [self.cluster.cluster_arn],
                    "taskDefinitionArn": [{"prefix": family_arn_prefix}],
                    "lastStatus": [TASK_STATE_STOPPED],
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                self.events_function,
                retry_attempts=constants.ECS_EVENT_RETRY_ATTEMPTS,
                max_event_age=Duration.hours(constants.ECS_EVENT_MAX_AGE_HOURS),
            )
        )
        return rule

    def _build_ansible_events_function(self) -> lambda_.Function:
        name = constants.INFRA_EVENTS_FUNCTION
        function = self._runtime.function(
            self,
            "AnsibleEventsFunction",
            name=name,
            handler=constants.INFRA_EVENTS_HANDLER,
            timeout_seconds=constants.INFRA_EVENTS_TIMEOUT_SECONDS,
            description=f"{self._config.resource_prefix}: ECS task-stopped events of Ansible runner tasks -> "
            "a failed result when the runner died without publishing one",
            environment_variables=self.infra_environment(),
        )
        # It builds the infra function's objects (the API client reads the service key at cold start;
        # the ECS client makes no call) and publishes failed results (its send grants: the stack, from
        # shared.topology.PUBLISHES); it launches nothing.
        self._service_key_secret.grant_read(function)
        return function

    def _build_ansible_task_state_rule(self) -> events.Rule:
        family_arn_prefix = Stack.of(self).format_arn(
            service="ecs",
            resource="task-definition",
            resource_name=f"{self.ansible_family}:",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        rule = events.Rule(
            self,
            "AnsibleTaskStoppedRule",
            rule_name=f"{self._config.resource_prefix}-ansible-task-stopped",
            description="Ansible runner tasks that stopped -> infra-events function (a failed result if "
            "the runner could not publish one)",
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE],
                detail_type=[EVENT_DETAIL_TYPE],
                detail={
                    "clusterArn": [self.cluster.cluster_arn],
                    "startedBy": [ANSIBLE_STARTED_BY],
                    "taskDefinitionArn": [{"prefix": family_arn_prefix}],
                    "lastStatus": [TASK_STATE_STOPPED],
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                self.ansible_events_function,
                retry_attempts=constants.ECS_EVENT_RETRY_ATTEMPTS,
                max_event_age=Duration.hours(constants.ECS_EVENT_MAX_AGE_HOURS),
            )
        )
        return rule
