"""End to end: the SDK (imagegen.client) against the session's local stack over HTTP; the
sync client's generate path is also what tests/e2e/test_local_stack_http.py follows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from imagegen import client as sdk
from imagegen.models import JobStatus

pytestmark = pytest.mark.e2e


def test_generate_wait_download(outputs: dict[str, str], tmp_path: Path) -> None:
    with sdk.Client(outputs["ApiUrl"], outputs["ApiKey"]) as client:
        job = client.generate("a fox reading", quality="low", aspect_ratio="2:3", output_format="jpeg")
        done = client.wait(job, timeout=60)
        paths = client.download(done, tmp_path)

    assert job.status in (JobStatus.QUEUED, JobStatus.PROCESSING) and job.creditCost == 4
    assert done.status is JobStatus.COMPLETED and done.id == job.id
    [path] = paths
    with Image.open(path) as image:
        assert (image.format, image.size) == ("JPEG", (1024, 1536))


def test_async_generate_wait_download(outputs: dict[str, str], tmp_path: Path) -> None:
    async def scenario() -> tuple[sdk.JobView, list[Path]]:
        async with sdk.AsyncClient(outputs["ApiUrl"], outputs["ApiKey"]) as client:
            done = await client.wait(await client.generate("a kite", number_of_images=2), timeout=60)
            return done, await client.download(done.id, tmp_path)

    done, paths = asyncio.run(scenario())
    assert done.status is JobStatus.COMPLETED and len(paths) == 2
    assert all(p.stat().st_size > 0 for p in paths)


def test_the_apis_errors_arrive_as_exceptions_with_its_code(outputs: dict[str, str]) -> None:
    with sdk.Client(outputs["ApiUrl"], outputs["ApiKey"]) as client:
        with pytest.raises(sdk.NotFoundError) as missing:
            client.get("no-such-job")
        with pytest.raises(sdk.BadRequestError) as unsafe:
            client.edit(["http://169.254.169.254/latest/meta-data/"], "steal the metadata")
    with sdk.Client(outputs["ApiUrl"], "igk_not_a_key") as stranger, pytest.raises(sdk.AuthenticationError):
        stranger.webhook_secret()

    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert (unsafe.value.status, unsafe.value.code) == (400, "unsafe_url")
