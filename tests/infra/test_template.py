"""What matters in the synthesized template: data kept and encrypted, nothing public, every
function configured alike, each role allowed only what its code does, errors in our shape."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from typing import Any

import pytest

from imagegen.jobs import OPEN_JOBS_INDEX, OWNER_INDEX
from imagegen.settings import Settings
from imagegen.storage import image_key
from imagegen.webhooks import WebhookSecretStore
from imagegen.workflow import StepState
from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from imagegen_infra.workflow_definition import EXECUTION_MARGIN_SECONDS
from tests.infra.cfn import actions_of, logical_id, only, resources, role_statements

pytestmark = pytest.mark.infra

DEFAULTS = DeployConfig()


# --- data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [bp.JOBS_TABLE, bp.API_KEYS_TABLE], ids=lambda spec: spec.name)
def test_tables_are_on_demand_encrypted_recoverable_and_retained(
    template: dict[str, Any], spec: bp.TableSpec
) -> None:
    table_id = logical_id(template, "AWS::DynamoDB::Table", TableName=spec.name)
    table = template["Resources"][table_id]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    ttl = props.get("TimeToLiveSpecification")
    assert ttl == ({"AttributeName": spec.ttl_attribute, "Enabled": True} if spec.ttl_attribute else None)


# --- storage ------------------------------------------------------------------------------------
def _bucket(template: dict[str, Any], purpose: str) -> tuple[str, dict[str, Any]]:
    for lid, resource in template["Resources"].items():
        if resource["Type"] == "AWS::S3::Bucket" and f"-{purpose}-" in json.dumps(
            resource["Properties"]["BucketName"]
        ):
            return lid, resource
    raise AssertionError(f"no {purpose} bucket")


@pytest.mark.parametrize("purpose", ["results", "uploads", "access-logs"])
def test_buckets_are_private_encrypted_tls_only_expiring_and_retained(
    template: dict[str, Any], purpose: str
) -> None:
    bucket_id, bucket = _bucket(template, purpose)
    props = bucket["Properties"]
    # Named by blueprint.bucket_name with the deployment's account and region.
    assert props["BucketName"] == {
        "Fn::Join": ["", [f"{bp.PREFIX}-{purpose}-", {"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}]]
    }
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert bucket["DeletionPolicy"] == "Retain"
    expiry = {
        "results": DEFAULTS.result_retention_days,
        "uploads": DEFAULTS.upload_retention_days,
        "access-logs": DEFAULTS.log_retention_days,
    }[purpose]
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == expiry

    policy = only(template, "AWS::S3::BucketPolicy", Bucket={"Ref": bucket_id})
    denials = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any(s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in denials)


def test_results_and_uploads_log_access_and_uploads_are_versioned(template: dict[str, Any]) -> None:
    logs_id, _ = _bucket(template, "access-logs")
    for purpose in ("results", "uploads"):
        props = _bucket(template, purpose)[1]["Properties"]
        assert props["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": logs_id},
            "LogFilePrefix": f"{purpose}/",
        }
    assert _bucket(template, "uploads")[1]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "VersioningConfiguration" not in _bucket(template, "results")[1]["Properties"]


def test_uploads_under_the_edits_prefix_invoke_s3_edit(template: dict[str, Any]) -> None:
    [notifications] = resources(template, "Custom::S3BucketNotifications").values()
    assert notifications["BucketName"] == {"Ref": _bucket(template, "uploads")[0]}
    [config] = notifications["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": bp.EDITS_PREFIX}]
    s3_edit = logical_id(template, "AWS::Lambda::Function", FunctionName=bp.S3_EDIT_FUNCTION.name)
    assert config["LambdaFunctionArn"] == {"Fn::GetAtt": [s3_edit, "Arn"]}


# --- functions ----------------------------------------------------------------------------------
def test_the_runtime_is_the_newest_python_cdk_knows() -> None:
    from aws_cdk import aws_lambda

    versions = [
        tuple(map(int, m.group(1, 2)))
        for name in dir(aws_lambda.Runtime)
        if (m := re.fullmatch(r"PYTHON_(\d+)_(\d+)", name))
    ]
    assert "python{}.{}".format(*max(versions)) == bp.LAMBDA_RUNTIME


@pytest.mark.parametrize("spec", bp.ALL_FUNCTIONS, ids=lambda spec: spec.name)
def test_every_function_is_built_by_the_factory(template: dict[str, Any], spec: bp.FunctionSpec) -> None:
    function = only(template, "AWS::Lambda::Function", FunctionName=spec.name)
    assert function["Runtime"] == bp.LAMBDA_RUNTIME
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == spec.handler
    assert function["Timeout"] == spec.timeout_seconds
    assert function["MemorySize"] == spec.memory_mb
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    [layer] = function["Layers"]
    assert layer == {"Ref": logical_id(template, "AWS::Lambda::LayerVersion")}
    log_group = template["Resources"][function["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
    assert log_group == {
        "LogGroupName": f"/aws/lambda/{spec.name}",
        "RetentionInDays": DEFAULTS.log_retention_days,
        "Tags": [{"Key": "project", "Value": "imagegen"}],
    }


def test_dependency_layer_is_built_for_the_runtime_and_arm(template: dict[str, Any]) -> None:
    [layer] = resources(template, "AWS::Lambda::LayerVersion").values()
    assert layer["CompatibleRuntimes"] == [bp.LAMBDA_RUNTIME]
    assert layer["CompatibleArchitectures"] == ["arm64"]


def test_function_environment_is_settings_plus_powertools_and_holds_no_secret(
    template: dict[str, Any],
) -> None:
    env = only(template, "AWS::Lambda::Function", FunctionName=bp.API_FUNCTION.name)["Environment"][
        "Variables"
    ]
    assert env["POWERTOOLS_SERVICE_NAME"] == env["POWERTOOLS_METRICS_NAMESPACE"] == "imagegen"
    secret_id = logical_id(template, "AWS::SecretsManager::Secret", Name=bp.PROVIDER_SECRET)
    assert env["IMAGEGEN_PROVIDER_SECRET_ID"] == {"Ref": secret_id}  # the ARN, read at run time
    # What the functions will parse at cold start: tokens stand in for names resolved at deploy.
    plain = {name: value if isinstance(value, str) else "resolved-at-deploy" for name, value in env.items()}
    settings = Settings.from_environ(plain)
    assert settings.job_deadline_seconds == DEFAULTS.runtime.job_deadline_seconds
    assert settings.record_retention_days == DEFAULTS.result_retention_days
    assert settings.allow_loopback_urls is False
    assert not [name for name in env if re.search(r"(?<!SECRET_)(KEY|PASSWORD|TOKEN)$", name)]
    # The secret is created without a value in the template: Secrets Manager generates a placeholder.
    secret = only(template, "AWS::SecretsManager::Secret", Name=bp.PROVIDER_SECRET)
    assert "SecretString" not in secret and "GenerateSecretString" in secret


def test_every_function_can_write_only_its_own_logs(template: dict[str, Any]) -> None:
    for spec in bp.ALL_FUNCTIONS:
        log_group = only(template, "AWS::Lambda::Function", FunctionName=spec.name)["LoggingConfig"][
            "LogGroup"
        ]
        [logs] = [s for s in role_statements(template, spec.name) if "logs:PutLogEvents" in actions_of(s)]
        assert logs["Resource"] == {"Fn::GetAtt": [log_group["Ref"], "Arn"]}
    assert not any(
        "ManagedPolicyArns" in role
        for lid, role in resources(template, "AWS::IAM::Role").items()
        if lid.startswith("Functions")
    )


# --- least privilege ----------------------------------------------------------------------------
def _allowed(template: dict[str, Any], function: bp.FunctionSpec) -> dict[str, list[Any]]:
    """action -> the resources it is allowed on, for one function's role."""
    allowed: dict[str, list[Any]] = {}
    for statement in role_statements(template, function.name):
        assert statement["Effect"] == "Allow"
        targets = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for action in actions_of(statement):
            allowed.setdefault(action, []).extend(targets)
    return allowed


