"""The local broker harness: start, no-op restart, stop with nothing left, data kept.

These start brokers of their own (in temporary directories, on free ports), apart from
the session's shared one, because starting and stopping is what they check.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.kafka.admin import broker_answers, cluster_topics, ensure_topics
from runtime.kafka.jars import java_major_version
from runtime.kafka.local import LocalKafka, LocalKafkaError, broker_config, new_cluster_id
from runtime.settings import KafkaSettings
from schemas.events import Event
from schemas.topics import Topic

pytestmark = pytest.mark.kafka


def alive(pid: int) -> bool:
    """Running and not a zombie (a reaped-later child still answers kill(pid, 0))."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run(
        [sys.executable, "-m", "fiscobridge", "kafka", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_start_is_idempotent_stop_leaves_nothing_and_data_survives(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "kafka", port=0, die_with_parent=True)
    try:
        status = broker.start()
        assert status.running and status.pid and status.port
        assert broker.bootstrap == f"127.0.0.1:{status.port}"
        assert await broker_answers(broker.bootstrap)
        assert broker.log_file.stat().st_size > 0

        again = LocalKafka(tmp_path / "kafka", port=0).start()
        assert (again.pid, again.port) == (status.pid, status.port)

        settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
        report = await ensure_topics(settings, [Topic("kept.across.restarts", Event, 2)])
        assert report.created == ("kept.across.restarts",)

        assert broker.stop() is True
        assert not alive(status.pid)
        assert not broker.status().running
        assert not broker.pid_file.exists()
        assert broker.stop() is False

        warm = broker.start()
        assert warm.running and warm.pid != status.pid
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
        assert (await cluster_topics(settings))["kept.across.restarts"] == 2
    finally:
        broker.stop()


def test_cli_up_status_down(tmp_path: Path) -> None:
    data = str(tmp_path / "cli-kafka")

    up = cli("up", "--port", "0", "--dir", data)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        assert "running: Kafka 4.4.0 on 127.0.0.1:" in up.stdout
        pid = int(Path(data, "kafka.pid").read_text())
        assert alive(pid)

        status = cli("status", "--dir", data)
        assert f"(pid {pid}, data {data})" in status.stdout

        second = cli("up", "--port", "0", "--dir", data)
        assert second.returncode == 0 and second.stdout.startswith("already running")
    finally:
        down = cli("down", "--dir", data)
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith("stopped")
    assert wait_dead(pid, timeout_s=1)
    assert "stopped" in cli("status", "--dir", data).stdout


def test_cli_up_defers_to_kafka_bootstrap_servers(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fiscobridge", "kafka", "up", "--dir", str(tmp_path / "k")],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "KAFKA_BOOTSTRAP_SERVERS is set (kafka.example:9092)" in result.stdout
    assert not (tmp_path / "k").exists()


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalKafkaError, match=f"port {port} on 127.0.0.1 is already in use"):
            LocalKafka(tmp_path / "k", port=port).start()
    assert not (tmp_path / "k" / "kafka.pid").exists()


def test_broker_dies_with_a_killed_test_session(tmp_path: Path) -> None:
    """die_with_parent: even a SIGKILLed pytest leaves no broker behind."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from runtime.kafka.local import LocalKafka
        status = LocalKafka(Path({str(tmp_path / "k")!r}), port=0, die_with_parent=True).start()
        print(status.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_dead(pid), f"broker {pid} outlived its parent"
    finally:
        parent.kill()
        LocalKafka(tmp_path / "k").stop()


def test_broker_config_is_a_one_node_kraft_cluster_without_auto_created_topics() -> None:
    config = broker_config(Path("/data"), 19092, 19093)
    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert config["auto.create.topics.enable"] == "false"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert config[key] == "1"
    assert config["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("no version here", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert java_major_version(output) == major
