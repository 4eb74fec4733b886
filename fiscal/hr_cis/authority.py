"""Croatia's CIS behind the authority seam (fiscal/authority.py): "hr-cis"."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from fiscal.authority import (
    Answer,
    Change,
    ChangeTooLate,
    Numbering,
    Request,
    Submission,
    SubmissionKind,
    Verdict,
)
from fiscal.hr_cis.certificate import CertificateCache, FiscalCertificate
from fiscal.hr_cis.change import AsSent, DataChange, decide_change
from fiscal.hr_cis.change import ChangeTooLate as TooLate
from fiscal.hr_cis.errors import Permanence, classify
from fiscal.hr_cis.formats import ZAGREB
from fiscal.hr_cis.late import LateDeadline
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.qr import verification_url
from fiscal.hr_cis.record import buyer_oib, out_of_scope, payment_code
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import (
    F73_NS,
    PROMIJENI_PODATKE_ACTION,
    RACUNI_ACTION,
    AnswerInvalid,
    AnswerVerifier,
    ChangeAnswer,
    CisAnswer,
    change_envelope,
    parse_change_answer,
    parse_racun_answer,
    parse_xml,
    racuni_envelope,
)
from schemas.events import FiscalNumber, InvoiceStatus
from schemas.invoice import Invoice

NAME = "hr-cis"
_RACUNI_HEADERS = (("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", RACUNI_ACTION))
_CHANGE_HEADERS = (("Content-Type", "text/xml; charset=utf-8"),
                   ("SOAPAction", PROMIJENI_PODATKE_ACTION))
_UNVERIFIED_ACTION = "Check the configured CIS certificate"
# NacinPlac (spec v2.6 §2.1.1.1), as a bookkeeper reads it.
PAYMENT_NAMES = {"G": "cash", "K": "card", "C": "cheque", "T": "transaction account",
                 "O": "other"}
_NS = f"{{{F73_NS}}}"


def change_data(change: DataChange) -> str:
    """A change's data as the pipeline keeps it: "<NacinPlac>|<buyer OIB or empty>"."""
    return f"{change.payment_code}|{change.buyer_oib or ''}"


def _data_of(data: str) -> DataChange:
    code, _, oib = data.partition("|")
    return DataChange(code, oib or None)


def _payment(code: str | None) -> str:
    return f"{code} ({PAYMENT_NAMES.get(code or '', 'unknown')})" if code else "none"


def describe_change(document: bytes) -> str:
    """What a signed PromijeniPodatkeRacunaZahtjev changes, for people: "payment method
    G (cash) to K (card); buyer OIB none to 69435151530"."""
    racun = parse_xml(document).find(f"{_NS}Racun")
    if racun is None:
        return "the invoice's payment method and buyer OIB"
    before = (racun.findtext(f"{_NS}NacinPlac"), racun.findtext(f"{_NS}OibPrimateljaRacuna"))
    after = (racun.findtext(f"{_NS}PromijenjeniNacinPlac"),
             racun.findtext(f"{_NS}PromijenjeniOibPrimateljaRacuna"))
    parts = [f"payment method {_payment(before[0])} to {_payment(after[0])}"]
    if (before[1] or None) != (after[1] or None):
        parts.append(f"buyer OIB {before[1] or 'none'} to {after[1] or 'none'}")
    return "; ".join(parts)


def classify_answer(answer: CisAnswer) -> Answer:
    """A RacunOdgovor as a verdict: a JIR is accepted; otherwise the first permanent
    error code rejects it, and only transient codes (s006) leave it to be retried."""
    if answer.jir:
        return Answer(Verdict.ACCEPTED, "ok", f"Fiscalized; JIR {answer.jir}.",
                      receipt_id=answer.jir, document=answer.document)
    codes = [classify(code) for code, _ in answer.errors] or [classify("")]
    worst = next((c for c in codes if c.permanence is Permanence.PERMANENT), None)
    detail = "; ".join(f"{code}: {text}" for code, text in answer.errors)
    if worst is not None:
        return Answer(Verdict.REJECTED, worst.code, detail, action=worst.action,
                      document=answer.document)
    return Answer(Verdict.TRANSIENT, codes[0].code, detail or codes[0].meaning,
                  document=answer.document)


def classify_change_answer(answer: ChangeAnswer, document: bytes) -> Answer:
    """A PromijeniPodatkeRacunaOdgovor as a verdict: p005 accepted (the invoice keeps its
    JIR, so no receipt id); error codes as for invoices (s011/s012/s013 rejected, s006
    retried)."""
    what = describe_change(document)
    if answer.accepted:
        detail = f" ({answer.code}: {answer.message})" if answer.message else f" ({answer.code})"
        return Answer(Verdict.ACCEPTED, answer.code or "p005",
                      f"Changed at the tax authority: {what}{detail}.",
                      document=answer.document)
    codes = [classify(code) for code, _ in answer.errors] or [classify("")]
    worst = next((c for c in codes if c.permanence is Permanence.PERMANENT), None)
    detail = "; ".join(f"{code}: {text}" for code, text in answer.errors)
    if worst is not None:
        return Answer(Verdict.REJECTED, worst.code, f"{what}: {detail}", action=worst.action,
                      document=answer.document)
    return Answer(Verdict.TRANSIENT, codes[0].code, detail or codes[0].meaning,
                  document=answer.document)


