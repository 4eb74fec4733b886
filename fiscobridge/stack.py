"""The whole pipeline as child processes, on free ports, in a directory of its own.

`fiscobridge dev` runs the same services on fixed ports; this is the variant for the
end-to-end tests, the demo and the benchmark, which need a private stack they can
start, kill with SIGKILL, restart and stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runtime.faust_adapter import STALL_EXIT_CODE
from runtime.supervisor import Child

PIPELINE = ("portal", "reporter", "fiscalizer", "ingest", "writeback")


def port_variable(service: str) -> str:
    """The variable naming the port a service's HTTP endpoints (ops included) listen on."""
    if service in ("ingest", "portal"):
        return f"FISCOBRIDGE_{service.upper()}_PORT"  # their own web apps carry /healthz etc.
    return f"FISCOBRIDGE_{service.upper()}_OPS_PORT"


def service_of(name: str) -> str:
    """The service a child runs: `fiscalizer-2` is the second instance of `fiscalizer`."""
    base, _, n = name.rpartition("-")
    return base if base and n.isdigit() else name


def instance_env(name: str) -> dict[str, str]:
    """What tells a second instance apart from the first: its own data directory (a
    fiscalizer's table files are its own; they survive its restart)."""
    base, _, n = name.rpartition("-")
    if service_of(name) == "fiscalizer" and base and n.isdigit():
        return {"FISCOBRIDGE_FISCALIZER_INSTANCE": n}
    return {}


def cpu_seconds_of(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in () may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports_in_a_row(n: int, tries: int = 50) -> int:
    """The first of `n` consecutive free ports (the Zoho sandbox listens on four)."""
    for _ in range(tries):
        first = free_port()
        if first + n > 65536:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + n):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise RuntimeError(f"no {n} consecutive free ports found in {tries} tries")


# The stack's own OAuth client in its Zoho sandbox (with `zoho=True`).
ZOHO_CLIENT_ID = "1000.FISCOBRIDGESTACK"
ZOHO_REDIRECT_URI = "http://127.0.0.1/oauth/zoho/callback"


