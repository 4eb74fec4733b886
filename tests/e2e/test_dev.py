"""README's first command: `fiscobridge dev` runs everything, `fiscobridge demo` pushes
invoices through it, Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from fiscobridge.stack import free_port

pytestmark = pytest.mark.e2e

SERVICES = ("portal", "reporter", "fiscalizer", "poller", "ingest", "writeback")
LISTED = re.compile(r"^  (\w+) +http://127\.0\.0\.1:(\d+)$", re.MULTILINE)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_ports(count: int) -> int:
    """The first of `count` consecutive ports free right now (the Zoho sandbox takes four)."""
    for _ in range(50):
        first = free_port()
        socks = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _controller_port(home: Path) -> int | None:
    """The local broker's controller listener, from the server.properties dev wrote."""
    config = home / "kafka" / "server.properties"
    found = re.search(r"CONTROLLER://[^:]+:(\d+)", config.read_text()) if config.exists() else None
    return int(found.group(1)) if found else None


def test_dev_runs_the_system_and_demo_fiscalizes(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("kafka", "ingest", "portal", "cis")}
    ops = {name: free_port() for name in ("reporter", "fiscalizer", "poller", "writeback")}
    zoho = _free_ports(4)
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "FISCOBRIDGE_MASTER_KEY",
                        "FISCOBRIDGE_DATABASE_URL")}
    env["FISCOBRIDGE_HOME"] = str(tmp_path)
    exe = [sys.executable, "-m", "fiscobridge"]
    dev = subprocess.Popen(
        [*exe, "dev", "--kafka-port", str(ports["kafka"]), "--ingest-port", str(ports["ingest"]),
         "--portal-port", str(ports["portal"]), "--cis-port", str(ports["cis"]),
         "--zoho-port", str(zoho),
         *[arg for name, port in ops.items() for arg in (f"--{name}-ops-port", str(port))]],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []  # read all along: a full pipe would stall dev

    def read() -> None:
        assert dev.stdout is not None
        lines.extend(iter(dev.stdout.readline, ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    checks = {
        **{name: "" for name in SERVICES},  # /readyz on the port dev says, filled in below
        "cis-sandbox": f"http://127.0.0.1:{ports['cis']}/healthz",
        **{f"zoho-sandbox:{zoho + i}": f"http://127.0.0.1:{zoho + i}/_sandbox/health"
           for i in range(4)},
    }
    controller = None
    listed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 240
        ready: set[str] = set()
        while ready != checks.keys() and time.monotonic() < deadline:
            assert dev.poll() is None, "".join(lines)
            listed = {m[1]: int(m[2]) for m in LISTED.finditer("".join(lines))}
            for name in SERVICES:
                if name in listed:
                    checks[name] = f"http://127.0.0.1:{listed[name]}/readyz"
            ready |= {name for name, url in checks.items() if url and _ok(url)}
            time.sleep(0.5)
        assert ready == checks.keys(), (sorted(checks.keys() - ready), "".join(lines))
        # dev says where each service listens, and it is where it was asked to.
        assert listed == {**{k: ports[k] for k in ("ingest", "portal")}, **ops}, "".join(lines)
        controller = _controller_port(tmp_path)
        # dev says where it listens in <home>/dev.json ...
        written = json.loads((tmp_path / "dev.json").read_text())
        assert written["pid"] == dev.pid
        assert written["kafka"] == f"127.0.0.1:{ports['kafka']}"
        assert written["ingest"] == f"http://127.0.0.1:{ports['ingest']}"
        assert written["portal"] == f"http://127.0.0.1:{ports['portal']}"
        assert written["zoho"] == [f"http://127.0.0.1:{zoho + i}" for i in range(4)]
        assert written["ops"] == {name: f"http://127.0.0.1:{port}" for name, port in listed.items()}
        # ... and demo finds it there: no broker variable, no ingest URL, none of the
        # default ports.
        assert "KAFKA_BOOTSTRAP_SERVERS" not in env and "FISCOBRIDGE_INGEST_URL" not in env
        demo = subprocess.run(
            [*exe, "demo", "--invoices", "20", "--timeout", "120"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert demo.returncode == 0, demo.stderr
        assert f"webhooks to http://127.0.0.1:{ports['ingest']}" in demo.stdout, demo.stdout
        assert "fiscalized 20" in demo.stdout, demo.stdout
        # Ready once is not enough: a service that crashed since (say, a crash-looping
        # poller) was reported by the supervisor, and must not be.
        assert not [line for line in lines if line.startswith("[dev] ")], "".join(lines)
        assert all(_ok(url) for url in checks.values()), "".join(lines)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=180)
        except subprocess.TimeoutExpired:
            dev.kill()  # leaves the children behind, but not the test runner hanging
            raise
        reader.join(timeout=10)
    output = "".join(lines)
    assert dev.returncode == 0, output
    assert "stopped" in output
    assert "did not stop within" not in output  # each drained on SIGTERM, none was killed
    assert not (tmp_path / "dev.json").exists()  # a stopped dev is not found by demo
    everything = [*ports.values(), *ops.values(), *range(zoho, zoho + 4)]
    if controller is not None:
        everything.append(controller)
    assert not [p for p in everything if _listening(p)], output
