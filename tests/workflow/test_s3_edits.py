"""S3-triggered edits end to end on the local stack: a real upload to the uploads bucket, moto's
S3 notification to the s3-edit function, the real workflow against the simulator, the events
topic's filtered subscription to the result writer, and the files a pipeline waits on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from PIL import Image

from imagegen.edits.keys import error_key
from imagegen_infra import blueprint as bp
from imagegen_local.edits_client import save_results, upload_edit, upload_manifest, wait_for_result
from tests.images import image_bytes
from tests.support import submit, wait_for_job

RED = (230, 10, 10)
BLUE = (10, 10, 230)


def image(color: tuple[int, int, int], size: tuple[int, int] = (600, 400), fmt: str = "PNG") -> bytes:
    return image_bytes(fmt, size, color)


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3")


@pytest.fixture(autouse=True)
def no_function_errors(stack: Any) -> Iterator[None]:
    """moto drops what a notified function raises: fail the test instead of hiding it."""
    seen = len(stack.runtime.invocations)
    yield
    errors = [(i.function_name, i.error_type) for i in stack.runtime.invocations[seen:] if i.error_type]
    assert errors == []


def test_an_uploaded_image_is_edited_into_the_results_bucket(s3, outputs, api, job_events, tmp_path):
    bucket = outputs["UploadsBucket"]
    edit = upload_edit(
        s3,
        bucket,
        unique("red"),
        image(RED),
        "the same square at night",
        quality="low",
        aspect_ratio="3:2",
        output_format="png",
    )

    result = wait_for_result(s3, bucket, edit, timeout=30)

    assert result["status"] == "COMPLETED", result
    assert (result["jobId"], result["creditCost"], result["bucket"]) == (
        edit.job_id,
        4,
        outputs["ResultsBucket"],
    )
    [path] = save_results(s3, result, tmp_path)
    with Image.open(path) as edited:
        assert (edited.format, edited.size) == ("PNG", (1536, 1024))
        # The simulator's edit is the input tinted by 20%: still red below its caption panel.
        pixel = edited.convert("RGB").getpixel((768, 950))
    assert isinstance(pixel, tuple)
    red, green, blue = pixel[:3]
    assert red > 180 and green < 70 and blue < 70
    view = api.get(f"/v2/jobs/{edit.job_id}").json()
    assert (view["status"], view["source"], view["prompt"]) == ("COMPLETED", "s3", "the same square at night")
    [announced] = job_events(edit.job_id)
    assert (announced["type"], announced["source"]) == ("job.completed", "s3")


def test_a_manifest_edits_two_uploaded_images_in_one_job(s3, outputs, api, simulator):
    bucket = outputs["UploadsBucket"]
    edit = upload_manifest(
        s3,
        bucket,
        unique("pair"),
        [image(RED), image(BLUE, fmt="JPEG")],
        "both, side by side",
        quality="medium",
    )

    result = wait_for_result(s3, bucket, edit, timeout=30)

    assert (result["status"], result["creditCost"]) == ("COMPLETED", 9)
    [created] = [t for t in simulator.created_tasks if t["idempotency_key"] == f"imagegen-{edit.job_id}-0"]
    assert len(created["request"]["gptImageParams"]["input_images"]) == 2
    assert api.get(f"/v2/jobs/{edit.job_id}").json()["source"] == "s3"


def test_a_bad_upload_answers_with_an_error_file_and_a_failed_result(s3, outputs, api, job_events):
    bucket = outputs["UploadsBucket"]
    edit = upload_edit(s3, bucket, unique("notes"), b"meeting notes, not a picture", "make it pop")

    result = wait_for_result(s3, bucket, edit, timeout=10)

    error = s3.get_object(Bucket=bucket, Key=error_key(edit.key))["Body"].read()
    assert b'"code": "unsupported_image"' in error
    assert (result["status"], result["creditCost"], result["resultKeys"]) == ("FAILED", 0, [])
    assert "is not a PNG, JPEG or WebP image" in result["error"]
    assert api.get(f"/v2/jobs/{edit.job_id}").json()["status"] == "FAILED"
    assert job_events(edit.job_id)[0]["type"] == "job.failed"


def test_uploading_the_same_name_again_is_a_new_edit_and_never_reads_the_old_result(s3, outputs):
    bucket, name = outputs["UploadsBucket"], unique("again")
    first = upload_edit(s3, bucket, name, image(RED), "first take", quality="low")
    assert wait_for_result(s3, bucket, first, timeout=30)["jobId"] == first.job_id

    second = upload_edit(s3, bucket, name, image(BLUE), "second take", quality="low")
    result = wait_for_result(s3, bucket, second, timeout=30)

    assert second.key == first.key and second.job_id != first.job_id
    assert (result["jobId"], result["status"]) == (second.job_id, "COMPLETED")


def test_the_result_writer_only_hears_about_jobs_from_uploads(s3, outputs, api, stack):
    job_id = submit(api, quality="low")
    edit = upload_edit(s3, outputs["UploadsBucket"], unique("empty"), b"", "nothing to edit")
    wait_for_result(s3, outputs["UploadsBucket"], edit, timeout=10)
    assert wait_for_job(api, job_id)["status"] == "COMPLETED"

    writer_calls = [
        str(i.event) for i in stack.runtime.invocations if i.function_name == bp.S3_RESULT_FUNCTION.name
    ]
    assert edit.job_id and any(edit.job_id in event for event in writer_calls)
    assert not any(job_id in event for event in writer_calls)  # the subscription's filter policy held
