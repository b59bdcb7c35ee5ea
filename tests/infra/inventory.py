"""The resources of a deployment, in one shape whatever describes them: the synthesized
CloudFormation template, or what the local stack created in moto (read back through boto3).
Plain JSON data: dicts, lists, strings, numbers.

kind -> name -> what matters of it. Kinds are the types the local stack emulates in moto;
names are physical names; references (an ARN, a Ref, a GetAtt) become the name of what they
point at, so both sides compare as plain data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from imagegen_infra import blueprint as bp

Inventory = dict[str, dict[str, dict[str, Any]]]
KINDS = (
    "table",
    "bucket",
    "topic",
    "subscription",
    "queue",
    "bus",
    "rule",
    "function",
    "state_machine",
    "secret",
)
TYPES = {
    "AWS::DynamoDB::Table": "table",
    "AWS::S3::Bucket": "bucket",
    "AWS::SNS::Topic": "topic",
    "AWS::SNS::Subscription": "subscription",
    "AWS::SQS::Queue": "queue",
    "AWS::Events::EventBus": "bus",
    "AWS::Events::Rule": "rule",
    "AWS::Lambda::Function": "function",
    "AWS::StepFunctions::StateMachine": "state_machine",
    "AWS::SecretsManager::Secret": "secret",
}
NAME_PROPERTY = {
    "table": "TableName",
    "bucket": "BucketName",
    "topic": "TopicName",
    "queue": "QueueName",
    "bus": "Name",
    "rule": "Name",
    "function": "FunctionName",
    "state_machine": "StateMachineName",
    "secret": "Name",
}
_ARN_NAME = re.compile(r"^arn:[\w-]+:[\w-]+:[\w-]*:\d*:(?:[\w-]+[:/])?(?P<name>[^:/]+)(?::[\w-]+)?$")


def _name_of_arn(arn: str) -> str:
    """The resource name in an ARN (a function, topic, queue, state machine, bucket)."""
    if arn.startswith("arn:aws:s3:::"):
        return arn.removeprefix("arn:aws:s3:::")
    match = _ARN_NAME.match(arn)
    return match.group("name") if match else arn


def _subscription_key(topic: str, protocol: str, endpoint: str) -> str:
    return f"{topic} -> {protocol}:{endpoint}"


def _definition(text: str, functions: dict[str, str]) -> Any:
    """A definition with every Lambda ARN (or ${Substitution}) written as the function's name."""
    for placeholder, name in functions.items():
        text = text.replace("${" + placeholder + "}", name)
    text = re.sub(r"arn:aws:lambda:[\w-]+:\d+:function:([\w-]+)", r"\1", text)
    return json.loads(text)


def _table(
    key_schema: list[Any],
    attributes: list[Any],
    indexes: list[Any],
    ttl: str | None,
    billing: str,
    encrypted: bool,
    stream: str | None,
) -> dict[str, Any]:
    return {
        "stream": stream,
        "key": [[k["AttributeName"], k["KeyType"]] for k in key_schema],
        "attributes": sorted([a["AttributeName"], a["AttributeType"]] for a in attributes),
        "indexes": {
            i["IndexName"]: {
                "key": [[k["AttributeName"], k["KeyType"]] for k in i["KeySchema"]],
                "projection": i["Projection"]["ProjectionType"],
            }
            for i in indexes
        },
        "ttl": ttl,
        "billing": billing,
        "encrypted": encrypted,
    }


