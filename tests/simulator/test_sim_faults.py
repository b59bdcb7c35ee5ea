"""Fault knobs of the simulator, scripts scoped to one job, and its records of what it created."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagegen_local.simulator import (
    BREAK,
    HANG,
    MALFORMED,
    RECORDS_PATH,
    FaultScript,
    SimulatorConfig,
    UpstreamSimulator,
)

FAST = (0.01, 0.05)
APIFRAME_KEY = {"X-API-Key": "afk_test"}
BEARER = {"Authorization": "Bearer aio_test"}


@pytest.fixture
def sim() -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(SimulatorConfig(latency=FAST, seed=11)) as simulator:
        yield simulator


@pytest.fixture
def client(sim: UpstreamSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        yield http


def create(client: httpx.Client, prompt: str, **headers: str) -> httpx.Response:
    body = {"prompt": prompt, "model": "gpt-image-1.5", "gptImageParams": {"output_format": "png"}}
    return client.post("/v2/images/generate", json=body, headers={**APIFRAME_KEY, **headers})


def create_apiinone(client: httpx.Client, prompt: str) -> httpx.Response:
    body = {"model": "gpt-image-1-5", "prompt": prompt}
    return client.post("/api/v1/images/generations", json=body, headers=BEARER)


def finished_job(client: httpx.Client, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v2/jobs/{job_id}", headers=APIFRAME_KEY)
        if response.status_code == 200 and response.json()["status"] in ("COMPLETED", "FAILED"):
            return dict(response.json())
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {response.text}"
        time.sleep(0.02)


# -- scripts scoped to one job -------------------------------------------------------------


def test_a_script_hits_only_the_job_whose_prompt_carries_its_marker(sim, client):
    script = sim.script("#mine", create_failures=[503, 429])

    other = create(client, "someone else's fox")
    first, second, third = (create(client, "my fox #mine") for _ in range(3))

    assert other.status_code == 202  # another job's call never takes my faults
    assert [first.status_code, second.status_code, third.status_code] == [503, 429, 202]
    assert script.create_failures == []


def test_status_calls_and_downloads_take_the_script_of_the_task_they_are_about(sim, client):
    sim.script("#mine", poll_failures=[502, MALFORMED], download_failures=[500])
    mine = create(client, "my fox #mine").json()["jobId"]
    theirs = create(client, "their fox").json()["jobId"]

    assert client.get(f"/v2/jobs/{theirs}", headers=APIFRAME_KEY).status_code == 200
    assert client.get(f"/v2/jobs/{mine}", headers=APIFRAME_KEY).status_code == 502
    garbled = client.get(f"/v2/jobs/{mine}", headers=APIFRAME_KEY)
    assert garbled.status_code == 200 and not _is_a_job(garbled)
    my_url = finished_job(client, mine)["result"]["images"][0]
    their_url = finished_job(client, theirs)["result"]["images"][0]

    assert client.get(their_url).status_code == 200
    assert client.get(my_url).status_code == 500
    assert client.get(my_url).status_code == 200  # the script is used up


def test_a_script_can_match_the_idempotency_key(sim, client):
    script = sim.script("imagegen-job-42-", create_failures=[500])

    assert create(client, "a fox", **{"Idempotency-Key": "imagegen-job-41-0"}).status_code == 202
    assert create(client, "a fox", **{"Idempotency-Key": "imagegen-job-42-0"}).status_code == 500
    assert create(client, "a fox", **{"Idempotency-Key": "imagegen-job-42-0"}).status_code == 202
    assert script.create_failures == []


def test_a_scripted_outcome_and_reason_apply_to_that_job_only(sim, client):
    sim.script("#doomed", task_outcome="fail", fail_reason="nope, not this one")

    doomed = finished_job(client, create(client, "a doomed fox #doomed").json()["jobId"])
    fine = finished_job(client, create(client, "a fine fox").json()["jobId"])

    assert (doomed["status"], doomed["error"]) == ("FAILED", "nope, not this one")
    assert fine["status"] == "COMPLETED"


def test_a_scripted_hang_uses_the_scripts_own_hang_seconds(sim):
    sim.config.hang_seconds = 30.0
    sim.script("#slow", create_failures=[HANG], hang_seconds=0.3)
    with httpx.Client(base_url=sim.base_url, timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        create(impatient, "a slow fox #slow")
    with httpx.Client(base_url=sim.base_url, timeout=5) as patient:
        assert create(patient, "a slow fox #slow").status_code == 202  # answered, not stuck for 30 s

    assert len([t for t in sim.created_tasks if "#slow" in t["request"]["prompt"]]) == 2


def test_a_script_needs_a_marker():
    with pytest.raises(ValueError):
        FaultScript(match="")


# -- fault kinds ---------------------------------------------------------------------------


def _is_a_job(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "status" in body and "id" in body


def test_malformed_answers_come_in_three_kinds_and_the_work_is_still_done(sim, client):
    sim.config.malformed_rate = 1.0

    answers = [create(client, f"a garbled fox {n}") for n in range(12)]

    assert {a.status_code for a in answers} == {200}
    assert not any("jobId" in a.text and a.text.rstrip().endswith("}") for a in answers)
    kinds = {a.headers["content-type"].split(";")[0] for a in answers}
    assert kinds == {"application/json", "text/html"}
    bodies = {a.text for a in answers if a.headers["content-type"] == "application/json"}
    assert '{"ok": true}' in bodies and any(b.startswith('{"jobId": "') for b in bodies)  # wrong shape, cut
    assert len(sim.created_tasks) == 12  # a create answered with garbage still made its task
    assert sim.faults.counts == {"create malformed": 12}


def test_malformed_applies_to_apiinone_and_openai_too(sim, client):
    sim.config.create_failures = [MALFORMED, MALFORMED]

    apiinone = create_apiinone(client, "a garbled kite")
    openai = client.post("/v1/images/generations", json={"prompt": "a garbled kite"}, headers=BEARER)

    assert apiinone.status_code == openai.status_code == 200
    assert not _parses(apiinone, lambda body: body["data"]["task_id"])
    assert not _parses(openai, lambda body: body["data"][0]["b64_json"])
    assert [r.protocol for r in sim.task_records()] == ["apiinone", "openai"]  # the work was done


def _parses(response: httpx.Response, read: Any) -> bool:
    try:
        read(response.json())
    except (ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def test_rate_limits_say_when_to_retry(sim, client):
    sim.config.rate_limit_rate, sim.config.retry_after_seconds = 1.0, 3.0

    for answer in (create(client, "a fox"), create_apiinone(client, "a kite")):
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"


def test_a_download_breaks_off_midway(sim, client):
    url = finished_job(client, create(client, "a fox to download").json()["jobId"])["result"]["images"][0]
    whole = client.get(url).content
    sim.config.download_failures = [BREAK]
    received: list[bytes] = []

    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url) as response:
        assert int(response.headers["content-length"]) == len(whole)  # announced whole
        for chunk in response.iter_bytes():
            received.append(chunk)

    assert 0 < sum(map(len, received)) < len(whole)
    assert client.get(url).content == whole  # the next download is whole again
    sim.config.download_failure_rate = 1.0
    with httpx.Client(timeout=5) as fresh, pytest.raises(httpx.RemoteProtocolError):
        fresh.get(url)


def test_the_new_knobs_come_from_the_environment_and_are_checked():
    config = SimulatorConfig.from_env(
        {"IMAGEGEN_SIM_FAULTS": "malformed_rate=0.05,download_failure_rate=0.1,retry_after_seconds=2"}
    )

    assert (config.malformed_rate, config.download_failure_rate, config.retry_after_seconds) == (0.05, 0.1, 2)
    with pytest.raises(ValueError):
        SimulatorConfig(error_rate=0.6, malformed_rate=0.6)  # more than every call
    with pytest.raises(ValueError):
        SimulatorConfig(task_failure_rate=0.7, never_finish_rate=0.7)


# -- records -------------------------------------------------------------------------------


def test_records_say_what_was_created_and_when_each_task_finished(sim, client):
    sim.config.latency = (0.2, 0.2)
    done = create(client, "a finished fox", **{"Idempotency-Key": "imagegen-j1-0"}).json()["jobId"]
    sim.script("#never", task_outcome="never")
    never = create(client, "an endless fox #never").json()["jobId"]
    sim.script("#fail", task_outcome="fail")
    failed = create_apiinone(client, "a failing kite #fail").json()["data"]["task_id"]
    client.post("/v1/images/generations", json={"prompt": "an inline fox"}, headers=BEARER)
    view = finished_job(client, done)

    records = {r.task_id: r for r in sim.task_records()}

    assert [r.protocol for r in sim.task_records()] == ["apiframe", "apiframe", "apiinone", "openai"]
    assert records[done].idempotency_key == "imagegen-j1-0" and records[done].status == "completed"
    assert records[done].as_json()["finishedAt"] == view["completedAt"]  # what a status call says
    assert records[done].finished_at >= records[done].created_at
    assert (records[never].status, records[never].finished_at) == ("processing", None)
    assert records[failed].status == "failed" and records[failed].finished_at is not None
    [inline] = [r for r in records.values() if r.protocol == "openai"]
    assert inline.status == "completed" and inline.finished_at is not None
    assert inline.finished_at >= inline.created_at

    over_http = client.get(RECORDS_PATH).json()["tasks"]
    assert [t["taskId"] for t in over_http] == [r.task_id for r in sim.task_records()]
    mine = next(t for t in over_http if t["taskId"] == done)
    assert mine["finishedAt"] == view["completedAt"] and mine["prompt"] == "a finished fox"
    assert json.loads(json.dumps(over_http)) == over_http


def test_openai_renders_are_inline_and_recorded_once_per_call(sim, client):
    answer = client.post("/v1/images/generations", json={"prompt": "two foxes", "n": 2}, headers=BEARER)

    assert answer.status_code == 200 and len(answer.json()["data"]) == 2
    assert base64.b64decode(answer.json()["data"][0]["b64_json"])[:8] == b"\x89PNG\r\n\x1a\n"
    [record] = sim.task_records()
    assert (record.protocol, record.count, record.status) == ("openai", 2, "completed")
    assert answer.headers["x-request-id"] == record.task_id  # as OpenAI names its answers
