"""Stand the template's resources up against the moto server, as `cdk deploy` would create them.

Only what functions touch is created for real (queues with their redrive policies, tables, buckets,
secrets, the ECS cluster and task definitions); the rest gets recognisable fake ids (see
`template.Resolver`). Names follow CloudFormation: an explicit name property wins, otherwise
`<stack>-<logical id>-<random>`.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from tests.cloud.template import ACCOUNT_ID, REGION, Physical, Resolver, Template


def _generated_name(stack: str, logical: str, max_length: int = 63, lower: bool = False) -> str:
    suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))
    name = f"{stack}-{logical[: max(1, max_length - len(stack) - 14)]}-{suffix}"
    return name.lower() if lower else name


def _generate_secret_string(spec: dict[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-./:;<=>?@[]^_`{|}~"
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec:
        data = json.loads(spec["SecretStringTemplate"])
        data[spec["GenerateStringKey"]] = value
        return json.dumps(data)
    return value


class Stager:
    def __init__(self, template: Template, session: Any, database: dict[str, Any], api_endpoint: str) -> None:
        self.template = template
        self.resolver = Resolver(template)
        self.session = session
        self.database = database
        self.api_endpoint = api_endpoint
        self.stack = template.stack_name

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def stage(self) -> None:
        t = self.template
        self._names()
        self._network()
        self._queues()
        for logical, _ in t.of_type("AWS::DynamoDB::Table"):
            self._table(logical)
        for logical, _ in t.of_type("AWS::S3::Bucket"):
            self._bucket(logical)
        for logical, _ in t.of_type("AWS::RDS::DBCluster"):
            self._db_cluster(logical)
        for logical, _ in t.of_type("AWS::RDS::DBInstance"):
            self._db_instance(logical)
        for logical, _ in t.of_type("AWS::SecretsManager::Secret"):
            self._secret(logical)
        for logical, _ in t.of_type("AWS::SecretsManager::SecretTargetAttachment"):
            self._attach(logical)
        for logical, _ in t.of_type("AWS::ECS::Cluster"):
            self._cluster(logical)
        for logical, _ in t.of_type("AWS::ECS::TaskDefinition"):
            self._task_definition(logical)

    # -- names of what is not created in moto (functions, roles, rules, APIs, log groups...) --------

    def _names(self) -> None:
        t = self.template
        for logical, resource in t.resources.items():
            props = resource.get("Properties", {})
            kind = resource["Type"]
            if kind == "AWS::Lambda::Function":
                name = props.get("FunctionName") or _generated_name(self.stack, logical, 64)
                arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
                t.physical[logical] = Physical(name, {"Arn": arn})
            elif kind == "AWS::Lambda::Version":
                function = props["FunctionName"]["Ref"]
                t.physical[logical] = Physical(
                    f"{self.resolver.get_att(function, 'Arn')}:1", {"Version": "1"}
                )
            elif kind == "AWS::Lambda::Alias":  # SnapStart's: its Ref is the qualified ARN
                function = props["FunctionName"]["Ref"]
                arn = f"{self.resolver.get_att(function, 'Arn')}:{props['Name']}"
                t.physical[logical] = Physical(arn, {"AliasArn": arn})
            elif kind == "AWS::Lambda::LayerVersion":
                arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{logical}:1"
                t.physical[logical] = Physical(arn, {})
            elif kind == "AWS::IAM::Role":
                name = props.get("RoleName") or _generated_name(self.stack, logical, 64)
                t.physical[logical] = Physical(
                    name,
                    {
                        "Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
                        "RoleId": f"AROA{logical[:16].upper()}",
                    },
                )
            elif kind == "AWS::Events::Rule":
                name = props.get("Name") or _generated_name(self.stack, logical, 64)
                t.physical[logical] = Physical(
                    name, {"Arn": f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{name}"}
                )
            elif kind == "AWS::ApiGatewayV2::Api":
                t.physical[logical] = Physical(
                    "rehearsalapi", {"ApiEndpoint": self.api_endpoint, "ApiId": "rehearsalapi"}
                )
            elif kind == "AWS::Logs::LogGroup":
                name = props.get("LogGroupName") or _generated_name(self.stack, logical, 64)
                t.physical[logical] = Physical(
                    name, {"Arn": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"}
                )
            elif kind == "AWS::SNS::Topic":
                name = props.get("TopicName") or _generated_name(self.stack, logical, 64)
                arn = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}"
                t.physical[logical] = Physical(arn, {"TopicArn": arn, "TopicName": name})
            elif kind == "AWS::KMS::Key":
                key_id = f"rehearsal-key-{logical.lower()}"
                t.physical[logical] = Physical(
                    key_id, {"Arn": f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"}
                )

    # -- created for real ----------------------------------------------------------------------------

    def _network(self) -> None:
        """VPC, subnets and security groups: RunTask checks the ids it is given."""
        ec2 = self.client("ec2")
        t = self.template
        for logical, resource in t.of_type("AWS::EC2::VPC"):
            vpc = ec2.create_vpc(CidrBlock=resource["Properties"]["CidrBlock"])["Vpc"]
            for flag in ("EnableDnsSupport", "EnableDnsHostnames"):
                if resource["Properties"].get(flag):
                    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], **{flag: {"Value": True}})
            t.physical[logical] = Physical(
                vpc["VpcId"], {"CidrBlock": vpc["CidrBlock"], "VpcId": vpc["VpcId"]}
            )
        for logical, resource in t.of_type("AWS::EC2::Subnet"):
            # what RunTask checks; the subnet's IPv6 block (Fn::Cidr of the VPC's) is not staged
            props = {
                key: self.resolver.resolve(value)
                for key, value in resource["Properties"].items()
                if key in ("VpcId", "CidrBlock", "AvailabilityZone")
            }
            subnet = ec2.create_subnet(
                VpcId=props["VpcId"],
                CidrBlock=props["CidrBlock"],
                AvailabilityZone=props.get("AvailabilityZone", f"{REGION}a"),
            )["Subnet"]
            t.physical[logical] = Physical(subnet["SubnetId"], {"SubnetId": subnet["SubnetId"]})
        for logical, resource in t.of_type("AWS::EC2::SecurityGroup"):
            props = self.resolver.resolve(resource["Properties"])
            group = ec2.create_security_group(
                GroupName=props.get("GroupName") or f"{self.stack}-{logical}"[:255],
                Description=props.get("GroupDescription", logical)[:255],
                VpcId=props.get("VpcId") or "",
            )["GroupId"]
            t.physical[logical] = Physical(group, {"GroupId": group})

    def _queues(self) -> None:
        sqs = self.client("sqs")
        queues = list(self.template.of_type("AWS::SQS::Queue"))
        for logical, resource in queues:  # every queue first: redrive targets must exist
            props = resource["Properties"]
            name = props.get("QueueName") or _generated_name(self.stack, logical, 80)
            attributes = {
                key: str(props[key])
                for key in (
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "DelaySeconds",
                    "ReceiveMessageWaitTimeSeconds",
                )
                if key in props
            }
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
            self.template.physical[logical] = Physical(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})
        for logical, resource in queues:
            redrive = resource["Properties"].get("RedrivePolicy")
            if redrive:
                policy = self.resolver.resolve(redrive)
                sqs.set_queue_attributes(
                    QueueUrl=self.template.physical[logical].ref,
                    Attributes={"RedrivePolicy": json.dumps(policy)},
                )

    def _table(self, logical: str) -> None:
        props = self.template.props(logical)
        name = props.get("TableName") or _generated_name(self.stack, logical, 255)
        ddb = self.client("dynamodb")
        ddb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        self.template.physical[logical] = Physical(name, {"Arn": arn})

    def _bucket(self, logical: str) -> None:
        props = self.template.props(logical)
        name = props.get("BucketName") or _generated_name(self.stack, logical, 63, lower=True)
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        lifecycle = props.get("LifecycleConfiguration")
        if lifecycle:
            rules = []
            for rule in self.resolver.resolve(lifecycle)["Rules"]:
                converted: dict[str, Any] = {
                    "ID": rule.get("Id", "rule"),
                    "Status": rule.get("Status", "Enabled"),
                }
                filters = []
                if "Prefix" in rule:
                    filters.append({"Prefix": rule["Prefix"]})
                for tag in rule.get("TagFilters", []):
                    filters.append({"Tag": {"Key": tag["Key"], "Value": tag["Value"]}})
                converted["Filter"] = (
                    {
                        "And": {
                            "Prefix": rule.get("Prefix", ""),
                            "Tags": [f["Tag"] for f in filters if "Tag" in f],
                        }
                    }
                    if len(filters) > 1
                    else (filters[0] if filters else {"Prefix": ""})
                )
                if "ExpirationInDays" in rule:
                    converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
                rules.append(converted)
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        self.template.physical[logical] = Physical(
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            },
        )

    def _db_instance(self, logical: str) -> None:
        props = self.template.props(logical)
        identifier = props.get("DBInstanceIdentifier") or _generated_name(self.stack, logical, 63, lower=True)
        attrs = {
            "Endpoint.Address": self.database["host"],
            "Endpoint.Port": str(self.database["port"]),
            "DbiResourceId": f"db-{logical.upper()[:20]}",
        }
        self.template.physical[logical] = Physical(
            identifier, {**attrs, **self._master_secret(logical, props)}
        )

    def _db_cluster(self, logical: str) -> None:
        props = self.template.props(logical)
        identifier = props.get("DBClusterIdentifier") or _generated_name(self.stack, logical, 63, lower=True)
        attrs = {
            "Endpoint.Address": self.database["host"],
            "Endpoint.Port": str(self.database["port"]),
            "ReadEndpoint.Address": self.database["host"],
            "DBClusterResourceId": f"cluster-{logical.upper()[:20]}",
        }
        self.template.physical[logical] = Physical(
            identifier, {**attrs, **self._master_secret(logical, props)}
        )

    def _master_secret(self, logical: str, props: dict[str, Any]) -> dict[str, str]:
        """What RDS makes for `ManageMasterUserPassword`: a secret with {username, password} (no host: the
        functions are told where the database is); the rehearsal's PostgreSQL trusts its local users."""
        if not props.get("ManageMasterUserPassword"):
            return {}
        value = json.dumps({"username": props["MasterUsername"], "password": secrets.token_urlsafe(24)})
        name = f"rds!{logical[:30].lower()}-{secrets.token_hex(6)}"
        arn = self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        self.database["username"] = props["MasterUsername"]
        return {"MasterUserSecret.SecretArn": arn}

    def _secret(self, logical: str) -> None:
        props = self.template.props(logical)
        name = props.get("Name") or f"{logical[:40]}-{secrets.token_hex(6)}"
        if "SecretString" in props:
            value = self.resolver.resolve(props["SecretString"])
        else:
            value = _generate_secret_string(props.get("GenerateSecretString", {}))
        arn = self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        self.template.physical[logical] = Physical(arn, {"Id": arn})

    def _attach(self, logical: str) -> None:
        """What the RDS target attachment writes into the generated secret: where to connect."""
        props = self.template.props(logical)
        secret_arn = self.resolver.resolve(props["SecretId"])
        client = self.client("secretsmanager")
        data = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
        data.update(
            host=self.database["host"],
            port=int(self.database["port"]),
            engine="postgres",
            dbname=self.database["dbname"],
            dbInstanceIdentifier=self.resolver.resolve(props["TargetId"]),
        )
        # the rehearsal's PostgreSQL trusts its local users: the generated password is kept as is
        client.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(data))
        self.database["username"] = data["username"]
        self.template.physical[logical] = Physical(secret_arn, {})

    def _cluster(self, logical: str) -> None:
        props = self.template.props(logical)
        name = props.get("ClusterName") or _generated_name(self.stack, logical, 255)
        arn = self.client("ecs").create_cluster(clusterName=name)["cluster"]["clusterArn"]
        self.template.physical[logical] = Physical(name, {"Arn": arn})

    def _task_definition(self, logical: str) -> None:
        props = self.resolver.resolve(self.template.props(logical))
        containers = []
        for container in props["ContainerDefinitions"]:
            containers.append(
                {
                    "name": container["Name"],
                    "image": container["Image"],
                    "essential": container.get("Essential", True),
                    "memory": int(container.get("Memory") or props.get("Memory") or 512),
                    "environment": [
                        {"name": e["Name"], "value": str(e["Value"])}
                        for e in container.get("Environment", [])
                    ],
                    "command": container.get("Command", []),
                    "entryPoint": container.get("EntryPoint", []),
                }
            )
        registered = self.client("ecs").register_task_definition(
            family=props["Family"],
            taskRoleArn=props.get("TaskRoleArn", ""),
            executionRoleArn=props.get("ExecutionRoleArn", ""),
            networkMode=props.get("NetworkMode", "awsvpc"),
            containerDefinitions=containers,
            requiresCompatibilities=props.get("RequiresCompatibilities", []),
            cpu=str(props.get("Cpu", "256")),
            memory=str(props.get("Memory", "512")),
        )["taskDefinition"]
        arn = registered["taskDefinitionArn"]
        self.template.physical[logical] = Physical(arn, {"TaskDefinitionArn": arn})
