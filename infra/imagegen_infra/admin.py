"""Operator commands against a deployed stack, with the caller's AWS credentials.

    PYTHONPATH=functions:infra python -m imagegen_infra.admin create-key --owner alice

creates an API key for `alice` and prints it once: only its SHA-256 hash is stored, so it
cannot be shown again (create another one if it is lost).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from imagegen.keys import KeyStore
from imagegen.runtime import dynamodb_resource
from imagegen_infra import blueprint as bp


def create_key(owner: str, table: str, name: str, resource: Any = None) -> str:
    return KeyStore(table, resource=resource or dynamodb_resource()).create(owner, name=name)


def main(argv: Sequence[str] | None = None, resource: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m imagegen_infra.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-key", help="create an API key and print it once")
    create.add_argument("--owner", required=True, help="who the key belongs to (jobs are charged to them)")
    create.add_argument(
        "--table", default=bp.API_KEYS_TABLE.name, help="the API keys table (default: %(default)s)"
    )
    create.add_argument("--name", default="default", help="a label for the key (default: %(default)s)")
    args = parser.parse_args(argv)

    key = create_key(args.owner, args.table, args.name, resource)
    print(key)
    print(
        f"API key for {args.owner!r} created: send it as X-API-Key. It is shown only this once.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
