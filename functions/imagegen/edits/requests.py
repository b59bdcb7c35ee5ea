"""An upload made into the API's request (pure): from an image's metadata, or from a manifest.

Both end in `GenerateRequest`, the model the API validates with, so an edit is refused for
exactly the reasons (and with the messages) a POST would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.header import decode_header, make_header
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from imagegen.edits.errors import UploadRejected
from imagegen.edits.keys import INPUTS_PREFIX
from imagegen.errors import validation_details
from imagegen.models import MAX_INPUT_IMAGES, MODEL_ID, GenerateRequest, GptImageParams, load_json

MAX_MANIFEST_BYTES = 64 * 1024
# Metadata names (x-amz-meta-<name>, `-` or `_`) that map onto gptImageParams.
METADATA_PARAMS = (
    "quality",
    "aspect_ratio",
    "output_format",
    "background",
    "input_fidelity",
    "number_of_images",
)


def _decode_header_value(value: str) -> str:
    """S3 metadata is US-ASCII: non-ASCII prompts arrive RFC 2047-encoded (=?UTF-8?B?...?=)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value


def body_from_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """x-amz-meta-prompt (and x-amz-meta-quality, -aspect-ratio, ...) as a GenerateRequest body.
    Metadata we do not know is ignored: S3 tools add their own (mtime, s3cmd-attrs ...)."""
    meta = {name.lower().replace("-", "_"): _decode_header_value(value) for name, value in metadata.items()}
    if "prompt" not in meta:
        raise UploadRejected(
            "the upload has no prompt",
            [
                {
                    "field": "prompt",
                    "message": "set the object metadata x-amz-meta-prompt, or upload the image "
                    f"under {INPUTS_PREFIX} and name it in a manifest",
                }
            ],
        )
    params = {name: meta[name] for name in METADATA_PARAMS if name in meta}
    return {"prompt": meta["prompt"], "model": meta.get("model", MODEL_ID), "gptImageParams": params}


class EditManifest(GenerateRequest):
    """`edits/<name>.json`: the API's request body (`model` optional) plus `images`, the keys of
    the inputs in the uploads bucket; their URLs are ours to make, so input_images is refused."""

    model: Literal["gpt-image-1.5"] = "gpt-image-1.5"  # MODEL_ID
    images: list[str] = Field(min_length=1, max_length=MAX_INPUT_IMAGES)

    @field_validator("images")
    @classmethod
    def _keys_of_inputs(cls, keys: list[str]) -> list[str]:
        # Only keys the trigger ignores: an object either starts its own job or is an input.
        for key in keys:
            if not key.startswith(INPUTS_PREFIX) or key.endswith("/"):
                raise ValueError(
                    f"images are keys of uploaded objects under {INPUTS_PREFIX}, "
                    f"e.g. {INPUTS_PREFIX}cat.png (got {key[:200]!r})"
                )
        return keys

    @field_validator("gptImageParams")
    @classmethod
    def _no_input_urls(cls, params: GptImageParams) -> GptImageParams:
        if params.input_images:
            raise ValueError("input_images is not allowed in a manifest: list the uploaded keys in `images`")
        return params

    @field_validator("webhookUrl", "webhookEvents")
    @classmethod
    def _no_webhooks(cls, value: object) -> None:
        # A webhook is signed with the secret of the API key that asked for it; an upload has no
        # key. Its answer is `<name>.result.json` and the job events.
        if value:
            raise ValueError(
                "webhooks are not available for S3 edits: wait for <name>.result.json or the job events"
            )
        return None


def parse_manifest(raw: bytes) -> EditManifest:
    try:
        document = load_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UploadRejected(f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UploadRejected("the manifest must be a JSON object")
    try:
        return EditManifest.model_validate(document)
    except ValidationError as exc:
        raise UploadRejected("the manifest is invalid", validation_details(exc)) from None


def validated_request(body: dict[str, Any], input_urls: list[str], what: str) -> GenerateRequest:
    """The API's model, with our presigned input URLs in gptImageParams.input_images."""
    body = {**body, "gptImageParams": {**body.get("gptImageParams", {}), "input_images": input_urls}}
    try:
        return GenerateRequest.model_validate(body)
    except ValidationError as exc:
        raise UploadRejected(f"{what} is invalid", validation_details(exc)) from None
