"""A client of S3-triggered edits: upload an image (or inputs and a manifest), wait for the
`<name>.result.json` the service writes next to it, fetch the edited images. Only S3 calls:
works against the local stack (moto) and a deployed stack alike.

    s3 = boto3.client("s3", endpoint_url=outputs["AwsEndpointUrl"])  # or the default client
    edit = upload_edit(s3, outputs["UploadsBucket"], "fox", png_bytes, "make it night", quality="low")
    result = wait_for_result(s3, outputs["UploadsBucket"], edit, timeout=120)
    paths = save_results(s3, result, Path("out"))
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen.edits.keys import EDITS_PREFIX, INPUTS_PREFIX, edit_job_id, result_key
from imagegen.images import sniff_image

_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True)
class UploadedEdit:
    """Where an edit request was uploaded; `job_id` is known when the bucket is versioned."""

    bucket: str
    key: str
    version_id: str | None
    job_id: str | None

    @property
    def result_key(self) -> str:
        return result_key(self.key)


def _metadata_value(value: object) -> str:
    """S3 metadata is US-ASCII: anything else goes RFC 2047-encoded (the service decodes it)."""
    text = str(value)
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def _uploaded(bucket: str, key: str, answer: dict[str, Any]) -> UploadedEdit:
    version = answer.get("VersionId")
    return UploadedEdit(bucket, key, version, edit_job_id(bucket, key, version) if version else None)


def upload_edit(s3: Any, bucket: str, name: str, image: bytes, prompt: str, **params: Any) -> UploadedEdit:
    """Upload `image` as `edits/<name>.<ext>` with the prompt and gptImageParams (quality,
    aspect_ratio, output_format, background, input_fidelity, number_of_images) as metadata."""
    image_format = sniff_image(image[:16])
    extension = _EXTENSIONS.get(image_format or "", "bin")
    key = f"{EDITS_PREFIX}{name}.{extension}"
    metadata = {"prompt": _metadata_value(prompt)}
    metadata.update({k.replace("_", "-"): _metadata_value(v) for k, v in params.items()})
    answer = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=image,
        Metadata=metadata,
        ContentType=f"image/{image_format or 'octet-stream'}",
    )
    return _uploaded(bucket, key, answer)


def upload_manifest(
    s3: Any, bucket: str, name: str, images: list[bytes], prompt: str, **params: Any
) -> UploadedEdit:
    """Upload `images` under `edits/inputs/<name>/`, then the manifest `edits/<name>.json` naming
    them (the manifest last: its upload is what starts the job)."""
    keys = []
    for index, image in enumerate(images):
        extension = _EXTENSIONS.get(sniff_image(image[:16]) or "", "bin")
        keys.append(f"{INPUTS_PREFIX}{name}/{index}.{extension}")
        s3.put_object(Bucket=bucket, Key=keys[-1], Body=image)
    manifest = {"prompt": prompt, "images": keys, "gptImageParams": params}
    key = f"{EDITS_PREFIX}{name}.json"
    answer = s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(manifest).encode(), ContentType="application/json"
    )
    return _uploaded(bucket, key, answer)


def wait_for_result(
    s3: Any, bucket: str, edit: UploadedEdit | str, timeout: float = 120.0, interval: float = 0.25
) -> dict[str, Any]:
    """Poll for `<name>.result.json` (written for every upload, COMPLETED or FAILED) and return
    it. With an UploadedEdit of a versioned bucket, an older run's file is not mistaken for this
    one's: its jobId must match. Raises TimeoutError."""
    key = edit.result_key if isinstance(edit, UploadedEdit) else result_key(edit)
    expected_job = edit.job_id if isinstance(edit, UploadedEdit) else None
    deadline = time.monotonic() + timeout
    while True:
        try:
            document: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if expected_job is None or document.get("jobId") == expected_job:
                return document
        except s3.exceptions.NoSuchKey:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no s3://{bucket}/{key} for this upload after {timeout:.0f} s")
        time.sleep(interval)


def save_results(s3: Any, result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Download a COMPLETED result's images from the results bucket into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in result.get("resultKeys", []):
        path = out_dir / f"{result['jobId']}-edit-{Path(key).name}"
        path.write_bytes(s3.get_object(Bucket=result["bucket"], Key=key)["Body"].read())
        paths.append(path)
    return paths
