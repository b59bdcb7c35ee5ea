"""The operator CLI reads the deployed stack's outputs: it shows them, and creates API keys in
the stack's own key table, printed once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from imagegen.keys import KeyStore
from imagegen_infra import admin
from imagegen_infra import blueprint as bp

pytestmark = pytest.mark.infra
REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):  # the local stack's, if a session started one
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield boto3.resource("dynamodb", region_name=REGION)


def deploy(stage: str | None) -> bp.Blueprint:
    """A stack with the deployed one's name, key table and outputs (moto runs the template)."""
    names = bp.Blueprint.for_stage(stage)
    spec = names.api_keys_table
    template = {
        "Resources": {
            "Keys": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": spec.name,
                    "KeySchema": [{"AttributeName": spec.partition_key, "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": spec.partition_key, "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                },
            }
        },
        "Outputs": {
            "ApiKeysTable": {"Value": {"Ref": "Keys"}},
            "ApiUrl": {"Value": "https://abc.execute-api.eu-west-1.amazonaws.com/prod"},
        },
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=names.stack_name, TemplateBody=json.dumps(template)
    )
    return names


@pytest.mark.parametrize("stage", [None, "dev"])
def test_create_key_stores_a_hash_in_the_stacks_table_and_prints_the_key_once(
    aws: Any, capsys: pytest.CaptureFixture[str], stage: str | None
) -> None:
    names = deploy(stage)
    deploy("other")  # another deployment in the same account and region is left alone

    assert admin.main(["create-key", "--owner", "alice", *(["--stage", stage] if stage else [])]) == 0

    printed = capsys.readouterr()
    key = printed.out.strip()
    assert key.startswith("igk_") and "shown only this once" in printed.err
    assert KeyStore(names.api_keys_table.name, resource=aws).authenticate(key).owner == "alice"
    [item] = aws.Table(names.api_keys_table.name).scan()["Items"]
    assert key not in item.values()  # only the hash is stored
    assert aws.Table("imagegen-other-api-keys").scan()["Items"] == []


def test_outputs_prints_the_stacks_outputs(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deploy("dev")
    assert admin.main(["outputs", "--stage", "dev"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "ApiKeysTable": "imagegen-dev-api-keys",
        "ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
    }


def test_a_missing_stack_is_a_clear_error(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin.main(["create-key", "--owner", "alice", "--stage", "dev"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no stack imagegen-dev in eu-west-1")
    assert "Traceback" not in error


def test_table_overrides_the_stack(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    names = deploy("dev")
    assert admin.main(["create-key", "--owner", "bob", "--table", names.api_keys_table.name]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyStore(names.api_keys_table.name, resource=aws).authenticate(key).owner == "bob"
    assert admin.main(["create-key", "--owner", "bob", "--table", "nope"]) == 2
    assert "could not store the key in nope" in capsys.readouterr().err


def test_a_bad_stage_is_refused_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        admin.main(["outputs", "--stage", "Dev"])
    assert refused.value.code == 2
    assert "a stage is" in capsys.readouterr().err