def _targets(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _object_arn(template: dict[str, Any], purpose: str, keys: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [{"Fn::GetAtt": [_bucket(template, purpose)[0], "Arn"]}, f"/{keys}"]]}


# Actions IAM authorizes on no particular resource: "*" is the only form AWS accepts.
ACTIONS_WITHOUT_RESOURCES = {"dynamodb:ListStreams"}  # the stream event source's (CDK adds it)


def test_only_xray_and_listing_streams_are_allowed_on_every_resource(template: dict[str, Any]) -> None:
    for spec in bp.ALL_FUNCTIONS:
        for action, targets in _allowed(template, spec).items():
            assert "*" not in action, (spec.name, action)
            anywhere = action.startswith("xray:") or action in ACTIONS_WITHOUT_RESOURCES
            assert "*" not in targets or anywhere, (spec.name, action)
    assert "dynamodb:ListStreams" in _allowed(template, bp.JOB_EVENTS_FUNCTION)


def test_api_submits_and_reads_jobs_but_cannot_publish_or_write_objects(template: dict[str, Any]) -> None:
    allowed = _allowed(template, bp.API_FUNCTION)
    jobs = {"Fn::GetAtt": [logical_id(template, "AWS::DynamoDB::Table", TableName=bp.JOBS_TABLE.name), "Arn"]}
    keys = {
        "Fn::GetAtt": [logical_id(template, "AWS::DynamoDB::Table", TableName=bp.API_KEYS_TABLE.name), "Arn"]
    }
    assert sorted(map(json.dumps, allowed["dynamodb:GetItem"])) == sorted(map(json.dumps, [jobs, keys]))
    # The keys table only for the caller's webhook secret and account items: never a key.
    assert sorted(map(json.dumps, allowed["dynamodb:PutItem"])) == sorted(map(json.dumps, [jobs, keys, keys]))
    conditions = [
        s["Condition"]
        for s in role_statements(template, bp.API_FUNCTION.name)
        if keys in _targets(s) and "dynamodb:PutItem" in actions_of(s)
    ]
    assert conditions == [
        {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{WebhookSecretStore.ITEM_PREFIX}*"]}},
        {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["account#*", "ledger#*", "idempotency#*"]}},
    ]
    assert allowed["states:StartExecution"] == [
        {"Ref": logical_id(template, "AWS::StepFunctions::StateMachine")}
    ]
    assert allowed["s3:GetObject"] == [_object_arn(template, "results", "images/*")]
    assert not [action for action in allowed if action.startswith(("sns:", "kms:", "secretsmanager:"))]
    assert not {"s3:PutObject", "dynamodb:DeleteItem", "dynamodb:Scan"} & set(allowed)


