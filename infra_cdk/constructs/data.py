"""PostgreSQL on RDS: the source of truth behind the API.

Single-AZ db.t4g.micro with gp3 storage: the cheapest always-on PostgreSQL that stays
encrypted, private and backed up. (Aurora Serverless v2 would cost nothing while paused,
but the first API request after a pause waits ~15 s for it to resume, and one awake hour at
its 0.5 ACU minimum costs nearly four times this instance's hour.)

Migrations run on deploy from `infra_cdk.constructs.api` (a CDK trigger invokes the deploy hook,
which applies the API's Alembic migrations), since the API function owns the models.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Fn, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.network import Network


class Database(Construct):
    """The RDS instance, its generated credentials (rotated) and its log group."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, network: Network) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self.instance_identifier = self._unique_identifier()
        log_groups = self._build_log_groups()
        self.security_group = self._build_security_group()
        self.instance = self._build_instance()
        for log_group in log_groups:
            self.instance.node.add_dependency(log_group)
        self._build_access()
        self.rotation = self._build_rotation()
        self._acknowledge_findings()

    @property
    def secret(self) -> secretsmanager.ISecret:
        """Username, password, host, port and dbname as JSON; functions read it by ARN."""
        secret = self.instance.secret
        if secret is None:  # pragma: no cover - the instance is always built with generated credentials
            raise RuntimeError("the database instance has no generated secret")
        return secret

    @property
    def endpoint_address(self) -> str:
        return self.instance.db_instance_endpoint_address

    @property
    def endpoint_port(self) -> str:
        return self.instance.db_instance_endpoint_port

    def _unique_identifier(self) -> str:
        """`<prefix>-<env>-postgres-<first group of the stack id's UUID>`: one name per stack creation.

        A fixed name collided: a failed first deploy leaves the deletion-protected instance behind, and
        the next stack (a new stack id) could not create its own. A name CloudFormation generates would
        not collide either, but is known only once the instance exists, and RDS creates its log groups
        (infinite retention) on the first export, during creation; this one is known before, from the
        stack id alone, so the log groups below are made first with a retention and deleted with the
        stack, with no custom resource. It never changes for the life of the stack (no replacement).
        """
        stack_uuid = Fn.select(2, Fn.split("/", Stack.of(self).stack_id))
        return Fn.join(
            "",
            [
                f"{self._config.resource_prefix}-{constants.DB_INSTANCE_SUFFIX}-",
                Fn.select(0, Fn.split("-", stack_uuid)),
            ],
        )

    def _build_log_groups(self) -> list[logs.LogGroup]:
        # RDS would create these on first export with infinite retention; created here first,
        # they get a retention and go away with the stack.
        return [
            logs.LogGroup(
                self,
                f"{kind.capitalize()}LogGroup",
                log_group_name=Fn.join("", ["/aws/rds/instance/", self.instance_identifier, f"/{kind}"]),
                retention=logs.RetentionDays[constants.LOG_RETENTION],
                removal_policy=RemovalPolicy.DESTROY,
            )
            for kind in constants.DB_LOG_EXPORTS
        ]

    def _build_security_group(self) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=self._network.vpc,
            description="PostgreSQL: inbound from the private-subnet functions only, no outbound",
            allow_all_outbound=False,
        )

    def _build_instance(self) -> rds.DatabaseInstance:
        return rds.DatabaseInstance(
            self,
            "Instance",
            instance_identifier=self.instance_identifier,
            engine=rds.DatabaseInstanceEngine.postgres(
                version=rds.PostgresEngineVersion.of(
                    constants.DB_POSTGRES_VERSION, constants.DB_POSTGRES_VERSION
                )
            ),
            instance_type=ec2.InstanceType(constants.DB_INSTANCE_TYPE),
            vpc=self._network.vpc,
            vpc_subnets=self._network.private_subnets,
            availability_zone=self._network.primary_availability_zone,
            security_groups=[self.security_group],
            multi_az=False,
            publicly_accessible=False,
            port=constants.DB_PORT,
            database_name=constants.DB_NAME,
            credentials=rds.Credentials.from_generated_secret(constants.DB_USERNAME),
            storage_type=rds.StorageType.GP3,
            allocated_storage=constants.DB_ALLOCATED_STORAGE_GB,
            max_allocated_storage=constants.DB_MAX_ALLOCATED_STORAGE_GB,
            storage_encrypted=True,
            iam_authentication=False,
            backup_retention=Duration.days(constants.DB_BACKUP_RETENTION_DAYS),
            delete_automated_backups=False,
            deletion_protection=self._config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=list(constants.DB_LOG_EXPORTS),
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
        )

    def _build_access(self) -> None:
        self.instance.connections.allow_default_port_from(
            self._network.function_security_group, "PostgreSQL from functions in the private subnets"
        )

    def _build_rotation(self) -> secretsmanager.SecretRotation:
        # The rotation function (from the Serverless Application Repository) runs in the private
        # subnets with the functions' security group: the database and the Secrets Manager
        # endpoint, nothing else. Clients must re-read the secret when a new connection fails
        # authentication after a rotation.
        return self.instance.add_rotation_single_user(
            automatically_after=Duration.days(constants.DB_SECRET_ROTATION_DAYS),
            vpc_subnets=self._network.private_subnets,
            security_group=self._network.function_security_group,
        )

    def _acknowledge_findings(self) -> None:
        acknowledgments = [
            Acknowledgment(
                id="AwsSolutions-RDS3",
                reason="Single-AZ on purpose: Multi-AZ doubles the instance cost for a control plane "
                "whose work is queued and retried; backups and snapshots cover loss of the AZ.",
            ),
            Acknowledgment(
                id="AwsSolutions-RDS11",
                reason="The default port stays: the instance has no public address, sits in private "
                "subnets without an internet route, and accepts connections only from the function "
                "security group; a non-standard port would add no protection.",
            ),
        ]
        if not self._config.deletion_protection:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS10",
                    reason="Deletion protection was switched off for this deployment with "
                    f"-c {constants.CONTEXT_DELETION_PROTECTION}=false (a throwaway environment); "
                    "removal still takes a final snapshot.",
                )
            )
        Validations.of(self.instance).acknowledge(*acknowledgments)
