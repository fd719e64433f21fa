"""PostgreSQL: the source of truth behind the API. Aurora Serverless v2 by default, one RDS instance on request.

- **Aurora PostgreSQL Serverless v2 at 0 ACU** (`-c database=aurora`, the default): the writer pauses after
  `DB_SECONDS_UNTIL_AUTO_PAUSE` idle seconds and bills no capacity while paused, only storage. The first
  connection after a pause resumes it (~15 s); the API waits that out within its timeout and answers 503
  with Retry-After past it (`functions.api.db`), the CLI and the bot say "waking up" and retry.
- **One db.t4g.micro instance** (`-c database=rds`): always on (≈ $14 a month with its storage), no resume
  delay, for those who prefer that.

Both: encrypted, private, backed up, IAM database authentication on. The API logs in as `DB_IAM_USER` with a
token its role signs (`rds-db:connect` on that user only): no password to fetch, so no Secrets Manager call on
its cold path. The master password is managed by RDS in Secrets Manager (`manage_master_user_password`): RDS
rotates it itself every 7 days, with no rotation function in the VPC and no endpoint for one to reach. Only
the deploy hook reads it, to migrate and to create and grant the API's login.

Migrations run on deploy from `infra_cdk.constructs.api` (a CDK trigger invokes the deploy hook,
which applies the API's Alembic migrations), since the API function owns the models.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Fn, RemovalPolicy, Stack, Token, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig
from infra_cdk.constructs.network import Network


class Database(Construct):
    """The cluster (or instance), its RDS-managed master secret and its log group."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, network: Network) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self.kind = config.database
        self.identifier = self._unique_identifier()
        log_groups = self._build_log_groups()
        self.security_group = self._build_security_group()
        self.resource: rds.DatabaseCluster | rds.DatabaseInstance = (
            self._build_cluster() if self.is_aurora else self._build_instance()
        )
        for log_group in log_groups:
            self.resource.node.add_dependency(log_group)
        self._build_access()
        self._acknowledge_findings()

    @property
    def is_aurora(self) -> bool:
        return self.kind == constants.DATABASE_AURORA

    @property
    def secret(self) -> secretsmanager.ISecret:
        """The master user's {username, password}, managed and rotated by RDS; only the deploy hook reads it."""
        secret = self.resource.secret
        if secret is None:  # pragma: no cover - always built with an RDS-managed master password
            raise RuntimeError("the database has no master secret")
        return secret

    @property
    def endpoint_address(self) -> str:
        if isinstance(self.resource, rds.DatabaseCluster):
            return self.resource.cluster_endpoint.hostname
        return self.resource.db_instance_endpoint_address

    @property
    def endpoint_port(self) -> str:
        """The port as the database reports it (`Endpoint.Port`), not the constant it was asked for."""
        if isinstance(self.resource, rds.DatabaseCluster):
            return Token.as_string(self.resource.cluster_endpoint.port)
        return self.resource.db_instance_endpoint_port

    def grant_connect(self, grantee: iam.IGrantable, db_user: str) -> None:
        """`rds-db:connect` as `db_user` on this database, nothing else."""
        self.resource.grant_connect(grantee, db_user)

    def _unique_identifier(self) -> str:
        """`<prefix>-<env>-<aurora|postgres>-<first group of the stack id's UUID>`: one name per stack creation.

        A fixed name collided: a failed first deploy leaves the deletion-protected database behind, and
        the next stack (a new stack id) could not create its own. A name CloudFormation generates would
        not collide either, but is known only once the database exists, and RDS creates its log groups
        (infinite retention) on the first export, during creation; this one is known before, from the
        stack id alone, so the log groups below are made first with a retention and deleted with the
        stack, with no custom resource. It never changes for the life of the stack (no replacement).
        """
        suffix = constants.DB_CLUSTER_SUFFIX if self.is_aurora else constants.DB_INSTANCE_SUFFIX
        stack_uuid = Fn.select(2, Fn.split("/", Stack.of(self).stack_id))
        return Fn.join(
            "",
            [f"{self._config.resource_prefix}-{suffix}-", Fn.select(0, Fn.split("-", stack_uuid))],
        )

    def _build_log_groups(self) -> list[logs.LogGroup]:
        # RDS would create these on first export with infinite retention; created here first,
        # they get a retention and go away with the stack.
        kind = "cluster" if self.is_aurora else "instance"
        return [
            logs.LogGroup(
                self,
                f"{export.capitalize()}LogGroup",
                log_group_name=Fn.join("", [f"/aws/rds/{kind}/", self.identifier, f"/{export}"]),
                retention=logs.RetentionDays[constants.LOG_RETENTION],
                removal_policy=RemovalPolicy.DESTROY,
            )
            for export in constants.DB_LOG_EXPORTS
        ]

    def _build_security_group(self) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=self._network.vpc,
            description="PostgreSQL: inbound from the private-subnet functions only, no outbound",
            allow_all_outbound=False,
        )

    def _build_cluster(self) -> rds.DatabaseCluster:
        version = rds.AuroraPostgresEngineVersion.of(
            constants.DB_AURORA_POSTGRES_VERSION,
            constants.DB_AURORA_POSTGRES_MAJOR,
            serverless_v2_auto_pause_supported=True,
        )
        return rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=self.identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=version),
            writer=rds.ClusterInstance.serverless_v2(
                "Writer", publicly_accessible=False, auto_minor_version_upgrade=True
            ),
            serverless_v2_min_capacity=constants.DB_MIN_ACU,
            serverless_v2_max_capacity=constants.DB_MAX_ACU,
            serverless_v2_auto_pause_duration=Duration.seconds(constants.DB_SECONDS_UNTIL_AUTO_PAUSE),
            vpc=self._network.vpc,
            vpc_subnets=self._network.private_subnets,
            security_groups=[self.security_group],
            port=constants.DB_PORT,
            default_database_name=constants.DB_NAME,
            credentials=rds.Credentials.from_username(constants.DB_USERNAME),
            manage_master_user_password=True,
            storage_encrypted=True,
            iam_authentication=True,
            backup=rds.BackupProps(retention=Duration.days(constants.DB_BACKUP_RETENTION_DAYS)),
            deletion_protection=self._config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=list(constants.DB_LOG_EXPORTS),
            copy_tags_to_snapshot=True,
        )

    def _build_instance(self) -> rds.DatabaseInstance:
        return rds.DatabaseInstance(
            self,
            "Instance",
            instance_identifier=self.identifier,
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
            credentials=rds.Credentials.from_username(constants.DB_USERNAME),
            manage_master_user_password=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=constants.DB_ALLOCATED_STORAGE_GB,
            max_allocated_storage=constants.DB_MAX_ALLOCATED_STORAGE_GB,
            storage_encrypted=True,
            iam_authentication=True,
            backup_retention=Duration.days(constants.DB_BACKUP_RETENTION_DAYS),
            delete_automated_backups=False,
            deletion_protection=self._config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=list(constants.DB_LOG_EXPORTS),
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
        )

    def _build_access(self) -> None:
        self.resource.connections.allow_default_port_from(
            self._network.function_security_group, "PostgreSQL from functions in the private subnets"
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
                reason="The default port stays: the database has no public address, sits in private "
                "subnets without an internet route, and accepts connections only from the function "
                "security group; a non-standard port would add no protection.",
            ),
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The master password is managed by RDS (manage_master_user_password), which rotates "
                "it itself every 7 days; a rotation function of ours would be a second rotator.",
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
        Validations.of(self.resource).acknowledge(*acknowledgments)