def test_poll_task_reads_the_secret_and_touches_no_bucket_or_topic(template: dict[str, Any]) -> None:
    allowed = _allowed(template, bp.POLL_TASK_FUNCTION)
    secret = {"Ref": logical_id(template, "AWS::SecretsManager::Secret", Name=bp.PROVIDER_SECRET)}
    assert allowed["secretsmanager:GetSecretValue"] == [secret]
    assert not [action for action in allowed if action.startswith(("s3:", "sns:", "states:"))]


def test_images_are_written_only_under_their_key_prefix(template: dict[str, Any]) -> None:
    assert fnmatch(image_key("job-1", 0, "png"), "images/*")
    for spec in (bp.CREATE_TASK_FUNCTION, bp.FINALIZE_FUNCTION):
        assert _allowed(template, spec)["s3:PutObject"] == [_object_arn(template, "results", "images/*")]


def test_only_the_announcers_publish_and_only_to_the_events_topic_and_bus(template: dict[str, Any]) -> None:
    """No step publishes after its write (an event lost between the two): job changes are
    announced from the table's stream, and only a refused event request, which has no job record
    to stream, is announced by the intake function."""
    topic = {"Ref": logical_id(template, "AWS::SNS::Topic", TopicName=bp.EVENTS_TOPIC)}
    bus = {"Fn::GetAtt": [logical_id(template, "AWS::Events::EventBus", Name=bp.EVENT_BUS), "Arn"]}
    key = {"Fn::GetAtt": [logical_id(template, "AWS::KMS::Key"), "Arn"]}
    announcers = (bp.JOB_EVENTS_FUNCTION, bp.INTAKE_FUNCTION)
    for spec in announcers:
        allowed = _allowed(template, spec)
        assert allowed["sns:Publish"] == [topic]
        assert allowed["events:PutEvents"] == [bus]
        assert allowed["kms:GenerateDataKey"] == allowed["kms:Decrypt"] == [key]
    for spec in bp.ALL_FUNCTIONS:
        if spec not in announcers:
            assert not {"sns:Publish", "events:PutEvents"} & set(_allowed(template, spec)), spec.name


