"""The SDK (imagegen.client) against the API's contract on httpx.MockTransport: requests as the
API expects them, the server's own job views parsed, errors as exceptions with the API's code,
waits that back off and honour Retry-After, downloads that never send the key to S3, webhooks
verified as the Standard Webhooks library signs them. The same client runs against the real
local stack in tests/e2e/."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from api.views import job_view
from imagegen import client as sdk
from imagegen.client import AsyncClient, Client, JobView
from imagegen.models import GptImageParams, JobStatus
from imagegen.webhooks import new_secret
from tests.unit.fake_api import API_KEY, API_URL, IMAGE_BYTES, FakeApi
from tests.unit.test_webhooks import World


class Clock:
    """time.monotonic and time.sleep for the wait: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(fake: FakeApi, clock: Clock) -> Client:
    return Client(API_URL, API_KEY, transport=fake.transport, sleep=clock.sleep, clock=clock)


def async_client(fake: FakeApi, clock: Clock) -> AsyncClient:
    return AsyncClient(API_URL, API_KEY, transport=fake.transport, sleep=clock.async_sleep, clock=clock)


# --- typed results ------------------------------------------------------------------------
def test_job_view_reads_every_field_the_server_writes(fake: FakeApi) -> None:
    job = fake.add("COMPLETED", quality="high", aspect_ratio="3:2", output_format="png")
    written = fake.view(job.job_id)

    view = JobView.model_validate(written)

    assert set(written) <= set(JobView.model_fields), "a field of job_view the SDK does not type"
    assert view.model_extra == {}
    assert view.status is JobStatus.COMPLETED and view.is_terminal
    assert view.gptImageParams == GptImageParams(quality="high", aspect_ratio="3:2", output_format="png")
    assert view.images == written["result"]["images"]
    assert view.model_dump(mode="json") == written  # read and written back unchanged
    assert JobView.model_validate(job_view(job, fake.results, 60)).id == job.job_id


def test_a_field_a_newer_server_adds_is_kept_not_refused(fake: FakeApi) -> None:
    written = {**fake.view(fake.add().job_id), "queuePosition": 3}
    assert JobView.model_validate(written).model_extra == {"queuePosition": 3}


def test_importing_the_sdk_loads_nothing_heavy() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, imagegen.client, imagegen.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in ("boto3", "botocore", "aws_lambda_powertools")]
    assert "imagegen.client" in loaded and heavy == []


# --- requests and errors ------------------------------------------------------------------
def test_generate_sends_the_apiframe_body_with_only_what_was_set(client: Client, fake: FakeApi) -> None:
    job = client.generate("a fox reading", quality="high", aspect_ratio="3:2", number_of_images=2)

    post = fake.requests[0]
    assert (post.method, post.url.path) == ("POST", "/prod/v2/images/generate")
    assert post.headers["x-api-key"] == API_KEY and post.headers["user-agent"].startswith("imagegen-python")
    assert json.loads(post.content) == {
        "prompt": "a fox reading",
        "model": "gpt-image-1.5",
        "gptImageParams": {"quality": "high", "aspect_ratio": "3:2", "number_of_images": 2},
    }
    assert (job.id, job.status, job.creditCost) == ("job-001", JobStatus.QUEUED, 48)
    assert fake.requests[1].url.path == "/prod/v2/jobs/job-001"


def test_edit_sends_its_image_urls_as_input_images(client: Client, fake: FakeApi) -> None:
    client.edit(["https://img.example/a.png", "https://img.example/b.png"], "make it night", quality="low")
    assert json.loads(fake.requests[0].content)["gptImageParams"] == {
        "input_images": ["https://img.example/a.png", "https://img.example/b.png"],
        "quality": "low",
    }


