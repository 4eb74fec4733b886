"""The sandbox CIS as an ASGI app: the SOAP endpoints plus `/_sandbox/*` controls.

Refusals come back as they do from the real service: a signed RacunOdgovor with
Greske, with HTTP status 500 (the SOAP 1.1 status for an unsuccessful request; clients
of the real CIS find SifraGreske only in non-200 answers). Requests that are not
SOAP at all get a SOAP Fault.

    POST /FiskalizacijaServiceTest, /FiskalizacijaService   racuni (RacunZahtjev),
        promijeniPodatkeRacuna (PromijeniPodatkeRacunaZahtjev), echo
    GET|POST|DELETE /_sandbox/faults   show | change (JSON, partial) | back to start-up
    GET|DELETE /_sandbox/ledger        accepted invoices | clear
    GET /_sandbox/ledger/sequences     per OIB, premises (and device for N) and year:
                                       numbers, gaps, repeats, redeliveries
    GET|DELETE /_sandbox/stats         requests by outcome | clear
    GET /_sandbox/ca.pem, /_sandbox/service.pem   trust anchor, answer-signing certificate
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fiscal.hr_cis.soap import (
    ECHO_REQUEST,
    PROMIJENI_PODATKE_ZAHTJEV,
    RACUN_ZAHTJEV,
    AnswerInvalid,
    CertificateTrust,
    open_envelope,
)
from fiscal.hr_cis.zki import ZkiHash, configured_zki_hash
from sandbox.cis.answers import ZAGREB, AnswerSigner, echo_answer, soap_fault
from sandbox.cis.ca import TestCA
from sandbox.cis.checks import (
    MESSAGES,
    AcceptedInvoice,
    Refusal,
    RequestChecks,
    expected_zki,
    load_schema,
    message_id_of,
)
from sandbox.cis.faults import Faults, roll, utcnow
from sandbox.cis.ledger import Ledger, Stats

SOAP_PATHS = ("/FiskalizacijaServiceTest", "/FiskalizacijaService")
_XML = "text/xml; charset=utf-8"


class CisSandbox:
    """The service's state and behaviour, apart from any HTTP server."""

    def __init__(
        self,
        ca: TestCA,
        schema: etree.XMLSchema,
        *,
        allow_sha1: bool = False,
        answer_sha1: bool = False,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        service: tuple[rsa.RSAPrivateKey, x509.Certificate] | None = None,
        zki_hash: ZkiHash | None = None,
    ) -> None:
        self.ca = ca
        # The ZKI hash of the environment the sandbox stands for, the same setting the
        # profile reads (FISCOBRIDGE_CIS_ZKI_HASH): the ledger checks ZKIs with it.
        self.zki_hash: ZkiHash = zki_hash or configured_zki_hash()
        # The service signs its answers with its own certificate ("fiskalcis", spec
        # §2.1.5), never with the CA's key: clients pin it. `service` is the persisted
        # one (sandbox.cis.ca.load_or_create_service); without it one is issued now.
        key, self.service_certificate = service or ca.issue_service_cert()
        self.signer = AnswerSigner(key, self.service_certificate, sha1=answer_sha1)
        self.checks = RequestChecks(
            schema, CertificateTrust([ca.certificate]), allow_sha1=allow_sha1
        )
        self.initial_faults = faults or Faults()
        self.faults = self.initial_faults
        self.ledger = Ledger()
        self.stats = Stats()
        self.rng = rng or random.Random()

    @classmethod
    def create(cls, ca: TestCA, spec_dir: Path, **options: Any) -> CisSandbox:
        return cls(ca, load_schema(spec_dir), **options)

    def set_faults(self, changes: dict[str, Any]) -> Faults:
        self.faults = self.faults.updated(changes, utcnow())
        return self.faults

    def reset(self) -> None:
        self.faults = self.initial_faults
        self.ledger.clear()
        self.stats.clear()

    def pem(self, certificate: x509.Certificate) -> bytes:
        return certificate.public_bytes(serialization.Encoding.PEM)

    async def soap(self, body: bytes) -> tuple[int, bytes]:
        """Status and body of the answer to one SOAP request, faults included."""
        faults = self.faults
        if faults.outage_active(utcnow()):
            self.stats.count("outage")
            return 503, b"Service Unavailable"
        delay = faults.latency_seconds(self.rng)
        if delay:
            await asyncio.sleep(delay)
        if roll(self.rng, faults.http500):
            self.stats.count("http500")
            return 500, b"<html><body><h1>500 Internal Server Error</h1></body></html>"
        if roll(self.rng, faults.hang):
            self.stats.count("hang")
            await asyncio.sleep(faults.hang_seconds)
            return 504, b"Gateway Timeout"
        try:
            content = open_envelope(body)
        except AnswerInvalid as exc:
            self.stats.count("fault")
            return 500, soap_fault("Client", f"not a SOAP 1.1 request: {exc}")
        if content.tag == ECHO_REQUEST:
            self.stats.count("echo")
            return 200, echo_answer(content.text or "")
        if content.tag == PROMIJENI_PODATKE_ZAHTJEV:
            return self._change(content, faults)
        if content.tag != RACUN_ZAHTJEV:
            self.stats.count("fault")
            name = etree.QName(content).localname if isinstance(content.tag, str) else "?"
            return 500, soap_fault(
                "Client",
                f"operation for {name} is not offered by the sandbox"
                " (racuni, promijeniPodatkeRacuna, echo)",
            )
        return await self._racuni(content, faults)

    def _change(self, request: etree._Element, faults: Faults) -> tuple[int, bytes]:
        """promijeniPodatkeRacuna: the payment method and/or buyer OIB of an invoice
        fiscalized today, until midnight (spec §2.1.5): s011 when the invoice's date
        is not today, s012 when it does not match a fiscalized invoice."""
        now = utcnow()
        try:
            change = self.checks.check_change(request, now)
            issued_on = change.invoice.issued_at[:10]  # dd.MM.yyyy, Croatian local time
            if issued_on != now.astimezone(ZAGREB).strftime("%d.%m.%Y"):
                raise Refusal("s011")
            fiscalized = self.ledger.fiscalized(change.invoice)
            if fiscalized is None or (
                fiscalized.fiscalized_data() != change.invoice.fiscalized_data()
            ):
                raise Refusal("s012")
        except Refusal as refusal:
            self.stats.count(refusal.code)
            return 500, self.signer.change_answer(
                message_id_of(request), now, errors=[(refusal.code, refusal.message)]
            )
        if roll(self.rng, faults.s006):
            self.stats.count("s006")
            return 500, self.signer.change_answer(
                change.invoice.message_id, now, errors=[("s006", MESSAGES["s006"])]
            )
        self.ledger.record_change(change, now)
        self.stats.count("change_ok")
        return 200, self.signer.change_answer(change.invoice.message_id, now)

    def _zki_witness(self, invoice: AcceptedInvoice) -> Callable[[], str]:
        """Checks the invoice's ZKI when the ledger is read, off the answer's path (an
        RSA signature per invoice would slow the sandbox under load)."""
        hash_name = self.zki_hash

        def check() -> str:
            key = self.ca.issued_key(invoice.signer) if invoice.signer is not None else None
            if key is None:
                return "unverifiable"
            return "ok" if expected_zki(key, invoice, hash_name) == invoice.zki else "mismatch"

        return check

    async def _racuni(self, request: etree._Element, faults: Faults) -> tuple[int, bytes]:
        now = utcnow()
        try:
            invoice = self.checks.check(request, now)
        except Refusal as refusal:
            self.stats.count(refusal.code)
            return 500, self.signer.racun_answer(
                message_id_of(request), now, errors=[(refusal.code, refusal.message)]
            )
        if roll(self.rng, faults.s006):
            self.stats.count("s006")
            return 500, self.signer.racun_answer(
                invoice.message_id, now, errors=[("s006", MESSAGES["s006"])]
            )
        jir = str(uuid.uuid4())
        self.ledger.record(invoice, jir, now, self._zki_witness(invoice))
        answer = self.signer.racun_answer(invoice.message_id, now, jir=jir)
        if roll(self.rng, faults.lost_answer):
            self.stats.count("lost_answer")
            await asyncio.sleep(faults.hang_seconds)
            return 504, b"Gateway Timeout"
        self.stats.count("ok")
        return 200, answer


