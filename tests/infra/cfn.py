"""Reading a synthesized CloudFormation template: plain dicts, no jsii round trips."""

from __future__ import annotations

from typing import Any


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> properties of every resource of one type."""
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: dict[str, Any], resource_type: str, **match: Any) -> dict[str, Any]:
    """The properties of the one resource of this type whose properties include `match`."""
    found = [
        props
        for props in resources(template, resource_type).values()
        if all(props.get(key) == value for key, value in match.items())
    ]
    assert len(found) == 1, f"expected one {resource_type} with {match}, found {len(found)}"
    return found[0]


def logical_id(template: dict[str, Any], resource_type: str, **match: Any) -> str:
    found = [
        lid
        for lid, props in resources(template, resource_type).items()
        if all(props.get(key) == value for key, value in match.items())
    ]
    assert len(found) == 1, f"expected one {resource_type} with {match}, found {len(found)}"
    return found[0]


def role_statements(template: dict[str, Any], function_name: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to a function's role."""
    function = only(template, "AWS::Lambda::Function", FunctionName=function_name)
    role_id = function["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Roles"]:
            statements += policy["PolicyDocument"]["Statement"]
    return statements


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def render(value: Any, account: str = "<account>", region: str = "<region>") -> Any:
    """A property value as text: pseudo parameters by the given values, a reference to another
    resource as `<LogicalId>` (or `<LogicalId.Attribute>`), joins joined."""
    if isinstance(value, dict) and len(value) == 1:
        [(function, argument)] = value.items()
        if function == "Ref":
            return {"AWS::AccountId": account, "AWS::Region": region, "AWS::URLSuffix": "amazonaws.com"}.get(
                argument, f"<{argument}>"
            )
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(render(part, account, region)) for part in parts)
    if isinstance(value, dict):
        return {key: render(item, account, region) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, account, region) for item in value]
    return value
