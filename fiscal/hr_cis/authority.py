"""Croatia's CIS behind the authority seam (fiscal/authority.py): "hr-cis"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from fiscal.authority import (
    Answer,
    Numbering,
    Request,
    Submission,
    SubmissionKind,
    Verdict,
)
from fiscal.hr_cis.certificate import CertificateCache, FiscalCertificate
from fiscal.hr_cis.errors import Permanence, classify
from fiscal.hr_cis.formats import ZAGREB
from fiscal.hr_cis.late import LateDeadline
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.qr import verification_url
from fiscal.hr_cis.record import out_of_scope
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import (
    RACUNI_ACTION,
    AnswerInvalid,
    AnswerVerifier,
    CisAnswer,
    parse_racun_answer,
    racuni_envelope,
)
from schemas.events import FiscalNumber, InvoiceStatus
from schemas.invoice import Invoice

NAME = "hr-cis"
_RACUNI_HEADERS = (("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", RACUNI_ACTION))
_UNVERIFIED_ACTION = "Check the configured CIS certificate"


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


class HrCisChannel:
    """SOAP `racuni` requests to `endpoint`; answers trusted only as `verifier` allows."""

    def __init__(self, endpoint: str, verifier: AnswerVerifier) -> None:
        if not isinstance(verifier, AnswerVerifier):
            raise TypeError("the CIS channel needs an AnswerVerifier (services/reporter/trust.py)")
        self.endpoint = endpoint
        self.verifier = verifier

    def request(self, submission: Submission) -> Request:
        if submission.kind is not SubmissionKind.INVOICE:
            raise ValueError(f"the CIS channel cannot send a {submission.kind} submission yet")
        return Request("POST", "", _RACUNI_HEADERS, racuni_envelope(submission.document))

    def read(self, submission: Submission, status_code: int, body: bytes) -> Answer:
        if status_code >= 500 and b"RacunOdgovor" not in body:
            return Answer.transient(f"http_{status_code}", f"HTTP {status_code}")
        try:
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

    def receipt_fields(self, status: InvoiceStatus) -> dict[str, str]:
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
