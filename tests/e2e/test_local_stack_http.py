"""End to end: `python -m imagegen_local` (what `make local` runs) in its own process, used over
HTTP exactly as the README says: the seed's curl example, our URL and key, images downloaded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegen.client import Client
from imagegen.models import JobStatus
from imagegen_local.stack import REPO_ROOT, free_port

pytestmark = pytest.mark.e2e
API_KEY = "igk_e2e_test_key"


@pytest.fixture(scope="module")
def local_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    outputs_file = tmp_path_factory.mktemp("e2e") / "local-stack.json"
    env = {
        # A newcomer's shell: no IMAGEGEN_* setting of this test session's own stack (whose
        # functions' environment the session fixture exports) leaks into `make local`.
        **{k: v for k, v in os.environ.items() if not k.startswith("IMAGEGEN_")},
        "IMAGEGEN_LOCAL_PORT": str(free_port()),
        "IMAGEGEN_API_KEY": API_KEY,
        "IMAGEGEN_SIM_LATENCY": "0.2,0.6",
        "IMAGEGEN_LOCAL_OUTPUTS": str(outputs_file),
        "IMAGEGEN_FIRST_POLL_SECONDS": "0",
        "IMAGEGEN_POLL_INTERVAL_SECONDS": "1",
        "PYTHONPATH": f"{REPO_ROOT / 'functions'}:{REPO_ROOT / 'infra'}",
    }
    log = (outputs_file.parent / "stack.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_local"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while not outputs_file.exists():
        assert process.poll() is None, (outputs_file.parent / "stack.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "local stack not ready in 60 s"
        time.sleep(0.2)
    yield process, json.loads(outputs_file.read_text()), outputs_file
    if process.poll() is None:
        process.kill()


def test_outputs_have_the_cdk_stacks_keys(local_stack):
    from imagegen_infra.blueprint import OUTPUT_KEYS

    _, outputs, _ = local_stack
    assert set(OUTPUT_KEYS) <= set(outputs)
    assert outputs["ApiKey"] == API_KEY


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_seeds_curl_example_completes_with_downloadable_images(local_stack, tmp_path):
    _, outputs, _ = local_stack
    seed_body = json.dumps(
        {
            "prompt": "A whimsical watercolor painting of a fox reading a book in a sunlit forest clearing",
            "model": "gpt-image-1.5",
            "gptImageParams": {"quality": "high", "aspect_ratio": "3:2", "output_format": "png"},
        }
    )
    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{outputs['ApiUrl']}/v2/images/generate",
            "-H",
            f"X-API-Key: {API_KEY}",
            "-H",
            "Content-Type: application/json",
            "-d",
            seed_body,
            "-w",
            "\n%{http_code}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    body, status = curl.stdout.rsplit("\n", 1)
    assert status == "202"
    job_id = json.loads(body)["jobId"]

    # Followed and fetched with the SDK (imagegen.client), so its wait and download run on every
    # run; polled often enough to see PROCESSING, which lasts at least the 1 s poll interval.
    statuses: list[str] = []
    with Client(outputs["ApiUrl"], API_KEY) as client:
        view = client.wait(
            job_id, timeout=30, interval=0.1, max_interval=0.5, on_update=lambda j: statuses.append(j.status)
        )
        assert view.status is JobStatus.COMPLETED, view
        assert "PROCESSING" in statuses
        assert view.creditCost == 24 and view.completedAt and view.createdAt
        assert view.completedAt >= view.createdAt
        [path] = client.download(view, tmp_path)
    assert path == tmp_path / f"{job_id}-0.png"
    image = Image.open(path)
    assert (image.format, image.size) == ("PNG", (1536, 1024))


def test_bad_requests_get_clear_json_errors_over_http(local_stack):
    _, outputs, _ = local_stack
    url = f"{outputs['ApiUrl']}/v2/images/generate"

    missing_key = httpx.post(url, json={"prompt": "x", "model": "gpt-image-1.5"})
    bad_body = httpx.post(url, headers={"X-API-Key": API_KEY}, json={"prompt": "x", "model": "dall-e-2"})
    no_route = httpx.get(f"{outputs['ApiUrl']}/v3/whatever", headers={"X-API-Key": API_KEY})

    assert (missing_key.status_code, missing_key.json()["error"]["code"]) == (401, "unauthorized")
    assert (bad_body.status_code, bad_body.json()["error"]["details"][0]["field"]) == (400, "model")
    assert (no_route.status_code, no_route.json()["error"]["code"]) == (404, "not_found")


def test_sigterm_stops_the_stack_cleanly(local_stack):
    process, outputs, outputs_file = local_stack
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0
    assert not outputs_file.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(outputs["ApiUrl"] + "/v2/jobs/x", timeout=2)
