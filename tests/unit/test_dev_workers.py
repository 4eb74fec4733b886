"""`fiscobridge dev --workers N`: N fiscalizers and N reporters, each instance on ports
and (for the fiscalizer) table files of its own, all in one consumer group."""

from __future__ import annotations

from pathlib import Path

import pytest

from fiscobridge.commands.dev import Ports, children, endpoints, listing
from fiscobridge.stack import instance_env, service_of
from services.fiscalizer.settings import FiscalizerSettings

PORTS = Ports(kafka=9092, ingest=8080, portal=8000, cis=8449, zoho=8470)


def _services(workers: int) -> dict[str, tuple[str, dict[str, str]]]:
    made = children(PORTS, Path("/tmp"), "secret", workers)
    return {c.name: (c.argv[-1], c.env) for c in made if c.argv[-2] == "run"}


def test_one_worker_is_the_stack_as_before() -> None:
    assert sorted(_services(1)) == [
        "fiscalizer", "ingest", "poller", "portal", "reporter", "writeback"]


def test_three_workers_start_three_fiscalizers_and_reporters_on_ports_of_their_own() -> None:
    services = _services(3)
    assert [n for n in services if service_of(n) == "fiscalizer"] == [
        "fiscalizer", "fiscalizer-2", "fiscalizer-3"]
    assert [n for n in services if service_of(n) == "reporter"] == [
        "reporter", "reporter-2", "reporter-3"]
    assert {services[n][0] for n in services if service_of(n) == "reporter"} == {"reporter"}
    ports = [int(v) for _, env in services.values() for k, v in env.items()
             if k.endswith("_PORT") and "ZOHO" not in k]
    assert len(ports) == len(set(ports)) == 10
    assert PORTS.cis not in ports and PORTS.kafka not in ports
    assert services["fiscalizer-3"][1]["FISCOBRIDGE_FISCALIZER_OPS_PORT"] == "8023"
    # One group (same app id), separate table directories.
    assert services["fiscalizer-2"][1]["FISCOBRIDGE_FISCALIZER_INSTANCE"] == "2"
    assert "FISCOBRIDGE_FISCALIZER_INSTANCE" not in services["fiscalizer"][1]
    assert "FISCOBRIDGE_FISCALIZER_APP_ID" not in services["fiscalizer-2"][1]
    assert "FISCOBRIDGE_REPORTER_GROUP_ID" not in services["reporter-2"][1]
    ops = endpoints(PORTS, "127.0.0.1:9092", 3).ops
    assert ops["reporter-3"] == "http://127.0.0.1:8022"
    assert "fiscalizer-2" in listing(PORTS, 3)


def test_each_fiscalizer_instance_keeps_its_tables_apart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    first = FiscalizerSettings()
    for name, value in instance_env("fiscalizer-2").items():
        monkeypatch.setenv(name, value)
    second = FiscalizerSettings()
    assert first.data_dir() != second.data_dir()
    assert first.data_dir().parent == second.data_dir().parent.parent
    assert instance_env("reporter-2") == {} and service_of("reporter-2") == "reporter"
