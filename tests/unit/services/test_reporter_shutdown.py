"""A reporter stopping while the broker is gone still stops every Kafka client: one
client failing to stop must not leave the others' connections and tasks behind."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

import services.reporter.service as service
from runtime.settings import KafkaSettings
from services.reporter.service import Reporter
from services.reporter.settings import ReporterSettings
from services.reporter.submit import Submitter


class Client:
    def __init__(self, name: str, stopped: list[str], *, fails: bool = False) -> None:
        self.name, self.stopped, self.fails = name, stopped, fails

    async def start(self) -> None:
        pass

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    async def stop(self) -> None:
        self.stopped.append(self.name)
        if self.fails:
            raise ConnectionError(f"{self.name}: the broker is gone")


async def test_every_client_is_stopped_when_stopping_the_consumer_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped: list[str] = []
    consumers = iter([Client("lookup", stopped), Client("consumer", stopped, fails=True)])
    monkeypatch.setattr(service, "make_producer", lambda *a, **k: Client("producer", stopped))
    monkeypatch.setattr(service, "make_consumer", lambda *a, **k: next(consumers))

    async def no_lag(*args: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(service.metrics, "track_lag", no_lag)
    reporter = Reporter(KafkaSettings(), ReporterSettings(), cast(Submitter, None))
    stop = asyncio.Event()
    stop.set()

    with pytest.raises(ConnectionError, match="consumer"):
        await reporter.run(stop)

    assert stopped == ["consumer", "lookup", "producer"]
    assert not reporter.running
