"""The operator CLI reads the deployed stack's outputs: it shows them, and creates API keys in
the stack's own key table, printed once.

It runs as an operator runs it (`python -m imagegen_infra.admin ...`), against a moto server of
its own process: moto's in-process mock would reset the backends the session's local stack
serves from, wiping it for the tests after these.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from imagegen.keys import KeyStore
from imagegen_infra import blueprint as bp

pytestmark = pytest.mark.infra
REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def aws(endpoint: str) -> Any:
    """A fresh account on the test's moto server: a session and the DynamoDB resource."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return session


def admin(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, as documented, with the operator's region and credentials (moto's here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGEGEN_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PYTHONPATH": f"{REPO / 'functions'}:{REPO / 'infra'}",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "imagegen_infra.admin", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def deploy(session: Any, endpoint: str, stage: str | None) -> bp.Blueprint:
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
    session.client("cloudformation", endpoint_url=endpoint).create_stack(
        StackName=names.stack_name, TemplateBody=json.dumps(template)
    )
    return names


@pytest.mark.parametrize("stage", [None, "dev"])
def test_create_key_stores_a_hash_in_the_stacks_table_and_prints_the_key_once(
    aws: Any, endpoint: str, stage: str | None
) -> None:
    names = deploy(aws, endpoint, stage)
    deploy(aws, endpoint, "other")  # another deployment in the same account and region is left alone

    done = admin(endpoint, "create-key", "--owner", "alice", *(["--stage", stage] if stage else []))

    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("igk_") and "shown only this once" in done.stderr
    dynamodb = aws.resource("dynamodb", endpoint_url=endpoint)
    assert KeyStore(names.api_keys_table.name, resource=dynamodb).authenticate(key).owner == "alice"
    [item] = dynamodb.Table(names.api_keys_table.name).scan()["Items"]
    assert key not in item.values()  # only the hash is stored
    assert dynamodb.Table("imagegen-other-api-keys").scan()["Items"] == []


def test_outputs_prints_the_stacks_outputs(aws: Any, endpoint: str) -> None:
    deploy(aws, endpoint, "dev")
    done = admin(endpoint, "outputs", "--stage", "dev")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ApiKeysTable": "imagegen-dev-api-keys",
        "ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
    }


def test_a_missing_stack_is_a_clear_error(aws: Any, endpoint: str) -> None:
    done = admin(endpoint, "create-key", "--owner", "alice", "--stage", "dev")
    assert done.returncode == 2
    assert done.stderr.startswith("error: no stack imagegen-dev in eu-west-1")
    assert "Traceback" not in done.stderr


def test_table_overrides_the_stack(aws: Any, endpoint: str) -> None:
    names = deploy(aws, endpoint, "dev")
    done = admin(endpoint, "create-key", "--owner", "bob", "--table", names.api_keys_table.name)
    assert done.returncode == 0, done.stderr
    dynamodb = aws.resource("dynamodb", endpoint_url=endpoint)
    assert (
        KeyStore(names.api_keys_table.name, resource=dynamodb).authenticate(done.stdout.strip()).owner
        == "bob"
    )
    refused = admin(endpoint, "create-key", "--owner", "bob", "--table", "nope")
    assert refused.returncode == 2
    assert "could not store the key in nope" in refused.stderr and "Traceback" not in refused.stderr


def test_a_bad_stage_is_refused_before_any_call(endpoint: str) -> None:
    done = admin(endpoint, "outputs", "--stage", "Dev")
    assert done.returncode == 2
    assert "a stage is" in done.stderr


def test_the_account_commands_grant_list_disable_and_audit(aws: Any, endpoint: str) -> None:
    names = deploy(aws, endpoint, None)
    table = ("--table", names.api_keys_table.name)
    dynamodb = aws.resource("dynamodb", endpoint_url=endpoint)
    keys = KeyStore(names.api_keys_table.name, resource=dynamodb)

    created = admin(endpoint, "create-key", "--owner", "carol", "--credits", "30", *table)
    granted = admin(endpoint, "grant", "--owner", "carol", "--credits", "12", *table)
    assert created.returncode == 0 and granted.returncode == 0, created.stderr + granted.stderr
    assert json.loads(granted.stdout) == {"owner": "carol", "balance": 42}
    listed = admin(endpoint, "list-keys", "--owner", "carol", *table)
    [key] = json.loads(listed.stdout)
    assert (
        key["owner"] == "carol" and key["status"] == "active" and created.stdout.strip() not in listed.stdout
    )
    assert admin(endpoint, "audit", *table).returncode == 0

    disabled = admin(endpoint, "disable-key", key["key_id"], *table)
    assert disabled.returncode == 0, disabled.stderr
    with pytest.raises(Exception, match="inactive"):
        keys.authenticate(created.stdout.strip())
    assert admin(endpoint, "disable-key", "key_nope", *table).returncode == 2

    # A balance changed behind the ledger's back is reported.
    dynamodb.Table(names.api_keys_table.name).update_item(
        Key={"key_hash": "account#carol"},
        UpdateExpression="SET balance = :b",
        ExpressionAttributeValues={":b": 50},
    )
    audited = admin(endpoint, "audit", *table)
    assert audited.returncode == 1
    assert audited.stdout.strip() == "carol: balance 50, ledger 42 (difference 8)"
    assert admin(endpoint, "grant", "--owner", "carol", "--credits", "-5", *table).returncode == 2