def test_an_invalid_request_fails_before_it_is_sent_with_the_apis_details(
    client: Client, fake: FakeApi
) -> None:
    with pytest.raises(sdk.BadRequestError) as raised:
        client.generate("a fox", aspectRatio="3:2", quality="ultra")

    assert fake.requests == []
    assert (raised.value.status, raised.value.code) == (400, "invalid_request")
    fields = {d["field"] for d in raised.value.details}
    assert fields == {"gptImageParams.aspectRatio", "gptImageParams.quality"}


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (
            401,
            {"error": {"code": "unauthorized", "message": "Invalid API key"}},
            sdk.AuthenticationError,
            "unauthorized",
        ),
        (
            403,
            {"error": {"code": "forbidden", "message": "inactive"}},
            sdk.PermissionDeniedError,
            "forbidden",
        ),
        (404, {"error": {"code": "not_found", "message": "job x not found"}}, sdk.NotFoundError, "not_found"),
        (
            409,
            {"error": {"code": "job_not_cancelable", "message": "ended"}},
            sdk.ConflictError,
            "job_not_cancelable",
        ),
        (429, {"message": "Too Many Requests"}, sdk.RateLimitError, "http_429"),
        (
            503,
            {"error": {"code": "service_unavailable", "message": "retry"}},
            sdk.ServerError,
            "service_unavailable",
        ),
    ],
)
def test_api_errors_are_exceptions_with_the_apis_code_message_and_status(status, body, cls, code) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json=body))
    with Client(API_URL, API_KEY, transport=transport) as client, pytest.raises(cls) as raised:
        client.get("x")
    assert (raised.value.status, raised.value.code) == (status, code)
    assert isinstance(raised.value, sdk.ApiError) and raised.value.message


def test_an_answer_not_in_the_apis_shape_still_gives_a_clear_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(502, text="<html>Bad Gateway</html>"))
    with Client(API_URL, API_KEY, transport=transport) as client, pytest.raises(sdk.ServerError) as raised:
        client.get("x")
    assert (raised.value.code, raised.value.message, raised.value.details) == (
        "http_502",
        "<html>Bad Gateway</html>",
        [],
    )


def test_an_unreachable_api_is_a_connection_error_naming_it() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with (
        Client(API_URL, API_KEY, transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(sdk.ApiConnectionError, match=r"api\.example"),
    ):
        client.get("x")


def test_a_job_id_is_one_path_segment_whatever_it_holds(client: Client, fake: FakeApi) -> None:
    with pytest.raises(sdk.NotFoundError):
        client.get("../images/generate")
    assert fake.requests[0].url.raw_path == b"/prod/v2/jobs/..%2Fimages%2Fgenerate"


def test_the_key_is_never_in_the_clients_repr() -> None:
    with Client(API_URL, API_KEY) as client:
        assert API_KEY not in repr(client) and API_URL in repr(client)
    assert API_KEY not in repr(AsyncClient(API_URL, API_KEY))


# --- list and cancel (the contract of #12, on the mock) -----------------------------------
def test_list_iterates_every_page_with_the_status_and_page_size(client: Client, fake: FakeApi) -> None:
    for n in range(5):
        fake.add("COMPLETED" if n % 2 else "QUEUED")

    everything = [job.id for job in client.list(limit=2)]
    completed = [job.id for job in client.list(status="COMPLETED", limit=1)]

    assert everything == ["job-005", "job-004", "job-003", "job-002", "job-001"]
    assert completed == ["job-004", "job-002"]
    pages = [r.url.params for r in fake.requests if r.url.path == "/prod/v2/jobs"]
    assert [dict(p) for p in pages[:3]] == [
        {"limit": "2"},
        {"limit": "2", "cursor": "c2"},
        {"limit": "2", "cursor": "c4"},
    ]
    assert all(p["status"] == "COMPLETED" for p in pages[3:]) and len(pages) == 5


def test_list_fetches_a_page_only_when_the_iteration_gets_there(client: Client, fake: FakeApi) -> None:
    for _ in range(5):
        fake.add()
    first = next(iter(client.list(limit=2)))
    assert first.id == "job-005" and len(fake.requests) == 1


def test_cancel_returns_the_job_view_and_an_ended_job_is_a_conflict(client: Client, fake: FakeApi) -> None:
    running, done = fake.add("PROCESSING"), fake.add("COMPLETED")

    canceled = client.cancel(running.job_id)
    with pytest.raises(sdk.ConflictError) as raised:
        client.cancel(done.job_id)

    assert (
        fake.requests[0].method == "POST"
        and fake.requests[0].url.path == f"/prod/v2/jobs/{running.job_id}/cancel"
    )
    assert canceled.id == running.job_id and canceled.is_terminal
    assert (raised.value.status, raised.value.code) == (409, "job_not_cancelable")


def test_async_list_and_cancel(fake: FakeApi, clock: Clock) -> None:
    for _ in range(3):
        fake.add("PROCESSING")

    async def scenario() -> tuple[list[str], JobView]:
        async with async_client(fake, clock) as client:
            ids = [job.id async for job in client.list(limit=2)]
            return ids, await client.cancel("job-002")

    ids, canceled = asyncio.run(scenario())
    assert ids == ["job-003", "job-002", "job-001"]
    assert canceled.status is JobStatus.FAILED


# --- wait ---------------------------------------------------------------------------------
def test_wait_polls_with_growing_delays_and_reports_each_change(
    client: Client, fake: FakeApi, clock: Clock
) -> None:
    job = fake.add()
    fake.plans[job.job_id] = [
        ("QUEUED", 0),
        ("PROCESSING", 0),
        ("PROCESSING", 0),
        ("PROCESSING", 60),
        ("COMPLETED", 100),
    ]
    seen: list[tuple[str, int]] = []

    done = client.wait(job.job_id, on_update=lambda j: seen.append((j.status.value, j.progress)))

    assert done.status is JobStatus.COMPLETED and len(done.images) == 1
    assert seen == [("QUEUED", 0), ("PROCESSING", 0), ("PROCESSING", 60), ("COMPLETED", 100)]
    assert clock.slept == [0.5, 0.75, 1.125, 1.6875]


def test_wait_honours_retry_after_and_rides_out_throttling_and_outages(
    client: Client, fake: FakeApi, clock: Clock
) -> None:
    job = fake.add()
    fake.plans[job.job_id] = [("COMPLETED", 100)]
    fake.interruptions = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "Too Many Requests"}),
        httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "retry"}}),
        httpx.ConnectError("refused"),
    ]

    done = client.wait(job.job_id)

    assert done.status is JobStatus.COMPLETED
    assert clock.slept == [7.0, 0.75, 1.125]