def create_app(sandbox: CisSandbox) -> Starlette:
    async def soap(request: Request) -> Response:
        status, body = await sandbox.soap(await request.body())
        media_type = _XML if body.startswith(b"<?xml") else "text/plain"
        return Response(body, status_code=status, media_type=media_type)

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object of fault settings")
                sandbox.set_faults(changes)
            except ValidationError as exc:
                errors = [
                    {"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]}
                    for e in exc.errors(include_url=False)
                ]
                return JSONResponse({"error": "invalid fault settings", "details": errors}, 422)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 422)
        elif request.method == "DELETE":
            sandbox.faults = sandbox.initial_faults
        return JSONResponse(sandbox.faults.model_dump(mode="json"))

    async def ledger(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.ledger.clear()
        return JSONResponse(sandbox.ledger.entries())

    async def sequences(request: Request) -> Response:
        return JSONResponse(sandbox.ledger.sequences())

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.stats.clear()
        return JSONResponse(sandbox.stats.snapshot(sandbox.ledger))

    async def ca_pem(request: Request) -> Response:
        return Response(sandbox.pem(sandbox.ca.certificate), media_type="application/x-pem-file")

    async def service_pem(request: Request) -> Response:
        return Response(
            sandbox.pem(sandbox.service_certificate), media_type="application/x-pem-file"
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route(path, soap, methods=["POST"]) for path in SOAP_PATHS] + [
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/ledger", ledger, methods=["GET", "DELETE"]),
        Route("/_sandbox/ledger/sequences", sequences, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET", "DELETE"]),
        Route("/_sandbox/ca.pem", ca_pem, methods=["GET"]),
        Route("/_sandbox/service.pem", service_pem, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes)
