"""The operator CLI creates an API key in the deployed key store and prints it once."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from imagegen.keys import KeyStore
from imagegen_infra import admin
from imagegen_infra import blueprint as bp

pytestmark = pytest.mark.infra


@mock_aws
def test_create_key_stores_a_hash_and_prints_the_key_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName=bp.API_KEYS_TABLE.name,
        KeySchema=[{"AttributeName": bp.API_KEYS_TABLE.partition_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": bp.API_KEYS_TABLE.partition_key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    assert admin.main(["create-key", "--owner", "alice"], resource=dynamodb) == 0

    printed = capsys.readouterr()
    key = printed.out.strip()
    assert key.startswith("igk_") and "shown only this once" in printed.err
    assert KeyStore(bp.API_KEYS_TABLE.name, resource=dynamodb).authenticate(key).owner == "alice"
    [item] = dynamodb.Table(bp.API_KEYS_TABLE.name).scan()["Items"]
    assert key not in item.values()  # only the hash is stored