# --- the synthesized template -----------------------------------------------------------------
def from_template(
    template: dict[str, Any], account: str = bp.LOCAL_ACCOUNT, region: str = bp.LOCAL_REGION
) -> Inventory:
    resources = template["Resources"]
    names: dict[str, str] = {}  # logical id -> physical name, for references

    def text(value: Any) -> str:
        if isinstance(value, str):
            return value
        [(function, argument)] = value.items()
        if function == "Ref":
            pseudo = {"AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": "aws"}
            return pseudo.get(argument) or names[argument]
        if function == "Fn::GetAtt":
            return names[argument[0]]
        if function == "Fn::Join":
            return argument[0].join(text(part) for part in argument[1])
        raise ValueError(f"cannot read {value}")

    for logical_id, resource in resources.items():
        kind = TYPES.get(resource["Type"])
        if kind in NAME_PROPERTY and NAME_PROPERTY[kind] in resource.get("Properties", {}):
            names[logical_id] = text(resource["Properties"][NAME_PROPERTY[kind]])

    inventory: Inventory = {kind: {} for kind in KINDS}
    notifications: dict[str, list[dict[str, Any]]] = {}
    for resource in resources.values():
        if resource["Type"] == "Custom::S3BucketNotifications":
            props = resource["Properties"]
            notifications[text(props["BucketName"])] = [
                {
                    "function": text(config["LambdaFunctionArn"]),
                    "events": sorted(config["Events"]),
                    "filter": sorted(
                        [rule["Name"].lower(), rule["Value"]]
                        for rule in config["Filter"]["Key"]["FilterRules"]
                    ),
                }
                for config in props["NotificationConfiguration"].get("LambdaFunctionConfigurations", [])
            ]
    for logical_id, resource in resources.items():
        kind, props = TYPES.get(resource["Type"]), resource.get("Properties", {})
        if kind is None:
            continue
        if kind == "subscription":
            key = _subscription_key(text(props["TopicArn"]), props["Protocol"], text(props["Endpoint"]))
            inventory[kind][key] = {"filter_policy": props.get("FilterPolicy")}
            continue
        if logical_id not in names:  # CDK's own deploy-time machinery (the notifications handler)
            continue
        name = names[logical_id]
        if kind == "table":
            ttl = props.get("TimeToLiveSpecification", {})
            inventory[kind][name] = _table(
                props["KeySchema"],
                props["AttributeDefinitions"],
                props.get("GlobalSecondaryIndexes", []),
                ttl.get("AttributeName") if ttl.get("Enabled") else None,
                props.get("BillingMode", "PROVISIONED"),
                bool(props.get("SSESpecification", {}).get("SSEEnabled")),
                props.get("StreamSpecification", {}).get("StreamViewType"),
            )
        elif kind == "bucket":
            blocks = props.get("PublicAccessBlockConfiguration", {})
            inventory[kind][name] = {
                "versioned": props.get("VersioningConfiguration", {}).get("Status") == "Enabled",
                "public_access_blocked": len(blocks) == 4 and all(blocks.values()),
                "notifications": notifications.get(name, []),
            }
        elif kind in ("topic", "secret", "bus"):
            inventory[kind][name] = {}
        elif kind == "queue":
            redrive = props.get("RedrivePolicy")
            inventory[kind][name] = _queue(
                int(props.get("MessageRetentionPeriod", 345600)),
                int(props.get("VisibilityTimeout", 30)),
                text(redrive["deadLetterTargetArn"]) if redrive else None,
                int(redrive["maxReceiveCount"]) if redrive else None,
            )
        elif kind == "rule":
            pattern = props.get("EventPattern")
            inventory[kind][name] = {
                "bus": text(props["EventBusName"]) if "EventBusName" in props else "default",
                "schedule": props.get("ScheduleExpression"),
                "pattern": _resolve(pattern, text) if pattern else None,
                "enabled": props.get("State", "ENABLED") == "ENABLED",
                "targets": sorted(
                    (_target(target, text) for target in props.get("Targets", [])), key=json.dumps
                ),
            }
        elif kind == "function":
            inventory[kind][name] = {
                "handler": props["Handler"],
                "runtime": props["Runtime"],
                "timeout": props.get("Timeout", 3),
                "memory": props.get("MemorySize", 128),
                "architectures": props.get("Architectures", ["x86_64"]),
                "dead_letter_queue": text(props["DeadLetterConfig"]["TargetArn"])
                if "DeadLetterConfig" in props
                else None,
            }
        elif kind == "state_machine":
            functions = {key: text(value) for key, value in props.get("DefinitionSubstitutions", {}).items()}
            inventory[kind][name] = {
                "type": props.get("StateMachineType", "STANDARD"),
                "definition": _definition(props["DefinitionString"], functions),
            }
    return inventory


def _resolve(value: Any, text: Any) -> Any:
    """An event pattern with its references (the state machine's ARN) as names."""
    if isinstance(value, dict) and set(value) <= {"Ref", "Fn::GetAtt"} and value:
        return text(value)
    if isinstance(value, dict):
        return {key: _resolve(item, text) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, text) for item in value]
    return value


def _queue(
    retention: int, visibility: int, dead_letters: str | None, max_receives: int | None
) -> dict[str, Any]:
    return {
        "retention_seconds": retention,
        "visibility_seconds": visibility,
        "dead_letter_queue": dead_letters,
        "max_receives": max_receives,
    }


def _target(target: dict[str, Any], name_of: Any) -> dict[str, Any]:
    """A rule's target, from the template (references) or from moto (ARNs): `name_of` reads either."""
    return {
        "target": name_of(target["Arn"]),
        "input": target.get("Input"),
        "input_transformer": target.get("InputTransformer"),
        "dead_letter_queue": name_of(target["DeadLetterConfig"]["Arn"])
        if "DeadLetterConfig" in target
        else None,
        "retry_policy": target.get("RetryPolicy"),
    }


