"""Credit pricing. Prices live in configuration (Settings.credit_prices), never in code paths."""

from __future__ import annotations

from collections.abc import Mapping

from imagegen.models import GptImageParams

# The seed's credit table (apiframe v2, gpt-image-1.5): the default for Settings.credit_prices.
DEFAULT_CREDIT_PRICES: dict[str, int] = {"low": 4, "medium": 9, "auto": 24, "high": 24}


def credit_cost(params: GptImageParams, prices: Mapping[str, int]) -> int:
    """Credits for one job: the price of its quality tier times the number of images."""
    return prices[params.quality] * params.number_of_images
