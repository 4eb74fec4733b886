"""The reporter's /readyz asks the broker: 200 while it answers, 503 once it is gone.

The broker is this test's own, so stopping it leaves the session's broker alone."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from fiscal.hr_cis.authority import HrCisChannel
from fiscal.hr_cis.soap import AnswerVerifier, CisSigner
from runtime.kafka.admin import ensure_topics
from runtime.kafka.local import LocalKafka
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from sandbox.cis.ca import TestCA
from schemas.topics import INVOICES_SIGNED, INVOICES_STATUS, registry
from services.reporter.service import Reporter
from services.reporter.settings import ReporterSettings
from services.reporter.submit import Submitter

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _readyz(url: str, status: int, timeout: float = 60) -> httpx.Response:
    """Poll until /readyz answers `status`; the last answer."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            response = await http.get(f"{url}/readyz")
            if response.status_code == status or time.monotonic() > deadline:
                return response
            await asyncio.sleep(0.2)


async def test_readyz_is_200_with_the_broker_and_503_without_it(
    broker: LocalKafka, test_ca: TestCA
) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, partitions=1,
                          request_timeout_ms=3000)
    wanted = {INVOICES_SIGNED.name, INVOICES_STATUS.name}
    assert (await ensure_topics(kafka, [t for t in registry(1) if t.name in wanted])).ok
    settings = ReporterSettings(group_id=f"readiness-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient() as cis:
        # Never called: no signed invoice is published in this test.
        verifier = AnswerVerifier(CisSigner.pinned(test_ca.issue_service_cert()[1]))
        submitter = Submitter([cis], {"hr-cis": HrCisChannel("http://127.0.0.1:9/", verifier)})
        reporter = Reporter(kafka, settings, submitter)
        ops = OpsServer(reporter.readiness)
        await ops.start()
        url = f"http://127.0.0.1:{ops.port}"
        stop = asyncio.Event()
        assert (await _readyz(url, 503, timeout=0)).status_code == 503  # not started yet
        run = asyncio.create_task(reporter.run(stop))
        try:
            response = await _readyz(url, 200)
            assert response.status_code == 200, response.text
            assert response.json() == {"ready": True, "checks": {"kafka": True}}

            await asyncio.to_thread(broker.stop)
            assert not run.done()  # still running: only the probe can tell the broker is gone
            response = await _readyz(url, 503, timeout=30)
            assert response.status_code == 503, response.text
            assert response.json() == {"ready": False, "checks": {"kafka": False}}

            # Back on the same port: ready again, and able to shut down cleanly (aiokafka's
            # consumer.stop() raises CancelledError while its broker is unreachable).
            await asyncio.to_thread(broker.start)
            response = await _readyz(url, 200)
            assert response.status_code == 200, response.text
        finally:
            stop.set()
            try:
                await asyncio.wait_for(run, 30)
            finally:
                await ops.stop()
