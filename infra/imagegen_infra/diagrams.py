"""docs/architecture.md's Mermaid diagrams, generated from what is deployed, so they cannot drift:

- the architecture, read from the synthesized CloudFormation template: who triggers which
  function (API routes, S3 notifications, SNS subscriptions, EventBridge rules, the state
  machine), and what each function may touch (its role's policies), dead-letter queues, alarms;
- the job workflow, read from the state machine definition the stack deploys.

    python -m imagegen_infra.diagrams        (make diagrams)

rewrites the diagrams in docs/architecture.md; tests/infra/test_diagrams.py fails when they
are not what the code deploys.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagegen_infra import blueprint as bp

REPO_ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE_DOC = REPO_ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- generated: {name} -->", "<!-- end: {name} -->"

# What a function's role allows, said in one word per action (others, logs, X-Ray, KMS: left out).
VERBS = {
    "dynamodb:GetItem": "read",
    "dynamodb:Query": "read",
    "dynamodb:PutItem": "write",
    "dynamodb:UpdateItem": "write",
    "s3:GetObject": "read",
    "s3:GetObjectVersion": "read",
    "s3:ListBucket": "read",
    "s3:PutObject": "write",
    "sns:Publish": "publish",
    "events:PutEvents": "publish",
    "sqs:SendMessage": "send",
    "states:StartExecution": "start",
    "secretsmanager:GetSecretValue": "read key",
}
KINDS = {
    "AWS::Lambda::Function": ("function", "FunctionName"),
    "AWS::DynamoDB::Table": ("table", "TableName"),
    "AWS::S3::Bucket": ("bucket", "BucketName"),
    "AWS::SNS::Topic": ("topic", "TopicName"),
    "AWS::SQS::Queue": ("queue", "QueueName"),
    "AWS::StepFunctions::StateMachine": ("machine", "StateMachineName"),
    "AWS::SecretsManager::Secret": ("secret", "Name"),
    "AWS::Events::Rule": ("rule", "Name"),
    "AWS::Events::EventBus": ("bus", "Name"),
    "AWS::ApiGateway::RestApi": ("api", "Name"),
}
SHAPES = {
    "function": '["λ {}"]',
    "table": '[("{}")]',
    "bucket": '[("{}")]',
    "topic": '(["{}"])',
    "queue": '[/"{}"/]',
    "machine": '{{{{"{}"}}}}',
    "secret": '[["{}"]]',
    "rule": '>"{}"]',
    "bus": '(["{}"])',
    "api": '(["{}"])',
    "external": '(("{}"))',
    "alarms": '>"{}"]',
}
GROUPS = {
    "function": "Lambda functions",
    "table": "DynamoDB",
    "bucket": "S3",
    "queue": "queues and dead-letter queues (SQS)",
}


def _references(value: Any) -> Iterator[str]:
    """Every logical id a property value refers to (Ref, GetAtt), anywhere inside it."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            yield value["Ref"]
        if "Fn::GetAtt" in value:
            yield value["Fn::GetAtt"][0]
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _name(value: Any) -> str:
    """A physical name as text; a bucket's account and region as ACCOUNT and REGION."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_name(part) for part in parts)
    if value.get("Ref") == "AWS::AccountId":
        return "ACCOUNT"
    if value.get("Ref") == "AWS::Region":
        return "REGION"
    raise ValueError(f"not a name: {value}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, str]] = {}  # id -> (kind, label)
        self.edges: dict[tuple[str, str], list[str]] = {}  # (from, to) -> labels

    def node(self, node_id: str, kind: str, label: str) -> str:
        self.nodes.setdefault(node_id, (kind, label))
        return node_id

    def edge(self, source: str, target: str, label: str = "") -> None:
        labels = self.edges.setdefault((source, target), [])
        if label and label not in labels:
            labels.append(label)

    def mermaid(self) -> str:
        lines = ["flowchart LR"]
        grouped: dict[str, list[str]] = {}
        for node_id, (kind, label) in self.nodes.items():
            line = f"    {node_id}{SHAPES[kind].format(label)}"
            if kind in GROUPS:
                grouped.setdefault(kind, []).append(line)
            else:
                lines.append(line)
        for kind, group in grouped.items():
            lines += [
                f'    subgraph {kind}s["{GROUPS[kind]}"]',
                *("    " + line for line in group),
                "    end",
            ]
        for (source, target), labels in self.edges.items():
            arrow = f' -- "{", ".join(labels)}" --> ' if labels else " --> "
            lines.append(f"    {source}{arrow}{target}")
        return "\n".join(lines) + "\n"


def _node_id(name: str) -> str:
    return re.sub(r"\W+", "_", name.replace(f"{bp.PREFIX}-", "", 1)).strip("_")


def architecture(template: dict[str, Any]) -> str:
    """The deployment as a Mermaid flowchart, from its CloudFormation template."""
    resources = template["Resources"]
    graph = _Graph()
    ids: dict[str, str] = {}  # logical id -> node id
    for logical_id, resource in resources.items():
        if resource["Type"] not in KINDS:
            continue
        kind, name_property = KINDS[resource["Type"]]
        props = resource["Properties"]
        if name_property not in props:  # CDK's own deploy-time functions
            continue
        name = _name(props[name_property])
        ids[logical_id] = graph.node(f"{kind}_{_node_id(name)}", kind, name)
    client = graph.node("client", "external", "client")
    upstream = graph.node("upstream", "external", "upstream provider")

    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::ApiGateway::Method" and props["HttpMethod"] != "OPTIONS":
            [api] = [ids[ref] for ref in _references(props["RestApiId"])]
            graph.edge(client, api, "HTTPS, X-API-Key")
            for target in _references(props["Integration"].get("Uri", {})):
                if target in ids:
                    graph.edge(
                        api, ids[target], f"{props['HttpMethod']} {_path(resources, props['ResourceId'])}"
                    )
        elif kind == "Custom::S3BucketNotifications":
            [bucket] = [ids[ref] for ref in _references(props["BucketName"])]
            for config in props["NotificationConfiguration"].get("LambdaFunctionConfigurations", []):
                rules = config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                where = " ".join(rule["Value"] for rule in rules)
                for target in _references(config["LambdaFunctionArn"]):
                    graph.edge(bucket, ids[target], f"object created {where}".strip())
        elif kind == "AWS::SNS::Subscription":
            [topic] = [ids[ref] for ref in _references(props["TopicArn"])]
            policy = props.get("FilterPolicy", {})
            label = ", ".join(f"{key} = {' | '.join(values)}" for key, values in policy.items())
            for target in _references(props["Endpoint"]):
                graph.edge(topic, ids[target], label)
        elif kind == "AWS::Lambda::EventSourceMapping":
            # Stream and queue triggers: the table's stream (its StreamArn) or the queue's ARN.
            [source] = [ids[ref] for ref in _references(props["EventSourceArn"])]
            [function] = [ids[ref] for ref in _references(props["FunctionName"])]
            stream = "StreamArn" in json.dumps(props["EventSourceArn"])
            graph.edge(source, function, "change stream" if stream else "messages")
            for ref in _references(props.get("DestinationConfig", {})):
                graph.edge(function, ids[ref], "failed batches")
        elif kind == "AWS::Events::Rule":
            rule = ids[logical_id]
            for bus in _references(props.get("EventBusName", {})):
                graph.edge(ids[bus], rule, " / ".join(props["EventPattern"]["detail-type"]))
            if "ScheduleExpression" in props:
                graph.edge(graph.node("schedule", "external", "clock"), rule, props["ScheduleExpression"])
            for source in _references(props.get("EventPattern", {}).get("detail", {})):
                statuses = props["EventPattern"]["detail"]["status"]
                graph.edge(ids[source], rule, " / ".join(statuses))
            for target in props.get("Targets", []):
                for ref in _references(target["Arn"]):
                    graph.edge(rule, ids[ref], "send" if ids[ref].startswith("queue_") else "invoke")
                for ref in _references(target.get("DeadLetterConfig", {})):
                    graph.edge(rule, ids[ref], "undelivered")
        elif kind == "AWS::S3::Bucket" and "LoggingConfiguration" in props:
            for ref in _references(props["LoggingConfiguration"]):
                graph.edge(ids[logical_id], ids[ref], "access logs")
        elif kind == "AWS::Lambda::Function" and "DeadLetterConfig" in props:
            for ref in _references(props["DeadLetterConfig"]):
                graph.edge(ids[logical_id], ids[ref], "failed events")

    # What each role may do: functions on data, the state machine on its steps.
    for logical_id, resource in resources.items():
        if logical_id not in ids or resource["Type"] not in (
            "AWS::Lambda::Function",
            "AWS::StepFunctions::StateMachine",
        ):
            continue
        role = next(
            _references(resource["Properties"]["RoleArn" if "RoleArn" in resource["Properties"] else "Role"])
        )
        for policy in resources.values():
            if policy["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in policy["Properties"]["Roles"]:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                for action in _as_list(statement["Action"]):
                    verb = "invoke" if action == "lambda:InvokeFunction" else VERBS.get(action)
                    for target in _references(statement["Resource"]):
                        if verb and target in ids and ids[target] != ids[logical_id]:
                            graph.edge(ids[logical_id], ids[target], verb)
                            if action == "secretsmanager:GetSecretValue":
                                graph.edge(ids[logical_id], upstream, "calls")

    alarms = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    if alarms:
        node = graph.node("alarms", "alarms", f"{len(alarms)} CloudWatch alarms")
        for topic in {
            ref for alarm in alarms for ref in _references(alarm["Properties"].get("AlarmActions", []))
        }:
            graph.edge(node, ids[topic], "notify")
    return graph.mermaid()


def _path(resources: dict[str, Any], resource_id: Any) -> str:
    [logical_id] = list(_references(resource_id))
    props = resources[logical_id]["Properties"]
    parent = props["ParentId"]
    prefix = "" if "Fn::GetAtt" in parent else _path(resources, parent)
    return f"{prefix}/{props['PathPart']}"


def workflow(definition: dict[str, Any]) -> str:
    """The state machine as a Mermaid state diagram: every state, every transition (Next,
    choices, Catch), the function each task invokes."""
    functions = {"${" + key + "}": spec.name for key, spec in bp.WORKFLOW_FUNCTIONS.items()}
    lines = ["stateDiagram-v2", f"    [*] --> {definition['StartAt']}"]
    for name, state in definition["States"].items():
        kind = state["Type"]
        if kind == "Choice":
            lines.append(f"    state {name} <<choice>>")
            for choice in state["Choices"]:
                [(test, value)] = [(k, v) for k, v in choice.items() if k not in ("Next", "Variable")]
                operator = "=" if test.endswith("Equals") else test
                variable = choice["Variable"].removeprefix("$.")
                lines.append(f"    {name} --> {choice['Next']} : {variable} {operator} {value}")
            lines.append(f"    {name} --> {state['Default']} : otherwise")
            continue
        if kind == "Task":
            function = functions.get(state["Parameters"]["FunctionName"], state["Parameters"]["FunctionName"])
            lines.append(f"    {name} : {name} (λ {function.removeprefix(bp.PREFIX + '-')})")
        elif kind == "Wait":
            lines.append(f"    {name} : {name} (wait {state.get('SecondsPath', '').removeprefix('$.')})")
        if "Next" in state:
            lines.append(f"    {name} --> {state['Next']}")
        for catch in state.get("Catch", []):
            lines.append(f"    {name} --> {catch['Next']} : error ({', '.join(catch['ErrorEquals'])})")
        if kind in ("Succeed", "Fail"):
            lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"


def render(document: str, diagrams: dict[str, str]) -> str:
    """The document with each generated block replaced by its diagram."""
    for name, diagram in diagrams.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin not in document or end not in document.partition(begin)[2]:
            raise ValueError(f"{ARCHITECTURE_DOC.name} has no {begin} ... {end} block")
        # Split and joined, not re.sub: a diagram's backslashes are text, not escapes.
        before, _, rest = document.partition(begin)
        _, _, after = rest.partition(end)
        document = f"{before}{begin}\n```mermaid\n{diagram}```\n{end}{after}"
    return document


def diagrams(template: dict[str, Any]) -> dict[str, str]:
    [machine] = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return {
        "architecture": architecture(template),
        "workflow": workflow(json.loads(machine["Properties"]["DefinitionString"])),
    }


def main() -> int:
    from app import synth  # the CDK app, infra/app.py

    assembly = synth(fail_on_findings=False, outdir=str(REPO_ROOT / "build" / "cdk.out.diagrams"))
    [stack] = assembly.stacks
    ARCHITECTURE_DOC.write_text(render(ARCHITECTURE_DOC.read_text(), diagrams(stack.template)))
    print(f"wrote {ARCHITECTURE_DOC.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
