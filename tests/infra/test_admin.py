"""The operator CLI creates an API key in the deployed key store and prints it once."""

from __future__ import annotations

import uuid

import pytest

from imagegen.keys import KeyStore
from imagegen.runtime import dynamodb_resource
from imagegen_infra import admin
from imagegen_infra import blueprint as bp

pytestmark = pytest.mark.infra


def test_create_key_stores_a_hash_and_prints_the_key_once(
    stack: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # Against the session's moto server, in a table of its own. Not moto's in-process mock_aws:
    # it patches botocore for every thread and resets moto's backends on exit, which would
    # wipe the running local stack that shares them.
    table = f"admin-test-keys-{uuid.uuid4().hex[:8]}"
    dynamodb = dynamodb_resource()
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": bp.API_KEYS_TABLE.partition_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": bp.API_KEYS_TABLE.partition_key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    assert admin.main(["create-key", "--owner", "alice", "--table", table], resource=dynamodb) == 0

    printed = capsys.readouterr()
    key = printed.out.strip()
    assert key.startswith("igk_") and "shown only this once" in printed.err
    assert KeyStore(table, resource=dynamodb).authenticate(key).owner == "alice"
    [item] = dynamodb.Table(table).scan()["Items"]
    assert key not in item.values()  # only the hash is stored