class HrCisChannel:
    """SOAP `racuni` and `promijeniPodatkeRacuna` requests to `endpoint`; answers trusted
    only as `verifier` allows."""

    def __init__(self, endpoint: str, verifier: AnswerVerifier) -> None:
        if not isinstance(verifier, AnswerVerifier):
            raise TypeError("the CIS channel needs an AnswerVerifier (services/reporter/trust.py)")
        self.endpoint = endpoint
        self.verifier = verifier

    def request(self, submission: Submission) -> Request:
        if submission.kind is SubmissionKind.CHANGE:
            return Request("POST", "", _CHANGE_HEADERS, change_envelope(submission.document))
        return Request("POST", "", _RACUNI_HEADERS, racuni_envelope(submission.document))

    def read(self, submission: Submission, status_code: int, body: bytes) -> Answer:
        change = submission.kind is SubmissionKind.CHANGE
        expected = b"PromijeniPodatkeRacunaOdgovor" if change else b"RacunOdgovor"
        if status_code >= 500 and expected not in body:
            return Answer.transient(f"http_{status_code}", f"HTTP {status_code}")
        try:
            if change:
                changed = parse_change_answer(
                    body, self.verifier, expected_message_id=submission.message_id
                )
                return classify_change_answer(changed, submission.document)
            answer = parse_racun_answer(
                body, self.verifier, expected_message_id=submission.message_id
            )
        except AnswerInvalid as exc:
            if status_code >= 400:
                return Answer.transient(f"http_{status_code}", f"HTTP {status_code}")
            return Answer(Verdict.UNVERIFIED, "answer_unverified", str(exc),
                          action=_UNVERIFIED_ACTION, document=body)
        return classify_answer(answer)


class HrCisAuthority:
    name = NAME

    def __init__(self, profile: HrCisProfile | None = None) -> None:
        # The profile reads the CIS environment's ZKI hash when first needed: reading
        # receipts or settings does not depend on it.
        self._profile = profile
        self._certificates = CertificateCache()

    @property
    def profile(self) -> HrCisProfile:
        if self._profile is None:
            self._profile = HrCisProfile()
        return self._profile

    def validate_settings(self, raw: Mapping[str, Any]) -> FiscalSettings:
        return FiscalSettings.model_validate(raw)

    def credentials(self, pfx: bytes, password: str, settings: FiscalSettings) -> FiscalCertificate:
        return self._certificates.get(pfx, password, expected_oib=settings.oib)

    def out_of_scope(self, invoice: Invoice, settings: FiscalSettings) -> str | None:
        return out_of_scope(invoice, settings)

    def numbering(self, settings: FiscalSettings) -> Numbering:
        return Numbering(settings.premises_code, settings.device_code,
                         settings.sequence_mark == "N", ZAGREB)

    def prepare(
        self, invoice: Invoice, settings: FiscalSettings, credentials: FiscalCertificate, *,
        number: FiscalNumber | None, subsequent_delivery: bool, now: datetime,
        kind: SubmissionKind = SubmissionKind.INVOICE,
    ) -> Submission:
        if kind is not SubmissionKind.INVOICE:
            raise ValueError(f"hr-cis cannot prepare a {kind} submission yet")
        if number is None:
            raise ValueError("a CIS invoice needs the fiscal number FiscoBridge assigned")
        signed = self.profile.sign(invoice, settings, credentials, number=number,
                                   subsequent_delivery=subsequent_delivery, now=now)
        return Submission(kind, signed.message_id, signed.protection_code, signed.document)

    def prepare_change(
        self, fiscalized: str, changed: str | None, invoice: Invoice, settings: FiscalSettings,
        credentials: Callable[[], FiscalCertificate], *, now: datetime,
    ) -> Change | ChangeTooLate | None:
        sent = AsSent.of(fiscalized.encode())
        code = payment_code(invoice, settings)
        # As in the record: the buyer's OIB goes only with cash and card payments.
        now_data = DataChange(code, buyer_oib(invoice.customer) if code in ("G", "K") else None)
        in_force = _data_of(changed) if changed is not None else None
        # Judged against the data in force at CIS (the last change sent, else the
        # invoice as fiscalized); the request always repeats the invoice as fiscalized.
        baseline = sent if in_force is None else replace(
            sent, payment_code=in_force.payment_code, buyer_oib=in_force.buyer_oib)
        decided = decide_change(baseline, now_data, now)
        if decided is None:
            return None
        if isinstance(decided, TooLate):
            return ChangeTooLate(decided.reason)
        signed = self.profile.sign_change(sent, decided.change, settings, credentials(),
                                          now=now)
        return Change(
            Submission(SubmissionKind.CHANGE, signed.message_id, signed.protection_code,
                       signed.document),
            change_data(decided.change),
        )

    def receipt_fields(self, status: InvoiceStatus) -> dict[str, str]:
        """Fiscal number, ZKI, JIR and QR URL as known: before the JIR (a signed invoice
        still retried) no jir, and the QR carries `zki=` (hr-fiscal-record.md)."""
        values: dict[str, str] = {}
        if status.fiscal_number:
            values["fiscal_number"] = status.fiscal_number
        if status.protection_code:
            values["zki"] = status.protection_code
        if status.receipt_id:
            values["jir"] = status.receipt_id
        ref = status.invoice
        if ref.issued_at is not None and ref.total is not None:
            values["qr_url"] = verification_url(
                receipt_id=status.receipt_id, protection_code=status.protection_code,
                issued_at=ref.issued_at, total=ref.total,
            )
        return values

    def channel(self, endpoint: str, trust: AnswerVerifier) -> HrCisChannel:
        return HrCisChannel(endpoint, trust)

    def late_deadline(
        self, working_days: int, holidays: Iterable[date], fixed_seconds: float | None
    ) -> LateDeadline:
        return LateDeadline.of(working_days, holidays, fixed_seconds)
