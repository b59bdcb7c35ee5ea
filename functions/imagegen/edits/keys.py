"""What a key under `edits/` means, and the names derived from it (pure).

- `edits/inputs/...`                    inputs named by manifests: never start a job
- `edits/....result.json`, `.error.json` our own answers next to uploads: ignored
- keys ending in `/`                    folder markers: ignored
- any other `edits/....json`            a manifest: a GenerateRequest body plus `images` (keys)
- any other key under `edits/`          an image; its metadata carries the prompt and params
"""

from __future__ import annotations

import uuid
from enum import StrEnum

EDITS_PREFIX = "edits/"  # the S3 notification's prefix filter (blueprint.EDITS_PREFIX)
INPUTS_PREFIX = EDITS_PREFIX + "inputs/"
RESULT_SUFFIX = ".result.json"
ERROR_SUFFIX = ".error.json"
MANIFEST_SUFFIX = ".json"
_EDIT_JOB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://imagegen/s3-edits")


class UploadKind(StrEnum):
    IMAGE = "image"
    MANIFEST = "manifest"
    IGNORED = "ignored"


def classify(key: str) -> UploadKind:
    if not key.startswith(EDITS_PREFIX) or key.startswith(INPUTS_PREFIX) or key.endswith("/"):
        return UploadKind.IGNORED
    if key.endswith((RESULT_SUFFIX, ERROR_SUFFIX)):
        return UploadKind.IGNORED
    return UploadKind.MANIFEST if key.lower().endswith(MANIFEST_SUFFIX) else UploadKind.IMAGE


def base_name(key: str) -> str:
    """`edits/cats/tabby.png` -> `edits/cats/tabby`: the upload's key without its extension."""
    folder, _, file_name = key.rpartition("/")
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    return f"{folder}/{stem}" if folder else stem


def result_key(key: str) -> str:
    return base_name(key) + RESULT_SUFFIX


def error_key(key: str) -> str:
    return base_name(key) + ERROR_SUFFIX


def edit_job_id(bucket: str, key: str, revision: str) -> str:
    """The job id of one object version: the same event delivered twice names the same job."""
    return str(uuid.uuid5(_EDIT_JOB_NAMESPACE, f"s3://{bucket}/{key}#{revision}"))
