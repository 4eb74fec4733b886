"""ingest: Zoho webhooks in, `InvoiceReceived` out — 202 only once the broker has it.

A document the mapping refuses (its amounts cannot add up to Zoho's total, ...) is not
refused: it is published as a `blocked` status with the mapping's reason on
invoices.status (connectors.zoho.rejected) and answered 200 once acked, so that the
bookkeeper sees it in the portal and Zoho does not retry what retrying cannot fix.

Every refusal says why in a JSON body and publishes nothing. Checks go cheapest and
least revealing first: size, then the integration, then the signature, then content,
so a forged request never reaches the payload parser.

The invoice is mapped with the integration's read options, and with the buyer's
contact read from Zoho when the invoice carries no tax number, exactly as the poller
maps the same invoice. An accepted webhook is recorded for the poller (at most once per
`webhook_seen` per integration and process, in the background): while webhooks
arrive it polls less often.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.zoho.errors import ZohoError
from connectors.zoho.mapping import MappingOptions, buyer_contact_id
from connectors.zoho.rejected import blocked_status
from connectors.zoho.webhook import (
    PayloadInvalid,
    map_webhook,
    verify_signature,
    webhook_document,
)
from runtime.logging import log_context
from runtime.metrics import INTEGRATION_INVOICES
from runtime.ops import ReadinessCheck, routes
from schemas.events import Channel, InvoiceReceived, InvoiceStatus
from services.ingest.directory import WebhookDirectory, WebhookTarget
from services.ingest.settings import IngestSettings

log = logging.getLogger("fiscobridge.ingest")

RECEIVED = Counter(
    "fiscobridge_ingest_webhooks_total", "Webhooks answered, by HTTP status", ["status"]
)
PUBLISHED = Counter("fiscobridge_ingest_published_total", "InvoiceReceived events acked")
BLOCKED = Counter(
    "fiscobridge_ingest_blocked_total",
    "Documents the mapping refused, published as blocked statuses (acked)",
)
SECONDS = Histogram(
    "fiscobridge_ingest_request_seconds", "Webhook handling time including the broker ack",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)

# Ingest owns the "received" stage of the per-integration counters (with the poller).
INTEGRATION_INVOICES.declare("received")

Publish = Callable[[bytes, bytes], Awaitable[Any]]
ContactReader = Callable[[WebhookTarget, str], Awaitable[Mapping[str, Any] | None]]
WebhookSeen = Callable[[str], Awaitable[Any]]
SIGNATURE_HEADER = "X-Zoho-Webhook-Signature"


def _signed(target: WebhookTarget, body: bytes, header: str, params: dict[str, str]) -> bool:
    """Signed with the current secret, or the previous one within its grace period."""
    return any(verify_signature(secret, body, header, params)
               for secret in target.secrets(datetime.now(UTC)))


def _refuse(status: int, error: str, detail: str) -> JSONResponse:
    RECEIVED.labels(str(status)).inc()
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: IngestSettings,
    directory: WebhookDirectory,
    publish: Publish,
    ready: ReadinessCheck,
    *,
    contacts: ContactReader | None = None,
    webhook_seen: WebhookSeen | None = None,
    publish_status: Publish | None = None,
) -> Starlette:
    """`publish`: to invoices.received; `publish_status`: to invoices.status, for a
    document the mapping refuses (None: such a webhook is refused with 400)."""
    recorded: dict[str, float] = {}  # uid -> monotonic time its webhook was last recorded
    background: set[asyncio.Task[None]] = set()

    async def record_seen(uid: str) -> None:
        assert webhook_seen is not None
        try:
            await webhook_seen(uid)
        except Exception as error:  # the poller then polls at its normal pace
            log.warning("could not record the webhook for the poller",
                        extra={"error": repr(error)})

    def seen(uid: str) -> None:
        now = time.monotonic()
        last = recorded.get(uid)
        if webhook_seen is None:
            return
        if last is not None and now - last < settings.webhook_seen.total_seconds():
            return
        recorded[uid] = now
        task = asyncio.create_task(record_seen(uid))
        background.add(task)
        task.add_done_callback(background.discard)

    # A plain Starlette route, not a FastAPI one: FastAPI's parameter solving and its
    # per-request exit-stack middleware cost more CPU than the rest of the request
    # plumbing together, for a handler that reads the raw body itself anyway.
    async def zoho_webhook(request: Request) -> JSONResponse:
        integration_uid: str = request.path_params["integration_uid"]
        with SECONDS.time(), log_context(integration_uid=integration_uid):
            try:
                body = await _read_body(request, settings.max_body_bytes)
            except BodyTooLarge:
                return _refuse(413, "payload_too_large",
                               f"webhook bodies are limited to {settings.max_body_bytes} bytes")
            target = await directory.get(integration_uid)
            if target is None:
                return _refuse(404, "unknown_integration",
                               f"no integration {integration_uid!r}; check the webhook URL")
            if target.status == "removed":
                return _refuse(410, "integration_removed",
                               "this integration was removed; delete the webhook in Zoho Books")
            header = request.headers.get(SIGNATURE_HEADER)
            if not header:
                return _refuse(401, "missing_signature",
                               f"the {SIGNATURE_HEADER} header is required; enable "
                               "'I want to secure this webhook' with the integration's secret")
            params = dict(request.query_params)
            signed = _signed(target, body, header, params)
            if not signed:
                # Perhaps the secret was rotated since the target was cached.
                fresh = await directory.recheck(integration_uid)
                signed = fresh is not None and fresh.status != "removed" and _signed(
                    fresh, body, header, params)
            if not signed:
                log.warning("webhook signature mismatch")
                return _refuse(401, "bad_signature",
                               "the signature does not match the body and the integration's "
                               "secret; copy the secret again from the Webhook Setup panel")
            try:
                document = webhook_document(body)
            except PayloadInvalid as exc:
                return _refuse(400, "malformed_payload", str(exc))
            try:
                options = MappingOptions.from_stored(target.read_options)
            except ValueError as error:
                log.error("integration read options invalid", extra={"error": str(error)})
                return _refuse(503, "read_options_invalid",
                               f"the integration's Zoho read options are not valid ({error}); "
                               "an operator must set them again")
            contact = None
            contact_id = buyer_contact_id(document[1], options.buyer_tax_field)
            if contact_id is not None and contacts is not None:
                try:
                    contact = await contacts(target, contact_id)
                except ZohoError as error:
                    log.warning("buyer contact unreadable", extra={"error": str(error)})
                    return _refuse(503, "zoho_unavailable",
                                   "the buyer's tax number must be read from the Zoho contact, "
                                   "which failed for now; retry later")
            try:
                invoice = map_webhook(document, options, contact=contact)
            except PayloadInvalid as exc:
                blocked = None
                if exc.rejected is not None and publish_status is not None:
                    blocked = blocked_status(integration_uid, exc.rejected,
                                             starts_at=target.starts_at,
                                             only_paid=target.paid_only)
                if blocked is None:
                    return _refuse(400, "malformed_payload", str(exc))
                return await _block(blocked, publish_status)
            event = InvoiceReceived(
                integration_uid=integration_uid, invoice=invoice, channel=Channel.WEBHOOK
            )
            with log_context(event_id=event.event_id):
                try:
                    await asyncio.wait_for(
                        publish(event.key, event.to_json()),
                        settings.publish_timeout.total_seconds(),
                    )
                except Exception as exc:
                    log.error("broker did not ack; answering 503", extra={"error": repr(exc)})
                    return _refuse(503, "broker_unavailable",
                                   "the invoice could not be queued; retry later")
                PUBLISHED.inc()
                RECEIVED.labels("202").inc()
                INTEGRATION_INVOICES.count(integration_uid, "received")
                seen(integration_uid)
                log.info("accepted", extra={"invoice_id": invoice.source_id})
                return JSONResponse(
                    {"event_id": event.event_id, "invoice_id": invoice.source_id},
                    status_code=202,
                )

    async def _block(blocked: InvoiceStatus, publish_status: Publish | None) -> JSONResponse:
        """Answered 200 once the blocked status is acked: Zoho retries a webhook it did not
        get a 2xx for, and retrying sends the same document, which cannot map either.
        The bookkeeper corrects it in Zoho; that edit's webhook (or poll) then maps."""
        assert publish_status is not None
        with log_context(event_id=blocked.event_id):
            try:
                await asyncio.wait_for(publish_status(blocked.key, blocked.to_json()),
                                       settings.publish_timeout.total_seconds())
            except Exception as exc:
                log.error("broker did not ack; answering 503", extra={"error": repr(exc)})
                return _refuse(503, "broker_unavailable",
                               "the invoice could not be queued; retry later")
            BLOCKED.inc()
            RECEIVED.labels("200").inc()
            seen(blocked.integration_uid)
            log.warning("blocked: the document cannot be mapped", extra={
                "invoice_id": blocked.invoice.source_id, "code": blocked.reason_code})
            return JSONResponse(
                {"event_id": blocked.event_id, "invoice_id": blocked.invoice.source_id,
                 "state": blocked.state.value, "reason_code": blocked.reason_code,
                 "message": blocked.message},
                status_code=200,
            )

    webhook = Route("/webhook/zoho/{integration_uid}", zoho_webhook, methods=["POST"])
    return Starlette(routes=[webhook, *routes(ready)],
                     exception_handlers={HTTPException: _http_error})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """A wrong path or method answered in JSON, `{"detail": ...}`, as FastAPI did."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
