"""A second tax authority for the tests, shaped like TaxCore V-SDC
(../shared/design/taxcore-vsdc.md): JSON over HTTP, the *server* numbers and signs, so
preparing signs nothing and the receipt (fiscal number, verification URL) comes from
the answer. It proves the seam (fiscal/authority.py): the fiscalizer, the reporter and
the write-back serve it without a line of their code knowing it.

`FakeVsdcServer` is its stand-in: a real HTTP server on a free port that follows the
V-SDC contract for POST /api/v3/invoices (200 with a receipt, 400 with modelState
error codes).
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fiscal.authority import (
    Answer,
    CredentialsError,
    InvoiceRejected,
    Request,
    Submission,
    SubmissionKind,
    Verdict,
)
from schemas.events import FiscalNumber, InvoiceStatus
from schemas.invoice import Invoice

NAME = "fake-vsdc"
INVOICES_PATH = "/api/v3/invoices"


@dataclass(frozen=True)
class VsdcSettings:
    pac: str
    currency: str = "FJD"


class NeverLate:
    """V-SDC documents no deadline for a resubmission."""

    def due_by(self, issued_at: datetime) -> datetime:
        return datetime.max.replace(tzinfo=issued_at.tzinfo)

    def late(self, issued_at: datetime, now: datetime) -> bool:
        return False


class FakeVsdcChannel:
    def __init__(self, endpoint: str, trust: Any = None) -> None:
        self.endpoint = endpoint

    def request(self, submission: Submission) -> Request:
        pac = json.loads(submission.document)["pac"]
        return Request("POST", INVOICES_PATH,
                       (("Content-Type", "application/json"), ("Accept", "application/json"),
                        ("PAC", pac), ("RequestId", submission.message_id[:32])),
                       submission.document)

    def read(self, submission: Submission, status_code: int, body: bytes) -> Answer:
        if status_code >= 500:
            return Answer.transient(f"http_{status_code}", f"HTTP {status_code}")
        data = json.loads(body)
        if status_code == 200:
            return Answer(Verdict.ACCEPTED, "ok", f"Fiscalized; {data['invoiceNumber']}.",
                          receipt_id=data["invoiceNumber"], document=body)
        errors = [(e["property"], code) for e in data.get("modelState", [])
                  for code in e["errors"]]
        code = errors[0][1] if errors else f"http_{status_code}"
        return Answer(Verdict.REJECTED, code,
                      "; ".join(f"{prop}: {code}" for prop, code in errors),
                      action="Correct the invoice and send it again.", document=body)


class FakeVsdcAuthority:
    name = NAME

    def validate_settings(self, raw: Mapping[str, Any]) -> VsdcSettings:
        return VsdcSettings(**raw)

    def credentials(self, pfx: bytes, password: str, settings: VsdcSettings) -> bytes:
        if password == "expired":
            raise CredentialsError("the client certificate has expired: upload a new one",
                                   code="certificate_expired")
        return pfx

    def out_of_scope(self, invoice: Invoice, settings: VsdcSettings) -> str | None:
        return None

    def numbering(self, settings: VsdcSettings) -> None:
        return None  # the server's counter is the fiscal number

    def prepare(
        self, invoice: Invoice, settings: VsdcSettings, credentials: bytes, *,
        number: FiscalNumber | None, subsequent_delivery: bool, now: datetime,
        kind: SubmissionKind = SubmissionKind.INVOICE,
    ) -> Submission:
        if invoice.currency != settings.currency:
            raise InvoiceRejected("unsupported_currency",
                                  f"V-SDC takes {settings.currency}, not {invoice.currency}")
        document = {"pac": settings.pac, "invoiceType": "Normal", "transactionType": "Sale",
                    "invoiceNumber": invoice.number, "dateAndTimeOfIssue": now.isoformat(),
                    "buyerId": invoice.customer.tax_id,
                    "payment": [{"amount": str(invoice.total), "paymentType": "Cash"}]}
        return Submission(kind, uuid.uuid4().hex, "", json.dumps(document).encode())

    def prepare_change(
        self, fiscalized: str, changed: str | None, invoice: Invoice, settings: VsdcSettings,
        credentials: Callable[[], bytes], *, now: datetime,
    ) -> None:
        # V-SDC has no change of a receipt: a refund and a new sale correct it.
        return None

    def receipt_fields(self, status: InvoiceStatus) -> dict[str, str]:
        receipt = json.loads(status.signed_answer or "{}")
        values = {"fiscal_number": receipt["invoiceNumber"]} if receipt else {}
        if receipt.get("verificationUrl"):
            values["qr_url"] = receipt["verificationUrl"]
        return values

    def channel(self, endpoint: str, trust: Any) -> FakeVsdcChannel:
        return FakeVsdcChannel(endpoint, trust)

    def late_deadline(
        self, working_days: int, holidays: Iterable[date], fixed_seconds: float | None
    ) -> NeverLate:
        return NeverLate()


class FakeVsdcServer:
    """POST /api/v3/invoices: a receipt signed by "the server", or HTTP 400 with
    modelState code 2801 (too long) for a buyerId over 20 characters."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        counter = itertools.count(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.received.append((dict(self.headers), body))
                if self.path != INVOICES_PATH or self.headers.get("PAC") != body["pac"]:
                    self._answer(404, {"message": "Not Found"})
                elif len(body.get("buyerId") or "") > 20:
                    self._answer(400, {"message": "Bad Request", "modelState": [
                        {"property": "buyerId", "errors": ["2801"]}]})
                else:
                    total = next(counter)
                    self._answer(200, {
                        "requestedBy": "ABCD1234", "signedBy": "ABCD1234",
                        "invoiceNumber": f"ABCD1234-ABCD1234-{total}", "totalCounter": total,
                        "verificationUrl": f"https://vsdc.example/v/?vl=fake{total}",
                        "signature": "look-alike: signed by the test stand-in"})

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeVsdcServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=timedelta(seconds=5).total_seconds())
