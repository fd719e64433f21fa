"""The network path of the functions in the VPC: no interface endpoint, no NAT; IPv6 out through an egress-only
gateway to the dual-stack AWS endpoints; S3 and DynamoDB through the free gateway endpoints."""

from __future__ import annotations

import json

from infra_cdk import constants
from tests.infrastructure.conftest import Synthesized


def _private_route_tables(app: Synthesized) -> set[str]:
    return {
        assoc["Properties"]["RouteTableId"]["Ref"]
        for assoc in app.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if "private" in assoc["Properties"]["SubnetId"]["Ref"]
    }


def test_no_interface_endpoint_only_the_free_gateway_ones(any_app: Synthesized) -> None:
    endpoints = [e["Properties"] for e in any_app.resources("AWS::EC2::VPCEndpoint").values()]
    by_service = {json.dumps(e["ServiceName"]).split(".")[-1].strip('"]}'): e for e in endpoints}
    assert set(by_service) == {"s3", "dynamodb"}
    for endpoint in endpoints:
        assert endpoint["VpcEndpointType"] == "Gateway"
        assert len(endpoint["RouteTableIds"]) == 2 * constants.MAX_AZS


def test_the_private_subnets_route_ipv6_out_only_through_the_egress_only_gateway(
    default_app: Synthesized,
) -> None:
    (gateway_id,) = default_app.resources("AWS::EC2::EgressOnlyInternetGateway")
    private_tables = _private_route_tables(default_app)
    assert len(private_tables) == constants.MAX_AZS
    routes = [r["Properties"] for r in default_app.resources("AWS::EC2::Route").values()]
    private_routes = [r for r in routes if r["RouteTableId"]["Ref"] in private_tables]
    # IPv6 out through the egress-only gateway (nothing can come in), and no IPv4 route out at all
    assert sorted(r["RouteTableId"]["Ref"] for r in private_routes) == sorted(private_tables)
    for route in private_routes:
        assert route["DestinationIpv6CidrBlock"] == "::/0"
        assert route["EgressOnlyInternetGatewayId"] == {"Fn::GetAtt": [gateway_id, "Id"]}
        assert "DestinationCidrBlock" not in route
    assert not default_app.resources("AWS::EC2::NatGateway")
    for subnet_id, subnet in default_app.resources("AWS::EC2::Subnet").items():
        assert "Ipv6CidrBlock" in subnet["Properties"], subnet_id  # dual-stack: Lambda gets an IPv6 address


def test_with_a_nat_gateway_the_private_subnets_still_route_ipv6_out(variant_app: Synthesized) -> None:
    private_tables = _private_route_tables(variant_app)
    routes = [r["Properties"] for r in variant_app.resources("AWS::EC2::Route").values()]
    ipv6_out = {r["RouteTableId"]["Ref"] for r in routes if r.get("DestinationIpv6CidrBlock") == "::/0"}
    assert private_tables <= ipv6_out


def test_the_functions_in_the_vpc_use_ipv6_and_the_dual_stack_endpoints(any_app: Synthesized) -> None:
    in_vpc = {
        k: f["Properties"]
        for k, f in any_app.resources("AWS::Lambda::Function").items()
        if "VpcConfig" in f["Properties"] and "Environment" in f["Properties"]
    }
    ours = {k: p for k, p in in_vpc.items() if "ORCH_SERVICE_NAME" in p["Environment"]["Variables"]}
    assert sorted(p["Environment"]["Variables"]["ORCH_SERVICE_NAME"] for p in ours.values()) == sorted(
        [constants.API_FUNCTION, constants.DEPLOY_HOOK_FUNCTION]
    )
    for props in ours.values():
        assert props["VpcConfig"]["Ipv6AllowedForDualStack"] is True
        assert props["Environment"]["Variables"][constants.AWS_DUALSTACK_ENV] == "true"


def test_the_function_security_group_allows_the_database_and_https_over_ipv6_only(
    any_app: Synthesized,
) -> None:
    ((group_id, group),) = [
        (k, g)
        for k, g in any_app.resources("AWS::EC2::SecurityGroup").items()
        if "FunctionSecurityGroup" in k
    ]
    egress = group["Properties"]["SecurityGroupEgress"]
    assert egress == [
        {
            "CidrIpv6": "::/0",
            "Description": "HTTPS to AWS dual-stack endpoints",
            "FromPort": constants.HTTPS_PORT,
            "IpProtocol": "tcp",
            "ToPort": constants.HTTPS_PORT,
        }
    ]
    separate = [
        r["Properties"]
        for r in any_app.resources("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    assert len(separate) == 1 and "DestinationSecurityGroupId" in separate[0]  # the database only
    assert not any(r.get("CidrIp") == "0.0.0.0/0" for r in egress + separate)
