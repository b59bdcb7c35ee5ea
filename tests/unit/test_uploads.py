"""S3 edits' pure rules: what a key means, where answers go, how metadata and manifests become
the API's request (with the API's error details), and that every sample in events/s3 parses."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from imagegen.edits.bucket import UploadsBucket
from imagegen.edits.errors import UploadRejected, UploadsNotConfigured, error_document
from imagegen.edits.intake import EditIntake
from imagegen.edits.keys import UploadKind, classify, edit_job_id, error_key, result_key
from imagegen.edits.requests import body_from_metadata, parse_manifest, validated_request
from imagegen.edits.results import result_document
from imagegen.images import sniff_image
from imagegen.models import GenerateRequest, GptImageParams, Job, JobSource, JobStatus, utc_now
from imagegen.settings import Settings
from tests.fakes import InMemoryJobStore, RecordingStarter
from tests.images import image_bytes
from tests.support import EVENTS

S3_SAMPLES = sorted((EVENTS / "s3").glob("*.json"))


# --- keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("edits/fox.png", UploadKind.IMAGE),
        ("edits/team/fox.JPG", UploadKind.IMAGE),
        ("edits/fox", UploadKind.IMAGE),  # no extension: still an upload; the bytes decide
        ("edits/batch.json", UploadKind.MANIFEST),
        ("edits/team/batch.JSON", UploadKind.MANIFEST),
        ("edits/inputs/fox.png", UploadKind.IGNORED),
        ("edits/inputs/batch.json", UploadKind.IGNORED),
        ("edits/fox.result.json", UploadKind.IGNORED),
        ("edits/fox.error.json", UploadKind.IGNORED),
        ("edits/team/", UploadKind.IGNORED),
        ("other/fox.png", UploadKind.IGNORED),
    ],
)
def test_what_a_key_means(key, kind):
    assert classify(key) is kind


@pytest.mark.parametrize(
    ("key", "result", "error"),
    [
        ("edits/fox.png", "edits/fox.result.json", "edits/fox.error.json"),
        ("edits/team/batch.json", "edits/team/batch.result.json", "edits/team/batch.error.json"),
        ("edits/fox", "edits/fox.result.json", "edits/fox.error.json"),
        ("edits/fox.v2.webp", "edits/fox.v2.result.json", "edits/fox.v2.error.json"),
        ("edits/.hidden", "edits/.hidden.result.json", "edits/.hidden.error.json"),
    ],
)
def test_answers_sit_next_to_the_upload_and_are_never_uploads_themselves(key, result, error):
    assert (result_key(key), error_key(key)) == (result, error)
    assert classify(result) is classify(error) is UploadKind.IGNORED


def test_job_id_is_one_per_object_version():
    job = edit_job_id("bucket", "edits/fox.png", "v1")
    assert job == edit_job_id("bucket", "edits/fox.png", "v1")  # a redelivery
    assert (
        len(
            {
                job,
                edit_job_id("bucket", "edits/fox.png", "v2"),
                edit_job_id("bucket", "edits/cat.png", "v1"),
                edit_job_id("other", "edits/fox.png", "v1"),
            }
        )
        == 4
    )


@pytest.mark.parametrize(
    ("fmt", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"), ("GIF", None), ("BMP", None)]
)
def test_images_are_recognised_by_their_first_bytes(fmt, expected):
    assert sniff_image(image_bytes(fmt)[:16]) == expected


@pytest.mark.parametrize("data", [b"", b"hello world", b"RIFF\x00\x00\x00\x00WAVE", b"%PDF-1.7"])
def test_other_bytes_are_not_images(data):
    assert sniff_image(data) is None


# --- metadata -----------------------------------------------------------------------------------
def test_metadata_maps_onto_gpt_image_params():
    body = body_from_metadata(
        {
            "prompt": "make it night",
            "quality": "low",
            "aspect-ratio": "3:2",
            "output_format": "png",
            "input-fidelity": "high",
            "number-of-images": "2",
            "mtime": "1700000000",
        }
    )  # a tool's own metadata is ignored

    request = validated_request(body, ["https://example.com/in.png"], "the upload's metadata")

    assert request.prompt == "make it night" and request.model == "gpt-image-1.5"
    assert request.gptImageParams == GptImageParams(
        quality="low",
        aspect_ratio="3:2",
        output_format="png",
        input_fidelity="high",
        number_of_images=2,
        input_images=["https://example.com/in.png"],
    )


def test_non_ascii_prompts_arrive_rfc2047_encoded():
    from imagegen_local.edits_client import _metadata_value

    prompt = "un renard sous la neige, style ukiyo-e 🦊"
    assert body_from_metadata({"prompt": _metadata_value(prompt)})["prompt"] == prompt
    assert _metadata_value("plain ascii") == "plain ascii"


def test_no_prompt_is_rejected_with_a_hint():
    with pytest.raises(UploadRejected) as raised:
        body_from_metadata({"quality": "low"})

    assert raised.value.code == "invalid_request"
    [detail] = raised.value.details
    assert detail["field"] == "prompt" and "x-amz-meta-prompt" in detail["message"]


def test_bad_metadata_reads_like_the_api_error_for_the_same_body():
    from api.errors import validation_details as api_details

    body = body_from_metadata({"prompt": " ", "quality": "ultra", "aspect-ratio": "16:9"})
    with pytest.raises(UploadRejected) as raised:
        validated_request(body, ["https://example.com/in.png"], "the upload's metadata")
    with pytest.raises(ValidationError) as api_raised:
        GenerateRequest.model_validate(body)

    assert raised.value.message == "the upload's metadata is invalid"
    assert raised.value.details == api_details(api_raised.value)
    assert {d["field"] for d in raised.value.details} == {
        "prompt",
        "gptImageParams.quality",
        "gptImageParams.aspect_ratio",
    }


# --- manifests ----------------------------------------------------------------------------------
def manifest(**fields: object) -> bytes:
    return json.dumps(
        {"prompt": "put them side by side", "images": ["edits/inputs/a.png"], **fields}
    ).encode()


def test_a_manifest_is_the_api_body_plus_input_keys():
    parsed = parse_manifest(
        manifest(
            images=["edits/inputs/a.png", "edits/inputs/b.webp"],
            gptImageParams={"quality": "medium", "input_fidelity": "high"},
        )
    )

    assert parsed.images == ["edits/inputs/a.png", "edits/inputs/b.webp"]
    assert parsed.model == "gpt-image-1.5"  # optional in a manifest
    assert (parsed.gptImageParams.quality, parsed.gptImageParams.input_fidelity) == ("medium", "high")


@pytest.mark.parametrize(
    ("raw", "message", "fields"),
    [
        (b"{not json", "the manifest is not valid JSON", set()),
        (b"\xff\xfe", "the manifest is not valid JSON", set()),
        (b'["edits/inputs/a.png"]', "the manifest must be a JSON object", set()),
        # 10 KB, under the 64 KiB limit, nested deeper than Python's JSON parser recurses
        (
            b'{"prompt": "x", "images": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "the manifest is not valid JSON",
            set(),
        ),
        (manifest(prompt=""), "the manifest is invalid", {"prompt"}),
        (manifest(images=[]), "the manifest is invalid", {"images"}),
        (
            manifest(images=[f"edits/inputs/{i}.png" for i in range(17)]),
            "the manifest is invalid",
            {"images"},
        ),
        (manifest(images=["edits/fox.png"]), "the manifest is invalid", {"images"}),  # starts its own job
        (manifest(images=["s3://bucket/edits/inputs/a.png"]), "the manifest is invalid", {"images"}),
        (manifest(model="dall-e-3"), "the manifest is invalid", {"model"}),
        (
            manifest(gptImageParams={"aspectRatio": "3:2"}),
            "the manifest is invalid",
            {"gptImageParams.aspectRatio"},
        ),
        (
            manifest(gptImageParams={"input_images": ["https://example.com/a.png"]}),
            "the manifest is invalid",
            {"gptImageParams"},
        ),
        (manifest(webhookUrl="https://example.com/hook"), "the manifest is invalid", {"webhookUrl"}),
    ],
)
def test_bad_manifests_are_rejected_with_field_details(raw, message, fields):
    with pytest.raises(UploadRejected) as raised:
        parse_manifest(raw)

    assert raised.value.message.startswith(message)
    assert {d["field"] for d in raised.value.details} == fields


# --- answers ------------------------------------------------------------------------------------
def test_error_document_has_the_api_error_shape_and_the_job_id():
    error = UploadRejected("the manifest is invalid", [{"field": "prompt", "message": "Field required"}])

    assert error_document(error, "job-1") == {
        "error": {
            "code": "invalid_request",
            "message": "the manifest is invalid",
            "details": [{"field": "prompt", "message": "Field required"}],
        },
        "jobId": "job-1",
    }


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_result_document(status):
    now = utc_now()
    job = Job(
        job_id="j",
        owner="o",
        prompt="p",
        params=GptImageParams(quality="medium"),
        source=JobSource.S3,
        credit_cost=9,
        status=status,
        result_keys=["images/j/0.webp"] if status is JobStatus.COMPLETED else [],
        error=None if status is JobStatus.COMPLETED else "upstream said no",
        created_at=now,
        updated_at=now,
        deadline_at=now + timedelta(minutes=15),
    )

    document = result_document(job, "results-bucket")

    assert set(document) == {"jobId", "status", "resultKeys", "bucket", "error", "creditCost"}
    assert document["status"] == status.value and document["bucket"] == "results-bucket"
    assert document["creditCost"] == (9 if status is JobStatus.COMPLETED else 0)  # failed jobs are refunded


def test_intake_refuses_to_run_unconfigured():
    settings = Settings(jobs_table="t", api_keys_table="k", results_bucket="r", events_topic_arn="arn")
    with pytest.raises(UploadsNotConfigured):
        EditIntake(settings, InMemoryJobStore(), RecordingStarter(), UploadsBucket("", object()))


def test_constants_agree_with_the_blueprint():
    from imagegen.edits import keys
    from imagegen_infra import blueprint as bp

    assert keys.EDITS_PREFIX == bp.EDITS_PREFIX
    assert {"source": [JobSource.S3.value], "eventType": ["job.completed", "job.failed", "job.canceled"]} == (
        bp.S3_RESULT_FILTER_POLICY
    )
    assert bp.S3_EDIT_FUNCTION.handler == "s3_edit.handler.lambda_handler"
    assert bp.S3_RESULT_FUNCTION.handler == "s3_edit.handler.write_result"


# --- samples ------------------------------------------------------------------------------------
def test_there_are_s3_samples():
    assert len(S3_SAMPLES) >= 8


@pytest.mark.parametrize("path", S3_SAMPLES, ids=lambda p: p.name)
def test_every_s3_sample_parses_with_its_handler(path: Path):
    from s3_edit.parse import job_events, upload_records

    event = json.loads(path.read_text())
    if path.name.startswith("sns_"):
        [job_event] = job_events(event)
        attributes = event["Records"][0]["Sns"]["MessageAttributes"]
        assert attributes["source"]["Value"] == job_event.source
        assert attributes["eventType"]["Value"] == job_event.type
    elif path.name == "test_event.json":
        assert upload_records(event) == []
    else:
        [record] = upload_records(event)
        assert record.event_name.startswith("ObjectCreated") and record.version_id and record.sequencer
        expected = UploadKind.IGNORED if "ignored" in path.name else None
        if expected:
            assert classify(record.key) is expected
        else:
            assert classify(record.key) is not UploadKind.IGNORED


def test_event_keys_are_url_decoded():
    from s3_edit.parse import upload_records

    [record] = upload_records(json.loads((EVENTS / "s3" / "object_created_key_with_spaces.json").read_text()))
    assert record.key == "edits/red fox (2).jpg"
