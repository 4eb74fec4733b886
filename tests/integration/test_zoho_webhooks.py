"""The sandbox's webhook sender against a real HTTP receiver using the connector's verifier."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from connectors.zoho.webhook import (
    SIGNATURE_HEADER,
    PayloadInvalid,
    generate_webhook_secret,
    parse_webhook,
    verify_signature,
)
from schemas.invoice import Invoice
from tests.fixtures.zoho import Connection, ZohoSandboxHandle


@dataclass
class Receiver:
    """A stand-in ingest: verifies, parses, records; can fail the first N requests."""

    secret: str
    fail_first: int = 0
    url: str = ""
    requests: int = 0
    accepted: list[Invoice] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhook")
        async def webhook(request: Request) -> Response:
            self.requests += 1
            if self.requests <= self.fail_first:
                return Response(status_code=500)
            body = await request.body()
            if not verify_signature(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
                self.refused.append("bad_signature")
                return Response(status_code=401)
            try:
                self.accepted.append(parse_webhook(body))
            except PayloadInvalid as error:
                self.refused.append(error.reason)
                return Response(status_code=400)
            return Response(status_code=202)

        return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver(secret=generate_webhook_secret())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    target.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhook"
    server = uvicorn.Server(
        uvicorn.Config(target.app(), log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield target
    server.should_exit = True
    thread.join(10)


async def hooked(zoho: ZohoSandboxHandle, receiver: Receiver, **options: Any) -> Connection:
    connection = await zoho.connect()
    await zoho.set_webhook(connection.organization_id, receiver.url, receiver.secret, **options)
    return connection


def versions(invoices: list[Invoice]) -> list[tuple[str, str]]:
    return sorted((i.source_id, i.version) for i in invoices)


@pytest.mark.parametrize("encoding", ["hex", "base64"])
async def test_create_and_edit_are_delivered_signed(
    zoho_sandbox: ZohoSandboxHandle, receiver: Receiver, encoding: str
) -> None:
    zoho = zoho_sandbox
    connection = await hooked(zoho, receiver, signature_encoding=encoding)
    created = [await zoho.create_invoice(connection.organization_id) for _ in range(3)]
    edited = await zoho.edit_invoice(
        connection.organization_id, created[1]["invoice_id"], status="paid"
    )
    await zoho.drain_webhooks()

    expected = [
        (d["invoice_id"], datetime.fromisoformat(d["last_modified_time"]).isoformat())
        for d in [*created, edited]
    ]
    assert versions(receiver.accepted) == sorted(expected)
    assert receiver.refused == []
    paid = [i for i in receiver.accepted if i.status.value == "paid"]
    assert [i.source_id for i in paid] == [created[1]["invoice_id"]]


async def test_failed_deliveries_are_retried_at_increasing_intervals(
    zoho_sandbox: ZohoSandboxHandle, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    connection = await hooked(zoho_sandbox, receiver, retry_base_seconds=0.1, max_attempts=4)
    created = await zoho_sandbox.create_invoice(connection.organization_id)
    await zoho_sandbox.drain_webhooks()

    log = [e for e in await zoho_sandbox.deliveries() if e["invoice_id"] == created["invoice_id"]]
    assert [(e["attempt"], e["outcome"]) for e in log] == [(1, "500"), (2, "500"), (3, "202")]
    at = [datetime.fromisoformat(e["at"]) for e in log]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(at)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[1] > gaps[0]
    assert [i.source_id for i in receiver.accepted] == [created["invoice_id"]]


async def test_duplicated_deliveries_carry_the_same_version(
    zoho_sandbox: ZohoSandboxHandle, receiver: Receiver
) -> None:
    connection = await hooked(zoho_sandbox, receiver, duplicate_probability=1.0)
    created = [await zoho_sandbox.create_invoice(connection.organization_id) for _ in range(2)]
    await zoho_sandbox.drain_webhooks()

    assert len(receiver.accepted) == 4
    assert len(set(versions(receiver.accepted))) == 2
    counters = (await zoho_sandbox.counters())[f"webhooks:{connection.organization_id}"]
    assert counters["duplicated"] == 2 and counters["delivered"] == 4
    assert {i.source_id for i in receiver.accepted} == {c["invoice_id"] for c in created}


async def test_dropped_deliveries_never_arrive(
    zoho_sandbox: ZohoSandboxHandle, receiver: Receiver
) -> None:
    connection = await hooked(zoho_sandbox, receiver, drop_probability=1.0)
    await zoho_sandbox.create_invoice(connection.organization_id)
    await zoho_sandbox.drain_webhooks()
    assert receiver.requests == 0
    counters = (await zoho_sandbox.counters())[f"webhooks:{connection.organization_id}"]
    assert counters == {"dropped": 1}


async def test_wrong_secret_is_refused_and_zoho_gives_up(
    zoho_sandbox: ZohoSandboxHandle, receiver: Receiver
) -> None:
    connection = await zoho_sandbox.connect()
    await zoho_sandbox.set_webhook(
        connection.organization_id,
        receiver.url,
        generate_webhook_secret(),
        max_attempts=2,
        retry_base_seconds=0.01,
    )
    await zoho_sandbox.create_invoice(connection.organization_id)
    await zoho_sandbox.drain_webhooks()

    assert receiver.accepted == [] and receiver.refused == ["bad_signature"] * 2
    counters = (await zoho_sandbox.counters())[f"webhooks:{connection.organization_id}"]
    assert counters["gave_up"] == 1
