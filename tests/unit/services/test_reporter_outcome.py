"""What the reporter publishes for each kind of answer: it never gives up on a
transient failure, and says when an invoice is past its delivery deadline."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from fiscal.authority import Answer, Verdict
from fiscal.hr_cis.authority import classify_answer, classify_change_answer
from fiscal.hr_cis.late import LateDeadline
from fiscal.hr_cis.soap import ChangeAnswer, CisAnswer
from schemas.events import InvoiceSigned, InvoiceState, SubmissionKind
from services.reporter.backoff import Backoff
from services.reporter.outcome import decide, first_late
from services.writeback.stage import due as writeback_due
from tests.factories import fiscal_number, make_invoice

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BACKOFF = Backoff(base=timedelta(seconds=1), cap=timedelta(seconds=60))
DEADLINE = LateDeadline()  # two working days


def signed(attempt: int = 1, first: datetime = NOW, late: bool = False) -> InvoiceSigned:
    return InvoiceSigned(
        integration_uid="acme",
        invoice=make_invoice().model_copy(update={"first_seen_issued_at": first}),
        profile="hr-cis", message_id="5a3c1f1e-0000-4000-8000-000000000001",
        protection_code="a" * 32, document="<RacunZahtjev/>", attempt=attempt,
        first_attempt_at=first, late=late,
    )


def answer(jir: str | None = None, *errors: tuple[str, str]) -> Answer:
    """A RacunOdgovor as the CIS channel classifies it."""
    return classify_answer(
        CisAnswer(message_id="m", jir=jir, errors=tuple(errors), document=b"<RacunOdgovor/>"))


Transient = Answer.transient
CHANGE_REQUEST = (
    b'<tns:PromijeniPodatkeRacunaZahtjev xmlns:tns="http://www.apis-it.hr/fin/2012/types/f73">'
    b"<tns:Racun><tns:NacinPlac>G</tns:NacinPlac><tns:PromijenjeniNacinPlac>K"
    b"</tns:PromijenjeniNacinPlac><tns:PromijenjeniOibPrimateljaRacuna/></tns:Racun>"
    b"</tns:PromijeniPodatkeRacunaZahtjev>"
)


def test_a_jir_is_fiscalized_with_both_documents_kept() -> None:
    jir = "3c9b2a8e-1f2d-4c55-9a7b-2b1e0d4f6a11"
    status, retry = decide(signed(), answer(jir), NOW, BACKOFF, DEADLINE)
    assert retry is None and status.state is InvoiceState.FISCALIZED
    assert status.receipt_id and status.signed_request and status.signed_answer
    assert status.message_id == signed().message_id


@pytest.mark.parametrize("code", ["s001", "s002", "s003", "s004", "s005"])
def test_permanent_codes_are_rejected_with_what_to_do(code: str) -> None:
    status, retry = decide(signed(), answer(None, (code, "greska")), NOW, BACKOFF, DEADLINE)
    assert retry is None and status.state is InvoiceState.REJECTED
    assert status.reason_code == code and code in status.message


@pytest.mark.parametrize(
    "result",
    [answer(None, ("s006", "sistemska greska")), Transient("timeout", "no answer in time"),
     Transient("http_500", "HTTP 500")],
)
def test_transient_failures_retry_as_a_later_delivery(result: object) -> None:
    status, retry = decide(signed(attempt=2), result, NOW, BACKOFF, DEADLINE)  # type: ignore[arg-type]
    assert status.state is InvoiceState.RETRYING
    assert retry is not None and retry.attempt == 2 and retry.first_attempt_at == NOW
    # Attempt 2: exponential delay of 2 s, with up to half of it as jitter.
    assert NOW + timedelta(seconds=1) <= retry.not_before <= NOW + timedelta(seconds=2)


def test_a_transient_failure_is_retried_however_long_it_lasts() -> None:
    # A year of failures later the invoice is still retried, no further apart than the cap.
    later = NOW + timedelta(days=365)
    status, retry = decide(signed(attempt=5000), Transient("timeout", "no answer"), later,
                           BACKOFF, DEADLINE)
    assert status.state is InvoiceState.RETRYING and retry is not None
    assert retry.not_before <= later + BACKOFF.cap and retry.attempt == 5000
    assert status.late and "Late" in status.message


def test_late_only_after_two_working_days() -> None:
    # Issued Friday 27 Nov 2026 12:00 Zagreb (11:00 UTC): Saturday and Sunday do not
    # count, so the deadline is Tuesday 1 Dec 12:00 Zagreb.
    friday = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    due = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    assert DEADLINE.due_by(friday) == due
    failure = Transient("timeout", "no answer")
    before, _ = decide(signed(3, friday), failure, due - timedelta(seconds=1), BACKOFF, DEADLINE)
    after, _ = decide(signed(3, friday), failure, due, BACKOFF, DEADLINE)
    assert not before.late and "Late" not in before.message
    assert after.late and after.state is InvoiceState.RETRYING
    # A JIR after the deadline is fiscalized, and still recorded as delivered late.
    done, _ = decide(signed(4, friday), answer("3c9b2a8e-1f2d-4c55-9a7b-2b1e0d4f6a11"), due,
                     BACKOFF, DEADLINE)
    assert done.state is InvoiceState.FISCALIZED and done.late


def test_public_holidays_from_the_settings_are_not_working_days() -> None:
    thursday = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)  # Christmas Eve, a working day
    holidays = LateDeadline.of(2, [date(2026, 12, 25), date(2026, 12, 26)])
    # Fri 25 and Sat 26 are holidays, Sun 27 off: Mon 28 and Tue 29 are the two days.
    assert holidays.due_by(thursday) == datetime(2026, 12, 29, 9, 0, tzinfo=UTC)
    assert DEADLINE.due_by(thursday) == datetime(2026, 12, 28, 9, 0, tzinfo=UTC)
    assert LateDeadline.of(2, fixed_seconds=30).due_by(thursday) == \
        thursday + timedelta(seconds=30)


def test_late_is_counted_once_per_invoice() -> None:
    due = DEADLINE.due_by(NOW)
    failure = Transient("timeout", "no answer")
    # Not late yet: nothing counted, and the retry says so.
    early, retry = decide(signed(2), failure, due - timedelta(seconds=1), BACKOFF, DEADLINE)
    assert not first_late(signed(2), due - timedelta(seconds=1), DEADLINE)
    assert retry is not None and not retry.late and not early.late
    # The first late outcome is counted; its retry carries the lateness on ...
    assert first_late(signed(3), due, DEADLINE)
    _, retry = decide(signed(3), failure, due, BACKOFF, DEADLINE)
    assert retry is not None and retry.late
    # ... so the next attempt's outcome (signed with late=true) is not counted again.
    assert not first_late(signed(4, late=True), due + timedelta(minutes=1), DEADLINE)


def test_an_unverifiable_answer_is_not_retried_blindly() -> None:
    unverified = Answer(Verdict.UNVERIFIED, "answer_unverified", "bad signature",
                        action="Check the configured CIS certificate", document=b"<x/>")
    status, retry = decide(signed(), unverified, NOW, BACKOFF, DEADLINE)
    assert retry is None and status.state is InvoiceState.FAILED
    assert status.reason_code == "answer_unverified" and status.signed_answer == "<x/>"
    assert "Check the configured CIS certificate, then look the invoice up" in status.message



def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [BACKOFF.delay(n, rng).total_seconds() for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        full = min(60.0, 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert len({round(d, 3) for d in delays}) == len(delays)


# --- changes of a fiscalized invoice (promijeniPodatkeRacuna) -----------------------


def change(attempt: int = 1) -> InvoiceSigned:
    return signed(attempt).model_copy(update={
        "kind": SubmissionKind.CHANGE, "document": "<PromijeniPodatkeRacunaZahtjev/>",
        "fiscal_number": fiscal_number(7)})


def test_an_accepted_change_keeps_the_invoice_fiscalized_without_a_new_receipt() -> None:
    accepted = Answer(Verdict.ACCEPTED, "p005", "Changed at the tax authority: payment method"
                      " G (cash) to K (card) (p005).", document=b"<Odgovor/>")
    status, retry = decide(change(), accepted, NOW, BACKOFF, DEADLINE)
    assert retry is None and status.state is InvoiceState.FISCALIZED
    assert status.reason_code == "changed" and "G (cash) to K (card)" in status.message
    # No receipt id: the invoice keeps its JIR, and the write-back is not due again.
    assert status.receipt_id is None and not writeback_due(status)
    assert status.fiscal_number == "7/POSL1/12" and status.signed_answer == "<Odgovor/>"
    assert status.signed_request == "<PromijeniPodatkeRacunaZahtjev/>"


@pytest.mark.parametrize("code", ["s011", "s012", "s013"])
def test_a_refused_change_says_the_invoice_stays_fiscalized_and_what_to_do(code: str) -> None:
    refused = classify_change_answer(
        ChangeAnswer(message_id="m", code=None, message=None, errors=((code, "greska"),),
                     document=b"<Odgovor/>"),
        CHANGE_REQUEST)
    status, retry = decide(change(), refused, NOW, BACKOFF, DEADLINE)
    assert retry is None and status.state is InvoiceState.REJECTED
    assert status.reason_code == code and "stays fiscalized" in status.message
    assert "payment method G (cash) to K (card)" in status.message
    if code == "s011":
        assert "storno" in status.message and "new invoice" in status.message


def test_a_change_that_failed_transiently_is_retried_as_a_change() -> None:
    status, retry = decide(change(2), Transient("timeout", "no answer"), NOW, BACKOFF, DEADLINE)
    assert status.state is InvoiceState.RETRYING and "stays fiscalized" in status.message
    assert retry is not None and retry.kind is SubmissionKind.CHANGE and retry.attempt == 2
    assert retry.not_before > NOW and retry.fiscal_number == fiscal_number(7)


def test_an_unverified_answer_to_a_change_is_failed_not_retried() -> None:
    unverified = Answer(Verdict.UNVERIFIED, "answer_unverified", "bad signature",
                        action="Check the configured CIS certificate")
    status, retry = decide(change(), unverified, NOW, BACKOFF, DEADLINE)
    assert retry is None and status.state is InvoiceState.FAILED
    assert "may or may not have been made" in status.message


def test_an_invoice_kind_is_decided_as_before() -> None:
    status, retry = decide(signed(), Transient("timeout", "no answer"), NOW, BACKOFF, DEADLINE)
    assert retry is not None and retry.kind is SubmissionKind.INVOICE
    assert "subsequent delivery" in status.message
