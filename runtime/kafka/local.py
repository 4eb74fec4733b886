"""A real single-node Apache Kafka (KRaft, combined broker and controller) on this machine.

Used by `fiscobridge kafka up|down|status`, by `fiscobridge dev` and by the test
fixtures. The broker is the pinned release from `runtime.kafka.jars`, run as a
detached JVM whose state lives in one directory:

    <data_dir>/server.properties   written on every start (ports may change)
    <data_dir>/log4j2.properties
    <data_dir>/data/               log.dirs, including the KRaft metadata log
    <data_dir>/logs/server.log     the broker's log; logs/stdout.log has JVM output
    <data_dir>/kafka.pid

The controller quorum is configured statically (`controller.quorum.voters`) rather than
formatted with `--standalone`, because a static voter set lives only in the config, so
a restart may pick a new controller port when the old one has been taken meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.kafka.admin import broker_answers
from runtime.kafka.filelock import exclusive
from runtime.kafka.jars import KAFKA_VERSION, fetch_jars, java_executable

__all__ = ["KAFKA_VERSION", "BrokerStatus", "LocalKafka", "LocalKafkaError", "fetch_jars"]

DEFAULT_PORT = 9092
HOST = "127.0.0.1"
_NODE_ID = 1


class LocalKafkaError(RuntimeError):
    """The local broker could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    data_dir: Path
    pid: int | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.running:
            return (
                f"running: Kafka {KAFKA_VERSION} on {HOST}:{self.port} "
                f"(pid {self.pid}, data {self.data_dir})"
            )
        return f"stopped (data {self.data_dir})"


