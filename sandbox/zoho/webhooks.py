"""The Workflow-Rule webhook: POST `{"invoice": {...}}` (Credit Notes module:
`{"creditnote": {...}}`) on create and edit, signed.

Faithful to what integrators report: deliveries may be duplicated or dropped (each
with a configured probability) and failures are retried at increasing intervals
(`retry_base_seconds` x 2^attempt). The signature is HMAC-SHA256 keyed with the
secret over the raw body (no query parameters are configured), in hex or base64.
The signing here is written apart from the connector's verifier on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.zoho import books as zb
from sandbox.zoho.state import BooksState, Organization, WebhookConfig

_WORKERS = 4


@dataclass(frozen=True)
class _Delivery:
    organization_id: str
    config: WebhookConfig
    body: bytes
    invoice_id: str
    last_modified_time: str


def sign(secret: str, body: bytes, encoding: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode() if encoding == "base64" else digest.hex()


class WebhookSender:
    def __init__(self, books: BooksState, seed: int | None = None):
        self._books = books
        self._random = random.Random(seed)
        self._queue: asyncio.Queue[_Delivery] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self.log: list[dict[str, Any]] = []  # one entry per attempt, newest last

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._http = httpx.AsyncClient(timeout=10.0)
        self._workers = [asyncio.create_task(self._work()) for _ in range(_WORKERS)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._http is not None:
            await self._http.aclose()

    def notify(self, org: Organization, document: dict[str, Any], module: str = "invoice") -> None:
        """A record was created or edited: queue its delivery (or lose it, by design)."""
        config = org.webhook
        if config is None or self._queue is None:
            return
        area = f"webhooks:{org.organization_id}"
        if self._random.random() < config.drop_probability:
            self._books.count(area, "dropped")
            return
        copies = 2 if self._random.random() < config.duplicate_probability else 1
        if copies == 2:
            self._books.count(area, "duplicated")
        body = zb.dumps({module: document})
        for _ in range(copies):
            self._books.count(area, "queued")
            self._queue.put_nowait(
                _Delivery(
                    org.organization_id,
                    config,
                    body,
                    document.get("invoice_id") or document["creditnote_id"],
                    document["last_modified_time"],
                )
            )

    async def _work(self) -> None:
        assert self._queue is not None and self._http is not None
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> None:
        assert self._http is not None
        config = delivery.config
        area = f"webhooks:{delivery.organization_id}"
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            "X-Zoho-Webhook-Signature": sign(
                config.secret, delivery.body, config.signature_encoding
            ),
            "User-Agent": "ZohoBooks-Sandbox-Webhook",
        }
        for attempt in range(config.max_attempts):
            outcome: str
            try:
                response = await self._http.post(config.url, content=delivery.body, headers=headers)
                outcome = str(response.status_code)
                ok = 200 <= response.status_code < 300
            except httpx.HTTPError as error:
                outcome, ok = type(error).__name__, False
            self.log.append(
                {
                    "organization_id": delivery.organization_id,
                    "invoice_id": delivery.invoice_id,
                    "last_modified_time": delivery.last_modified_time,
                    "attempt": attempt + 1,
                    "outcome": outcome,
                    "at": self._books.clock.now().isoformat(),
                }
            )
            if ok:
                self._books.count(area, "delivered")
                return
            self._books.count(area, "failed_attempt")
            if attempt + 1 < config.max_attempts:
                await asyncio.sleep(config.retry_base_seconds * 2**attempt)
        self._books.count(area, "gave_up")

    async def drain(self) -> None:
        """Wait until every queued delivery has been attempted to the end."""
        if self._queue is not None:
            await self._queue.join()
