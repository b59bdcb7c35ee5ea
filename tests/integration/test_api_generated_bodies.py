"""Generated bad request bodies against the API function's real entry point (in-process, against
the local stack's moto): whatever a client sends, the answer is a 400 in the documented shape
{"error": {"code", "message", "details"}}, never a 5xx.

Every body here is invalid by construction, or checked to be by the request model itself (the
bodies it accepts are skipped: they would start real jobs). Examples are counted per test by
Hypothesis (`--hypothesis-show-statistics`); together the tests below run about 3,000.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from imagegen.jobs import NEW_JOB_MAX_BYTES
from imagegen.models import GenerateRequest
from imagegen_infra import blueprint as bp
from imagegen_local.lambda_runtime import FakeLambdaContext
from tests.support import load_event

VALID: dict[str, Any] = {
    "prompt": "a lighthouse at dawn",
    "model": "gpt-image-1.5",
    "gptImageParams": {
        "quality": "low",
        "aspect_ratio": "1:1",
        "output_format": "png",
        "number_of_images": 1,
    },
}
FIELDS = ("prompt", "model", "gptImageParams")
PARAMS = (
    "quality",
    "aspect_ratio",
    "output_format",
    "background",
    "input_images",
    "input_fidelity",
    "number_of_images",
)


def generated(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,  # each example is a real handler call against moto
        database=None,  # nothing written into the worktree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def post(stack: Any, outputs: dict[str, str]) -> Iterator[Any]:
    from api.handler import lambda_handler
    from imagegen.runtime import services

    template = load_event("api/generate_seed_example.json")
    template["headers"]["X-API-Key"] = outputs["ApiKey"]
    template["multiValueHeaders"]["X-API-Key"] = [outputs["ApiKey"]]
    context = FakeLambdaContext(function_name=bp.API_FUNCTION.name)

    def send(body: str) -> tuple[int, Any]:
        event = copy.deepcopy(template)
        event["body"] = body
        answer = lambda_handler(event, context)
        return answer["statusCode"], json.loads(answer["body"])

    # The key is checked once, for real; bodies are what is generated here, and a DynamoDB read
    # per example would make thousands of them take minutes.
    keys = services().keys
    caller = keys.authenticate(outputs["ApiKey"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "authenticate", lambda key: caller)
        yield send


def assert_refused(answer: tuple[int, Any]) -> None:
    status, body = answer
    assert status == 400, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert all(isinstance(d, dict) and set(d) == {"field", "message"} for d in error["details"]), error


def model_refuses(body: Any) -> bool:
    try:
        GenerateRequest.model_validate(body)
    except ValidationError:
        return True
    return False


# JSON of every kind, lone surrogates included (a JSON escape such as "\ud800" makes one).
TEXT = st.text(st.characters(exclude_categories=[]), max_size=30)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
    | st.sampled_from(["auto", "low", "png", "1:1", "gpt-image-1.5", "https://example.com/a.png", ""])
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@generated(600)
@given(body=st.text(max_size=300) | st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")))
def test_any_text_that_is_not_a_request(post, body):
    with contextlib.suppress(ValueError):  # not JSON at all
        assume(model_refuses(json.loads(body)))
    assert_refused(post(body))


@generated(300)
@given(value=JSON.filter(lambda value: not isinstance(value, dict)))
def test_json_that_is_not_an_object(post, value):
    assert_refused(post(json.dumps(value)))


@generated(300)
@given(
    depth=st.integers(min_value=100, max_value=100_000),
    opener=st.sampled_from(["[", '{"a":']),
    where=st.sampled_from(["body", "prompt", "gptImageParams", "quality", "input_images", "unknown"]),
)
def test_json_nested_deeply_anywhere(post, depth, opener, where):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + ("1" if opener != "[" else "") + closer * depth
    if where == "body":
        body = nested
    elif where in FIELDS or where == "unknown":
        body = json.dumps({**VALID, where: "@"}).replace('"@"', nested)
    else:
        body = json.dumps({**VALID, "gptImageParams": {where: "@"}}).replace('"@"', nested)
    assert_refused(post(body))


@generated(1200)
@given(data=st.data())
def test_a_valid_request_with_one_thing_wrong(post, data):
    body = copy.deepcopy(VALID)
    how = data.draw(st.sampled_from(["replace", "remove", "add", "replace-param", "add-param"]))
    if how == "replace":
        body[data.draw(st.sampled_from(FIELDS))] = data.draw(JSON)
    elif how == "remove":
        del body[data.draw(st.sampled_from(("prompt", "model")))]
    elif how == "add":
        body[data.draw(TEXT.filter(lambda key: key not in FIELDS))] = data.draw(JSON)
    elif how == "replace-param":
        body["gptImageParams"][data.draw(st.sampled_from(PARAMS))] = data.draw(JSON)
    else:
        body["gptImageParams"][data.draw(TEXT.filter(lambda key: key not in PARAMS))] = data.draw(JSON)
    assume(model_refuses(body))
    assert_refused(post(json.dumps(body)))


@generated(300)
@given(
    prompt=st.one_of(
        st.integers(min_value=2001, max_value=50_000).map(lambda n: "x" * n),
        st.sampled_from(["", " ", "\n\t ", "\u3000"]),
    ),
    surrogate=st.sampled_from([None, "\\ud800", "\\udfff", "a\\udc00b"]),
)
def test_prompts_too_long_blank_or_not_unicode(post, prompt, surrogate):
    if surrogate is None:
        body = json.dumps({**VALID, "prompt": prompt})
    else:  # a lone surrogate, as a JSON escape makes one
        body = json.dumps({**VALID, "prompt": "@"}).replace('"@"', f'"a fox {surrogate}"')
    assert_refused(post(body))


@generated(150)
@given(
    digits=st.integers(min_value=20, max_value=20_000),
    field=st.sampled_from(["number_of_images", "quality"]),
    exponent=st.booleans(),
)
def test_numbers_no_field_can_hold(post, digits, field, exponent):
    number = f"1e{digits}" if exponent else "9" * digits
    body = json.dumps({**VALID, "gptImageParams": {field: "@"}}).replace('"@"', number)
    assert_refused(post(body))


@generated(150)
@given(
    count=st.integers(min_value=1, max_value=16),
    total=st.integers(min_value=NEW_JOB_MAX_BYTES + 1, max_value=2 * 1024 * 1024),
    char=st.sampled_from("a/%-._~"),
)
def test_requests_too_large_for_a_job_record(post, count, total, char):
    """Loopback URLs (allowed by the local stack), so only size can refuse them."""
    length = total // count + 1
    urls = [f"http://127.0.0.1:9/{i}/" + char * length for i in range(count)]
    assert_refused(post(json.dumps({**VALID, "gptImageParams": {"input_images": urls}})))
