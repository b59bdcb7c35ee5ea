"""Results in our own S3 bucket. We store object keys and sign URLs at read time, so a result
URL never expires in the record (REFERENCE §4: users' top complaint)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
from boto3.s3.transfer import TransferConfig

from imagegen.errors import UpstreamTerminalError
from imagegen.ssrf import safe_stream
from imagegen.transport import status_failure, transport_failure

# How long an image download may stall between bytes, and how long its connection may take.
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# One copy uploads in the calling thread, one 5 MB part (S3's smallest) at a time: memory per
# copy is one part, whatever the image's size, and finalize copies a job's images in parallel
# itself (imagegen.workflow). s3transfer's default (10 threads, up to 10 buffered 8 MB parts
# per copy) grew finalize's peak RSS by 42-69 MB for ten 20 MB images, one after another.
PART_BYTES = 5 * 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=1, use_threads=False
)


def image_key(job_id: str, index: int, output_format: str) -> str:
    """Deterministic, so a retried finalize overwrites instead of duplicating."""
    return f"images/{job_id}/{index}.{output_format}"


class _IterStream(io.RawIOBase):
    """A read-only file over an iterator of chunks: lets upload_fileobj stream an HTTP body
    into S3 (multipart above its threshold) without holding the whole image in memory."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


class ResultStore:
    """The results bucket (imagegen.ports.ResultRepository). Its clients are handed in: the
    runtime builds them with bounded timeouts, tests with whatever they need."""

    def __init__(
        self, bucket: str, s3_client: Any, http_client: httpx.Client, allow_loopback_urls: bool = False
    ) -> None:
        self.bucket = bucket
        self.s3 = s3_client  # SigV4 for presigned URLs: imagegen.runtime builds it so
        self.http = http_client
        self.allow_loopback_urls = allow_loopback_urls

    def copy_from_url(self, url: str, key: str, content_type: str) -> None:
        """Stream an upstream image into S3 under `key`."""
        try:
            with safe_stream(self.http, url, self.allow_loopback_urls) as response:
                if response.status_code != 200:
                    message = f"image download answered HTTP {response.status_code}"
                    raise status_failure(response.status_code, message)
                served_type = response.headers.get("content-type", "").split(";")[0].strip()
                if served_type and not served_type.startswith(("image/", "application/octet-stream")):
                    raise UpstreamTerminalError(f"upstream served {served_type!r} instead of an image")
                self.s3.upload_fileobj(
                    io.BufferedReader(_IterStream(response.iter_bytes(64 * 1024)), 1024 * 1024),
                    self.bucket,
                    key,
                    ExtraArgs={"ContentType": content_type},
                    Config=TRANSFER,
                )
        except httpx.TransportError as exc:
            raise transport_failure(exc, "image download") from exc

    def put_image(self, key: str, data: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def presigned_url(self, key: str, ttl_seconds: int) -> str:
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds
            )
        )
