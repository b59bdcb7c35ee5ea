"""The helpers tests wait with fail loudly (#9.9, #13.6): a job that does not finish in time is
an error naming the job and its last view, never a view returned as if it were the answer."""

from __future__ import annotations

import httpx
import pytest

from tests.support import WaitTimeout, wait_for_job, wait_until


def api_answering(view: dict[str, object]) -> httpx.Client:
    return httpx.Client(
        base_url="http://api.test", transport=httpx.MockTransport(lambda _: httpx.Response(200, json=view))
    )


def test_wait_for_job_raises_with_the_last_view_when_the_job_does_not_finish():
    api = api_answering({"id": "job-1", "status": "PROCESSING", "progress": 42})
    with api, pytest.raises(WaitTimeout, match=r"job job-1 terminal not reached.*'progress': 42"):
        wait_for_job(api, "job-1", timeout=0.3)


def test_wait_for_job_returns_the_terminal_view():
    with api_answering({"id": "job-1", "status": "FAILED"}) as api:
        assert wait_for_job(api, "job-1")["status"] == "FAILED"


def test_wait_until_returns_the_first_value_that_is_done():
    values = iter([0, 1, 2, 3])
    assert wait_until(lambda: next(values), lambda value: value >= 2, interval=0) == 2
