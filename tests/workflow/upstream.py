"""Helpers the provider workflow tests share: the stored job, what the simulator saw created,
an input image in S3 for edits, and images opened with Pillow."""

from __future__ import annotations

import io
import uuid
from typing import Any

import boto3
import httpx
from PIL import Image

from imagegen.jobs import JobStore
from imagegen.models import Job
from imagegen.runtime import dynamodb_resource
from imagegen_infra import blueprint as bp
from imagegen_local.simulator import FaultScript
from tests.images import image_bytes


def unique_prompt(words: str) -> str:
    """A prompt no other test uses, so the simulator's records of this job can be picked out
    (apiin.one and OpenAI take no idempotency key to match on)."""
    return f"{words} #{uuid.uuid4().hex[:8]}"


def scripted(simulator: Any, words: str, **faults: Any) -> tuple[str, FaultScript]:
    """A unique prompt, and upstream faults for the job that carries it and no other (the
    simulator matches the prompt's marker in create calls and follows the task it made)."""
    prompt = unique_prompt(words)
    return prompt, simulator.script(prompt.rsplit(" ", 1)[1], **faults)


def stored_job(job_id: str) -> Job:
    return JobStore(bp.JOBS_TABLE.name, dynamodb_resource()).get(job_id)


def created_for(simulator: Any, protocol: str, prompt: str) -> list[dict[str, Any]]:
    """Every upstream task (or OpenAI render) the simulator created for `prompt`."""
    return [
        t
        for t in list(simulator.created_tasks)
        if t["protocol"] == protocol
        and isinstance(t["request"], dict)
        and t["request"].get("prompt") == prompt
    ]


def images_of(view: dict[str, Any]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(httpx.get(url).content)) for url in view["result"]["images"]]


def stored_keys(outputs: dict[str, str], job_id: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=outputs["ResultsBucket"], Prefix=f"images/{job_id}/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def input_image_url(outputs: dict[str, str], size: tuple[int, int] = (64, 96)) -> str:
    """A PNG in S3 behind a presigned URL: how an edit's input arrives (S3 uploads do the same)."""
    key = f"test-inputs/{uuid.uuid4().hex}.png"
    s3 = boto3.client("s3")
    body = image_bytes("png", size, (20, 120, 220))
    s3.put_object(Bucket=outputs["ResultsBucket"], Key=key, Body=body, ContentType="image/png")
    return str(
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": outputs["ResultsBucket"], "Key": key}, ExpiresIn=600
        )
    )
