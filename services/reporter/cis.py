"""Submit a signed invoice to CIS over HTTP and classify what came back."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
from prometheus_client import Histogram

from fiscal.hr_cis.soap import AnswerInvalid, AnswerVerifier, parse_racun_answer, racuni_envelope
from schemas.events import InvoiceSigned
from services.reporter.outcome import Result, Transient, Unverified

SOAP_ACTION = "http://e-porezna.porezna-uprava.hr/fiskalizacija/2012/services/FiskalizacijaService/racuni"
# Parsed once, as the URL is in __init__: httpx would otherwise parse both per request.
_HEADERS = httpx.Headers({"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION})

CIS_SECONDS = Histogram(
    "fiscobridge_reporter_cis_request_seconds",
    "Time from sending a RacunZahtjev to having its answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class CisSubmitter:
    """Posts each submission on a client that has nothing else in flight, if there is one.

    The reporter gives it many small pools (`services.reporter.service.cis_clients`
    says why), and picking an idle one here costs O(1). With fewer clients than
    requests in flight, the least busy client takes the extra one and its own pool
    queues it.
    """

    def __init__(
        self, clients: Sequence[httpx.AsyncClient], url: str, verifier: AnswerVerifier
    ) -> None:
        if not clients:
            raise ValueError("CisSubmitter needs at least one HTTP client")
        self.clients = list(clients)
        self.url = httpx.URL(url)
        self.verifier = verifier
        self._in_flight = [0] * len(self.clients)
        # Last released first: its connection is the one most recently known alive,
        # and under light load the others may idle out rather than all being kept warm.
        self._idle = list(range(len(self.clients) - 1, -1, -1))

    def _acquire(self) -> int:
        index = self._idle.pop() if self._idle else min(
            range(len(self.clients)), key=self._in_flight.__getitem__
        )
        self._in_flight[index] += 1
        return index

    def _release(self, index: int) -> None:
        self._in_flight[index] -= 1
        if not self._in_flight[index]:
            self._idle.append(index)

    async def submit(self, signed: InvoiceSigned) -> Result:
        body = racuni_envelope(signed.document.encode())
        started = time.perf_counter()
        index = self._acquire()
        try:
            client = self.clients[index]
            # Timeouts are the client's own: build_request puts them on the request.
            response = await client.send(
                client.build_request("POST", self.url, content=body, headers=_HEADERS)
            )
        except httpx.TimeoutException:
            return Transient("timeout", "no answer from the tax authority in time")
        except httpx.TransportError as exc:
            return Transient("connection", f"could not reach the tax authority: {exc!r}")
        finally:
            self._release(index)
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