def test_job_changes_are_announced_from_the_tables_stream_retried_in_order(template: dict[str, Any]) -> None:
    table = only(template, "AWS::DynamoDB::Table", TableName=bp.JOBS_TABLE.name)
    assert table["StreamSpecification"] == {"StreamViewType": bp.JOB_STREAM_VIEW}
    [stream] = [
        m
        for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if "StreamArn" in json.dumps(m["EventSourceArn"])
    ]
    announcer = logical_id(template, "AWS::Lambda::Function", FunctionName=bp.JOB_EVENTS_FUNCTION.name)
    assert stream["FunctionName"] == {"Ref": announcer}
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["StartingPosition"] == "TRIM_HORIZON"
    assert stream["MaximumRecordAgeInSeconds"] == 24 * 3600
    dlq = logical_id(template, "AWS::SQS::Queue", QueueName=bp.DEFAULT.job_events_dlq)
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [dlq, "Arn"]}


def test_event_requests_and_webhooks_are_queued_with_dead_letters(template: dict[str, Any]) -> None:
    [rule] = [r for r in resources(template, "AWS::Events::Rule").values() if r.get("Name") == bp.INTAKE_RULE]
    bus = logical_id(template, "AWS::Events::EventBus", Name=bp.EVENT_BUS)
    assert rule["EventBusName"] == {"Ref": bus}
    assert rule["EventPattern"] == bp.INTAKE_EVENT_PATTERN
    intake = logical_id(template, "AWS::SQS::Queue", QueueName=bp.INTAKE_QUEUE)
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [intake, "Arn"]} and "DeadLetterConfig" in target
    for queue_name, dlq_name, function in (
        (bp.INTAKE_QUEUE, bp.INTAKE_DLQ, bp.INTAKE_FUNCTION),
        (bp.WEBHOOK_QUEUE, bp.WEBHOOK_DLQ, bp.WEBHOOKS_FUNCTION),
    ):
        queue = only(template, "AWS::SQS::Queue", QueueName=queue_name)
        dlq = logical_id(template, "AWS::SQS::Queue", QueueName=dlq_name)
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
            "maxReceiveCount": bp.MAX_RECEIVES,
        }
        assert queue["VisibilityTimeout"] == bp.QUEUE_VISIBILITY_SECONDS
        queue_id = logical_id(template, "AWS::SQS::Queue", QueueName=queue_name)
        mapping = only(
            template, "AWS::Lambda::EventSourceMapping", EventSourceArn={"Fn::GetAtt": [queue_id, "Arn"]}
        )
        consumer = logical_id(template, "AWS::Lambda::Function", FunctionName=function.name)
        assert mapping["FunctionName"] == {"Ref": consumer}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    webhooks = _allowed(template, bp.WEBHOOKS_FUNCTION)
    assert webhooks["sqs:SendMessage"] == [
        {"Fn::GetAtt": [logical_id(template, "AWS::SQS::Queue", QueueName=bp.WEBHOOK_QUEUE), "Arn"]}
    ]


def test_s3_edit_functions_write_only_their_answers_next_to_uploads(template: dict[str, Any]) -> None:
    edit = _allowed(template, bp.S3_EDIT_FUNCTION)
    assert edit["s3:GetObjectVersion"] == [_object_arn(template, "uploads", f"{bp.EDITS_PREFIX}*")]
    assert edit["s3:PutObject"] == [_object_arn(template, "uploads", f"{bp.EDITS_PREFIX}*.error.json")]
    # ListBucket on the uploads bucket only, so a missing manifest input is a 404, not a 403.
    assert edit["s3:ListBucket"] == [{"Fn::GetAtt": [_bucket(template, "uploads")[0], "Arn"]}]
    keys_table = logical_id(template, "AWS::DynamoDB::Table", TableName=bp.API_KEYS_TABLE.name)
    # Jobs from uploads belong to the configured owner: of the keys table, only the account
    # items it debits (and refunds), never a key.
    [accounts] = [
        s for s in role_statements(template, bp.S3_EDIT_FUNCTION.name) if keys_table in json.dumps(s)
    ]
    assert sorted(actions_of(accounts)) == ["dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert accounts["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["account#*", "ledger#*"]}
    }
    result = _allowed(template, bp.S3_RESULT_FUNCTION)
    assert result["s3:PutObject"] == [_object_arn(template, "uploads", f"{bp.EDITS_PREFIX}*.result.json")]
    assert "dynamodb:PutItem" not in result