@dataclass
class LocalStack:
    home: Path
    kafka_bootstrap: str
    master_key: str
    database_url: str = ""
    cis_latency_ms: int = 0
    cis_jitter_ms: int = 0
    # Also run the Zoho Books sandbox (`zoho`, four ports from ports["zoho"]) and give every
    # service that talks to Zoho (ingest, write-back) its OAuth client, as `dev` does.
    zoho: bool = False
    zoho_client_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    services: tuple[str, ...] = PIPELINE
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    _restarts: set[asyncio.Task[None]] = field(default_factory=set)
    _killed: set[int] = field(default_factory=set)  # ids of children a caller signalled

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def cis_base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['cis']}"

    @property
    def zoho_urls(self) -> dict[str, dict[str, str]]:
        """Per data centre (com, eu) its accounts and API origins and its location, as
        sandbox.zoho.server.ZohoSandbox.urls gives them."""
        first = self.ports["zoho"]
        return {dc: {"accounts": f"http://127.0.0.1:{first + 2 * i}",
                     "api": f"http://127.0.0.1:{first + 2 * i + 1}", "location": location}
                for i, (dc, location) in enumerate((("com", "us"), ("eu", "eu")))}

    @property
    def zoho_admin_url(self) -> str:
        return f"{self.zoho_urls['com']['accounts']}/_sandbox"

    @property
    def zoho_client(self) -> dict[str, Any]:
        """The OAuth client registered in the stack's Zoho sandbox."""
        return {"client_id": ZOHO_CLIENT_ID, "client_secret": self.zoho_client_secret,
                "redirect_uris": [ZOHO_REDIRECT_URI]}

    def _zoho_env(self) -> dict[str, str]:
        if not self.zoho:
            return {}
        return {
            "FISCOBRIDGE_ZOHO_CLIENT_ID": ZOHO_CLIENT_ID,
            "FISCOBRIDGE_ZOHO_CLIENT_SECRET": self.zoho_client_secret,
            "FISCOBRIDGE_ZOHO_ACCOUNTS_URL": self.zoho_urls["com"]["accounts"],
            "FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS": json.dumps(
                [urls["accounts"] for urls in self.zoho_urls.values()]),
        }

    @property
    def env(self) -> dict[str, str]:
        return {
            "FISCOBRIDGE_HOME": str(self.home),
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "FISCOBRIDGE_MASTER_KEY": self.master_key,
            "FISCOBRIDGE_DATABASE_URL": self.database_url,
            "FISCOBRIDGE_REPORTER_CIS_URL": f"{self.cis_base_url}/FiskalizacijaServiceTest",
            # The sandbox's own answer-signing certificate, which `sandbox cis` persists
            # beside its CA before it listens; the reporter trusts it and nothing else.
            "FISCOBRIDGE_REPORTER_CIS_TRUST": str(self.home / "sandbox-ca" / "fiskalcis.cert.pem"),
            "FISCOBRIDGE_REPORTER_CIS_SANDBOX": "true",
            "PYTHONUNBUFFERED": "1",
            "FISCOBRIDGE_FISCALIZER_STALL": "20s",
            **self._zoho_env(),
            **self.extra_env,
        }

    def _child(self, name: str) -> Child:
        exe = [sys.executable, "-m", "fiscobridge"]
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if name == "cis":
            argv = [*exe, "sandbox", "cis", "--port", str(self.ports["cis"]),
                    "--ca-dir", str(self.home / "sandbox-ca"),
                    "--latency-ms", str(self.cis_latency_ms),
                    "--jitter-ms", str(self.cis_jitter_ms)]
            env: dict[str, str] = {}
        elif name == "zoho":
            argv = [*exe, "sandbox", "zoho", "--port", str(self.ports["zoho"]),
                    "--client-id", ZOHO_CLIENT_ID, "--client-secret", self.zoho_client_secret,
                    "--redirect-uri", ZOHO_REDIRECT_URI]
            env = {}
        else:
            service = service_of(name)  # fiscalizer-2: a second fiscalizer in the group
            argv = [*exe, "run", service]
            env = {port_variable(service): str(self.ports[name]), **instance_env(name)}
        return Child(name, argv, {**self.env, **env}, logs / f"{name}.log")

    async def start(self) -> None:
        for name in ("cis", *self.services):
            self.ports.setdefault(name, free_port())
        if self.zoho:
            self.ports.setdefault("zoho", free_ports_in_a_row(4))
        try:
            await self.start_service("cis")
            if self.zoho:
                await self.start_service("zoho")
            await self._wait_http(f"{self.cis_base_url}/_sandbox/faults")
            if self.zoho:
                await self._wait_http(f"{self.zoho_admin_url}/health", name="zoho")
            for name in self.services:
                await self.start_service(name)
            for name in self.services:
                await self.wait_ready(name)
        except BaseException:
            await self.stop()  # never leave half a stack behind
            raise

    async def start_service(self, name: str) -> None:
        """Start `name`, or another instance of a service as `<service>-<n>` (n >= 2)."""
        self.ports.setdefault(name, free_port())
        child = self._child(name)
        await child.start()
        self.children[name] = child
        self._restarts.add(asyncio.create_task(self._restart_if_stalled(child)))

    async def _restart_if_stalled(self, child: Child) -> None:
        # A fiscalizer that finds itself stalled exits to be restarted, as a supervisor
        # would; a test's own kills and stops are left alone.
        assert child.process is not None
        exit_code = await child.process.wait()
        if (exit_code == STALL_EXIT_CODE and self.children.get(child.name) is child
                and id(child) not in self._killed):
            await self.start_service(child.name)

    def ops_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        await self._wait_http(f"{self.ops_url(name)}/readyz", timeout, name)

    async def _wait_http(self, url: str, timeout: float = 60.0, name: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                child = self.children.get(name or "cis")
                if child and child.process and child.process.returncode is not None:
                    raise RuntimeError(f"{child.name} exited with {child.process.returncode}; "
                                       f"see {child.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{url} not ready after {timeout}s; logs in {self.home / 'logs'}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each child has used so far, from /proc."""
        out = {}
        for name, child in self.children.items():
            if child.process is not None and child.process.returncode is None:
                used = cpu_seconds_of(child.process.pid)
                if used is not None:
                    out[name] = used
        return out

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal `name`. A signalled child is the caller's to restart: a stall exit it
        made just before is not restarted here as well (that would leave two running,
        one of them unmanaged)."""
        child = self.children[name]
        assert child.process is not None
        self._killed.add(id(child))
        with contextlib.suppress(ProcessLookupError):  # it had just exited by itself
            os.killpg(child.process.pid, sig)

    async def wait_exit(self, name: str, timeout: float = 60.0) -> int:
        process = self.children[name].process
        assert process is not None
        return await asyncio.wait_for(process.wait(), timeout)

    async def stop(self, grace: float = 30.0) -> None:
        for task in self._restarts:
            task.cancel()
        for name in reversed(list(self.children)):
            child = self.children[name]
            if child.process and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()
