"""Operator commands against a deployed stack, with the caller's AWS credentials and region
(AWS_PROFILE, AWS_REGION).

    python -m imagegen_infra.admin outputs [--stage dev]
        prints the stack's outputs (API URL, buckets, topics, queues...) as JSON, the same keys
        as the local stack's local-stack.json (README.md, "Stack outputs").

    python -m imagegen_infra.admin create-key --owner alice [--credits 500] [--stage dev]
        creates an API key for `alice` in the stack's key table (its ApiKeysTable output) and
        prints it once: only its SHA-256 hash is stored, so it cannot be shown again (create
        another one if it is lost). --credits grants the account that much (as `grant`).

    python -m imagegen_infra.admin list-keys [--owner alice]
        the keys (id, owner, name, status, created), never the keys themselves.

    python -m imagegen_infra.admin disable-key key_0123abcd
        the key's requests are refused (403) from now on.

    python -m imagegen_infra.admin grant --owner alice --credits 1000
        adds credits to alice's balance, with its ledger entry; prints the new balance.

    python -m imagegen_infra.admin audit
        recomputes every balance from the ledger; prints the differences, exits 1 if any.

Without --stage, the default deployment (stack `imagegen`). Every command but `outputs` takes
--table instead of reading the stack: against the local stack (AWS_ENDPOINT_URL set to its
moto server, AwsEndpointUrl in local-stack.json) pass `--table imagegen-api-keys`.
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

from imagegen.accounts import Accounts
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


def run(args: argparse.Namespace, table: str, resource: Any) -> int:
    """One account command against the keys table; what it prints is its answer."""
    keys, accounts = KeyStore(table, resource=resource), Accounts(table, resource=resource)
    if args.command == "create-key":
        key = keys.create(args.owner, name=args.name)
        if args.credits:
            accounts.grant(args.owner, args.credits)
        print(key)
        print(
            f"API key for {args.owner!r} created in {table}: send it as X-API-Key. "
            "It is shown only this once.",
            file=sys.stderr,
        )
    elif args.command == "list-keys":
        print(json.dumps(keys.list(args.owner), indent=2))
    elif args.command == "disable-key":
        if not keys.disable(args.key_id):
            raise AdminError(f"no key {args.key_id} in {table} (list-keys shows them)")
        print(f"{args.key_id} disabled: its requests are refused (403)", file=sys.stderr)
    elif args.command == "grant":
        print(json.dumps({"owner": args.owner, "balance": accounts.grant(args.owner, args.credits)}))
    elif args.command == "audit":
        differences = accounts.audit()
        for difference in differences:
            print(
                f"{difference.owner}: balance {difference.balance}, ledger {difference.ledger} "
                f"(difference {difference.balance - difference.ledger})"
            )
        print(f"{len(differences)} difference(s)", file=sys.stderr)
        return 1 if differences else 0
    return 0


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
    create.add_argument("--name", default="default", help="a label for the key (default: %(default)s)")
    create.add_argument("--credits", type=_credits, help="grant the owner this many credits too")
    listing = commands.add_parser("list-keys", help="the keys, never in clear")
    listing.add_argument("--owner", help="only this owner's keys")
    disable = commands.add_parser("disable-key", help="refuse a key's requests (403) from now on")
    disable.add_argument("key_id", help="the key's id (list-keys), not the key")
    grant = commands.add_parser("grant", help="add credits to an owner's balance")
    grant.add_argument("--owner", required=True)
    grant.add_argument("--credits", required=True, type=_credits)
    audit = commands.add_parser(
        "audit", help="recompute every balance from the ledger; exit 1 on a difference"
    )
    table_commands = (create, listing, disable, grant, audit)
    for command in table_commands:
        command.add_argument("--table", help="the API keys table (default: the stack's ApiKeysTable output)")
    for command in (show, *table_commands):
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
            return run(args, table, resource or dynamodb_resource())
        except ClientError as exc:
            what = "store the key" if args.command == "create-key" else args.command
            raise AdminError(f"could not {what} in {table}: {exc.response['Error']['Message']}") from exc
        except NoRegionError as exc:
            raise AdminError(NO_REGION) from exc
        except BotoCoreError as exc:
            raise AdminError(f"could not {args.command} in {table}: {exc}") from exc
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _credits(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError("credits are a whole number above 0")
    return int(value)


def _stage(value: str) -> str:
    try:
        return bp.validate_stage(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


if __name__ == "__main__":
    raise SystemExit(main())
