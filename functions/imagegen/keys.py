"""A minimal API key store: keys are stored as SHA-256 hashes, never in clear.

Each key belongs to an owner; jobs carry the owner so accounts and credits can build on it.
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
