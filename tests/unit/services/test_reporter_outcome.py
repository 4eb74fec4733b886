"""What the reporter publishes for each kind of answer, and when it gives up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from fiscal.hr_cis.soap import CisAnswer
from schemas.events import InvoiceSigned, InvoiceState
from services.reporter.backoff import Backoff
from services.reporter.outcome import Transient, Unverified, decide
from tests.factories import make_invoice

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BACKOFF = Backoff(base=timedelta(seconds=1), cap=timedelta(seconds=60),
                  deadline=timedelta(hours=1))


def signed(attempt: int = 1, first: datetime = NOW) -> InvoiceSigned:
    return InvoiceSigned(
        integration_uid="acme", invoice=make_invoice(), profile="hr-cis",
        message_id="5a3c1f1e-0000-4000-8000-000000000001", protection_code="a" * 32,
        document="<RacunZahtjev/>", attempt=attempt, first_attempt_at=first,
    )


def answer(jir: str | None = None, *errors: tuple[str, str]) -> CisAnswer:
    return CisAnswer(message_id="m", jir=jir, errors=tuple(errors), document=b"<RacunOdgovor/>")


def test_a_jir_is_fiscalized_with_both_documents_kept() -> None:
    status, retry = decide(signed(), answer("3c9b2a8e-1f2d-4c55-9a7b-2b1e0d4f6a11"), NOW, BACKOFF)
    assert retry is None and status.state is InvoiceState.FISCALIZED
    assert status.receipt_id and status.signed_request and status.signed_answer
    assert status.message_id == signed().message_id


@pytest.mark.parametrize("code", ["s001", "s002", "s003", "s004", "s005"])
def test_permanent_codes_are_rejected_with_what_to_do(code: str) -> None:
    status, retry = decide(signed(), answer(None, (code, "greska")), NOW, BACKOFF)
    assert retry is None and status.state is InvoiceState.REJECTED
    assert status.reason_code == code and code in status.message


@pytest.mark.parametrize(
    "result",
    [answer(None, ("s006", "sistemska greska")), Transient("timeout", "no answer in time"),
     Transient("http_500", "HTTP 500")],
)
def test_transient_failures_retry_as_a_later_delivery(result: object) -> None:
    status, retry = decide(signed(attempt=2), result, NOW, BACKOFF)  # type: ignore[arg-type]
    assert status.state is InvoiceState.RETRYING
    assert retry is not None and retry.attempt == 2 and retry.first_attempt_at == NOW
    # Attempt 2: exponential delay of 2 s, with up to half of it as jitter.
    assert NOW + timedelta(seconds=1) <= retry.not_before <= NOW + timedelta(seconds=2)


def test_after_the_deadline_the_invoice_fails_with_a_reason() -> None:
    late = NOW + timedelta(hours=1)
    status, retry = decide(signed(attempt=9), Transient("timeout", "no answer"), late, BACKOFF)
    assert retry is None and status.state is InvoiceState.FAILED
    assert "not fiscalized" in status.message


def test_an_unverifiable_answer_is_not_retried_blindly() -> None:
    status, retry = decide(signed(), Unverified("bad signature", b"<x/>"), NOW, BACKOFF)
    assert retry is None and status.state is InvoiceState.FAILED
    assert status.reason_code == "answer_unverified" and status.signed_answer == "<x/>"


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [BACKOFF.delay(n, rng).total_seconds() for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        full = min(60.0, 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert len({round(d, 3) for d in delays}) == len(delays)
