"""Operator commands against a deployed stack, with the caller's AWS credentials and region
(AWS_PROFILE, AWS_REGION).

    python -m imagegen_infra.admin outputs [--stage dev]
        prints the stack's outputs (API URL, buckets, topics, queues...) as JSON, the same keys
        as the local stack's local-stack.json (README.md, "Stack outputs").

    python -m imagegen_infra.admin create-key --owner alice [--stage dev]
        creates an API key for `alice` in the stack's key table (its ApiKeysTable output) and
        prints it once: only its SHA-256 hash is stored, so it cannot be shown again (create
        another one if it is lost).

Without --stage, the default deployment (stack `imagegen`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from imagegen.keys import KeyStore
from imagegen.runtime import dynamodb_resource
from imagegen_infra import blueprint as bp

NO_REGION = "no AWS region: set AWS_REGION (or a profile's region) to the deployment's"


class AdminError(Exception):
    """What went wrong, said so that the operator knows what to do."""


def use_aws_region() -> None:
    """boto3 reads AWS_DEFAULT_REGION but not AWS_REGION, which the CDK CLI and the AWS CLI read
    (AWS_REGION first): honour it the same way, so one `export AWS_REGION=...` serves them all."""
    region = os.environ.get("AWS_REGION")
    if region:
        boto3.setup_default_session(region_name=region)


def stack_outputs(stage: str | None, client: Any = None) -> dict[str, str]:
    """The outputs of the stage's stack, by key."""
    stack_name = bp.Blueprint.for_stage(stage).stack_name
    try:
        client = client or boto3.client("cloudformation")
        [stack] = client.describe_stacks(StackName=stack_name)["Stacks"]
    except NoRegionError as exc:
        raise AdminError(NO_REGION) from exc
    except ClientError as exc:
        region = client.meta.region_name
        raise AdminError(
            f"no stack {stack_name} in {region} ({exc.response['Error']['Message']}): "
            "deploy it, or check AWS_REGION and --stage"
        ) from exc
    except BotoCoreError as exc:
        raise AdminError(f"could not read the stack {stack_name}: {exc}") from exc
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def create_key(owner: str, table: str, name: str, resource: Any = None) -> str:
    return KeyStore(table, resource=resource or dynamodb_resource()).create(owner, name=name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imagegen_infra.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("outputs", help="print the stack's outputs as JSON")
    create = commands.add_parser("create-key", help="create an API key and print it once")
    create.add_argument("--owner", required=True, help="who the key belongs to (jobs are charged to them)")
    create.add_argument("--table", help="the API keys table (default: the stack's ApiKeysTable output)")
    create.add_argument("--name", default="default", help="a label for the key (default: %(default)s)")
    for command in (show, create):
        command.add_argument(
            "--stage", type=_stage, help="the deployment's stage (cdk deploy -c stage=...); default: none"
        )
    return parser


def main(argv: Sequence[str] | None = None, resource: Any = None) -> int:
    args = build_parser().parse_args(argv)
    use_aws_region()

    try:
        if args.command == "outputs":
            print(json.dumps(stack_outputs(args.stage), indent=2))
            return 0
        table = args.table or stack_outputs(args.stage).get("ApiKeysTable")
        if not table:
            raise AdminError(
                "the stack has no ApiKeysTable output: deploy the current version, or pass --table"
            )
        try:
            key = create_key(args.owner, table, args.name, resource)
        except ClientError as exc:
            raise AdminError(
                f"could not store the key in {table}: {exc.response['Error']['Message']}"
            ) from exc
        except NoRegionError as exc:
            raise AdminError(NO_REGION) from exc
        except BotoCoreError as exc:
            raise AdminError(f"could not store the key in {table}: {exc}") from exc
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(
        f"API key for {args.owner!r} created in {table}: send it as X-API-Key. It is shown only this once.",
        file=sys.stderr,
    )
    return 0


def _stage(value: str) -> str:
    try:
        return bp.validate_stage(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


if __name__ == "__main__":
    raise SystemExit(main())
