"""The API key store: keys are stored as SHA-256 hashes, never in clear.

Each key belongs to an owner (an account: imagegen.accounts keeps its balance in the same
table); several keys may share one. A disabled key is answered 403.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from imagegen.errors import Forbidden, Unauthorized
from imagegen.models import iso, utc_now

KEY_PREFIX = "igk_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    owner: str
    active: bool


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class KeyStore:
    def __init__(self, table_name: str, resource: Any) -> None:
        self.table = resource.Table(table_name)

    def authenticate(self, raw_key: str | None) -> ApiKey:
        """The key's record, or the error the API answers (401 missing/unknown, 403 inactive)."""
        if not raw_key:
            raise Unauthorized("API key is required: send it in the X-API-Key header")
        item = self.table.get_item(Key={"key_hash": hash_key(raw_key)}).get("Item")
        if item is None:
            raise Unauthorized("Invalid API key")
        key = ApiKey(
            key_id=str(item["key_id"]), owner=str(item["owner"]), active=item.get("status") == "active"
        )
        if not key.active:
            raise Forbidden("API key is inactive")
        return key

    def list(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every key (or one owner's), without its hash: an operator's Scan."""
        from boto3.dynamodb.conditions import Attr

        # Key items have a status; the webhook secrets and accounts beside them do not.
        condition = Attr("key_id").begins_with("key_") & Attr("status").exists()
        if owner:
            condition = condition & Attr("owner").eq(owner)
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"FilterExpression": condition}
        while True:
            page = self.table.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        fields = ("key_id", "owner", "name", "status", "created_at")
        return sorted(
            ({f: str(item[f]) for f in fields if f in item} for item in items),
            key=lambda key: (key.get("owner", ""), key.get("created_at", "")),
        )

    def disable(self, key_id: str) -> bool:
        """Disable the key with this id (its requests get 403 from now on); False if none has it."""
        from boto3.dynamodb.conditions import Attr

        kwargs: dict[str, Any] = {"FilterExpression": Attr("key_id").eq(key_id) & Attr("status").exists()}
        while True:
            page = self.table.scan(**kwargs)
            for item in page.get("Items", []):
                self.table.update_item(
                    Key={"key_hash": item["key_hash"]},
                    UpdateExpression="SET #s = :disabled",
                    ConditionExpression="attribute_exists(key_hash)",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":disabled": "disabled"},
                )
                return True
            if "LastEvaluatedKey" not in page:
                return False
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def create(self, owner: str, raw_key: str | None = None, name: str = "default") -> str:
        """Store a key for `owner` and return it in clear (the only time it is seen)."""
        raw_key = raw_key or KEY_PREFIX + secrets.token_urlsafe(32)
        self.table.put_item(
            Item={
                "key_hash": hash_key(raw_key),
                "key_id": "key_" + secrets.token_hex(8),
                "owner": owner,
                "name": name,
                "status": "active",
                "created_at": iso(utc_now()),
            }
        )
        return raw_key