class LocalKafka:
    """Start, stop and inspect the broker whose state is in `data_dir`.

    port=0 picks a free port at start. die_with_parent asks the kernel to stop the
    broker when the starting process dies (even by SIGKILL), for test sessions; the
    CLI leaves it off because `kafka up` returns while the broker keeps running.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_PORT,
        *,
        cache: Path | None = None,
        heap: str = "512m",
        die_with_parent: bool = False,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.cache = cache
        self.heap = heap
        self.die_with_parent = die_with_parent
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        """host:port for clients: the running broker's port, else the configured one."""
        port = self.status().port or self.port
        if not port:
            raise LocalKafkaError("the broker has no port yet: start it first (port=0 picks one)")
        return f"{HOST}:{port}"

    def status(self) -> BrokerStatus:
        pid = self._recorded_pid()
        if pid is None or not self._is_our_broker(pid):
            return BrokerStatus(running=False, data_dir=self.data_dir)
        return BrokerStatus(True, self.data_dir, pid, _configured_port(self.config_file))

    def start(self) -> BrokerStatus:
        """Start the broker and return once it answers metadata requests; no-op if running."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with exclusive(self.data_dir / ".lock"):
            current = self.status()
            if current.running:
                return current
            java = java_executable()
            jars = fetch_jars(self.cache)
            port = self.port or _free_port()
            if not _can_listen(port):
                raise LocalKafkaError(
                    f"port {port} on {HOST} is already in use (another broker?): choose another "
                    "port, or point clients at that one with KAFKA_BOOTSTRAP_SERVERS"
                )
            self._write_config(port, _free_port(exclude=port))
            if not (self.data_dir / "data" / "meta.properties").exists():
                self._format(java, jars)
            self._spawn(java, jars)
            self._await_ready(port)
            return self.status()

    def stop(self) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after stop_timeout_s); True if one ran."""
        with exclusive(self.data_dir / ".lock"):
            current = self.status()
            if current.running and current.pid is not None:
                self._terminate(current.pid)
            self.pid_file.unlink(missing_ok=True)
            self._process = None
            return current.running

    # -- internals -----------------------------------------------------------------

    def _java_command(self, java: str, jars: Path, heap: str) -> list[str]:
        return [
            java,
            "-Xms128m",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            # C1 only: a broker that lives for a test run or a dev session spent most of
            # its CPU in the C2 compiler (8 of 12.7 CPU-seconds in a benchmark window),
            # which a one-node broker at a few thousand requests a second never earns back.
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{jars}/*",
        ]

    def _write_config(self, port: int, controller_port: int) -> None:
        (self.data_dir / "logs").mkdir(exist_ok=True)
        settings = broker_config(self.data_dir / "data", port, controller_port)
        self.config_file.write_text(
            "# Written by fiscobridge on every start; edits are overwritten.\n"
            + "".join(f"{key}={value}\n" for key, value in settings.items()),
            encoding="utf-8",
        )
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(logs=self.data_dir / "logs"), encoding="utf-8"
        )

    def _format(self, java: str, jars: Path) -> None:
        command = [
            *self._java_command(java, jars, "256m"),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.config_file),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting the broker's storage in {self.data_dir / 'data'} failed:\n"
                f"{_tail(result.stdout + result.stderr)}"
            )

    def _spawn(self, java: str, jars: Path) -> None:
        command = [*self._java_command(java, jars, self.heap), "kafka.Kafka", str(self.config_file)]
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv:
            # setpriv execs java, so the pid stays the broker's and the signal survives exec.
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        with (self.data_dir / "logs" / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for the CLI must not reach the broker
                cwd=self.data_dir,
            )
        self.pid_file.write_text(f"{self._process.pid}\n", encoding="utf-8")

    def _await_ready(self, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LocalKafkaError(
                    f"the broker exited with code {self._process.returncode} while starting; "
                    f"last lines of {self.log_file} and stdout.log:\n{self._log_tail()}"
                )
            # A plain connect first: aiokafka logs every refused bootstrap as an error.
            if _accepts_connections(port) and _run(broker_answers(f"{HOST}:{port}", 5.0)):
                return
            time.sleep(0.2)
        self._terminate(self._process.pid)
        self.pid_file.unlink(missing_ok=True)
        raise LocalKafkaError(
            f"the broker did not answer on {HOST}:{port} within {self.start_timeout_s:.0f}s; "
            f"it was stopped. Last lines of its log:\n{self._log_tail()}"
        )

    def _terminate(self, pid: int) -> None:
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if self._wait_gone(pid, wait_s):
                return
        raise LocalKafkaError(f"broker pid {pid} survived SIGKILL")

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # Our own child must be reaped, or it lingers as a zombie that kill(0) still sees.
            if self._process is not None and self._process.pid == pid:
                if self._process.poll() is not None:
                    return True
            elif not _alive(pid):
                return True
            time.sleep(0.1)
        return False

    def _recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_our_broker(self, pid: int) -> bool:
        """The pid is alive and is a broker run from this data dir (pids get reused)."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        if not Path("/proc/self").exists():  # no procfs (macOS): trust the pid file
            return _alive(pid)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"kafka.Kafka" in cmdline and str(self.config_file).encode() in cmdline

    def _log_tail(self) -> str:
        parts = []
        for path in (self.log_file, self.data_dir / "logs" / "stdout.log"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace")
                parts.append(f"--- {path.name}\n{_tail(text, 20)}")
        return "\n".join(parts) or "(no log written)"


def broker_config(log_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """server.properties of a one-node cluster sized for a laptop or a 2-core CI runner."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(_NODE_ID),
        "controller.quorum.voters": f"{_NODE_ID}@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        # Topics come only from the registry (runtime.kafka.admin), never from a typo.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests and `dev` start consumer groups constantly; waiting 3s for more members
        # to join a one-member group is pure delay.
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }


def new_cluster_id() -> str:
    """A cluster id in Kafka's format: 16 random bytes, URL-safe base64 without padding.

    Kafka's own generator skips ids starting with '-' because a command line would
    read them as an option; so does this one.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


def _configured_port(config_file: Path) -> int | None:
    try:
        lines = config_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if line.startswith("advertised.listeners="):
            return int(line.rsplit(":", 1)[1])
    return None


def _free_port(exclude: int | None = None) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port != exclude:
            return port


def _can_listen(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The JVM sets SO_REUSEADDR too, so only a live listener counts as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Running, not merely a zombie: without a reaping init (some containers) a stopped
    broker can stay a zombie, which kill(pid, 0) still reports."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs: kill(pid, 0) is all there is
    return state != "Z"


def _run(coroutine: Coroutine[Any, Any, bool]) -> bool:
    """Run a probe coroutine to completion from sync code, even under a running event loop.

    A worker thread gets a loop of its own, so this never disturbs the caller's loop
    (pytest-asyncio's session loop, for one).
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
