"""What every provider shares: the registry, error classification (HTTP and body codes),
Retry-After, and the provider settings (selection, failover, per-provider URLs and secrets)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError
from imagegen.providers import PROVIDERS, provider_for
from imagegen.providers.base import ProviderConfig, UpstreamUnavailableError, classify, retry_after_seconds
from imagegen.settings import Settings
from imagegen.transport import deadline

REQUIRED = {
    "IMAGEGEN_JOBS_TABLE": "jobs",
    "IMAGEGEN_API_KEYS_TABLE": "keys",
    "IMAGEGEN_RESULTS_BUCKET": "results",
    "IMAGEGEN_EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
}


def test_the_registry_knows_each_provider_by_its_name():
    assert sorted(PROVIDERS) == ["apiframe", "apiinone", "openai"]
    assert all(cls.name == name for name, cls in PROVIDERS.items())
    with pytest.raises(ValueError, match="unknown provider 'dalle'"):
        provider_for("dalle", ProviderConfig(base_url="", api_key="k"))


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("apiframe", "https://api.apiframe.ai"),
        ("apiinone", "https://apiin.one"),
        ("openai", "https://api.openai.com"),
    ],
)
def test_an_empty_base_url_means_the_providers_public_one(name, url):
    assert str(provider_for(name, ProviderConfig(base_url="", api_key="k")).http.base_url).rstrip("/") == url


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (429, UpstreamUnavailableError),
        (503, UpstreamUnavailableError),
        (500, UpstreamTransientError),
        (502, UpstreamTransientError),
        (504, UpstreamTransientError),
        (408, UpstreamTransientError),
        (400, UpstreamTerminalError),
        (401, UpstreamTerminalError),
        (402, UpstreamTerminalError),
        (403, UpstreamTerminalError),
        (404, UpstreamTerminalError),
        (422, UpstreamTerminalError),
    ],
)
def test_one_rule_classifies_every_code(code, kind):
    error = classify("p", code, "words", retry_after=2.0)
    assert type(error) is kind
    assert "words" in error.message
    if isinstance(error, UpstreamTransientError):
        assert error.retry_after == 2.0


def test_only_answers_that_prove_nothing_was_done_allow_failover():
    assert not isinstance(classify("p", 500, "x"), UpstreamUnavailableError)  # may have created a task
    assert isinstance(classify("p", 429, "x"), UpstreamUnavailableError)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2026 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(value, seconds):
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    response = httpx.Response(429, headers={"Retry-After": value})
    assert retry_after_seconds(response, now=now) == seconds
    assert retry_after_seconds(httpx.Response(429)) is None


def test_connection_failures_allow_failover_and_timeouts_do_not():
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)

    def call(handler) -> UpstreamTransientError:
        client = httpx.Client(transport=httpx.MockTransport(handler), base_url="https://x.test")
        with pytest.raises(UpstreamTransientError) as caught:
            provider_for("apiframe", ProviderConfig(base_url="https://x.test", api_key="k"), client).get_task(
                "t"
            )
        return caught.value

    assert isinstance(call(refused), UpstreamUnavailableError)
    assert not isinstance(call(read_timeout), UpstreamUnavailableError)
    assert not isinstance(call(dropped), UpstreamUnavailableError)


# --- settings ---------------------------------------------------------------------------------
def test_provider_settings_from_the_environment_and_back():
    settings = Settings.from_environ(
        {
            **REQUIRED,
            "IMAGEGEN_PROVIDER": "apiframe",
            "IMAGEGEN_PROVIDER_FAILOVER": " apiinone , openai ",
            "IMAGEGEN_PROVIDER_BASE_URL": "http://127.0.0.1:9000",
            "IMAGEGEN_PROVIDER_BASE_URLS": '{"openai": "https://api.openai.com"}',
            "IMAGEGEN_PROVIDER_SECRET_ID": "imagegen/provider-api-key",
            "IMAGEGEN_PROVIDER_SECRET_IDS": '{"openai": "imagegen/openai-api-key"}',
            "IMAGEGEN_RENDER_TIMEOUT_SECONDS": "120",
        }
    )

    assert settings.provider_chain == ["apiframe", "apiinone", "openai"]
    assert settings.provider_base_url_for("openai") == "https://api.openai.com"
    assert settings.provider_base_url_for("apiinone") == "http://127.0.0.1:9000"
    assert settings.provider_secret_id_for("openai") == "imagegen/openai-api-key"
    assert settings.provider_secret_id_for("apiframe") == "imagegen/provider-api-key"
    assert settings.render_timeout_seconds == 120.0
    assert Settings.from_environ(settings.to_environ()) == settings


def test_defaults_keep_one_provider_and_no_failover():
    settings = Settings.from_environ(REQUIRED)
    assert settings.provider_chain == ["apiframe"]
    assert settings.provider_base_url_for("apiframe") == ""  # the provider's public URL
    assert Settings.from_environ({**REQUIRED, "IMAGEGEN_PROVIDER_FAILOVER": ""}).provider_chain == [
        "apiframe"
    ]
    assert Settings.from_environ(settings.to_environ()) == settings


def test_the_primary_and_repeats_in_the_failover_list_count_once():
    settings = Settings.from_environ(
        {**REQUIRED, "IMAGEGEN_PROVIDER": "apiinone", "IMAGEGEN_PROVIDER_FAILOVER": "apiinone,openai,openai"}
    )
    assert settings.provider_chain == ["apiinone", "openai"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGEGEN_PROVIDER", "dalle"),
        ("IMAGEGEN_PROVIDER_FAILOVER", "apiinone,midjourney"),
        ("IMAGEGEN_PROVIDER_BASE_URLS", '{"opeani": "https://api.openai.com"}'),
        ("IMAGEGEN_PROVIDER_SECRET_IDS", '{"apiin.one": "s"}'),
        ("IMAGEGEN_PROVIDER_BASE_URLS", "{not json"),
        ("IMAGEGEN_RENDER_TIMEOUT_SECONDS", "0"),
    ],
)
def test_a_provider_misconfiguration_fails_at_cold_start(name, value):
    with pytest.raises(RuntimeError, match="invalid imagegen configuration"):
        Settings.from_environ({**REQUIRED, name: value})


def test_a_call_made_when_no_time_is_left_is_never_sent_and_permits_failover():
    sent: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    base = "https://apiframe.example"
    client = httpx.Client(base_url=base, transport=httpx.MockTransport(upstream))
    provider = provider_for("apiframe", ProviderConfig(base_url=base, api_key="k"), client)

    with deadline(0), pytest.raises(UpstreamUnavailableError):
        provider.send("GET", "/v2/jobs/x")
    provider.send("GET", "/v2/jobs/x")  # outside a deadline: sent as configured

    assert len(sent) == 1 and sent[0].extensions["timeout"] == client.timeout.as_dict()
