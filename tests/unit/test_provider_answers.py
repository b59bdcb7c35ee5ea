"""Whatever an upstream answers, every registered provider raises one of our upstream errors
(or reads a state), never JSONDecodeError, KeyError, TypeError, RecursionError or an httpx
error: a raw exception fails the job as "JSONDecodeError: ..." without a retry. A body that
cannot be read at all (cut off, a proxy's HTML page, empty, a broken Content-Encoding, JSON
nested past what we parse) is transient and pinned to the provider, as a lost answer is
(imagegen.transport); a readable answer of the wrong shape fails the job with its reason.
The registry is iterated, so a provider added later is held to the same rule."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.errors import UpstreamError, UpstreamTerminalError, UpstreamTransientError
from imagegen.models import GptImageParams
from imagegen.providers import PROVIDERS, provider_for
from imagegen.providers.base import GenerationRequest, ProviderConfig, TaskState, UpstreamUnavailableError

REQUEST = GenerationRequest(job_id="job-1", prompt="a fox", params=GptImageParams(output_format="png"))
DEEP = b"[" * 5000 + b"]" * 5000
UNREADABLE = {
    "cut off midway": (b'{"jobId": "abc', {"content-type": "application/json"}),
    "an HTML page": (b"<html><body>Please try again later.</body></html>", {"content-type": "text/html"}),
    "empty": (b"", {}),
    "binary": (b"\xff\xfe\x00\x81garbage", {}),
    "nested too deeply": (DEEP, {"content-type": "application/json"}),
    "not gzip although it says so": (b"plain", {"content-encoding": "gzip"}),
}


def provider(name: str, status: int, **answer: Any) -> Any:
    """`name` against an upstream answering every call with this status and body (built in the
    transport, as a real answer is: a body's Content-Encoding is decoded while it is read)."""
    transport = httpx.MockTransport(lambda _: httpx.Response(status, **answer))
    config = ProviderConfig(base_url="https://upstream.test", api_key="k")
    return provider_for(name, config, httpx.Client(base_url=config.base_url, transport=transport))


def calls(name: str) -> list[str]:
    # OpenAI renders synchronously: get_task refuses before any call, whatever the upstream says.
    return ["create"] if name == "openai" else ["create", "poll"]


def call(instance: Any, which: str) -> Any:
    return instance.create_task(REQUEST, 0) if which == "create" else instance.get_task("t-1")


CASES = [(name, which) for name in sorted(PROVIDERS) for which in calls(name)]


@pytest.mark.parametrize(("name", "which"), CASES)
@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_an_unreadable_200_is_transient_and_pinned(name, which, kind):
    body, headers = UNREADABLE[kind]

    with pytest.raises(UpstreamTransientError) as caught:
        call(provider(name, 200, content=body, headers=headers), which)

    # It reached the upstream, which may have acted on it: retried there, never failed over.
    assert not isinstance(caught.value, UpstreamUnavailableError)
    assert caught.value.message.startswith(PROVIDERS[name].label or name)
    assert "not JSON" in caught.value.message or "could not be decoded" in caught.value.message


@pytest.mark.parametrize(("name", "which"), CASES)
@pytest.mark.parametrize("body", [DEEP, b"<html>", b""])
def test_an_error_status_with_an_unreadable_body_keeps_its_status_meaning(name, which, body):
    with pytest.raises(UpstreamTransientError, match="HTTP 502"):
        call(provider(name, 502, content=body), which)
    with pytest.raises(UpstreamTerminalError):
        call(provider(name, 400, content=body), which)


@pytest.mark.parametrize(("name", "which"), CASES)
def test_a_broken_gzip_error_body_is_transient(name, which):
    with pytest.raises(UpstreamTransientError):
        call(provider(name, 500, content=b"xx", headers={"content-encoding": "gzip"}), which)


@pytest.mark.parametrize("progress", ["1e400", "-1e400", "NaN", '"50"', "true", "[50]"])
@pytest.mark.parametrize("name", ["apiframe", "apiinone"])
def test_a_progress_that_is_no_finite_number_reads_as_zero(name, progress):
    status = '"PROCESSING"' if name == "apiframe" else '"processing"'
    raw = f'{{"status": {status}, "progress": {progress}}}'
    body = raw if name == "apiframe" else f'{{"code": 200, "data": {raw}}}'

    state = provider(name, 200, content=body.encode()).get_task("t-1")

    assert state == TaskState(state.status, 0)


@pytest.mark.parametrize("task_id", [True, {"a": 1}, [1], 1.5, ""])
@pytest.mark.parametrize("name", ["apiframe", "apiinone"])
def test_a_task_id_that_is_not_a_string_or_number_is_refused(name, task_id):
    field = {"jobId": task_id} if name == "apiframe" else {"code": 200, "data": {"task_id": task_id}}
    with pytest.raises(UpstreamTerminalError, match="without a"):
        provider(name, 200, json=field).create_task(REQUEST, 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Keys and words the providers look for, so the generated answers reach their deeper branches.
words = st.sampled_from(
    [
        "status",
        "progress",
        "result",
        "images",
        "data",
        "code",
        "error",
        "message",
        "jobId",
        "task_id",
        "COMPLETED",
        "completed",
        "FAILED",
        "failed",
        "PROCESSING",
        "b64_json",
        "url",
        "output_urls",
    ]
)
shaped = st.recursive(
    st.none() | st.integers(-1, 600) | st.floats() | words | st.just("https://x.test/a.png"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(words, children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, database=None)  # no .hypothesis/ in the tree
@given(
    case=st.sampled_from(CASES),
    status=st.sampled_from([200, 201, 400, 404, 429, 500, 503]),
    body=st.one_of(json_values.map(json.dumps), shaped.map(json.dumps), st.text(max_size=60)).map(str.encode)
    | st.binary(max_size=60),
)
def test_any_answer_is_one_of_our_errors_or_a_state(case, status, body):
    name, which = case
    # Anything but our errors escapes and fails the test with its traceback.
    with contextlib.suppress(UpstreamError):
        call(provider(name, status, content=body), which)