def test_state_machine_may_invoke_exactly_the_four_step_functions(template: dict[str, Any]) -> None:
    machine = only(template, "AWS::StepFunctions::StateMachine", StateMachineName=bp.STATE_MACHINE)
    role_id = machine["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Roles"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    invoke = [s for s in statements if "lambda:InvokeFunction" in actions_of(s)]
    assert len(invoke) == 1
    steps = [
        {"Fn::GetAtt": [logical_id(template, "AWS::Lambda::Function", FunctionName=spec.name), "Arn"]}
        for spec in bp.WORKFLOW_FUNCTIONS.values()
    ]
    assert sorted(map(json.dumps, invoke[0]["Resource"])) == sorted(map(json.dumps, steps))


# --- API ----------------------------------------------------------------------------------------
def _path_of(template: dict[str, Any], resource_id: str) -> str:
    resource = template["Resources"][resource_id]["Properties"]
    parent = resource["ParentId"]
    prefix = "" if "Fn::GetAtt" in parent else _path_of(template, parent["Ref"])
    return f"{prefix}/{resource['PathPart']}"


def test_api_has_exactly_its_routes_proxied_to_the_api_function(template: dict[str, Any]) -> None:
    api_function = logical_id(template, "AWS::Lambda::Function", FunctionName=bp.API_FUNCTION.name)
    routes = set()
    for method in resources(template, "AWS::ApiGateway::Method").values():
        routes.add((method["HttpMethod"], _path_of(template, method["ResourceId"]["Ref"])))
        assert method["AuthorizationType"] == "NONE"  # X-API-Key is checked by the function
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert api_function in json.dumps(method["Integration"]["Uri"])
    assert (
        routes
        == set(bp.API_ROUTES)
        == {
            ("POST", "/v2/images/generate"),
            ("GET", "/v2/jobs"),
            ("GET", "/v2/jobs/{id}"),
            ("POST", "/v2/jobs/{id}/cancel"),
            ("GET", "/v2/account"),
            ("GET", "/v2/webhooks/secret"),
            ("POST", "/v2/webhooks/secret/rotate"),
        }
    )


def test_stage_logs_json_traces_and_throttles(template: dict[str, Any]) -> None:
    [stage] = resources(template, "AWS::ApiGateway::Stage").values()
    assert stage["StageName"] == bp.API_STAGE
    assert stage["TracingEnabled"] is True
    access_log = json.loads(stage["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "ip", "resource"} <= set(access_log)
    [settings] = stage["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert settings["ThrottlingRateLimit"] == DEFAULTS.api_throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == DEFAULTS.api_throttle_burst_limit


EXPECTED_GATEWAY_RESPONSES = {
    "UNAUTHORIZED": ("401", "unauthorized"),
    "ACCESS_DENIED": ("403", "forbidden"),
    "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found"),
    "THROTTLED": ("429", "rate_limited"),
    "BAD_REQUEST_BODY": ("400", "invalid_request"),
    "REQUEST_TOO_LARGE": ("413", "payload_too_large"),
    "DEFAULT_4XX": (None, "invalid_request"),
    "DEFAULT_5XX": (None, "internal_error"),
}


def test_gateway_errors_answer_in_our_error_shape(template: dict[str, Any]) -> None:
    responses = {
        r["ResponseType"]: r for r in resources(template, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == set(EXPECTED_GATEWAY_RESPONSES)
    for response_type, (status, code) in EXPECTED_GATEWAY_RESPONSES.items():
        response = responses[response_type]
        assert response.get("StatusCode") == status, response_type
        # $context.error.messageString is API Gateway's message, already a quoted JSON string.
        body = response["ResponseTemplates"]["application/json"].replace(
            "$context.error.messageString", '"what API Gateway says"'
        )
        error = json.loads(body)["error"]
        assert error["code"] == code and error["message"] and error["details"] == []


# --- workflow -----------------------------------------------------------------------------------
def test_state_machine_logs_everything_traces_and_times_out(template: dict[str, Any]) -> None:
    machine = only(template, "AWS::StepFunctions::StateMachine", StateMachineName=bp.STATE_MACHINE)
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert machine["TracingConfiguration"] == {"Enabled": True}
    definition = json.loads(machine["DefinitionString"])
    assert definition["TimeoutSeconds"] == DEFAULTS.runtime.job_deadline_seconds + EXECUTION_MARGIN_SECONDS
    assert all(
        "TimeoutSeconds" in state for state in definition["States"].values() if state["Type"] == "Task"
    )


def test_dead_executions_fail_their_job_through_the_fail_function(template: dict[str, Any]) -> None:
    [rule] = [
        r
        for r in resources(template, "AWS::Events::Rule").values()
        if r.get("Name") == bp.DEFAULT.dead_executions_rule.name
    ]
    machine = logical_id(template, "AWS::StepFunctions::StateMachine")
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [{"Ref": machine}], "status": ["FAILED", "TIMED_OUT", "ABORTED"]},
    }
    [target] = rule["Targets"]
    fail_job = logical_id(template, "AWS::Lambda::Function", FunctionName=bp.FAIL_FUNCTION.name)
    assert target["Arn"] == {"Fn::GetAtt": [fail_job, "Arn"]}
    assert "DeadLetterConfig" in target
    # What EventBridge sends for an execution named job-1 that timed out must be a StepState:
    # a placeholder in value position becomes the JSON value, inside a string its raw text.
    transformer = target["InputTransformer"]
    event = {"$.detail.name": "job-1", "$.detail.status": "TIMED_OUT"}
    values = {name: event[path] for name, path in transformer["InputPathsMap"].items()}
    sent = re.sub(r":<([\w-]+)>", lambda m: ":" + json.dumps(values[m[1]]), transformer["InputTemplate"])
    sent = re.sub(r"<([\w-]+)>", lambda m: values[m[1]], sent)
    state = StepState.model_validate_json(sent)
    assert (state.jobId, state.reason) == ("job-1", "the workflow execution ended TIMED_OUT")


# --- notifications, queues, monitoring ----------------------------------------------------------
def test_topics_are_encrypted_with_a_rotated_key_and_tls_only(template: dict[str, Any]) -> None:
    key_id = logical_id(template, "AWS::KMS::Key")
    assert template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    for name in (bp.EVENTS_TOPIC, bp.ALARMS_TOPIC):
        topic_id = logical_id(template, "AWS::SNS::Topic", TopicName=name)
        assert template["Resources"][topic_id]["Properties"]["KmsMasterKeyId"] == {
            "Fn::GetAtt": [key_id, "Arn"]
        }
        policy = only(template, "AWS::SNS::TopicPolicy", Topics=[{"Ref": topic_id}])
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["PolicyDocument"]["Statement"]
        )


def test_edit_results_subscribe_to_upload_jobs_only(template: dict[str, Any]) -> None:
    [subscription] = resources(template, "AWS::SNS::Subscription").values()
    writer = logical_id(template, "AWS::Lambda::Function", FunctionName=bp.S3_RESULT_FUNCTION.name)
    assert subscription["Endpoint"] == {"Fn::GetAtt": [writer, "Arn"]}
    assert subscription["FilterPolicy"] == {
        "source": ["s3"],
        "eventType": ["job.completed", "job.failed", "job.canceled"],
    }


def test_dead_letter_queues_are_encrypted_tls_only_and_alarmed(template: dict[str, Any]) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    # backstop rule target, fail-job, s3-edit, s3-edit-result, the job-events stream, and the
    # intake and webhook queues with their dead-letter queues
    assert len(queues) == 9
    assert set(bp.DEFAULT.dead_letter_queues) < {q["QueueName"] for q in queues.values()}
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    for queue_id, queue in queues.items():
        assert queue["SqsManagedSseEnabled"] is True
        policy = only(template, "AWS::SQS::QueuePolicy", Queues=[{"Ref": queue_id}])
        assert any(s["Effect"] == "Deny" for s in policy["PolicyDocument"]["Statement"])
        if queue["QueueName"] not in bp.DEFAULT.dead_letter_queues:
            continue  # a work queue: its messages are expected
        watching = [
            a
            for a in alarms
            if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
            and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
        ]
        assert len(watching) == 1 and watching[0]["Threshold"] == 1
    for spec in (bp.FAIL_FUNCTION, bp.S3_EDIT_FUNCTION, bp.S3_RESULT_FUNCTION):  # async invocations
        assert "DeadLetterConfig" in only(template, "AWS::Lambda::Function", FunctionName=spec.name)


def test_alarms_cover_executions_api_and_every_function_and_notify_the_alarms_topic(
    template: dict[str, Any],
) -> None:
    alarms = list(resources(template, "AWS::CloudWatch::Alarm").values())
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms}
    assert {
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("AWS/ApiGateway", "5XXError"),
    } <= metrics
    for spec in bp.ALL_FUNCTIONS:
        function_id = logical_id(template, "AWS::Lambda::Function", FunctionName=spec.name)
        watched = {
            a["MetricName"]
            for a in alarms
            if a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
        }
        assert watched == {"Errors", "Throttles"}, spec.name
    alarms_topic = {"Ref": logical_id(template, "AWS::SNS::Topic", TopicName=bp.ALARMS_TOPIC)}
    assert all(a["AlarmActions"] == [alarms_topic] for a in alarms)


def test_dashboard_shows_the_job_metrics_our_functions_emit(template: dict[str, Any]) -> None:
    [dashboard] = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["DashboardBody"])
    for metric in ("JobsSubmitted", "JobsCompleted", "JobsFailed", "JobLatency"):
        assert f'\\"{bp.METRICS_NAMESPACE}\\",\\"{metric}\\",\\"service\\",\\"{bp.SERVICE_NAME}\\"' in body, (
            metric
        )
    assert '\\"stat\\":\\"p50\\"' in body and '\\"stat\\":\\"p90\\"' in body


