"""<home>/dev.json: found while its dev runs, ignored once it is gone, never over a
variable that names a broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fiscobridge import devfile
from fiscobridge.devfile import DevEndpoints


def _endpoints(pid: int) -> DevEndpoints:
    return DevEndpoints(pid=pid, kafka="127.0.0.1:19092", ingest="http://127.0.0.1:18080",
                        portal="http://127.0.0.1:18000", cis="http://127.0.0.1:18449/x",
                        zoho=["http://127.0.0.1:18470"], ops={"reporter": "http://127.0.0.1:1"})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_a_running_devs_broker_is_used_when_no_variable_names_one(home: Path) -> None:
    devfile.write(_endpoints(os.getpid()))
    assert devfile.read() == _endpoints(os.getpid())
    env: dict[str, str] = {}
    assert devfile.apply_to_environment(env) is not None
    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}


def test_a_variable_wins(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devfile.write(_endpoints(os.getpid()))
    env = {"KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"}
    assert devfile.apply_to_environment(env) is None
    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"}
    (home / ".env").write_text("KAFKA_BOOTSTRAP_SERVERS=dotenv:9092\n")
    env = {}
    assert devfile.apply_to_environment(env) is None and env == {}


def test_a_file_left_by_a_dev_that_died_is_ignored(home: Path) -> None:
    devfile.write(_endpoints(_dead_pid()))
    assert devfile.read() is None
    env: dict[str, str] = {}
    assert devfile.apply_to_environment(env) is None and env == {}


def test_a_dev_removes_only_its_own_file(home: Path) -> None:
    devfile.write(_endpoints(os.getpid()))
    devfile.remove(os.getpid() + 1)  # another dev stopping leaves ours alone
    assert devfile.path().exists()
    devfile.remove(os.getpid())
    assert not devfile.path().exists()