def test_wait_gives_up_at_its_timeout_with_the_last_view(client: Client, fake: FakeApi, clock: Clock) -> None:
    job = fake.add("PROCESSING")

    with pytest.raises(sdk.WaitTimeout) as raised:
        client.wait(job.job_id, timeout=10, interval=2, max_interval=4)

    assert raised.value.job is not None and raised.value.job.status is JobStatus.PROCESSING
    assert isinstance(raised.value, TimeoutError) and raised.value.job_id == job.job_id
    assert sum(clock.slept) == 10 and clock.slept[-1] == 10 - sum(clock.slept[:-1])


def test_wait_raises_what_will_not_get_better(client: Client) -> None:
    with pytest.raises(sdk.NotFoundError):
        client.wait("no-such-job")


def test_wait_on_an_ended_job_returns_it_without_asking(client: Client, fake: FakeApi) -> None:
    view = JobView.model_validate(fake.view(fake.add("FAILED").job_id))
    assert client.wait(view) is view and fake.requests == []


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    later = httpx.Response(503, headers={"Retry-After": "Mon, 23 Nov 2026 12:00:30 GMT"})
    assert sdk.retry_after_seconds(later, now) == 30.0
    assert sdk.retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"}), now) is None


def test_async_wait_and_download(fake: FakeApi, clock: Clock, tmp_path: Path) -> None:
    job = fake.add(output_format="png", number_of_images=2)
    fake.plans[job.job_id] = [("PROCESSING", 50), ("COMPLETED", 100)]

    async def scenario() -> list[Path]:
        async with async_client(fake, clock) as client:
            done = await client.wait(job.job_id)
            return await client.download(done, tmp_path)

    paths = asyncio.run(scenario())
    assert [p.name for p in paths] == [f"{job.job_id}-0.png", f"{job.job_id}-1.png"]
    assert all(p.read_bytes() == IMAGE_BYTES for p in paths) and clock.slept == [0.5]


