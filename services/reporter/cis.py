"""Submit a signed invoice to CIS over HTTP and classify what came back."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import httpx
from prometheus_client import Histogram

from fiscal.hr_cis.soap import AnswerInvalid, AnswerVerifier, parse_racun_answer, racuni_envelope
from schemas.events import InvoiceSigned
from services.reporter.outcome import Result, Transient, Unverified

SOAP_ACTION = "http://e-porezna.porezna-uprava.hr/fiskalizacija/2012/services/FiskalizacijaService/racuni"

CIS_SECONDS = Histogram(
    "fiscobridge_reporter_cis_request_seconds",
    "Time from sending a RacunZahtjev to having its answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class CisSubmitter:
    def __init__(
        self, clients: Sequence[httpx.AsyncClient], url: str, verifier: AnswerVerifier
    ) -> None:
        self.clients = itertools.cycle(clients)
        self.url = url
        self.verifier = verifier

    async def submit(self, signed: InvoiceSigned) -> Result:
        body = racuni_envelope(signed.document.encode())
        started = time.perf_counter()
        try:
            response = await next(self.clients).post(
                self.url,
                content=body,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION},
            )
        except httpx.TimeoutException:
            return Transient("timeout", "no answer from the tax authority in time")
        except httpx.TransportError as exc:
            return Transient("connection", f"could not reach the tax authority: {exc!r}")
        finally:
            CIS_SECONDS.observe(time.perf_counter() - started)
        if response.status_code >= 500 and b"RacunOdgovor" not in response.content:
            return Transient(f"http_{response.status_code}", f"HTTP {response.status_code}")
        try:
            return parse_racun_answer(
                response.content, self.verifier, expected_message_id=signed.message_id
            )
        except AnswerInvalid as exc:
            if response.status_code >= 400:
                return Transient(f"http_{response.status_code}", f"HTTP {response.status_code}")
            return Unverified(str(exc), response.content)
