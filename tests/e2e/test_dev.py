"""README's first command: `fiscobridge dev` runs everything, `fiscobridge demo` pushes
invoices through it, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fiscobridge.stack import free_port

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dev_runs_the_system_and_demo_fiscalizes(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("kafka", "ingest", "portal", "cis")}
    zoho = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "FISCOBRIDGE_MASTER_KEY",
                        "FISCOBRIDGE_DATABASE_URL")}
    env["FISCOBRIDGE_HOME"] = str(tmp_path)
    exe = [sys.executable, "-m", "fiscobridge"]
    dev = subprocess.Popen(
        [*exe, "dev", "--kafka-port", str(ports["kafka"]), "--ingest-port", str(ports["ingest"]),
         "--portal-port", str(ports["portal"]), "--cis-port", str(ports["cis"]),
         "--zoho-port", str(zoho)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        ready: set[str] = set()
        while ready != {"ingest", "portal"} and time.monotonic() < deadline:
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            for name in ("ingest", "portal"):
                try:
                    if httpx.get(f"http://127.0.0.1:{ports[name]}/readyz").status_code == 200:
                        ready.add(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        assert ready == {"ingest", "portal"}
        demo = subprocess.run(
            [*exe, "demo", "--invoices", "20", "--ingest-url",
             f"http://127.0.0.1:{ports['ingest']}", "--timeout", "120"],
            env={**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['kafka']}"},
            capture_output=True, text=True, timeout=300,
        )
        assert demo.returncode == 0, demo.stderr
        assert "fiscalized 20" in demo.stdout, demo.stdout
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=120)
    assert dev.returncode == 0, output
    assert "stopped" in output
    assert not [p for p in (*ports.values(), zoho) if _listening(p)]