# --- outputs and portability --------------------------------------------------------------------
def test_outputs_are_the_blueprint_keys_and_leak_no_key(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert tuple(outputs) == bp.CLOUD_OUTPUT_KEYS
    assert set(bp.OUTPUT_KEYS) <= set(outputs)  # the keys local-stack.json has too
    assert "ApiKey" not in outputs  # a key locally; in the cloud no key is ever an output
    assert (
        outputs["CreateApiKeyCommand"]["Value"] == "python -m imagegen_infra.admin create-key --owner <you>"
    )
    assert all(output.get("Description") for output in outputs.values())
    assert outputs["AwsEndpointUrl"]["Value"] == "default"
    assert outputs["ApiUrl"]["Value"]["Fn::Join"][1][-1] == f"/{bp.API_STAGE}"


def test_template_is_environment_agnostic(template: dict[str, Any]) -> None:
    text = json.dumps(template)
    assert not re.search(r"(?<![\w.])\d{12}(?![\w.])", text), "a hard-coded account id"
    assert not re.search(
        r"\b(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central|northeast|southeast)-\d\b", text
    )


# --- the sweeper: jobs left open past their deadline ------------------------------------------
def test_the_sweeper_runs_on_a_schedule(template: dict[str, Any]) -> None:
    [rule] = [r for r in resources(template, "AWS::Events::Rule").values() if "ScheduleExpression" in r]
    sweeper = logical_id(template, "AWS::Lambda::Function", FunctionName=bp.SWEEPER_FUNCTION.name)
    assert rule["ScheduleExpression"] == f"rate({bp.SWEEP_EVERY_MINUTES} minutes)"
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [sweeper, "Arn"]}]


