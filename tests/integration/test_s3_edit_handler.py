"""Both entry points of S3 edits, called in-process with the payloads in events/s3, against the
local stack (moto, the simulator, the real workflow).

moto drops whatever a function raises from an S3 notification, so these tests call the
handler directly. Their objects live in a bucket of their own without a notification (so
nothing but the test delivers events) and the functions are pointed at it.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from imagegen.edits.errors import UploadsNotConfigured
from imagegen.edits.keys import edit_job_id, error_key, result_key
from imagegen_infra import blueprint as bp
from imagegen_local.lambda_runtime import FakeLambdaContext
from tests.images import image_bytes
from tests.support import environment, load_event, wait_for_job

LOCAL_OWNER = "local-user"


def png(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (220, 20, 20), fmt: str = "PNG"
) -> bytes:
    return image_bytes(fmt, size, color)


@pytest.fixture(scope="module")
def bucket(stack: Any) -> str:
    name = f"imagegen-handler-tests-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture(autouse=True)
def functions_use_the_test_bucket(bucket: str) -> Iterator[None]:
    with environment(IMAGEGEN_UPLOADS_BUCKET=bucket):
        yield


def put(bucket: str, key: str, body: bytes, **metadata: str) -> str:
    answer = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
    return str(answer["VersionId"])


def s3_event(sample: str, bucket: str, key: str | None, version_id: str, size: int) -> dict[str, Any]:
    """A sample from events/s3 naming our object: bucket, key (URL-encoded as S3 sends it),
    version and size replaced; everything else as S3 sends it."""
    from urllib.parse import quote_plus

    event = copy.deepcopy(load_event(f"s3/{sample}"))
    record = event["Records"][0]["s3"]
    record["bucket"]["name"] = bucket
    record["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    if key is not None:
        record["object"]["key"] = quote_plus(key, safe="/")
    record["object"].update({"versionId": version_id, "size": size})
    return event


def context(function_name: str) -> Any:
    return FakeLambdaContext(function_name=function_name)


def deliver(event: dict[str, Any]) -> list[dict[str, Any]]:
    from s3_edit.handler import lambda_handler

    answer = lambda_handler(event, context(bp.S3_EDIT_FUNCTION.name))
    return list(answer["outcomes"])


def upload_and_deliver(
    bucket: str, key: str, body: bytes, sample: str = "object_created_image.json", **metadata: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    version = put(bucket, key, body, **metadata)
    event = s3_event(sample, bucket, key, version, len(body))
    [outcome] = deliver(event)
    return outcome, event


def read_json(bucket: str, key: str, timeout: float = 0.0) -> dict[str, Any]:
    s3 = boto3.client("s3")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        except s3.exceptions.NoSuchKey:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def job_item(outputs: dict[str, str], job_id: str) -> dict[str, Any]:
    return dict(
        boto3.resource("dynamodb").Table(outputs["JobsTable"]).get_item(Key={"job_id": job_id})["Item"]
    )


def executions_named(outputs: dict[str, str], job_id: str) -> int:
    sfn = boto3.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=outputs["StateMachineArn"], maxResults=1000)["executions"]
    return sum(1 for e in listed if e["name"] == job_id)


def name() -> str:
    return uuid.uuid4().hex[:10]


# --- starting edits -----------------------------------------------------------------------------
def test_image_with_prompt_metadata_starts_an_edit_job(bucket, outputs, api, job_events):
    key = f"edits/{name()}.png"
    outcome, event = upload_and_deliver(
        bucket,
        key,
        png(),
        prompt="make it night",
        quality="low",
        **{"aspect-ratio": "3:2", "output-format": "png", "input-fidelity": "high"},
    )
    version = event["Records"][0]["s3"]["object"]["versionId"]

    job_id = edit_job_id(bucket, key, version)
    assert outcome == {"key": key, "kind": "image", "action": "started", "job_id": job_id, "error_code": None}
    item = job_item(outputs, job_id)
    assert (item["owner"], item["source"], item["prompt"]) == (LOCAL_OWNER, "s3", "make it night")
    assert item["origin"] == {
        "kind": "image",
        "bucket": bucket,
        "key": key,
        "version": version,
        "result_key": result_key(key),
        "error_key": error_key(key),
    }
    params = item["params"]
    assert (params["quality"], params["aspect_ratio"], params["output_format"], params["input_fidelity"]) == (
        "low",
        "3:2",
        "png",
        "high",
    )
    [url] = params["input_images"]
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path.endswith(key) and query["versionId"] == [version]
    assert int(query["X-Amz-Expires"][0]) >= 900  # covers the job's deadline (15 minutes by default)

    view = wait_for_job(api, job_id)
    assert view["status"] == "COMPLETED" and view["source"] == "s3" and view["creditCost"] == 4
    result = read_json(bucket, result_key(key), timeout=10)
    assert result == {
        "jobId": job_id,
        "status": "COMPLETED",
        "resultKeys": [f"images/{job_id}/0.png"],
        "bucket": outputs["ResultsBucket"],
        "error": None,
        "creditCost": 4,
    }
    [announced] = job_events(job_id)
    assert (announced["type"], announced["source"]) == ("job.completed", "s3")


def test_manifest_with_two_images_starts_one_edit_with_both(bucket, outputs, api, simulator):
    batch = name()
    inputs = [f"edits/inputs/{batch}/a.png", f"edits/inputs/{batch}/b.jpg"]
    put(bucket, inputs[0], png(color=(250, 0, 0)))
    put(bucket, inputs[1], png(color=(0, 0, 250), fmt="JPEG"))
    body = json.dumps(
        {
            "prompt": "the two side by side",
            "images": inputs,
            "gptImageParams": {"quality": "medium", "output_format": "webp"},
        }
    ).encode()
    key = f"edits/{batch}.json"

    outcome, _ = upload_and_deliver(bucket, key, body, sample="object_created_manifest.json")

    assert (outcome["kind"], outcome["action"]) == ("manifest", "started")
    job_id = outcome["job_id"]
    urls = job_item(outputs, job_id)["params"]["input_images"]
    assert [urlsplit(u).path.split("/", 2)[-1] for u in urls] == inputs
    assert wait_for_job(api, job_id)["status"] == "COMPLETED"
    [created] = [t for t in simulator.created_tasks if t["idempotency_key"] == f"imagegen-{job_id}-0"]
    assert created["request"]["gptImageParams"]["input_images"] == urls
    result = read_json(bucket, result_key(key), timeout=10)
    assert (result["jobId"], result["status"], result["creditCost"]) == (job_id, "COMPLETED", 9)


def test_a_redelivered_event_never_starts_a_second_job(bucket, outputs, api, job_events):
    key = f"edits/{name()}.webp"
    outcome, event = upload_and_deliver(bucket, key, png(fmt="WEBP"), prompt="again and again")

    [second] = deliver(event)
    assert wait_for_job(api, outcome["job_id"])["status"] == "COMPLETED"
    [third] = deliver(event)  # after the job ended, too

    assert outcome["action"] == "started"
    assert second == third == {**outcome, "action": "duplicate"}
    assert executions_named(outputs, outcome["job_id"]) == 1
    assert len(job_events(outcome["job_id"], expect=2, timeout=1.0)) == 1


def test_a_new_version_of_the_same_key_is_a_new_edit(bucket):
    key = f"edits/{name()}.png"
    first, _ = upload_and_deliver(bucket, key, png(), prompt="first")
    second, _ = upload_and_deliver(bucket, key, png(), prompt="second")

    assert first["action"] == second["action"] == "started"
    assert first["job_id"] != second["job_id"]


def test_keys_arrive_url_encoded_and_are_decoded(bucket, outputs):
    key = f"edits/red fox ({name()}).jpg"
    outcome, _ = upload_and_deliver(
        bucket, key, png(fmt="JPEG"), sample="object_created_key_with_spaces.json", prompt="a fox"
    )

    assert outcome["action"] == "started" and outcome["key"] == key
    assert (
        job_item(outputs, outcome["job_id"])["origin"]["result_key"] == key.rsplit(".", 1)[0] + ".result.json"
    )


# --- bad uploads --------------------------------------------------------------------------------
def _no_prompt(bucket: str, n: str) -> tuple[str, bytes, dict[str, str], str]:
    return f"edits/{n}.png", png(), {}, "object_created_image.json"


def _not_an_image(bucket: str, n: str) -> tuple[str, bytes, dict[str, str], str]:
    return (
        f"edits/{n}.png",
        b"%PDF-1.7 not an image at all",
        {"prompt": "edit this"},
        "object_created_image.json",
    )


def _empty(bucket: str, n: str) -> tuple[str, bytes, dict[str, str], str]:
    return f"edits/{n}.png", b"", {"prompt": "edit this"}, "object_created_image.json"


def _bad_metadata(bucket: str, n: str) -> tuple[str, bytes, dict[str, str], str]:
    return f"edits/{n}.png", png(), {"prompt": "edit this", "quality": "ultra"}, "object_created_image.json"


def _manifest(body: bytes) -> Any:
    return lambda bucket, n: (f"edits/{n}.json", body, {}, "object_created_manifest.json")


def _manifest_missing_key(bucket: str, n: str) -> tuple[str, bytes, dict[str, str], str]:
    put(bucket, f"edits/inputs/{n}/ok.png", png())
    put(bucket, f"edits/inputs/{n}/notes.png", b"just text")
    body = {
        "prompt": "combine",
        "images": [
            f"edits/inputs/{n}/ok.png",
            f"edits/inputs/{n}/missing.png",
            f"edits/inputs/{n}/notes.png",
        ],
    }
    return f"edits/{n}.json", json.dumps(body).encode(), {}, "object_created_manifest.json"


BAD_UPLOADS = {
    "no prompt": (_no_prompt, "invalid_request", "the upload has no prompt", ["prompt"]),
    "not an image": (_not_an_image, "unsupported_image", "is not a PNG, JPEG or WebP image", []),
    "empty object": (_empty, "unsupported_image", "is not a PNG, JPEG or WebP image", []),
    "bad metadata": (
        _bad_metadata,
        "invalid_request",
        "the upload's metadata is invalid",
        ["gptImageParams.quality"],
    ),
    "manifest not JSON": (
        _manifest(b'{"prompt": "x", images: }'),
        "invalid_request",
        "the manifest is not valid JSON",
        [],
    ),
    "manifest nested deeply": (
        _manifest(b'{"prompt": "x", "images": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "invalid_request",
        "the manifest is not valid JSON",
        [],
    ),
    "manifest invalid": (
        _manifest(
            json.dumps({"prompt": "", "images": [], "gptImageParams": {"aspectRatio": "3:2"}}).encode()
        ),
        "invalid_request",
        "the manifest is invalid",
        ["prompt", "images", "gptImageParams.aspectRatio"],
    ),
    "manifest names missing keys": (
        _manifest_missing_key,
        "invalid_request",
        "the manifest names images that cannot be used",
        ["images.1", "images.2"],
    ),
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_a_bad_upload_gets_an_error_file_a_failed_job_and_an_event(case, bucket, outputs, api, job_events):
    make, code, message, fields = BAD_UPLOADS[case]
    key, body, metadata, sample = make(bucket, name())

    outcome, _ = upload_and_deliver(bucket, key, body, sample=sample, **metadata)

    assert (outcome["action"], outcome["error_code"]) == ("rejected", code)
    job_id = outcome["job_id"]
    document = read_json(bucket, error_key(key))
    assert set(document) == {"error", "jobId"} and document["jobId"] == job_id
    assert set(document["error"]) == {"code", "message", "details"}
    assert document["error"]["code"] == code and message in document["error"]["message"]
    assert sorted(d["field"] for d in document["error"]["details"]) == sorted(fields)
    view = api.get(f"/v2/jobs/{job_id}").json()
    assert (view["status"], view["source"], view["creditCost"]) == ("FAILED", "s3", 0)
    assert message in view["error"]
    [announced] = job_events(job_id)
    assert (announced["type"], announced["source"], announced["status"]) == ("job.failed", "s3", "FAILED")
    result = read_json(bucket, result_key(key), timeout=10)  # written from that event, as for any job
    assert (result["jobId"], result["status"], result["creditCost"]) == (job_id, "FAILED", 0)


def test_too_large_is_refused_from_its_size_before_anything_is_downloaded(bucket, api):
    from imagegen.runtime import services

    reads: list[str] = []

    def count_read(params: dict[str, Any], **_: Any) -> None:
        reads.append(params["Key"])

    with environment(IMAGEGEN_MAX_UPLOAD_BYTES="1000"):
        events = services().s3.meta.events  # the client the s3-edit function is wired with
        events.register("provide-client-params.s3.GetObject", count_read)
        try:
            key = f"edits/{name()}.png"
            outcome, _ = upload_and_deliver(
                bucket, key, png(size=(400, 400)) + b"\0" * 2000, prompt="too big"
            )
        finally:
            events.unregister("provide-client-params.s3.GetObject", count_read)

    assert (outcome["action"], outcome["error_code"]) == ("rejected", "upload_too_large")
    assert reads == []
    assert "the limit is 1000 bytes" in read_json(bucket, error_key(key))["error"]["message"]
    assert api.get(f"/v2/jobs/{outcome['job_id']}").json()["status"] == "FAILED"


def test_a_redelivered_bad_upload_is_announced_once(bucket, job_events):
    key = f"edits/{name()}.png"
    outcome, event = upload_and_deliver(bucket, key, png())  # no prompt

    [again] = deliver(event)

    assert again == {**outcome, "action": "duplicate", "error_code": None}
    assert len(job_events(outcome["job_id"], expect=2, timeout=1.0)) == 1


def test_what_no_configured_provider_can_render_is_refused_as_the_api_refuses_it(bucket, api):
    with environment(IMAGEGEN_PROVIDER="apiinone"):  # renders PNG only
        key = f"edits/{name()}.png"
        outcome, _ = upload_and_deliver(
            bucket, key, png(), prompt="as webp please", **{"output-format": "webp"}
        )
        refused = api.post(
            "/v2/images/generate",
            json={
                "prompt": "as webp please",
                "model": "gpt-image-1.5",
                "gptImageParams": {"output_format": "webp"},
            },
        )

    assert (outcome["action"], outcome["error_code"]) == ("rejected", "invalid_request")
    assert read_json(bucket, error_key(key))["error"] == refused.json()["error"]


def test_a_job_that_cannot_be_started_is_failed_and_announced(bucket, api, job_events):
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist"
    with environment(IMAGEGEN_STATE_MACHINE_ARN=missing):
        key = f"edits/{name()}.png"
        outcome, _ = upload_and_deliver(bucket, key, png(), prompt="no workflow today")

    assert (outcome["action"], outcome["error_code"]) == ("rejected", "service_unavailable")
    assert read_json(bucket, error_key(key))["error"]["code"] == "service_unavailable"
    view = api.get(f"/v2/jobs/{outcome['job_id']}").json()
    assert (view["status"], view["creditCost"]) == ("FAILED", 0)
    assert job_events(outcome["job_id"])[0]["type"] == "job.failed"


# --- what the trigger ignores -------------------------------------------------------------------
@pytest.mark.parametrize(
    "sample", ["object_created_input_ignored.json", "object_created_result_file_ignored.json"]
)
def test_inputs_and_our_own_answers_start_nothing(bucket, sample):
    key = load_event(f"s3/{sample}")["Records"][0]["s3"]["object"]["key"]
    version = put(bucket, key, png())

    [outcome] = deliver(s3_event(sample, bucket, None, version, 100))

    assert (outcome["action"], outcome["job_id"]) == ("ignored", None)
    with pytest.raises(boto3.client("s3").exceptions.NoSuchKey):
        read_json(bucket, error_key(key))


def test_the_configuration_test_event_is_ignored():
    assert deliver(load_event("s3/test_event.json")) == []


def test_an_event_from_another_bucket_is_a_loud_configuration_error(bucket):
    event = s3_event("object_created_image.json", "somebody-elses-bucket", "edits/x.png", "v1", 10)
    with pytest.raises(UploadsNotConfigured, match="not the uploads bucket"):
        deliver(event)


# --- the result writer --------------------------------------------------------------------------
def _sns_event(sample: str, job_id: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(f"s3/{sample}"))
    sns = event["Records"][0]["Sns"]
    sns["Message"] = json.dumps({**json.loads(sns["Message"]), "jobId": job_id})
    return event


def test_write_result_writes_the_result_file_from_the_job_record(bucket, api):
    from s3_edit.handler import write_result

    key = f"edits/{name()}.png"
    outcome, _ = upload_and_deliver(bucket, key, png(), prompt="once more")
    wait_for_job(api, outcome["job_id"])
    boto3.client("s3").delete_object(Bucket=bucket, Key=result_key(key))

    answer = write_result(
        _sns_event("sns_edit_completed.json", outcome["job_id"]),
        context(bp.S3_RESULT_FUNCTION.name),
    )

    assert answer == {"written": [result_key(key)]}
    assert read_json(bucket, result_key(key))["jobId"] == outcome["job_id"]


def test_write_result_ignores_jobs_that_did_not_come_from_uploads(api):
    from s3_edit.handler import write_result

    job_id = api.post("/v2/images/generate", json={"prompt": "p", "model": "gpt-image-1.5"}).json()["jobId"]
    answer = write_result(
        _sns_event("sns_api_job_completed.json", job_id),
        context(bp.S3_RESULT_FUNCTION.name),
    )

    assert answer == {"written": []}
