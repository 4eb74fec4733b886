"""The fiscalizer's decisions: due or not, duplicate, blocked, re-signed."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from schemas.events import (
    FiscalNumber,
    InvoiceRef,
    InvoiceRetry,
    InvoiceState,
    InvoiceStatus,
    SubmissionKind,
)
from schemas.invoice import (
    Customer,
    DocumentKind,
    Invoice,
    InvoiceLine,
    SourceStatus,
    TaxLine,
)
from services.fiscalizer.rules import (
    STORNO_SUFFIX,
    CheckChange,
    Entry,
    HeldChange,
    Hold,
    Phase,
    Repeat,
    Report,
    ResignChange,
    Seen,
    Sign,
    Skip,
    Storno,
    Trigger,
    change_resent,
    change_sent,
    held_change,
    newest_held,
    on_received,
    on_retry,
    on_status,
    sequence_key,
    sequence_of,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def invoice(status: SourceStatus = SourceStatus.SENT, minute: int = 0) -> Invoice:
    return Invoice(
        source="zoho_books", source_id="42", number="INV-42", issued_at=NOW, currency="EUR",
        customer=Customer(name="c"),
        lines=(InvoiceLine(description="x", quantity=Decimal(1), unit_price=Decimal(10),
                           tax_rate=Decimal(25), amount=Decimal(10)),),
        taxes=(TaxLine(rate=Decimal(25), base=Decimal(10), amount=Decimal("2.50")),),
        subtotal=Decimal(10), tax_total=Decimal("2.50"), total=Decimal("12.50"),
        status=status, last_modified_at=NOW + timedelta(minutes=minute),
    )


def decide(inv: Invoice, entry: Entry | None = None, **kw: object) -> object:
    args: dict[str, object] = dict(
        integration_status="active", trigger=Trigger.ISSUED, used_this_month=0,
        monthly_limit=50, now=NOW, starts_at=NOW - timedelta(days=1),
    )
    args.update(kw)
    return on_received(inv, entry, **args)  # type: ignore[arg-type]


def entry(phase: Phase, attempt: int = 1, version: str | None = None) -> Entry:
    return Entry(phase, version or invoice().version, attempt, NOW)


def test_an_invoice_created_before_the_start_is_skipped_with_the_way_out() -> None:
    old = invoice().model_copy(update={"created_at": NOW - timedelta(days=2)})
    decision = decide(old, starts_at=NOW - timedelta(days=1))
    assert isinstance(decision, Report)
    assert (decision.state, decision.reason_code) == (InvoiceState.SKIPPED, "before_start")
    assert "set an earlier start" in decision.message


def test_the_creation_time_decides_not_the_issue_time() -> None:
    # created as a draft before the start, issued after it: existed before, not ours
    drafted = invoice().model_copy(update={"created_at": NOW - timedelta(hours=2)})
    assert isinstance(decide(drafted, starts_at=NOW - timedelta(hours=1)), Report)
    # no creation time from the source: the issue time decides
    assert isinstance(decide(invoice(), starts_at=NOW + timedelta(seconds=1)), Report)
    assert isinstance(decide(invoice(), starts_at=NOW), Sign)


def test_an_already_fiscalized_invoice_stays_a_duplicate_whatever_the_start() -> None:
    decision = decide(invoice(), entry(Phase.FISCALIZED), starts_at=NOW + timedelta(days=1))
    assert isinstance(decision, Report) and decision.state is InvoiceState.DUPLICATE


def test_an_active_integration_without_a_start_signs_nothing() -> None:
    decision = decide(invoice(), starts_at=None)
    assert isinstance(decision, Report)
    assert (decision.state, decision.reason_code) == (InvoiceState.BLOCKED, "no_start")


@pytest.mark.parametrize("status", [SourceStatus.DRAFT, SourceStatus.VOID])
def test_draft_and_void_are_never_fiscalized(status: SourceStatus) -> None:
    assert decide(invoice(status)) == Skip("not_due")


def test_paid_trigger_waits_for_payment_and_keeps_when_it_left_draft() -> None:
    """DatVrijeme is when the invoice left draft as first seen, also when the integration
    fiscalizes it only once paid: that moment is noted (SEEN), and the payment signs it
    with it, counted as a first signature and a subsequent delivery (issued without a
    JIR)."""
    assert decide(invoice(SourceStatus.DRAFT), trigger=Trigger.PAID) == Skip("not_due")
    assert decide(invoice(SourceStatus.SENT), trigger=Trigger.PAID) == Seen()
    seen = Entry(Phase.SEEN, invoice().version, 0, NOW, issued_at=NOW - timedelta(days=3))
    # Seen unpaid again: the first moment stays.
    assert decide(invoice(SourceStatus.SENT), seen, trigger=Trigger.PAID) == Skip("not_due")
    assert decide(invoice(SourceStatus.PAID), seen, trigger=Trigger.PAID) == Sign(
        True, 1, NOW, counts_toward_license=True, issued_at=NOW - timedelta(days=3))
    # Never seen unpaid (paid at once): issued when seen paid.
    assert decide(invoice(SourceStatus.PAID), trigger=Trigger.PAID) == Sign(
        False, 1, NOW, counts_toward_license=True)
    # A retry finding only the SEEN note lost its signature's note: signed again as such.
    retry = InvoiceRetry(
        integration_uid="u", invoice=invoice(), profile="hr-cis", protection_code="z",
        attempt=1, first_attempt_at=NOW, not_before=NOW, reason_code="timeout", message="m",
    )
    resigned = on_retry(retry, seen)
    assert isinstance(resigned, Sign) and resigned.attempt == 2


def test_first_delivery_is_signed_and_counted() -> None:
    assert decide(invoice()) == Sign(False, 1, NOW, counts_toward_license=True)


@pytest.mark.parametrize("phase", [Phase.SIGNED, Phase.FISCALIZED])
def test_second_delivery_is_a_duplicate(phase: Phase) -> None:
    result = decide(invoice(), entry(phase))
    assert isinstance(result, Report) and result.state is InvoiceState.DUPLICATE
    assert "edited" not in result.message


def test_edit_after_fiscalization_explains_what_to_do() -> None:
    result = decide(invoice(minute=5), entry(Phase.FISCALIZED))
    assert isinstance(result, Report) and "cancelling invoice" in result.message


def test_inactive_and_unknown_integrations_block() -> None:
    inactive = decide(invoice(), integration_status="inactive")
    unknown = decide(invoice(), integration_status=None)
    assert isinstance(inactive, Report) and inactive.reason_code == "integration_inactive"
    assert isinstance(unknown, Report) and unknown.state is InvoiceState.BLOCKED


def test_license_limit_blocks_with_reason() -> None:
    result = decide(invoice(), used_this_month=50, monthly_limit=50)
    assert isinstance(result, Report) and result.state is InvoiceState.BLOCKED
    assert result.reason_code == "license_limit" and "50" in result.message
    assert "Plans page (/plans)" in result.message  # the portal page that exists
    assert isinstance(decide(invoice(), used_this_month=49), Sign)
    assert isinstance(decide(invoice(), used_this_month=10**6, monthly_limit=None), Sign)


def test_after_a_rejection_the_next_delivery_is_subsequent_and_not_counted_again() -> None:
    assert decide(invoice(), entry(Phase.REJECTED, attempt=3)) == Sign(True, 4, NOW, False)


def test_a_failed_invoice_waits_for_an_operators_resend() -> None:
    # Its answer could not be verified: CIS may hold it already, so a webhook or poll
    # does not deliver it again; only a resend does (test_a_resend_signs_...).
    assert decide(invoice(), entry(Phase.FAILED, attempt=3)) == Skip("awaiting_resend")


def retry(attempt: int) -> InvoiceRetry:
    return InvoiceRetry(
        integration_uid="acme", invoice=invoice(), profile="hr-cis", protection_code="z",
        attempt=attempt, first_attempt_at=NOW, not_before=NOW, reason_code="s006", message="m",
    )


def test_retry_resigns_as_subsequent_delivery() -> None:
    assert on_retry(retry(1), entry(Phase.SIGNED, 1)) == Sign(True, 2, NOW, False)


def test_replayed_retry_is_skipped() -> None:
    assert on_retry(retry(1), entry(Phase.SIGNED, 2)) == Skip("stale_retry")


def test_a_retry_read_again_after_a_crash_sends_its_signature_again() -> None:
    # Signed as attempt 2, durably with its signature; the rest lost with the crash.
    numbered = dataclasses.replace(entry(Phase.NUMBERED, 2), signed='{"message_id": "m2"}')
    assert on_retry(retry(1), numbered) == Repeat(numbered)
    # The numbered entry of the first signature: a retry of it signs attempt 2.
    first = dataclasses.replace(entry(Phase.NUMBERED, 1), signed='{"message_id": "m1"}')
    assert on_retry(retry(1), first) == Sign(True, 2, NOW, False)
    assert on_retry(retry(2), numbered) == Sign(True, 3, NOW, False)


def test_retry_after_fiscalization_is_skipped() -> None:
    assert on_retry(retry(1), entry(Phase.FISCALIZED, 1)) == Skip("already_fiscalized")


def test_a_retry_whose_entry_was_lost_in_a_crash_is_signed_again() -> None:
    # Killed after its InvoiceSigned left but before the entry reached the changelog:
    # the reporter's retry is the only trace left of the invoice.
    assert on_retry(retry(1), None) == Sign(True, 2, NOW, False)



def test_a_retry_of_a_late_outcome_signs_with_late_carried_on() -> None:
    # The reporter counts an invoice late once: at the outcome of the first late attempt.
    late = retry(2).model_copy(update={"late": True})
    signed = on_retry(late, entry(Phase.SIGNED, 2))
    assert isinstance(signed, Sign) and signed.late
    assert isinstance(lost := on_retry(late, None), Sign) and lost.late
    assert not on_retry(retry(2), entry(Phase.SIGNED, 2)).late  # type: ignore[union-attr]


def resend(attempt: int) -> InvoiceRetry:
    return retry(attempt).model_copy(update={"resend": True, "reason_code": "resend"})


@pytest.mark.parametrize("phase", [Phase.SIGNED, Phase.FAILED, Phase.REJECTED])
def test_a_resend_signs_the_invoice_again_as_a_subsequent_delivery(phase: Phase) -> None:
    # Retrying (its retry not yet due), failed or rejected: signed again now, with
    # NakDost=true, under the number it already has.
    numbered = dataclasses.replace(entry(phase, 3), number=NUMBER, issued_at=NOW)
    decision = on_retry(resend(3), numbered)
    assert decision == Sign(True, 4, NOW, False, number=NUMBER, issued_at=NOW)


def test_a_scheduled_retry_does_not_sign_a_failed_or_rejected_invoice() -> None:
    for phase in (Phase.FAILED, Phase.REJECTED):
        assert on_retry(retry(3), entry(phase, 3)) == Skip("stale_retry")


def test_a_replayed_or_doubled_resend_is_harmless() -> None:
    # The resend signed attempt 4: the same request again, and the retry the reporter
    # had scheduled for attempt 3, are both stale.
    after = entry(Phase.SIGNED, 4)
    assert on_retry(resend(3), after) == Skip("stale_retry")
    assert on_retry(retry(3), after) == Skip("stale_retry")
    # A fiscalized invoice is never signed again, nor one whose entry expired (only
    # fiscalized entries expire).
    assert on_retry(resend(4), entry(Phase.FISCALIZED, 4)) == Skip("already_fiscalized")
    assert on_retry(resend(4), None) == Skip("already_fiscalized")


def test_a_failed_status_makes_the_entry_failed_and_waiting_for_a_resend() -> None:
    failed = on_status(status(InvoiceState.FAILED, 2), entry(Phase.SIGNED, 2))
    assert failed is not None and failed.phase is Phase.FAILED
    # Retrying statuses leave the entry alone: the retry re-signs it.
    assert on_status(status(InvoiceState.RETRYING, 2), entry(Phase.SIGNED, 2)) is None
    assert decide(invoice(), failed) == Skip("awaiting_resend")


def status(state: InvoiceState, attempt: int = 1, message_id: str | None = "m1") -> InvoiceStatus:
    return InvoiceStatus(
        integration_uid="acme", invoice=InvoiceRef.of(invoice()), state=state,
        reason_code="x", message="m", message_id=message_id, attempt=attempt,
        receipt_id="jir" if state is InvoiceState.FISCALIZED else None,
    )


def test_status_outcomes_update_the_entry() -> None:
    signed = entry(Phase.SIGNED)
    done = on_status(status(InvoiceState.FISCALIZED), signed)
    assert done is not None and done.phase is Phase.FISCALIZED and done.receipt_id == "jir"
    assert on_status(status(InvoiceState.REJECTED), signed).phase is Phase.REJECTED  # type: ignore[union-attr]
    assert on_status(status(InvoiceState.RETRYING), signed) is None


def test_status_never_moves_backwards_or_follows_stale_attempts() -> None:
    assert on_status(status(InvoiceState.FAILED), entry(Phase.FISCALIZED)) is None
    assert on_status(status(InvoiceState.FAILED, attempt=1), entry(Phase.SIGNED, 2)) is None
    assert on_status(status(InvoiceState.DUPLICATE, message_id=None), entry(Phase.SIGNED)) is None


def test_entry_round_trips_through_the_table() -> None:
    e = Entry(Phase.FISCALIZED, "v", 2, NOW, "jir")
    assert Entry.from_json(json.loads(json.dumps(e.to_json()))) == e
    full = Entry(Phase.FISCALIZED, "v", 2, NOW, "jir", fiscalized="<RacunZahtjev/>",
                 changed="K|", change_base=None, change_attempt=1,
                 newer=invoice(minute=5).model_dump(mode="json"), signed="{}")
    assert Entry.from_json(json.loads(json.dumps(full.to_json()))) == full
    # to_json lists the fields by hand: one added to Entry must be added there too.
    assert set(full.to_json()) == {f.name for f in dataclasses.fields(Entry)}
    # The change fields are written only once there is something in them.
    assert "fiscalized" not in e.to_json() and "changed" not in e.to_json()
    assert "newer" not in e.to_json() and "signed" not in e.to_json()


def test_an_entry_written_before_changes_existed_reads_as_never_changed() -> None:
    old = {"phase": "fiscalized", "version": "v", "attempt": 1,
           "first_attempt_at": NOW.isoformat(), "receipt_id": "jir", "number": None,
           "issued_at": None}
    e = Entry.from_json(old)
    assert (e.fiscalized, e.changed, e.change_base, e.change_attempt) == (None, None, None, 0)
    assert e.newer is None  # and nothing held
    # Nothing to judge a change against: a duplicate, as before.
    decision = decide(invoice(), e)
    assert isinstance(decision, Report) and decision.state is InvoiceState.DUPLICATE


# --- changes of payment method and buyer (promijeniPodatkeRacuna) ------------------


def fiscalized(**kw: object) -> Entry:
    return dataclasses.replace(entry(Phase.FISCALIZED), receipt_id="jir",
                               fiscalized="<RacunZahtjev/>", **kw)  # type: ignore[arg-type]


def test_the_fiscalized_document_is_kept_with_the_fiscalized_entry() -> None:
    outcome = status(InvoiceState.FISCALIZED).model_copy(
        update={"signed_request": "<RacunZahtjev>as accepted</RacunZahtjev>"})
    done = on_status(outcome, entry(Phase.SIGNED))
    assert done is not None and done.fiscalized == "<RacunZahtjev>as accepted</RacunZahtjev>"
    refused = status(InvoiceState.REJECTED).model_copy(update={"signed_request": "<x/>"})
    assert on_status(refused, entry(Phase.SIGNED)).fiscalized is None  # type: ignore[union-attr]


def test_a_fiscalized_invoice_arriving_again_is_checked_for_a_change() -> None:
    decision = decide(invoice(), fiscalized())
    assert isinstance(decision, CheckChange)
    # Nothing changed: the duplicate it would have been.
    assert decision.duplicate.state is InvoiceState.DUPLICATE
    assert decision.duplicate.reason_code == "already_fiscalized"
    assert decision.entry == fiscalized()


@pytest.mark.parametrize("why", ["signed", "inactive", "storno", "void", "draft"])
def test_no_change_is_checked_where_none_can_be_sent(why: str) -> None:
    inv, e, kw = invoice(), fiscalized(), {}
    if why == "signed":
        e = dataclasses.replace(e, phase=Phase.SIGNED)  # not fiscalized yet
    elif why == "inactive":
        kw = {"integration_status": "inactive"}
    elif why == "storno":
        inv = inv.model_copy(update={"source_id": "42" + STORNO_SUFFIX})
    elif why == "void":
        inv = invoice(SourceStatus.VOID)
    else:
        inv = invoice(SourceStatus.DRAFT)
    assert not isinstance(decide(inv, e, **kw), CheckChange)


def test_a_change_sent_is_remembered_with_what_was_in_force_before_it() -> None:
    first = change_sent(fiscalized(), "K|")
    assert (first.changed, first.change_base, first.change_attempt) == ("K|", None, 1)
    second = change_sent(change_resent(first, 3), "G|69435151530")
    assert (second.changed, second.change_base, second.change_attempt) == \
        ("G|69435151530", "K|", 1)
    # The rest of the entry (phase, receipt, number, document) is untouched.
    assert (second.phase, second.receipt_id, second.fiscalized) == \
        (Phase.FISCALIZED, "jir", "<RacunZahtjev/>")


def test_outcomes_of_a_change_leave_the_fiscalized_entry_alone() -> None:
    sent = change_sent(fiscalized(), "K|")
    for state in (InvoiceState.FISCALIZED, InvoiceState.REJECTED, InvoiceState.FAILED):
        assert on_status(status(state), sent) is None


def change_retry(attempt: int, *, resend: bool = False) -> InvoiceRetry:
    return retry(attempt).model_copy(update={"kind": SubmissionKind.CHANGE, "resend": resend})


def test_a_change_that_failed_transiently_is_signed_again() -> None:
    sent = change_sent(fiscalized(), "K|")
    assert on_retry(change_retry(1), sent) == ResignChange(sent, 2, NOW)


def test_a_stale_or_orphaned_change_retry_signs_nothing() -> None:
    sent = change_resent(change_sent(fiscalized(), "K|"), 2)
    assert on_retry(change_retry(1), sent) == Skip("stale_retry")  # attempt 2 went out
    assert on_retry(change_retry(1), fiscalized()) == Skip("stale_retry")  # no change sent
    assert on_retry(change_retry(1), None) == Skip("stale_retry")
    assert on_retry(change_retry(2, resend=True), sent) == Skip("stale_retry")
    # An invoice retry of a fiscalized invoice is still never signed again.
    assert on_retry(retry(1), sent) == Skip("already_fiscalized")


# A newer delivery while the invoice is still being fiscalized: held, judged at the outcome.


def card(minute: int = 5) -> Invoice:
    """The invoice edited in Zoho after it was signed: paid by card, for a business."""
    return invoice(minute=minute).model_copy(update={
        "customer": Customer(name="Firma d.o.o.", tax_id="HR98765432198", country="HR")})


def held(phase: Phase = Phase.SIGNED, minute: int = 5) -> Entry:
    decision = decide(card(minute), entry(phase))
    assert isinstance(decision, Hold)
    return decision.entry


def test_a_newer_delivery_while_being_fiscalized_is_held_and_still_a_duplicate() -> None:
    decision = decide(card(), entry(Phase.SIGNED))
    assert isinstance(decision, Hold)
    assert decision.then.state is InvoiceState.DUPLICATE  # type: ignore[union-attr]
    assert decision.then.reason_code == "already_signed"  # type: ignore[union-attr]
    assert "once it is fiscalized" in decision.then.message  # type: ignore[union-attr]
    # The entry is the one being fiscalized, with the delivery held in it, table-safe.
    assert decision.entry == dataclasses.replace(entry(Phase.SIGNED),
                                                 newer=card().model_dump(mode="json"))
    assert Entry.from_json(json.loads(json.dumps(decision.entry.to_json()))) == decision.entry


def test_only_a_newer_version_is_held() -> None:
    # The version being fiscalized again (webhook + poll), or the same held one again, or
    # an older one than held: a plain duplicate, nothing to write.
    assert isinstance(decide(invoice(), entry(Phase.SIGNED)), Report)
    assert isinstance(decide(card(5), held(minute=5)), Report)
    assert isinstance(decide(card(3), held(minute=5)), Report)
    # A later one replaces it: the newest delivery is the one judged.
    later = decide(card(9), held(minute=5))
    assert isinstance(later, Hold) and later.entry.newer == card(9).model_dump(mode="json")


def test_a_failed_invoice_holds_a_newer_delivery_for_after_its_resend() -> None:
    decision = decide(card(), entry(Phase.FAILED, attempt=3))
    assert decision == Hold(dataclasses.replace(entry(Phase.FAILED, attempt=3),
                                                newer=card().model_dump(mode="json")),
                            Skip("awaiting_resend"))


def test_nothing_is_held_for_a_storno_nor_kept_once_the_newest_data_is_signed() -> None:
    storno = card().model_copy(update={"source_id": "42" + STORNO_SUFFIX})
    assert not isinstance(decide(storno, entry(Phase.SIGNED)), Hold)
    # A retry signs the invoice as first signed: the newer delivery stays held ...
    assert newest_held(held(), invoice()) == card().model_dump(mode="json")
    # ... a signature of it (after a rejection, a numbered re-signature) or of a later
    # version takes it out.
    assert newest_held(held(), card()) is None and newest_held(held(), card(9)) is None
    assert newest_held(entry(Phase.SIGNED), invoice()) is None and newest_held(None, card()) \
        is None


def fiscalized_outcome() -> InvoiceStatus:
    return status(InvoiceState.FISCALIZED).model_copy(
        update={"signed_request": "<RacunZahtjev>cash</RacunZahtjev>"})


def test_the_fiscalized_outcome_hands_the_held_delivery_to_the_change_check() -> None:
    done = on_status(fiscalized_outcome(), held())
    assert done is not None and done.phase is Phase.FISCALIZED
    check = held_change(done, integration_status="active")
    # Judged against the invoice as fiscalized, no change sent yet; nothing held any more.
    assert check == HeldChange(
        Entry(Phase.FISCALIZED, invoice().version, 1, NOW, "jir",
              fiscalized="<RacunZahtjev>cash</RacunZahtjev>"),
        card())
    # Once the change is sent, its data guard it: the outcome again (a replay) is no
    # news, and the held delivery arriving again is judged against the change sent.
    sent = change_sent(check.entry, "K|98765432198")
    assert on_status(fiscalized_outcome(), sent) is None
    again = decide(card(), sent)
    assert isinstance(again, CheckChange) and again.entry.changed == "K|98765432198"


def test_refused_and_failed_outcomes_keep_the_held_delivery() -> None:
    for state in (InvoiceState.REJECTED, InvoiceState.FAILED):
        after = on_status(status(state), held())
        assert after is not None and after.newer == card().model_dump(mode="json")
        assert held_change(after, integration_status="active") is None  # not fiscalized


@pytest.mark.parametrize("why", ["nothing_held", "inactive", "no_document"])
def test_no_held_change_where_none_can_be_judged(why: str) -> None:
    done = on_status(fiscalized_outcome(), held())
    assert done is not None
    kw = {"integration_status": "active"}
    if why == "nothing_held":
        done = dataclasses.replace(done, newer=None)
    elif why == "inactive":
        kw = {"integration_status": "inactive"}
    else:
        done = dataclasses.replace(done, fiscalized=None)  # fiscalized before changes
    assert held_change(done, **kw) is None


ZAGREB = ZoneInfo("Europe/Zagreb")


def test_a_sequence_is_per_integration_premises_and_zagreb_year() -> None:
    new_year_eve = datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC)  # 23:59:59 in Zagreb
    new_year = datetime(2026, 12, 31, 23, 0, 0, tzinfo=UTC)  # 00:00:00 on 1 Jan 2027
    assert sequence_of("u", "P", "POSL1", "1", new_year_eve, ZAGREB) == ("seq|u|POSL1||2026", 2026)
    assert sequence_of("u", "P", "POSL1", "1", new_year, ZAGREB) == ("seq|u|POSL1||2027", 2027)
    # by premises, the device does not count; by device (N) it does
    assert sequence_of("u", "P", "POSL1", "2", new_year, ZAGREB)[0] == "seq|u|POSL1||2027"
    assert sequence_of("u", "N", "POSL1", "2", new_year, ZAGREB)[0] == "seq|u|POSL1|2|2027"
    assert sequence_of("v", "P", "POSL1", "1", new_year, ZAGREB)[0] != "seq|u|POSL1||2027"


NUMBER = FiscalNumber(number=7, premises="POSL1", device="1", year=2026)


def test_the_number_and_issue_moment_survive_the_table_and_every_later_signature() -> None:
    signed = Entry(Phase.SIGNED, invoice().version, 1, NOW, number=NUMBER, issued_at=NOW)
    assert Entry.from_json(json.loads(json.dumps(signed.to_json()))) == signed
    again = decide(invoice(), dataclasses.replace(signed, phase=Phase.REJECTED))
    assert isinstance(again, Sign) and (again.number, again.issued_at) == (NUMBER, NOW)
    resent = on_retry(resend(1), dataclasses.replace(signed, phase=Phase.FAILED))
    assert isinstance(resent, Sign) and (resent.number, resent.issued_at) == (NUMBER, NOW)
    retry = InvoiceRetry(
        integration_uid="u", invoice=invoice(), profile="hr-cis", protection_code="z",
        attempt=1, first_attempt_at=NOW, not_before=NOW, reason_code="timeout", message="m",
    )
    resigned = on_retry(retry, signed)
    assert isinstance(resigned, Sign) and (resigned.number, resigned.issued_at) == (NUMBER, NOW)
    # the note of the first signature was lost: the retry carries the number itself
    lost = on_retry(retry.model_copy(update={"fiscal_number": NUMBER}), None)
    assert isinstance(lost, Sign) and lost.number == NUMBER
    status = InvoiceStatus(integration_uid="u", invoice=InvoiceRef.of(invoice()),
                           state=InvoiceState.FAILED, reason_code="x", message="m",
                           message_id="m1", attempt=1)
    after = on_status(status, signed)
    assert after is not None and (after.number, after.issued_at) == (NUMBER, NOW)


def test_a_first_signature_draws_a_new_number() -> None:
    decision = decide(invoice())
    assert isinstance(decision, Sign) and decision.number is None and decision.issued_at is None


def test_a_void_after_fiscalization_becomes_its_storno() -> None:
    voided = invoice(SourceStatus.VOID, minute=5)
    decision = decide(voided, entry(Phase.FISCALIZED))
    assert isinstance(decision, Storno)
    storno = decision.invoice
    assert storno.source_id == "42:storno" and storno.kind is DocumentKind.CREDIT_NOTE
    assert (storno.subtotal, storno.tax_total, storno.total) == (
        Decimal(-10), Decimal("-2.50"), Decimal("-12.50"))
    assert [t.amount for t in storno.taxes] == [Decimal("-2.50")]
    assert storno.credited[0].source_id == "42" and storno.status is SourceStatus.SENT
    # the storno itself is a new invoice: signed once, a duplicate after that
    assert isinstance(decide(storno), Sign)
    assert isinstance(decide(storno, entry(Phase.SIGNED, version=storno.version)), Report)


def test_a_void_before_fiscalization_is_not_fiscalized_at_all() -> None:
    assert decide(invoice(SourceStatus.VOID)) == Skip("not_due")


def test_a_number_names_the_sequence_it_was_drawn_from() -> None:
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    for mark in ("P", "N"):
        key, year = sequence_of("u", mark, "POSL1", "2", at, ZAGREB)
        drawn = FiscalNumber(number=1, premises="POSL1", device="2", year=year,
                             per_device=mark == "N")
        assert sequence_key("u", drawn) == key


def test_a_numbered_invoice_sends_the_signature_made_under_its_number_again() -> None:
    """Numbered and signed, then a crash lost the rest: the delivery read again repeats
    that one signature, whatever else changed meanwhile (it may be at the reporter)."""
    numbered = Entry(Phase.NUMBERED, invoice().version, 1, NOW, number=NUMBER, issued_at=NOW,
                     signed='{"message_id": "m-1"}')
    assert decide(invoice(), numbered) == Repeat(numbered)
    assert decide(invoice(), numbered, integration_status="suspended") == Repeat(numbered)
    assert decide(invoice(), numbered, used_this_month=50) == Repeat(numbered)
    edited = invoice(minute=5)
    repeat = decide(edited, numbered)
    assert isinstance(repeat, Repeat) and repeat.entry.signed == numbered.signed
    assert repeat.entry.newer == edited.model_dump(mode="json")  # judged at the outcome
    assert Entry.from_json(json.loads(json.dumps(numbered.to_json()))) == numbered


def test_a_numbered_invoice_without_its_signature_is_signed_again_under_its_number() -> None:
    numbered = Entry(Phase.NUMBERED, invoice().version, 1, NOW, number=NUMBER, issued_at=NOW)
    again = decide(invoice(), numbered)
    assert isinstance(again, Sign) and (again.number, again.issued_at) == (NUMBER, NOW)
    assert not again.subsequent_delivery
    retry = InvoiceRetry(
        integration_uid="u", invoice=invoice(), profile="hr-cis", protection_code="z",
        attempt=1, first_attempt_at=NOW, not_before=NOW, reason_code="timeout", message="m",
    )
    resigned = on_retry(retry, numbered)
    assert isinstance(resigned, Sign) and resigned.number == NUMBER
