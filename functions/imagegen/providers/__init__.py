"""Provider registry: adding a provider is one module and one line here."""

from __future__ import annotations

import httpx

from imagegen.providers.apiframe import ApiframeProvider
from imagegen.providers.apiinone import ApiinOneProvider
from imagegen.providers.base import GenerationRequest, Provider, ProviderConfig
from imagegen.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    ApiframeProvider.name: ApiframeProvider,
    ApiinOneProvider.name: ApiinOneProvider,
    OpenAIProvider.name: OpenAIProvider,
}


def provider_for(name: str, config: ProviderConfig, client: httpx.Client | None = None) -> Provider:
    try:
        provider_class = PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {sorted(PROVIDERS)}") from None
    return provider_class(config, client)


def refusal_of_chain(chain: list[str], request: GenerationRequest) -> str | None:
    """None when some provider of `chain` can serve `request`, else why the primary cannot."""
    reasons = [PROVIDERS[name].refusal(request) for name in chain if name in PROVIDERS]
    return None if not reasons or None in reasons else reasons[0]
