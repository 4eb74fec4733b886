"""Durations are `timedelta` settings (runtime.settings.Duration): a number is seconds,
units and ISO 8601 are understood, and the variable a duration had when it was plain
seconds, `<VARIABLE>_SECONDS`, is read while the new one is unset, with a warning."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings

NEW, OLD = "FISCOBRIDGE_TEST_TIMEOUT", "FISCOBRIDGE_TEST_TIMEOUT_SECONDS"


class _Settings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_TEST_", env_file=None, extra="ignore"
    )

    timeout: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))
    grace: Duration | None = Field(default=None, ge=timedelta(seconds=1))
    named: Duration = Field(
        default=timedelta(minutes=1),
        validation_alias=AliasChoices("FISCOBRIDGE_OTHER_NAMED", "fiscobridge_other_named"),
    )


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (NEW, OLD, "FISCOBRIDGE_TEST_GRACE", "FISCOBRIDGE_TEST_GRACE_SECONDS",
                 "FISCOBRIDGE_OTHER_NAMED", "FISCOBRIDGE_OTHER_NAMED_SECONDS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("text", ["90", "90.0", "PT1M30S", "90s", "1m30s", "1.5m", "90000ms"])
def test_the_new_variable_takes_seconds_units_or_iso_8601(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(NEW, text)
    assert _Settings().timeout == timedelta(seconds=90)


def test_a_keyword_number_is_seconds() -> None:
    assert _Settings(timeout=90).timeout == timedelta(seconds=90)
    assert _Settings(timeout=0.25).timeout.total_seconds() == 0.25


def test_the_old_seconds_variable_is_read_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(OLD, "90")
    monkeypatch.setenv("FISCOBRIDGE_TEST_GRACE_SECONDS", "2.5")
    monkeypatch.setenv("FISCOBRIDGE_OTHER_NAMED_SECONDS", "30")
    with caplog.at_level(logging.WARNING, logger="fiscobridge.settings"):
        settings = _Settings()
    assert settings.timeout == timedelta(seconds=90)
    assert settings.grace == timedelta(seconds=2.5)
    assert settings.named == timedelta(seconds=30)
    warned = caplog.text
    assert f"{OLD} is read for {NEW}" in warned
    assert "FISCOBRIDGE_OTHER_NAMED_SECONDS is read for FISCOBRIDGE_OTHER_NAMED" in warned


def test_the_new_variable_wins_over_the_old_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(OLD, "90")
    monkeypatch.setenv(NEW, "5m")
    with caplog.at_level(logging.WARNING, logger="fiscobridge.settings"):
        assert _Settings().timeout == timedelta(minutes=5)
    assert OLD not in caplog.text


def test_nothing_set_keeps_the_default() -> None:
    settings = _Settings()
    assert (settings.timeout, settings.grace) == (timedelta(seconds=10), None)


@pytest.mark.parametrize("text", ["0", "-5", "PT0S", "-1m"])
def test_a_duration_not_above_its_bound_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(NEW, text)
    with pytest.raises(ValidationError) as refused:
        _Settings()
    (error,) = refused.value.errors()
    assert error["loc"] == ("timeout",)
    assert "greater than 0 seconds" in error["msg"]


def test_the_old_variable_is_held_to_the_same_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OLD, "0")
    with pytest.raises(ValidationError, match="greater than 0 seconds"):
        _Settings()


def test_text_that_is_no_duration_is_refused_with_the_forms_that_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(NEW, "soon")
    with pytest.raises(ValidationError) as refused:
        _Settings()
    message = refused.value.errors()[0]["msg"]
    assert "'soon' is no duration" in message and "90s" in message and "PT1M30S" in message
