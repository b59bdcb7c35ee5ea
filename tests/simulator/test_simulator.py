"""The upstream simulator over real HTTP: protocols, images, faults and configuration."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegen_local.simulator import HANG, SimulatorConfig, UpstreamSimulator
from imagegen_local.simulator.render import RenderSpec, render_image
from tests.images import image_bytes
from tests.support import wait_until

FAST = (0.01, 0.05)
APIFRAME_KEY = {"X-API-Key": "afk_test"}
BEARER = {"Authorization": "Bearer aio_test"}
RED = (220, 20, 20)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(SimulatorConfig(latency=FAST, seed=7)) as simulator:
        yield simulator


@pytest.fixture
def client(sim: UpstreamSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        yield http


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    return image_bytes("png", size, color)


class _RedImageHandler(BaseHTTPRequestHandler):
    """Serves a red 96x64 PNG at /red.png and 404 elsewhere (stands in for presigned S3)."""

    body = _png((96, 64), RED)

    def do_GET(self) -> None:
        status, body = (200, self.body) if self.path == "/red.png" else (404, b"missing")
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedImageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def apiframe_body(**params: Any) -> dict[str, Any]:
    return {"prompt": "a fox reading a book", "model": "gpt-image-1.5", "gptImageParams": params}


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY).json()
        if job["status"] in ("COMPLETED", "FAILED"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def wait_for_task(client: httpx.Client, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"/api/v1/tasks/{task_id}", headers=BEARER).json()["data"]
        if data["status"] in ("completed", "failed"):
            return data
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} did not finish: {data}")


def fetch_image(client: httpx.Client, url: str, content_type: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert int(response.headers["content-length"]) == len(response.content)
    return Image.open(io.BytesIO(response.content))


def create_job(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/v2/images/generate", json=body, headers={**APIFRAME_KEY, **headers})


def is_reddish(pixel: Any) -> bool:
    red, green, blue = pixel[:3]
    return red > green + 100 and red > blue + 100


# -- apiframe v2 -------------------------------------------------------------------------


def test_apiframe_transparent_png_completes_with_an_rgba_image(client: httpx.Client) -> None:
    body = apiframe_body(aspect_ratio="3:2", output_format="png", background="transparent")
    created = create_job(client, body)
    assert created.status_code == 202
    assert created.json()["status"] == "QUEUED"

    job = wait_for_job(client, created.json()["jobId"])

    assert job["status"] == "COMPLETED" and job["progress"] == 100 and job["error"] is None
    assert job["model"] == "gpt-image-1.5" and job["creditCost"] == 24  # quality auto
    assert job["createdAt"].endswith("Z") and job["completedAt"] >= job["createdAt"]
    [url] = job["result"]["images"]
    image = fetch_image(client, url, "image/png")
    assert (image.format, image.size, image.mode) == ("PNG", (1536, 1024), "RGBA")
    assert image.getchannel("A").getextrema() == (0, 255)  # a transparent background area


def test_apiframe_three_images_are_distinct_webp_files(client: httpx.Client) -> None:
    job_id = create_job(client, apiframe_body(quality="medium", number_of_images=3)).json()["jobId"]

    job = wait_for_job(client, job_id)

    assert job["creditCost"] == 27  # 3 x 9
    urls = job["result"]["images"]
    assert len(urls) == 3 and len(set(urls)) == 3
    images = [fetch_image(client, url, "image/webp") for url in urls]
    assert all((image.format, image.size, image.mode) == ("WEBP", (1024, 1024), "RGB") for image in images)
    assert len({image.tobytes() for image in images}) == 3


def test_apiframe_jpeg_portrait_is_rgb(client: httpx.Client) -> None:
    job_id = create_job(client, apiframe_body(aspect_ratio="2:3", output_format="jpeg")).json()["jobId"]

    [url] = wait_for_job(client, job_id)["result"]["images"]

    image = fetch_image(client, url, "image/jpeg")
    assert (image.format, image.size, image.mode) == ("JPEG", (1024, 1536), "RGB")


def test_apiframe_status_moves_from_queued_through_processing(sim: UpstreamSimulator) -> None:
    sim.config.latency = (0.8, 0.8)  # QUEUED for the first 80 ms
    with httpx.Client(base_url=sim.base_url) as client:
        job_id = create_job(client, apiframe_body()).json()["jobId"]
        first = client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY).json()
        middle = wait_until(  # the first view past QUEUED
            lambda: client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY).json(),
            lambda view: view["status"] != "QUEUED",
            timeout=5,
            interval=0.02,
        )
        last = wait_for_job(client, job_id)

    assert (first["status"], first["progress"], first["result"]) == ("QUEUED", 0, None)
    assert first["completedAt"] is None
    assert middle["status"] == "PROCESSING" and 0 < middle["progress"] < 100
    assert last["status"] == "COMPLETED"


def test_apiframe_idempotency_key_reuses_the_job(sim: UpstreamSimulator, client: httpx.Client) -> None:
    first = create_job(client, apiframe_body(), **{"Idempotency-Key": "job-1"})
    again = create_job(client, apiframe_body(), **{"Idempotency-Key": "job-1"})
    other = create_job(client, apiframe_body(), **{"Idempotency-Key": "job-2"})

    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"] != other.json()["jobId"]
    assert [task["idempotency_key"] for task in sim.created_tasks] == ["job-1", "job-2"]
    assert sim.created_tasks[0]["protocol"] == "apiframe"
    assert sim.created_tasks[0]["request"]["prompt"] == "a fox reading a book"


def test_scripted_create_failures_answer_in_order(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.create_failures = [503, 429]

    responses = [create_job(client, apiframe_body()) for _ in range(3)]

    assert [response.status_code for response in responses] == [503, 429, 202]
    assert responses[1].headers["Retry-After"] == "1"
    assert responses[1].json()["error"]["code"] == "rate_limited"
    assert len(sim.created_tasks) == 1  # failed creates created nothing
    assert [status for method, _, status in sim.requests if method == "POST"] == [503, 429, 202]


def test_scripted_poll_failures_then_success(sim: UpstreamSimulator, client: httpx.Client) -> None:
    job_id = create_job(client, apiframe_body()).json()["jobId"]
    sim.config.poll_failures = [502]

    failed = client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY)
    recovered = client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY)

    assert failed.status_code == 502 and "message" in failed.json()["error"]
    assert recovered.status_code == 200 and recovered.json()["id"] == job_id


def test_task_outcome_fail_refunds_credits(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.task_outcome = "fail"
    sim.config.fail_reason = "content policy violation"

    job = wait_for_job(client, create_job(client, apiframe_body(quality="high")).json()["jobId"])

    assert job["status"] == "FAILED" and job["error"] == "content policy violation"
    assert job["creditCost"] == 0 and job["result"] is None and job["completedAt"] is not None


def test_task_outcome_never_stays_in_progress(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.task_outcome = "never"
    job_id = create_job(client, apiframe_body()).json()["jobId"]

    job = wait_until(  # at the cap a never-finishing task stays at, its latency spent
        lambda: client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY).json(),
        lambda view: view["progress"] == 99,
        timeout=5,
        interval=0.02,
    )

    assert job["status"] == "PROCESSING" and job["progress"] == 99 and job["result"] is None


def test_apiframe_edit_derives_from_the_input_image(client: httpx.Client, image_host: str) -> None:
    body = apiframe_body(output_format="png", input_images=[f"{image_host}/red.png"])

    job = wait_for_job(client, create_job(client, body).json()["jobId"])

    image = fetch_image(client, job["result"]["images"][0], "image/png").convert("RGB")
    assert is_reddish(image.getpixel((512, 800)))


def test_apiframe_unfetchable_input_fails_the_job(client: httpx.Client, image_host: str) -> None:
    body = apiframe_body(input_images=[f"{image_host}/missing.png"])

    job = wait_for_job(client, create_job(client, body).json()["jobId"])

    assert job["status"] == "FAILED" and job["error"] == "could not fetch input image"


def test_apiframe_auth_errors(sim: UpstreamSimulator, client: httpx.Client) -> None:
    missing = client.post("/v2/images/generate", json=apiframe_body())
    sim.config.api_key = "afk_right"
    wrong = create_job(client, apiframe_body())

    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"error": {"code": "unauthorized", "message": "API key is required"}}
    assert wrong.json() == {"error": {"code": "unauthorized", "message": "Invalid API key"}}
    assert sim.created_tasks == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-image-1.5"},
        {"prompt": "x" * 2001, "model": "gpt-image-1.5"},
        {"prompt": "a fox", "model": "dall-e-3"},
        apiframe_body(aspect_ratio="16:9"),
        apiframe_body(number_of_images=11),
        apiframe_body(quality="ultra"),
        apiframe_body(background="transparent", output_format="jpeg"),
        apiframe_body(input_images=["file:///etc/passwd"]),
    ],
)
def test_apiframe_validation_errors(client: httpx.Client, body: dict[str, Any]) -> None:
    response = create_job(client, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["message"]


def test_apiframe_unknown_job_and_unknown_route(client: httpx.Client) -> None:
    unknown_job = client.get("/v2/jobs/nope", headers=APIFRAME_KEY)
    unknown_route = client.get("/v3/anything")

    assert unknown_job.status_code == 404 and unknown_job.json()["error"]["code"] == "not_found"
    assert unknown_route.status_code == 404 and unknown_route.json()["error"]["code"] == "not_found"
    assert client.get("/files/nope.png").status_code == 404


# -- apiin.one ---------------------------------------------------------------------------


def test_apiinone_task_completes_with_a_png(sim: UpstreamSimulator, client: httpx.Client) -> None:
    body = {"model": "gpt-image-1-5", "prompt": "coffee shop logo", "aspect_ratio": "3:2", "quality": "high"}
    created = client.post("/api/v1/images/generations", json=body, headers=BEARER)

    assert created.status_code == 200
    envelope = created.json()
    task_id = envelope["data"]["task_id"]
    assert (envelope["code"], envelope["message"]) == (200, "success")
    assert envelope["data"]["status"] == "IN_PROGRESS"
    assert task_id.endswith("_gptimg")

    data = wait_for_task(client, task_id)

    assert data["status"] == "completed"
    assert data["output_urls"] == data["result"]["images"]
    image = fetch_image(client, data["result"]["images"][0], "image/png")
    assert (image.format, image.size, image.mode) == ("PNG", (1536, 1024), "RGB")
    assert sim.created_tasks[0]["protocol"] == "apiinone"


def test_apiinone_edit_and_failed_fetch(client: httpx.Client, image_host: str) -> None:
    def create(url: str) -> str:
        body = {"model": "gpt-image-1-5", "prompt": "make it pop", "input_urls": [url]}
        return client.post("/api/v1/images/generations", json=body, headers=BEARER).json()["data"]["task_id"]

    edited = wait_for_task(client, create(f"{image_host}/red.png"))
    failed = wait_for_task(client, create(f"{image_host}/missing.png"))

    image = fetch_image(client, edited["result"]["images"][0], "image/png")
    assert is_reddish(image.getpixel((512, 800)))
    assert failed["status"] == "failed"
    assert failed["error"] == {"message": "could not fetch input image"}
    assert "result" not in failed


def test_apiinone_failed_task(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.task_outcome = "fail"
    body = {"model": "gpt-image-1-5", "prompt": "x"}
    task_id = client.post("/api/v1/images/generations", json=body, headers=BEARER).json()["data"]["task_id"]

    data = wait_for_task(client, task_id)

    assert data == {"task_id": task_id, "status": "failed", "error": {"message": "content policy violation"}}


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-image-1-5", "prompt": "x", "quality": "low"},
        {"model": "gpt-image-1-5", "prompt": "x", "quality": "auto"},
        {"model": "gpt-image-1.5", "prompt": "x"},
        {"model": "gpt-image-1-5", "prompt": ""},
        {"model": "gpt-image-1-5", "prompt": "x", "aspect_ratio": "4:3"},
    ],
)
def test_apiinone_validation_error_shape(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/api/v1/images/generations", json=body, headers=BEARER)

    assert response.status_code == 400
    expected = {"code": 400, "message": "Invalid parameters", "type": "invalid_request"}
    assert response.json() == {"error": expected}


def test_apiinone_auth_and_unknown_task_shape(sim: UpstreamSimulator, client: httpx.Client) -> None:
    missing = client.post("/api/v1/images/generations", json={"model": "gpt-image-1-5", "prompt": "x"})
    sim.config.api_key = "aio_right"
    wrong = client.get("/api/v1/tasks/abc_gptimg", headers=BEARER)
    unknown = client.get("/api/v1/tasks/abc_gptimg", headers={"Authorization": "Bearer aio_right"})

    assert missing.status_code == wrong.status_code == 401
    assert wrong.json() == {"code": 401, "message": "Invalid API key", "data": None}
    assert unknown.status_code == 404
    assert unknown.json() == {"code": 404, "message": "Task not found", "data": None}


def test_apiinone_scripted_poll_failure_uses_envelope_shape(
    sim: UpstreamSimulator, client: httpx.Client
) -> None:
    body = {"model": "gpt-image-1-5", "prompt": "x"}
    task_id = client.post("/api/v1/images/generations", json=body, headers=BEARER).json()["data"]["task_id"]
    sim.config.poll_failures = [429]

    limited = client.get(f"/api/v1/tasks/{task_id}", headers=BEARER)

    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["code"] == 429 and limited.json()["data"] is None


# -- OpenAI Images -----------------------------------------------------------------------


def test_openai_generation_returns_inline_images(sim: UpstreamSimulator, client: httpx.Client) -> None:
    body = {
        "model": "gpt-image-1.5",
        "prompt": "lighthouse",
        "n": 2,
        "size": "1024x1536",
        "output_format": "webp",
    }

    response = client.post("/v1/images/generations", json=body, headers=BEARER)

    assert response.status_code == 200
    payload = response.json()
    assert (payload["size"], payload["output_format"], payload["background"]) == (
        "1024x1536",
        "webp",
        "opaque",
    )
    usage = payload["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    images = [Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) for item in payload["data"]]
    assert [(image.format, image.size) for image in images] == [("WEBP", (1024, 1536))] * 2
    assert images[0].tobytes() != images[1].tobytes()
    assert [task["protocol"] for task in sim.created_tasks] == ["openai"]


def test_openai_transparent_png_is_rgba(client: httpx.Client) -> None:
    body = {"model": "gpt-image-1.5", "prompt": "a sticker", "background": "transparent"}

    payload = client.post("/v1/images/generations", json=body, headers=BEARER).json()

    image = Image.open(io.BytesIO(base64.b64decode(payload["data"][0]["b64_json"])))
    assert (image.format, image.size, image.mode) == ("PNG", (1024, 1024), "RGBA")


def test_openai_edit_multipart_derives_from_first_image(sim: UpstreamSimulator, client: httpx.Client) -> None:
    files = [
        ("image[]", ("red.png", _png((300, 200), RED), "image/png")),
        ("image[]", ("blue.png", _png((300, 200), (0, 0, 255)), "image/png")),
    ]
    form = {"model": "gpt-image-1.5", "prompt": "add a hat", "n": "1", "input_fidelity": "high"}

    response = client.post("/v1/images/edits", data=form, files=files, headers=BEARER)

    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["size"] == "1536x1024"  # size=auto follows the landscape input
    image = Image.open(io.BytesIO(base64.b64decode(payload["data"][0]["b64_json"]))).convert("RGB")
    assert image.size == (1536, 1024) and is_reddish(image.getpixel((768, 800)))
    assert sim.created_tasks[0]["request"]["image"] == ["red.png", "blue.png"]


def test_openai_edit_without_image_is_rejected(client: httpx.Client) -> None:
    mask_only = {"mask": ("m.png", b"x")}
    response = client.post("/v1/images/edits", data={"prompt": "x"}, files=mask_only, headers=BEARER)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"


def test_openai_error_shapes(sim: UpstreamSimulator, client: httpx.Client) -> None:
    bad = client.post(
        "/v1/images/generations",
        json={"model": "gpt-image-1.5", "prompt": "x", "background": "transparent", "output_format": "jpeg"},
        headers=BEARER,
    )
    unauthenticated = client.post("/v1/images/generations", json={"prompt": "x"})
    sim.config.create_failures = [429]
    limited = client.post("/v1/images/generations", json={"prompt": "x"}, headers=BEARER)

    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.json()["error"]["param"] == "background"
    assert unauthenticated.status_code == 401 and set(unauthenticated.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_exceeded"


def test_openai_task_failure_is_a_moderation_error(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.task_outcome = "fail"

    response = client.post("/v1/images/generations", json={"prompt": "x"}, headers=BEARER)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "moderation_blocked"


# -- probabilistic faults, hangs, lifecycle, config ----------------------------------------


def test_probabilistic_faults(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.error_rate = 1.0
    errors = {create_job(client, apiframe_body()).status_code for _ in range(12)}
    sim.config.error_rate, sim.config.rate_limit_rate = 0.0, 1.0
    limited = create_job(client, apiframe_body())

    assert errors <= {500, 502, 503} and len(errors) > 1
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert sim.created_tasks == []


def test_hang_makes_client_time_out_but_still_creates_the_task(sim: UpstreamSimulator) -> None:
    sim.config.hang_seconds = 0.5
    sim.config.create_failures = [HANG]
    with httpx.Client(base_url=sim.base_url, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        create_job(client, apiframe_body(), **{"Idempotency-Key": "retry-me"})
    with httpx.Client(base_url=sim.base_url, timeout=5) as client:
        retried = create_job(client, apiframe_body(), **{"Idempotency-Key": "retry-me"})

    assert retried.status_code == 202
    assert len(sim.created_tasks) == 1


def test_timeout_rate_delays_answers(sim: UpstreamSimulator, client: httpx.Client) -> None:
    sim.config.timeout_rate, sim.config.hang_seconds = 1.0, 0.2

    started = time.monotonic()
    response = client.get("/v2/jobs/nope", headers=APIFRAME_KEY)

    assert response.status_code == 404 and time.monotonic() - started >= 0.2


def test_stop_closes_the_port() -> None:
    with UpstreamSimulator(SimulatorConfig(latency=FAST)) as simulator:
        url = simulator.base_url
        assert httpx.get(f"{url}/nothing").status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/nothing", timeout=1)


def test_from_env() -> None:
    config = SimulatorConfig.from_env(
        {
            "IMAGEGEN_SIM_LATENCY": "0.5,2",
            "IMAGEGEN_SIM_FAULTS": "error_rate=0.1, rate_limit_rate=0.05,timeout_rate=0,never_finish_rate=.2",
        }
    )

    assert config.latency == (0.5, 2.0)
    assert (config.error_rate, config.rate_limit_rate, config.never_finish_rate) == (0.1, 0.05, 0.2)
    assert SimulatorConfig.from_env({"IMAGEGEN_SIM_LATENCY": "3"}).latency == (3.0, 3.0)
    assert SimulatorConfig.from_env({}) == SimulatorConfig()
    with pytest.raises(ValueError):
        SimulatorConfig.from_env({"IMAGEGEN_SIM_FAULTS": "explode_rate=1"})
    with pytest.raises(ValueError):
        SimulatorConfig.from_env({"IMAGEGEN_SIM_LATENCY": "5,1"})
    with pytest.raises(ValueError):
        SimulatorConfig.from_env({"IMAGEGEN_SIM_FAULTS": "error_rate=2"})


def test_a_large_transparent_png_renders_at_its_size() -> None:
    # How fast it renders is the benchmark's to report (make bench), not a timed assertion here:
    # on a busy machine a wall-clock bound fails for reasons that are not ours.
    spec = RenderSpec(prompt="speed " * 100, size=(1536, 1024), output_format="png", transparent=True)
    data = render_image(spec, 1)
    image = Image.open(io.BytesIO(data))
    assert (image.size, image.mode) == ((1536, 1024), "RGBA")


def test_module_runs_in_the_foreground_until_sigterm() -> None:
    infra = Path(__file__).resolve().parents[2] / "infra"
    env = {**os.environ, "PYTHONPATH": str(infra)}
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_local.simulator", "--port", "0", "--latency", "0.01"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/nothing").status_code == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
