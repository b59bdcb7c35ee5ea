"""`make demo`: start the local stack, send the seed's own example request over HTTP, follow
the job, download its images into ./out/, print what happened, stop the stack.

The stack runs as a separate process through the same entry point as `make local`, and the
demo is a plain HTTP client of it, as a user would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

from imagegen_local.stack import OUTPUTS_FILE, REPO_ROOT

OUT_DIR = REPO_ROOT / "out"
LOG_FILE = OUT_DIR / "local-stack.log"
READY_TIMEOUT_SECONDS = 90
JOB_TIMEOUT_SECONDS = 180

# The seed's own example (shared/seeds/000: apiframe v2, GPT Image 1.5).
SEED_REQUEST: dict[str, Any] = {
    "prompt": "A whimsical watercolor painting of a fox reading a book in a sunlit forest clearing",
    "model": "gpt-image-1.5",
    "gptImageParams": {"quality": "high", "aspect_ratio": "3:2", "output_format": "png"},
}


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def start_stack() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start `python -m imagegen_local` (what `make local` runs); its logs, the functions'
    structured logs included, go to out/local-stack.log so the demo's own lines stay readable."""
    OUTPUTS_FILE.unlink(missing_ok=True)
    OUT_DIR.mkdir(exist_ok=True)
    log = LOG_FILE.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_local"],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(LOG_FILE.read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"the local stack exited early with code {process.returncode}")
        if OUTPUTS_FILE.exists():
            return process, json.loads(OUTPUTS_FILE.read_text())
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("the local stack did not become ready in time")


def stop_stack(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def follow(api: httpx.Client, job_id: str) -> tuple[dict[str, Any], float]:
    """Poll the job, printing each status change; returns the final view and seconds taken."""
    started, last = time.monotonic(), None
    while time.monotonic() - started < JOB_TIMEOUT_SECONDS:
        view = api.get(f"/v2/jobs/{job_id}").json()
        step = (view["status"], view["progress"])
        if step != last:
            say(f"  +{time.monotonic() - started:5.1f}s  {view['status']:<10} progress {view['progress']}%")
            last = step
        if view["status"] in ("COMPLETED", "FAILED"):
            return view, time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish within {JOB_TIMEOUT_SECONDS} s")


def download(urls: list[str], job_id: str, output_format: str) -> list[Path]:
    from PIL import Image

    OUT_DIR.mkdir(exist_ok=True)
    paths = []
    for index, url in enumerate(urls):
        path = OUT_DIR / f"{job_id}-{index}.{output_format}"
        path.write_bytes(httpx.get(url, timeout=60).raise_for_status().content)
        with Image.open(path) as image:
            width, height = image.size
            say(f"  saved {path.relative_to(REPO_ROOT)}  {image.format} {width}x{height} {image.mode}")
        paths.append(path)
    return paths


def run(outputs: dict[str, str]) -> int:
    api = httpx.Client(base_url=outputs["ApiUrl"], headers={"X-API-Key": outputs["ApiKey"]}, timeout=30)
    say(f"POST {outputs['ApiUrl']}/v2/images/generate  (the seed's example: quality high, 3:2, png)")
    submitted_at = time.monotonic()
    answer = api.post("/v2/images/generate", json=SEED_REQUEST)
    say(f"  -> {answer.status_code} {answer.text}")
    if answer.status_code != 202:
        return 1
    job_id = answer.json()["jobId"]
    view, _ = follow(api, job_id)
    if view["status"] != "COMPLETED":
        say(f"job FAILED: {view['error']}")
        return 1
    images = download(view["result"]["images"], job_id, SEED_REQUEST["gptImageParams"]["output_format"])
    s3 = boto3.client(
        "s3",
        endpoint_url=outputs["AwsEndpointUrl"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto's dummy credentials)
    )
    listed = s3.list_objects_v2(Bucket=outputs["ResultsBucket"], Prefix=f"images/{job_id}/")
    say(f"job id       {job_id}")
    say(
        f"timings      submitted -> COMPLETED in {time.monotonic() - submitted_at:.1f} s "
        f"(created {view['createdAt']}, completed {view['completedAt']})"
    )
    say(f"credits      {view['creditCost']}")
    for obj in listed.get("Contents", []):
        say(f"S3 object    s3://{outputs['ResultsBucket']}/{obj['Key']}  ({obj['Size']} bytes)")
    return edit_through_s3(s3, outputs, images[0])


def edit_through_s3(s3: Any, outputs: dict[str, str], image: Path) -> int:
    """The second way in: drop the image into the uploads bucket with a prompt in its metadata,
    wait for the result file the service writes next to it, download the edited image."""
    from PIL import Image

    from imagegen_local.edits_client import save_results, upload_edit, wait_for_result

    prompt = "Make it a moonlit night scene"
    edit = upload_edit(
        s3,
        outputs["UploadsBucket"],
        f"demo-{image.stem}",
        image.read_bytes(),
        prompt,
        quality="low",
        output_format="png",
        aspect_ratio="3:2",
    )
    say(f"S3 edit      uploaded s3://{outputs['UploadsBucket']}/{edit.key} with x-amz-meta-prompt={prompt!r}")
    started = time.monotonic()
    result = wait_for_result(s3, outputs["UploadsBucket"], edit, timeout=JOB_TIMEOUT_SECONDS)
    say(
        f"  -> s3://{outputs['UploadsBucket']}/{edit.result_key} after {time.monotonic() - started:.1f} s: "
        f"job {result['jobId']} {result['status']}, credits {result.get('creditCost')}"
    )
    if result["status"] != "COMPLETED":
        say(f"edit FAILED: {result.get('error')}")
        return 1
    for path in save_results(s3, result, OUT_DIR):
        with Image.open(path) as edited:
            say(f"  saved {path.relative_to(REPO_ROOT)}  {edited.format} {edited.size[0]}x{edited.size[1]}")
    return 0


def main() -> int:
    say("starting the local stack (moto + upstream simulator + local API) ...")
    process, outputs = start_stack()
    say(f"ready: API {outputs['ApiUrl']}, AWS (moto) {outputs['AwsEndpointUrl']}")
    say(f"logs of the stack and its functions: {LOG_FILE.relative_to(REPO_ROOT)}")
    try:
        return run(outputs)
    finally:
        say("stopping the local stack")
        stop_stack(process)
        say(f"stopped (exit code {process.returncode})")


if __name__ == "__main__":
    sys.exit(main())
