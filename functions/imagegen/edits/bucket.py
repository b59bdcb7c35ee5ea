"""The uploads bucket, as S3 edits use it: the one module of the edits package that calls S3."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
_MISSING = ("404", "NoSuchKey", "NoSuchVersion", "NotFound")


class UploadsBucket:
    def __init__(self, name: str, s3_client: Any) -> None:
        self.name = name
        self.s3 = s3_client  # SigV4 for presigned URLs: imagegen.runtime builds it so

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        """The object's HEAD answer, or None when it (or that version) does not exist."""
        try:
            return dict(self.s3.head_object(**self._address(key, version_id)))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

    def read(self, key: str, version_id: str | None, byte_range: str | None = None) -> bytes:
        params = self._address(key, version_id)
        if byte_range:
            params["Range"] = byte_range
        return bytes(self.s3.get_object(**params)["Body"].read())

    def presign(self, key: str, version_id: str | None, ttl_seconds: int) -> str:
        """A GET URL of this exact version (SigV4 caps it at seven days)."""
        return str(
            self.s3.generate_presigned_url(
                "get_object",
                Params=self._address(key, version_id),
                ExpiresIn=min(ttl_seconds, MAX_PRESIGN_SECONDS),
            )
        )

    def put_json(self, key: str, document: dict[str, Any], bucket: str | None = None) -> None:
        self.s3.put_object(
            Bucket=bucket or self.name,
            Key=key,
            Body=json.dumps(document, indent=2).encode(),
            ContentType="application/json",
        )

    def _address(self, key: str, version_id: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        return params
