from __future__ import annotations

import pytest

from imagegen.settings import Settings

REQUIRED = {
    "IMAGEGEN_JOBS_TABLE": "jobs",
    "IMAGEGEN_API_KEYS_TABLE": "keys",
    "IMAGEGEN_RESULTS_BUCKET": "results",
    "IMAGEGEN_EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
}


def test_environment_round_trip():
    settings = Settings.from_environ(
        {
            **REQUIRED,
            "IMAGEGEN_POLL_INTERVAL_SECONDS": "3",
            "IMAGEGEN_CREDIT_PRICES": '{"low":2,"medium":5,"auto":14,"high":14}',
            "IMAGEGEN_ALLOW_LOOPBACK_URLS": "true",
            "UNRELATED": "x",
        }
    )
    assert settings.schedule.poll_interval_seconds == 3
    assert settings.credit_prices["high"] == 14 and settings.allow_loopback_urls
    assert Settings.from_environ(settings.to_environ()) == settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGEGEN_CREDIT_PRICES", '{"low": 4}'),
        ("IMAGEGEN_CREDIT_PRICES", '{"low":-1,"medium":5,"auto":14,"high":14}'),
        ("IMAGEGEN_POLL_INTERVAL_SECONDS", "-1"),
        ("IMAGEGEN_JOB_DEADLINE_SECONDS", "0"),
    ],
)
def test_bad_configuration_fails_at_cold_start_naming_the_field(name, value):
    with pytest.raises(RuntimeError, match="invalid imagegen configuration"):
        Settings.from_environ({**REQUIRED, name: value})


def test_missing_required_setting_is_reported():
    with pytest.raises(RuntimeError, match="jobs_table"):
        Settings.from_environ({k: v for k, v in REQUIRED.items() if k != "IMAGEGEN_JOBS_TABLE"})
