"""The public request model: the seed's fields and defaults, and clear refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imagegen.credits import DEFAULT_CREDIT_PRICES, credit_cost
from imagegen.models import GenerateRequest, GptImageParams, JobStatus

SEED = {
    "prompt": "A whimsical watercolor painting of a fox reading a book in a sunlit forest clearing",
    "model": "gpt-image-1.5",
    "gptImageParams": {"quality": "high", "aspect_ratio": "3:2", "output_format": "png"},
}


def test_the_seed_example_is_valid():
    request = GenerateRequest.model_validate(SEED)
    assert request.gptImageParams.size == (1536, 1024)
    assert request.gptImageParams.content_type == "image/png"


def test_defaults_are_the_seeds():
    params = GenerateRequest.model_validate({"prompt": "x", "model": "gpt-image-1.5"}).gptImageParams
    assert params.model_dump() == {
        "quality": "auto",
        "aspect_ratio": "1:1",
        "output_format": "webp",
        "background": "auto",
        "input_images": None,
        "input_fidelity": "low",
        "number_of_images": 1,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": "x" * 2001},
        {"model": "gpt-image-1"},
        {"model": None},
        {"gptImageParams": {"quality": "ultra"}},
        {"gptImageParams": {"aspect_ratio": "16:9"}},
        {"gptImageParams": {"output_format": "gif"}},
        {"gptImageParams": {"number_of_images": 0}},
        {"gptImageParams": {"number_of_images": 11}},
        {"gptImageParams": {"aspectRatio": "1:1"}},  # a typo is refused, not silently ignored
        {"gptImageParams": {"output_format": "jpeg", "background": "transparent"}},
        {"gptImageParams": {"input_images": ["ftp://example.com/a.png"]}},
        {"gptImageParams": {"input_images": ["https://example.com/a.png"] * 17}},
        {"webhook": "https://example.com"},
    ],
)
def test_invalid_requests_are_refused(change):
    with pytest.raises(ValidationError):
        GenerateRequest.model_validate({**SEED, **change})


def test_prompt_of_exactly_2000_characters_is_accepted():
    GenerateRequest.model_validate({**SEED, "prompt": "x" * 2000})


@pytest.mark.parametrize(
    ("quality", "images", "credits"), [("low", 1, 4), ("medium", 3, 27), ("auto", 2, 48), ("high", 10, 240)]
)
def test_credit_cost_is_the_seed_table_times_images(quality, images, credits):
    params = GptImageParams(quality=quality, number_of_images=images)
    assert credit_cost(params, DEFAULT_CREDIT_PRICES) == credits


def test_credit_prices_come_from_configuration():
    assert (
        credit_cost(GptImageParams(quality="high", number_of_images=2), {**DEFAULT_CREDIT_PRICES, "high": 14})
        == 28
    )


def test_terminal_statuses():
    assert [s for s in JobStatus if s.is_terminal] == [
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELED,
    ]
