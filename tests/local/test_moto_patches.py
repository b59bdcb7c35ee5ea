"""Canaries for imagegen_local.moto_patches (#13.5): each reproduces, on an unpatched moto in a
fresh interpreter, the behaviour a patch works around, and fails once moto changes it: then the
patch is to be revisited or deleted. Plus what the upgrade to moto 5.2.5 settled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import boto3

from imagegen_infra import blueprint as bp
from imagegen_local import moto_patches
from tests.support import REPO


def unpatched_moto(script: str) -> Any:
    """Run `script` with plain moto (in-memory, no server, none of our patches unless it applies
    one) and return the JSON it prints last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / part) for part in ("functions", "infra"))
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_patch_says_why_and_names_its_canary():
    for patch in moto_patches.PATCHES:
        assert patch.why and patch.upstream
        assert patch.canary in globals(), patch.canary


def test_moto_still_needs_docker_to_run_a_function():
    """moto_patches.LAMBDA_IN_PROCESS. Fails when moto runs a function's code without Docker
    (getmoto/moto#9916): then its runner may replace our hook."""
    result = unpatched_moto(
        """
        import inspect, io, json, zipfile
        import boto3
        from moto import mock_aws
        from moto.awslambda.models import LambdaFunction

        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("probe.py", "def handler(event, context):\\n    return {'ran': True}\\n")
        with mock_aws(config={"lambda": {"use_docker": False}}):
            role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            client = boto3.client("lambda")
            client.create_function(
                FunctionName="probe", Runtime="python3.14", Role=role, Handler="probe.handler",
                Code={"ZipFile": code.getvalue()},
            )
            payload = client.invoke(FunctionName="probe", Payload=b"{}")["Payload"].read().decode()
        print(json.dumps({
            "without_docker": payload,
            "runner_uses_docker": "docker" in inspect.getsource(LambdaFunction._invoke_lambda),
        }))
        """
    )

    assert result["runner_uses_docker"]
    assert json.loads(result["without_docker"]) != {"ran": True}  # a canned answer, not the code's


NOTIFIED_PROMPTS = """
    import json
    import boto3
    from moto import mock_aws
    from moto.s3 import notifications

    seen, send_event = [], notifications.send_event

    def recording(account_id, event_name, bucket, key):
        name = getattr(event_name, "value", str(event_name))
        seen.append({"event": name, "prompt": key.metadata.get("x-amz-meta-prompt")})
        return send_event(account_id, event_name, bucket, key)

    notifications.send_event = recording
    if PATCHED:
        from imagegen_local.moto_patches import _notify_once_s3_writes_complete

        _notify_once_s3_writes_complete()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="canary-bucket")
        s3.put_object(Bucket="canary-bucket", Key="edits/x.png", Body=b"x", Metadata={"prompt": "p"})
    print(json.dumps([s["prompt"] for s in seen if "ObjectCreated" in s["event"]]))
"""


def test_moto_still_notifies_before_the_metadata_is_set():
    """moto_patches.S3_NOTIFY_WHEN_COMPLETE. Fails when moto sends ObjectCreated once the
    object has its metadata."""
    assert unpatched_moto("PATCHED = False\n" + textwrap.dedent(NOTIFIED_PROMPTS)) == [None]


def test_with_the_patch_the_notification_comes_once_the_metadata_is_set():
    assert unpatched_moto("PATCHED = True\n" + textwrap.dedent(NOTIFIED_PROMPTS)) == ["p"]


def test_moto_runs_a_second_execution_of_a_running_state_machine():
    """What the deleted deep-copy workaround did, now moto's own (getmoto/moto#10093, in 5.2.5):
    StartExecution while an execution of the same machine runs."""
    statuses = unpatched_moto(
        """
        import json, time
        import boto3
        from moto import mock_aws
        from moto.core.config import default_user_config

        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 1, "End": True}}}
        with mock_aws():
            sfn = boto3.client("stepfunctions")
            machine = sfn.create_state_machine(
                name="m", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/r"
            )["stateMachineArn"]
            runs = [sfn.start_execution(stateMachineArn=machine)["executionArn"] for _ in range(3)]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                statuses = [sfn.describe_execution(executionArn=run)["status"] for run in runs]
                if "RUNNING" not in statuses:
                    break
                time.sleep(0.1)
        print(json.dumps(statuses))
        """
    )

    assert statuses == ["SUCCEEDED"] * 3


LOST_WRITE = """
    import copy, json
    import boto3
    from moto import mock_aws
    from moto.dynamodb import models

    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item={"k": {"S": "taken"}})
        snapshot = copy.deepcopy

        def snapshot_then_another_write(value, *args):
            models.copy.deepcopy = snapshot  # `copy` is the module: its own recursion uses it
            copied = snapshot(value, *args)
            # Another request's write, landing while the transaction runs (as threads do).
            client.put_item(TableName="t", Item={"k": {"S": "concurrent"}})
            return copied

        models.copy.deepcopy = snapshot_then_another_write
        try:
            client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "t", "Item": {"k": {"S": "taken"}},
                             "ConditionExpression": "attribute_not_exists(k)"}}
                ]
            )
        except client.exceptions.TransactionCanceledException:
            pass
        models.copy.deepcopy = snapshot
        print(json.dumps("Item" in client.get_item(TableName="t", Key={"k": {"S": "concurrent"}})))
"""


def test_moto_still_rolls_back_writes_made_during_a_canceled_transaction():
    """moto_patches.DYNAMODB_WRITES_SERIALIZED. Fails when a canceled transaction keeps the
    writes others made meanwhile: then the lock can go."""
    assert unpatched_moto(LOST_WRITE) is False


def test_functions_are_registered_with_the_runtime_the_blueprint_deploys(stack):
    client = boto3.client("lambda")
    runtimes = {
        function.name: client.get_function_configuration(FunctionName=function.name)["Runtime"]
        for function in bp.ALL_FUNCTIONS
    }

    assert set(runtimes.values()) == {bp.LAMBDA_RUNTIME}  # moto accepts python3.14 unpatched
