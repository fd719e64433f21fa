"""The VPC: public subnets for Fargate tasks, private subnets for the API function and the database.

No NAT gateway and no interface endpoint by default. Fargate tasks get public IPs in the public subnets and
reach GitHub, the model APIs and the target servers through the internet gateway. The VPC is dual-stack: the
private subnets route IPv6, and only IPv6, out through an egress-only internet gateway (no hourly charge),
so the functions there (the API and its deploy hook, `ipv6_allowed_for_dual_stack`) reach SQS and Secrets
Manager at their dual-stack public endpoints (`AWS_USE_DUALSTACK_ENDPOINT=true`) over HTTPS, SigV4-signed
as ever; nothing can reach in. S3 and DynamoDB go through the free gateway endpoints. That replaced two
interface endpoints (SQS, Secrets Manager: $0.01 per AZ-hour each, $14.60 a month in one AZ).

The Ansible runner has its own security group: out on SSH (22) to target servers and HTTPS (443)
to git hosts and AWS APIs, nothing else and nothing in. Where it runs is `Workers.ansible_placement`.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra_cdk import constants
from infra_cdk.config import StackConfig


class Network(Construct):
    """VPC, subnets, gateway endpoints, the IPv6 way out and the security groups of what runs inside."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, log_bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.vpc = self._build_vpc()
        self.public_subnets = ec2.SubnetSelection(subnet_group_name=constants.PUBLIC_SUBNET_GROUP)
        self.private_subnets = ec2.SubnetSelection(subnet_group_name=constants.PRIVATE_SUBNET_GROUP)
        # The single-AZ database (the `rds` option) lives here.
        self.primary_availability_zone = self.vpc.availability_zones[0]
        self._build_flow_logs(log_bucket)
        self._build_gateway_endpoints()
        self._route_private_ipv6_out()
        self.function_security_group = self._build_function_security_group()
        self.task_security_group = self._build_task_security_group()
        self.ansible_security_group = self._build_ansible_security_group()

    @property
    def private_subnet_type(self) -> ec2.SubnetType:
        if self._config.enable_nat_gateway:
            return ec2.SubnetType.PRIVATE_WITH_EGRESS
        return ec2.SubnetType.PRIVATE_ISOLATED

    def _build_vpc(self) -> ec2.Vpc:
        return ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(constants.VPC_CIDR),
            max_azs=constants.MAX_AZS,
            nat_gateways=constants.NAT_GATEWAY_COUNT_WHEN_ENABLED if self._config.enable_nat_gateway else 0,
            ip_protocol=ec2.IpProtocol.DUAL_STACK,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=constants.PUBLIC_SUBNET_GROUP,
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=constants.SUBNET_CIDR_MASK,
                    # Fargate tasks ask for a public IP per task; nothing else launches here.
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name=constants.PRIVATE_SUBNET_GROUP,
                    subnet_type=self.private_subnet_type,
                    cidr_mask=constants.SUBNET_CIDR_MASK,
                ),
            ],
        )

    def _build_flow_logs(self, log_bucket: s3.IBucket) -> None:
        # To S3 rather than CloudWatch Logs: cheaper per GB and no delivery role to maintain.
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_s3(log_bucket, constants.FLOW_LOGS_PREFIX),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

    def _build_gateway_endpoints(self) -> None:
        # Gateway endpoints are free and route S3 (ECR image layers too) and DynamoDB traffic
        # from every subnet without the internet gateway or a NAT.
        all_subnets = [ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC), self.private_subnets]
        self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=all_subnets
        )
        self.vpc.add_gateway_endpoint(
            "DynamoDbEndpoint", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=all_subnets
        )

    def _route_private_ipv6_out(self) -> None:
        """::/0 from every private subnet to the egress-only internet gateway: out and replies only."""
        gateway = self.vpc.node.try_find_child("EIGW6")
        if not isinstance(gateway, ec2.CfnEgressOnlyInternetGateway):
            gateway = ec2.CfnEgressOnlyInternetGateway(self, "EgressOnlyGateway", vpc_id=self.vpc.vpc_id)
        for index, subnet in enumerate(
            self.vpc.select_subnets(subnet_group_name=constants.PRIVATE_SUBNET_GROUP).subnets
        ):
            if subnet.node.try_find_child("IPv6Default") is not None:
                continue  # CDK routed it already (private subnets with egress)
            ec2.CfnRoute(
                self,
                f"PrivateIpv6Route{index}",
                route_table_id=subnet.route_table.route_table_id,
                destination_ipv6_cidr_block=constants.ANY_IPV6,
                egress_only_internet_gateway_id=gateway.attr_id,
            )

    def _build_function_security_group(self) -> ec2.SecurityGroup:
        """For functions in the private subnets (the API, later its migrations function)."""
        group = ec2.SecurityGroup(
            self,
            "FunctionSecurityGroup",
            vpc=self.vpc,
            description="Functions in the private subnets: the database, and HTTPS over IPv6 to AWS APIs",
            allow_all_outbound=False,
        )
        # IPv6 leaves only through the egress-only gateway; IPv4 has no route out at all. S3 and DynamoDB
        # (gateway endpoints) are prefix lists reached over IPv4.
        group.add_egress_rule(
            ec2.Peer.any_ipv6(), ec2.Port.tcp(constants.HTTPS_PORT), "HTTPS to AWS dual-stack endpoints"
        )
        return group

    def _build_task_security_group(self) -> ec2.SecurityGroup:
        """For Fargate tasks (workers, the Ansible runner): out to the internet, nothing in."""
        return ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description="Fargate tasks: outbound to git hosts, model APIs and target servers; no inbound",
            allow_all_outbound=True,
        )

    def _build_ansible_security_group(self) -> ec2.SecurityGroup:
        """For Ansible runner tasks: SSH to the target servers, HTTPS to git hosts and AWS; no inbound."""
        group = ec2.SecurityGroup(
            self,
            "AnsibleTaskSecurityGroup",
            vpc=self.vpc,
            description="Ansible runner tasks: SSH to target servers, HTTPS to git hosts and AWS APIs; no inbound",
            allow_all_outbound=False,
        )
        group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(constants.SSH_PORT), "SSH to the servers it deploys to"
        )
        group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(constants.HTTPS_PORT),
            "HTTPS: git clones, SQS and Secrets Manager (public endpoints), ECR",
        )
        return group