# --- what the local stack created in moto -------------------------------------------------------
def from_moto(client: Any) -> Inventory:
    """`client(service)` is a boto3 client of the local stack's moto server."""
    inventory: Inventory = {kind: {} for kind in KINDS}
    dynamodb = client("dynamodb")
    for name in dynamodb.list_tables()["TableNames"]:
        table = dynamodb.describe_table(TableName=name)["Table"]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        inventory["table"][name] = _table(
            table["KeySchema"],
            table["AttributeDefinitions"],
            table.get("GlobalSecondaryIndexes", []),
            ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") == "ENABLED" else None,
            table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
            table.get("SSEDescription", {}).get("Status") == "ENABLED",
            table.get("StreamSpecification", {}).get("StreamViewType"),
        )
    s3 = client("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        try:
            blocks = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        except s3.exceptions.ClientError:
            blocks = {}
        configs = s3.get_bucket_notification_configuration(Bucket=name).get(
            "LambdaFunctionConfigurations", []
        )
        inventory["bucket"][name] = {
            "versioned": s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled",
            "public_access_blocked": len(blocks) == 4 and all(blocks.values()),
            "notifications": [
                {
                    "function": _name_of_arn(config["LambdaFunctionArn"]),
                    "events": sorted(config["Events"]),
                    "filter": sorted(
                        [rule["Name"].lower(), rule["Value"]]
                        for rule in config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                    ),
                }
                for config in configs
            ],
        }
    sns = client("sns")
    for topic in sns.list_topics()["Topics"]:
        inventory["topic"][_name_of_arn(topic["TopicArn"])] = {}
    for subscription in sns.list_subscriptions()["Subscriptions"]:
        attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])[
            "Attributes"
        ]
        key = _subscription_key(
            _name_of_arn(subscription["TopicArn"]),
            subscription["Protocol"],
            _name_of_arn(subscription["Endpoint"]),
        )
        policy = attributes.get("FilterPolicy")
        inventory["subscription"][key] = {"filter_policy": json.loads(policy) if policy else None}
    sqs = client("sqs")
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"]) if "RedrivePolicy" in attributes else None
        inventory["queue"][url.rsplit("/", 1)[1]] = _queue(
            int(attributes["MessageRetentionPeriod"]),
            int(attributes["VisibilityTimeout"]),
            _name_of_arn(redrive["deadLetterTargetArn"]) if redrive else None,
            int(redrive["maxReceiveCount"]) if redrive else None,
        )
    events = client("events")
    for bus in events.list_event_buses()["EventBuses"]:
        if bus["Name"] != "default":  # every account has it; the template does not declare it
            inventory["bus"][bus["Name"]] = {}
        for rule in events.list_rules(EventBusName=bus["Name"])["Rules"]:
            pattern = rule.get("EventPattern")
            targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus["Name"])["Targets"]
            inventory["rule"][rule["Name"]] = {
                "bus": bus["Name"],
                "schedule": rule.get("ScheduleExpression"),
                "pattern": _resolve_arns(json.loads(pattern)) if pattern else None,
                "enabled": rule.get("State") == "ENABLED",
                "targets": sorted((_target(t, _name_of_arn) for t in targets), key=json.dumps),
            }
    lambda_ = client("lambda")
    for function in lambda_.list_functions()["Functions"]:
        dead_letters = (function.get("DeadLetterConfig") or {}).get("TargetArn")
        inventory["function"][function["FunctionName"]] = {
            "handler": function["Handler"],
            "runtime": function["Runtime"],
            "timeout": function["Timeout"],
            "memory": function["MemorySize"],
            "architectures": function.get("Architectures", ["x86_64"]),
            "dead_letter_queue": _name_of_arn(dead_letters) if dead_letters else None,
        }
    stepfunctions = client("stepfunctions")
    for machine in stepfunctions.list_state_machines()["stateMachines"]:
        described = stepfunctions.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
        inventory["state_machine"][machine["name"]] = {
            "type": described["type"],
            "definition": _definition(described["definition"], {}),
        }
    for secret in client("secretsmanager").list_secrets()["SecretList"]:
        inventory["secret"][secret["Name"]] = {}
    return inventory


def _resolve_arns(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("arn:"):
        return _name_of_arn(value)
    if isinstance(value, dict):
        return {key: _resolve_arns(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_arns(item) for item in value]
    return value


def differences(cloud: Inventory, local: Inventory) -> list[str]:
    """Every resource one side has and the other lacks, and every property that differs."""
    found = []
    for kind in KINDS:
        for name in sorted(set(cloud[kind]) | set(local[kind])):
            if name not in local[kind]:
                found.append(f"{kind} {name}: in the template, not in the local stack")
            elif name not in cloud[kind]:
                found.append(f"{kind} {name}: in the local stack, not in the template")
            else:
                for key in sorted(set(cloud[kind][name]) | set(local[kind][name])):
                    ours, theirs = cloud[kind][name].get(key), local[kind][name].get(key)
                    if ours != theirs:
                        found.append(f"{kind} {name}: {key} is {theirs!r} locally, {ours!r} in the template")
    return found