# --- download -----------------------------------------------------------------------------
def test_download_saves_every_image_and_never_sends_the_key_to_s3(
    client: Client, fake: FakeApi, tmp_path: Path
) -> None:
    job = fake.add("COMPLETED", output_format="jpeg", number_of_images=3)

    paths = client.download(job.job_id, tmp_path / "new" / "dir")

    assert [p.name for p in paths] == [f"{job.job_id}-{n}.jpeg" for n in range(3)]
    assert all(p.read_bytes() == IMAGE_BYTES for p in paths)
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == [p.name for p in paths]
    to_s3 = [r for r in fake.requests if r.url.host.endswith("s3.example")]
    assert len(to_s3) == 3 and all("x-api-key" not in r.headers for r in to_s3)


def test_download_signs_again_when_a_url_has_expired(client: Client, fake: FakeApi, tmp_path: Path) -> None:
    view = JobView.model_validate(fake.view(fake.add("COMPLETED").job_id))
    fake.expired.add(view.images[0])

    [path] = client.download(view, tmp_path)

    assert path.read_bytes() == IMAGE_BYTES
    assert [r.url.path for r in fake.requests].count(f"/prod/v2/jobs/{view.id}") == 1


def test_download_of_an_unfinished_or_failed_job_says_so(
    client: Client, fake: FakeApi, tmp_path: Path
) -> None:
    with pytest.raises(sdk.JobNotFinishedError, match="wait for it first"):
        client.download(fake.add("PROCESSING").job_id, tmp_path)
    with pytest.raises(sdk.JobFailedError, match="refused the prompt"):
        client.download(fake.add("FAILED").job_id, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_download_that_keeps_failing_leaves_no_partial_file(
    client: Client, fake: FakeApi, tmp_path: Path
) -> None:
    job = fake.add("COMPLETED")
    fake.expired.update(
        f"https://results-bucket.s3.example/images/{job.job_id}/0.webp?X-Amz-Signature=sig{n}" for n in (1, 2)
    )

    with pytest.raises(sdk.DownloadError, match="HTTP 403"):
        client.download(job.job_id, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- webhooks -----------------------------------------------------------------------------
def test_webhook_secret(client: Client, fake: FakeApi) -> None:
    assert client.webhook_secret() == fake.secret


def test_verify_webhook_accepts_what_the_webhooks_function_sends() -> None:
    world = World()
    world.deliverer.deliver(world.message())
    [(_url, body, headers)] = world.receiver.received

    payload = sdk.verify_webhook(headers, body, world.secret)

    assert payload["jobId"] == world.job_id and payload["event"] == "completed"
    assert Client.verify_webhook(headers, body, world.secret) == payload


def test_verify_webhook_agrees_with_the_standard_webhooks_library() -> None:
    secret, body, sent = new_secret(), '{"event": "completed"}', datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", sent, body)
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(sent.timestamp())),
        "Webhook-Signature": signature,
    }
    assert sdk.verify_webhook(headers, body.encode(), secret) == {"event": "completed"}
    # a second secret's signature beside it, as during a rotation, still verifies
    rotated = {**headers, "Webhook-Signature": "v1,bm90IGl0 " + signature}
    assert sdk.verify_webhook(rotated, body, secret)["event"] == "completed"


@pytest.mark.parametrize(
    "forge",
    [
        lambda h, b, s: (h, b.replace(b"completed", b"failed"), s),  # altered body
        lambda h, b, s: (h, b, new_secret()),  # another secret
        lambda h, b, s: ({**h, "webhook-id": "other"}, b, s),  # replayed under another id
        lambda h, b, s: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b, s),
        lambda h, b, s: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b, s),
        lambda h, b, s: ({**h, "webhook-timestamp": "yesterday"}, b, s),
    ],
    ids=["altered", "other-secret", "other-id", "unknown-version", "no-timestamp", "bad-timestamp"],
)
def test_verify_webhook_refuses_a_forged_or_altered_delivery(forge) -> None:
    world = World()
    world.deliverer.deliver(world.message())
    [(_url, body, headers)] = world.receiver.received
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.verify_webhook(*forge(headers, body, world.secret))


def test_verify_webhook_refuses_an_old_delivery() -> None:
    world = World()
    world.deliverer.deliver(world.message())
    [(_url, body, headers)] = world.receiver.received
    sent = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)

    assert sdk.verify_webhook(headers, body, world.secret, now=sent + timedelta(minutes=4))
    with pytest.raises(sdk.WebhookVerificationError, match="too old"):
        sdk.verify_webhook(headers, body, world.secret, now=sent + timedelta(minutes=6))