def test_open_jobs_are_indexed_by_keys_only_and_owners_jobs_in_full(template: dict[str, Any]) -> None:
    table = only(template, "AWS::DynamoDB::Table", TableName=bp.JOBS_TABLE.name)
    [open_jobs, owned] = table["GlobalSecondaryIndexes"]
    assert open_jobs["IndexName"] == OPEN_JOBS_INDEX
    assert open_jobs["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert owned["IndexName"] == OWNER_INDEX
    assert owned["Projection"] == {"ProjectionType": "ALL"}  # a page of GET /v2/jobs is one Query


def test_only_the_sweeper_and_the_api_may_read_an_index_and_only_theirs(template: dict[str, Any]) -> None:
    table = logical_id(template, "AWS::DynamoDB::Table", TableName=bp.JOBS_TABLE.name)
    index_arn = {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, f"/index/{OPEN_JOBS_INDEX}"]]}
    owner_arn = {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, f"/index/{OWNER_INDEX}"]]}
    assert index_arn in _allowed(template, bp.SWEEPER_FUNCTION)["dynamodb:Query"]
    assert OWNER_INDEX not in json.dumps(_allowed(template, bp.SWEEPER_FUNCTION))
    assert owner_arn in _allowed(template, bp.API_FUNCTION)["dynamodb:Query"]
    assert OPEN_JOBS_INDEX not in json.dumps(_allowed(template, bp.API_FUNCTION))
    for spec in bp.ALL_FUNCTIONS:
        if spec not in (bp.SWEEPER_FUNCTION, bp.API_FUNCTION):
            assert "/index/" not in json.dumps(_allowed(template, spec)), spec.name
