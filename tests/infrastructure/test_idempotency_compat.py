"""The idempotency table the stack defines works with `shared.idempotency.DynamoDbIdempotency`.

The table is rebuilt in moto from the synthesized template, so a key-schema or TTL mismatch between
the stack and the adapter fails here, not on the first Telegram update in AWS.
"""

from __future__ import annotations

import boto3
from moto import mock_aws

from shared.idempotency import DynamoDbIdempotency
from tests.infrastructure.conftest import Synthesized

TABLE = "claims"
REGION = "us-east-1"


def test_claims_round_trip_through_the_stack_table(default_app: Synthesized) -> None:
    (table,) = [t for k, t in default_app.resources("AWS::DynamoDB::Table").items() if "Idempotency" in k]
    props = table["Properties"]
    now = [1_000_000.0]
    with mock_aws():
        # given the table exactly as the template declares it
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=TABLE,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props["BillingMode"],
        )
        client.update_time_to_live(TableName=TABLE, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        claims = DynamoDbIdempotency(TABLE, client, clock=lambda: now[0])

        # when the same update id is claimed twice, released, and claimed again after expiry
        first, second = claims.claim("tg:update:1", 60), claims.claim("tg:update:1", 60)
        claims.release("tg:update:1")
        after_release = claims.claim("tg:update:1", 60)
        now[0] += 61
        after_expiry = claims.claim("tg:update:1", 60)

        # then exactly one claim holds at a time, and the TTL attribute is the table's
        assert (first, second, after_release, after_expiry) == (True, False, True, True)
        item = client.get_item(TableName=TABLE, Key={"pk": {"S": "tg:update:1"}})["Item"]
        assert props["TimeToLiveSpecification"]["AttributeName"] in item
